package catalog

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/internal/clock"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// tracer counts the Resolver's catalog queries. gate, when set, runs at the
// start of each one and may block it.
type tracer struct {
	queries atomic.Int64
	gate    atomic.Pointer[func(ctx context.Context)]
}

func (tr *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if data.SQL == tableQuery {
		tr.queries.Add(1)
		if g := tr.gate.Load(); g != nil {
			(*g)(ctx)
		}
	}
	return ctx
}

func (tr *tracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// env is one test's database, pool, tracer, clock and resolver.
type env struct {
	db    *pgtest.Cluster
	pool  *pgxpool.Pool
	tr    *tracer
	clock *clock.Virtual
	r     *Resolver
}

const testTTL = time.Minute

func newEnv(t *testing.T) *env {
	t.Helper()
	db := pgtest.Shared(t)
	cfg, err := pgxpool.ParseConfig(db.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	tr := &tracer{}
	cfg.ConnConfig.Tracer = tr
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e := &env{
		db:    db,
		pool:  pool,
		tr:    tr,
		clock: clock.NewVirtual(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
	e.r, err = New(Config{Pool: e.pool, TTL: testTTL, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// schema creates a fresh schema, dropped when the test ends, and returns its
// quoted name.
func (e *env) schema(t *testing.T, name string) string {
	t.Helper()
	q := pgx.Identifier{name}.Sanitize()
	e.db.Exec(t, "DROP SCHEMA IF EXISTS "+q+" CASCADE; CREATE SCHEMA "+q)
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, e.db.DSN(pgtest.SuperUser))
		if err != nil {
			t.Errorf("drop schema %s: %v", q, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+q+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", q, err)
		}
	})
	return q
}

// oid returns the OID of the relation named by regclass, a possibly quoted
// and schema-qualified name.
func (e *env) oid(t *testing.T, regclass string) uint32 {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), e.db.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var oid uint32
	if err := conn.QueryRow(t.Context(), "SELECT $1::regclass::oid", regclass).Scan(&oid); err != nil {
		t.Fatalf("oid of %s: %v", regclass, err)
	}
	return oid
}

// waitFor polls cond until it holds, failing the test after ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
