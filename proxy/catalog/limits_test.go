package catalog

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// TestLookupsUnderLock: the lookups that lock relations give up at the
// lock timeout when another session holds the lock, fail fast for a while
// after, and work again, on healthy connections, once it is released.
func TestLookupsUnderLock(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_locks")
	e.db.Exec(t, `CREATE TABLE `+s+`.t (id int, email text);
CREATE VIEW `+s+`.v AS SELECT id, email FROM `+s+`.t`)
	view := e.oid(t, s+".v")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	holder, err := pgx.Connect(ctx, e.db.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+s+".t, "+s+".v IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	query := "SELECT email FROM " + s + ".t"
	lookups := []struct {
		name string
		run  func() error
	}{
		{"view definition", func() error { _, err := e.r.ViewDefinition(ctx, view); return err }},
		{"estimate", func() error {
			_, err := e.r.Estimate(ctx, pgtest.SuperUser, []string{"public"}, query, nil)
			return err
		}},
		{"explained keys", func() error {
			_, err := e.r.ExplainedKeys(ctx, "SELECT id FROM "+s+".t WHERE email = $1", "ann")
			return err
		}},
	}
	for _, l := range lookups {
		start := time.Now()
		err := l.run()
		took := time.Since(start)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
			t.Errorf("%s under a lock: %v, want lock_not_available (55P03)", l.name, err)
		}
		if took > DefaultLockTimeout+500*time.Millisecond {
			t.Errorf("%s under a lock took %v, want about %v", l.name, took, DefaultLockTimeout)
		}
	}
	start := time.Now()
	if _, err := e.r.ViewDefinition(ctx, view); !errors.Is(err, errLocked) || time.Since(start) > 50*time.Millisecond {
		t.Errorf("view definition again: %v after %v, want errLocked at once", err, time.Since(start))
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(lockedTTL)
	for _, l := range lookups {
		if err := l.run(); err != nil {
			t.Errorf("%s once the lock is released: %v", l.name, err)
		}
	}
	if st := e.pool.Stat(); st.TotalConns() != st.IdleConns() {
		t.Errorf("pool: %d connections, %d idle; want every one back", st.TotalConns(), st.IdleConns())
	}
}

// TestEstimateDeadline: an EXPLAIN still planning at the deadline is
// abandoned then and cancelled on the server; the same query is not
// planned again for a while, and the next estimate works.
func TestEstimateDeadline(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_deadline")
	e.db.Exec(t, `CREATE TABLE `+s+`.t (id int);
CREATE FUNCTION `+s+`.slow() RETURNS int IMMUTABLE LANGUAGE plpgsql AS 'BEGIN PERFORM pg_sleep(10); RETURN 1; END'`)
	slow := "SELECT id FROM " + s + ".t WHERE id < " + s + ".slow()"
	const deadline = 300 * time.Millisecond
	estimate := func(query string) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		_, err := e.r.Estimate(ctx, pgtest.SuperUser, []string{"public"}, query, nil)
		return time.Since(start), err
	}
	first := time.Now()
	took, err := estimate(slow)
	if err == nil || took > deadline+200*time.Millisecond {
		t.Fatalf("slow estimate: %v after %v, want an error at the deadline (%v)", err, took, deadline)
	}
	watch, err := pgx.Connect(context.Background(), e.db.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(context.Background())
	waitFor(t, "the EXPLAIN to end", func() bool {
		var n int
		err := watch.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
WHERE query LIKE 'EXPLAIN%slow()%' AND state = 'active'`).Scan(&n)
		return err == nil && n == 0
	})
	if ran := time.Since(first); ran > 3*time.Second {
		t.Errorf("the EXPLAIN ran %v of its 10 s, want it cancelled", ran)
	}
	if took, err := estimate(slow); !errors.Is(err, ErrNoEstimate) || took > 50*time.Millisecond {
		t.Errorf("slow estimate again: %v after %v, want ErrNoEstimate at once", err, took)
	}
	if _, err := estimate("SELECT id FROM " + s + ".t"); err != nil {
		t.Errorf("next estimate: %v", err)
	}
}
