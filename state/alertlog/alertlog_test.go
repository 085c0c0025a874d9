package alertlog

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/audit/notify"
)

func TestQueue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.json")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, who := range []string{"alice", "bob", "alice"} {
		if err := l.Notify(notify.Alert{ID: string(rune('a' + i)), Employee: who, Rule: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.List("alice", false, 0); len(got) != 2 || got[0].ID != "c" {
		t.Errorf("List(alice) = %+v", got)
	}
	if _, err := l.Ack("a", "sec", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Ack("zz", "sec", "", time.Now()); err != ErrNotFound {
		t.Errorf("Ack of an unknown alert: %v", err)
	}
	// A restart keeps the queue and the acknowledgement.
	l2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := l2.List("", true, 0); len(got) != 2 || got[0].ID != "c" || got[1].ID != "b" {
		t.Errorf("unacked after reopen = %+v", got)
	}
	if got := l2.List("", false, 1); len(got) != 1 {
		t.Errorf("limit: %d", len(got))
	}
	if err := l2.Notify(notify.Alert{}); err == nil {
		t.Error("alert without id accepted")
	}
}
