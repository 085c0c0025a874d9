package quarantine

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestPGSharedByInstances(t *testing.T) {
	db := pgtest.Shared(t)
	db.Exec(t, "DROP TABLE IF EXISTS pgwarden_quarantine")
	ctx := context.Background()
	pool := db.Pool(t, pgtest.SuperUser)
	a, err := OpenPG(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenPG(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	var _ Store = a
	var _ Store = &List{}
	if added, err := a.Add(Entry{Employee: "alice", Since: time.Now().UTC().Truncate(time.Second), Rule: "r"}); !added || err != nil {
		t.Fatalf("Add: %v %v", added, err)
	}
	if added, _ := a.Add(Entry{Employee: "alice", Rule: "other"}); added {
		t.Error("added twice")
	}
	// b sees it within its refresh period.
	deadline := time.Now().Add(3 * time.Second)
	for {
		if e, ok := b.Get("alice"); ok && e.Rule == "r" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the other instance does not see the quarantine")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, ok, err := b.Release("alice"); !ok || err != nil {
		t.Fatalf("Release: %v %v", ok, err)
	}
	deadline = time.Now().Add(3 * time.Second)
	for {
		if _, ok := a.Get("alice"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first instance still sees alice quarantined")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
