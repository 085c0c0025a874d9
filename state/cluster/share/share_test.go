package share

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/policy/window"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestExchange(t *testing.T) {
	db := pgtest.Shared(t)
	db.Exec(t, "DROP TABLE IF EXISTS pgwarden_window_deltas")
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, db.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	now := time.Now()
	a, err := New(ctx, Config{Pool: pool, Instance: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(ctx, Config{Pool: pool, Instance: "b"})
	if err != nil {
		t.Fatal(err)
	}
	emails := func(n int64) window.Figures {
		f := window.Figures{Statements: 1, Rows: n, PIIRows: n}
		f.PIIValues[pii.IdxEmail] = n
		f.Custom = map[string]int64{"custom:loyalty": 2}
		return f
	}
	hourOf := func(r *window.Registry) (int64, int64) {
		tot, _ := r.GetCounts("alice", now)
		return tot[window.Hour].PIIValues[pii.IdxEmail], tot[window.Hour].Custom["custom:loyalty"]
	}
	a.Add("alice", now, emails(40))
	a.Exchange(ctx)
	b.Exchange(ctx)
	if e, c := hourOf(b.Remote()); e != 40 || c != 2 {
		t.Fatalf("b sees %d emails, %d loyalty ids from a; want 40, 2", e, c)
	}
	// The same minute again: only the gain is added.
	a.Add("alice", now, emails(10))
	a.Exchange(ctx)
	b.Exchange(ctx)
	b.Exchange(ctx) // pulling twice adds nothing more
	if e, c := hourOf(b.Remote()); e != 50 || c != 4 {
		t.Fatalf("b sees %d emails, %d loyalty ids; want 50, 4", e, c)
	}
	// An instance does not read its own rows back.
	if e, _ := hourOf(a.Remote()); e != 0 {
		t.Errorf("a sees its own %d emails as remote", e)
	}
	// A database that is gone: the batch is kept and written on return.
	a.Add("alice", now, emails(5))
	broken, _ := pgxpool.New(ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	good := a.cfg.Pool
	a.cfg.Pool = broken
	a.Exchange(ctx)
	if a.Healthy() {
		t.Error("healthy without a database")
	}
	a.cfg.Pool = good
	a.Exchange(ctx)
	b.Exchange(ctx)
	if !a.Healthy() {
		t.Error("not healthy again")
	}
	if e, _ := hourOf(b.Remote()); e != 55 {
		t.Errorf("after the outage b sees %d emails, want 55", e)
	}
	broken.Close()
}
