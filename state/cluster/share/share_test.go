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

// twoSharers returns instances a and b sharing empty tables, and their
// pool.
func twoSharers(t *testing.T) (a, b *Sharer, pool *pgxpool.Pool) {
	t.Helper()
	db := pgtest.Shared(t)
	db.Exec(t, "DROP TABLE IF EXISTS pgwarden_window_deltas, pgwarden_leases")
	pool = db.Pool(t, pgtest.SuperUser)
	var err error
	if a, err = New(t.Context(), Config{Pool: pool, Instance: "a"}); err != nil {
		t.Fatal(err)
	}
	if b, err = New(t.Context(), Config{Pool: pool, Instance: "b"}); err != nil {
		t.Fatal(err)
	}
	return a, b, pool
}

func TestExchange(t *testing.T) {
	ctx := context.Background()
	a, b, _ := twoSharers(t)
	now := time.Now()
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

// TestPruneByOne: rows older than a day go, deleted by the one instance
// holding the lease "windows"; the others only forget them.
func TestPruneByOne(t *testing.T) {
	ctx := context.Background()
	a, b, pool := twoSharers(t)
	rows := func() (old, recent int) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE minute < now() - interval '25 hours'),
	count(*) FILTER (WHERE minute >= now() - interval '25 hours') FROM pgwarden_window_deltas`).Scan(&old, &recent); err != nil {
			t.Fatal(err)
		}
		return old, recent
	}
	add := func(s *Sharer, age time.Duration) {
		t.Helper()
		s.Add("alice", time.Now().Add(-age), window.Figures{Statements: 1, Rows: 1})
		if err := s.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	add(a, 30*time.Hour)
	add(a, time.Minute)
	if err := b.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if old, recent := rows(); old != 0 || recent != 1 {
		t.Fatalf("after b pruned: %d old rows, %d recent; want 0 and 1", old, recent)
	}
	add(a, 31*time.Hour)
	if err := a.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if old, _ := rows(); old != 1 {
		t.Fatalf("a pruned while b holds the lease: %d old rows, want 1", old)
	}
	if err := b.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if old, recent := rows(); old != 0 || recent != 1 {
		t.Fatalf("after b pruned again: %d old rows, %d recent; want 0 and 1", old, recent)
	}
}
