package adminlog

import (
	"errors"
	"testing"
	"time"
)

// TestDrainAtLeastOnce: actions come back oldest first; one whose
// auditing failed stays for the next drain, those audited do not.
func TestDrainAtLeastOnce(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	for i, who := range []string{"alice", "bob", "carol"} {
		if err := Write(dir, Action{Action: "quarantine_released", By: "ops", Via: "cli", Employee: who, Reason: "r", At: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	fail := errors.New("trail unavailable")
	err := Drain(dir, func(a Action) error {
		if a.Employee == "bob" {
			return fail
		}
		got = append(got, a.Employee)
		return nil
	})
	if !errors.Is(err, fail) || len(got) != 1 || got[0] != "alice" {
		t.Fatalf("first drain: %v %v", got, err)
	}
	got = nil
	if err := Drain(dir, func(a Action) error { got = append(got, a.Employee+"/"+a.By); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "bob/ops" || got[1] != "carol/ops" {
		t.Errorf("second drain: %v", got)
	}
	if err := Drain(dir, func(a Action) error { t.Errorf("drained twice: %+v", a); return nil }); err != nil {
		t.Fatal(err)
	}
	if OSUser() == "" {
		t.Error("OSUser is empty")
	}
}
