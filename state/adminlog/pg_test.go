package adminlog

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestDrainPG: actions written to the state database come back oldest
// first, once each; one whose auditing failed stays for the next drain.
func TestDrainPG(t *testing.T) {
	db := pgtest.Shared(t)
	db.Exec(t, "DROP TABLE IF EXISTS pgwarden_admin_actions")
	ctx := context.Background()
	pool := db.Pool(t, pgtest.SuperUser)
	if err := DrainPG(ctx, pool, func(a Action) error { t.Errorf("drained %+v from no table", a); return nil }); err != nil {
		t.Fatalf("drain before any write: %v", err)
	}
	for _, who := range []string{"alice", "bob", "carol"} {
		if err := WritePG(ctx, pool, Action{Action: "quarantine_released", By: "ops", Via: "cli", Employee: who, Reason: "r", At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	fail := errors.New("trail unavailable")
	var got []string
	err := DrainPG(ctx, pool, func(a Action) error {
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
	if err := DrainPG(ctx, pool, func(a Action) error { got = append(got, a.Employee+"/"+a.By); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "bob/ops" || got[1] != "carol/ops" {
		t.Errorf("second drain: %v", got)
	}
	if err := DrainPG(ctx, pool, func(a Action) error { t.Errorf("drained twice: %+v", a); return nil }); err != nil {
		t.Fatal(err)
	}
}
