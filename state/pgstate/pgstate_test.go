package pgstate

import (
	"context"
	"os"
	"testing"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestSaveLoad(t *testing.T) {
	db := pgtest.Shared(t)
	ctx := context.Background()
	pool := db.Pool(t, pgtest.SuperUser)
	db.Exec(t, "DROP TABLE IF EXISTS pgwarden_state")
	s, err := Open(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Load(ctx, "norms"); ok || err != nil {
		t.Fatalf("empty store: %v %v", ok, err)
	}
	for _, v := range []string{"first", "second"} {
		if err := s.Save(ctx, "norms", []byte(v)); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.Load(ctx, "norms")
		if err != nil || !ok || string(got) != v {
			t.Fatalf("Load = %q %v %v, want %q", got, ok, err, v)
		}
	}
	// A second Open keeps what is there.
	s2, err := Open(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s2.Load(ctx, "norms"); string(got) != "second" {
		t.Errorf("after reopen: %q", got)
	}
}
