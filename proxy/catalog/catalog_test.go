package catalog

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestNewConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a pool succeeded")
	}
	pool := &pgxpool.Pool{} // never queried here
	if _, err := New(Config{Pool: pool, TTL: -time.Second}); err == nil {
		t.Error("New with a negative TTL succeeded")
	}
	if _, err := New(Config{Pool: pool, Size: -1}); err == nil {
		t.Error("New with a negative size succeeded")
	}
	r, err := New(Config{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	if r.ttl != DefaultTTL || r.now == nil || r.log == nil {
		t.Errorf("defaults not applied: ttl %v", r.ttl)
	}
	// OID 0 (a computed result column) needs no query.
	if _, err := r.Table(t.Context(), 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Table(0) error = %v, want ErrNotFound", err)
	}
}

func TestTable(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, `Catalog "Test".Mixed`)
	e.db.Exec(t, `
		CREATE TABLE `+s+`."Cust""omers" (id int PRIMARY KEY, "E-Mail" text, full_name text, "Phone" text);
		CREATE VIEW `+s+`.contacts AS SELECT full_name AS name, "E-Mail" AS email FROM `+s+`."Cust""omers";
		CREATE MATERIALIZED VIEW `+s+`.ids AS SELECT id FROM `+s+`."Cust""omers";
		CREATE TABLE `+s+`.events (id int, at date) PARTITION BY RANGE (at);
		CREATE TABLE `+s+`.dropped (a int, b text, c text);
		ALTER TABLE `+s+`.dropped DROP COLUMN b;
		CREATE TABLE `+s+`.empty ();
	`)
	const schema = `Catalog "Test".Mixed`
	tests := []struct {
		regclass string
		want     Table
	}{
		{s + `."Cust""omers"`, Table{Schema: schema, Name: `Cust"omers`, RelKind: 'r',
			Columns: map[int16]string{1: "id", 2: "E-Mail", 3: "full_name", 4: "Phone"}}},
		{s + `.contacts`, Table{Schema: schema, Name: "contacts", RelKind: 'v',
			Columns: map[int16]string{1: "name", 2: "email"}}},
		{s + `.ids`, Table{Schema: schema, Name: "ids", RelKind: 'm', Columns: map[int16]string{1: "id"}}},
		{s + `.events`, Table{Schema: schema, Name: "events", RelKind: 'p', Columns: map[int16]string{1: "id", 2: "at"}}},
		{s + `.dropped`, Table{Schema: schema, Name: "dropped", RelKind: 'r', Columns: map[int16]string{1: "a", 3: "c"}}},
		{s + `.empty`, Table{Schema: schema, Name: "empty", RelKind: 'r', Columns: map[int16]string{}}},
		{`pg_catalog.pg_class`, Table{Schema: "pg_catalog", Name: "pg_class", RelKind: 'r'}},
	}
	for _, tt := range tests {
		t.Run(tt.regclass, func(t *testing.T) {
			oid := e.oid(t, tt.regclass)
			got, err := e.r.Table(t.Context(), oid)
			if err != nil {
				t.Fatal(err)
			}
			if got.OID != oid || got.Schema != tt.want.Schema || got.Name != tt.want.Name || got.RelKind != tt.want.RelKind {
				t.Errorf("Table = {%d %q %q %q}, want {%d %q %q %q}",
					got.OID, got.Schema, got.Name, got.RelKind, oid, tt.want.Schema, tt.want.Name, tt.want.RelKind)
			}
			if tt.want.Columns != nil && !maps.Equal(got.Columns, tt.want.Columns) {
				t.Errorf("Columns = %v, want %v", got.Columns, tt.want.Columns)
			}
		})
	}

	t.Run("dropped column", func(t *testing.T) {
		oid := e.oid(t, s+`.dropped`)
		if _, err := e.r.Column(t.Context(), oid, 2); !errors.Is(err, ErrNotFound) {
			t.Errorf("Column(dropped b) error = %v, want ErrNotFound", err)
		}
		col, err := e.r.Column(t.Context(), oid, 3)
		if err != nil || col.Name != "c" {
			t.Errorf("Column(c) = %+v, %v", col, err)
		}
		// From the cache alone: the column read above; never a dropped
		// one, nor a table not read yet.
		if got, ok := e.r.CachedColumn(oid, 3); !ok || got != col {
			t.Errorf("CachedColumn(c) = %+v, %v, want %+v", got, ok, col)
		}
		if _, ok := e.r.CachedColumn(oid, 2); ok {
			t.Error("CachedColumn answered for a dropped column")
		}
		if _, ok := e.r.CachedColumn(e.oid(t, s+`.empty`)+100000, 1); ok {
			t.Error("CachedColumn answered for a table never read")
		}
	})
}

// TestRowDescription resolves the fields PostgreSQL itself describes.
func TestRowDescription(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_rowdesc")
	e.db.Exec(t, `
		CREATE TABLE `+s+`.customers (id int, email text, name text);
		CREATE VIEW `+s+`.contacts AS SELECT name, lower(email) AS mail FROM `+s+`.customers;
	`)
	conn, err := pgx.Connect(t.Context(), e.db.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	customers, contacts := e.oid(t, s+".customers"), e.oid(t, s+".contacts")
	rows, err := conn.Query(t.Context(), `SELECT c.email, c.id, c, 1 AS one, c.ctid, upper(c.name), v.mail, v.*
		FROM `+s+`.customers c JOIN `+s+`.contacts v USING (name) LIMIT 0`)
	if err != nil {
		t.Fatal(err)
	}
	fields := rows.FieldDescriptions()
	rows.Close()

	want := []Column{
		{Schema: "catalog_rowdesc", Table: "customers", Name: "email", TableOID: customers, AttNum: 2, RelKind: 'r'},
		{Schema: "catalog_rowdesc", Table: "customers", Name: "id", TableOID: customers, AttNum: 1, RelKind: 'r'},
		{Schema: "catalog_rowdesc", Table: "customers", Name: "*", TableOID: customers, AttNum: 0, RelKind: 'r'},
		{},
		{Schema: "catalog_rowdesc", Table: "customers", Name: "ctid", TableOID: customers, AttNum: -1, RelKind: 'r'},
		{},
		{Schema: "catalog_rowdesc", Table: "contacts", Name: "mail", TableOID: contacts, AttNum: 2, RelKind: 'v'},
		{Schema: "catalog_rowdesc", Table: "contacts", Name: "name", TableOID: contacts, AttNum: 1, RelKind: 'v'},
		{Schema: "catalog_rowdesc", Table: "contacts", Name: "mail", TableOID: contacts, AttNum: 2, RelKind: 'v'},
	}
	if len(fields) != len(want) {
		t.Fatalf("%d fields, want %d", len(fields), len(want))
	}
	for i, f := range fields {
		got, err := e.r.Column(t.Context(), f.TableOID, int16(f.TableAttributeNumber))
		if want[i] == (Column{}) {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("field %d %q: Column = %+v, %v; want ErrNotFound", i, f.Name, got, err)
			}
			continue
		}
		if err != nil || got != want[i] {
			t.Errorf("field %d %q: Column = %+v, %v; want %+v", i, f.Name, got, err, want[i])
		}
	}
	// Two relations were read; every other lookup was a hit.
	if n := e.tr.queries.Load(); n != 2 {
		t.Errorf("%d catalog queries, want 2", n)
	}
}

func TestRenameSeenAfterInvalidate(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_rename")
	e.db.Exec(t, `CREATE TABLE `+s+`.t (id int, email text)`)
	oid := e.oid(t, s+".t")

	name := func() string {
		t.Helper()
		col, err := e.r.Column(t.Context(), oid, 2)
		if err != nil {
			t.Fatal(err)
		}
		return col.Name
	}
	if got := name(); got != "email" {
		t.Fatalf("column 2 = %q, want email", got)
	}
	e.db.Exec(t, `ALTER TABLE `+s+`.t RENAME COLUMN email TO mail`)
	if got := name(); got != "email" {
		t.Fatalf("column 2 before Invalidate = %q, want the cached email", got)
	}
	e.r.Invalidate()
	if got := name(); got != "mail" {
		t.Fatalf("column 2 after Invalidate = %q, want mail", got)
	}
	if n := e.tr.queries.Load(); n != 2 {
		t.Errorf("%d catalog queries, want 2", n)
	}
}

func TestRenameSeenAfterTTL(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_ttl")
	e.db.Exec(t, `CREATE TABLE `+s+`.t (id int, email text)`)
	oid := e.oid(t, s+".t")

	name := func() string {
		t.Helper()
		col, err := e.r.Column(t.Context(), oid, 2)
		if err != nil {
			t.Fatal(err)
		}
		return col.Name
	}
	if got := name(); got != "email" {
		t.Fatalf("column 2 = %q, want email", got)
	}
	e.db.Exec(t, `ALTER TABLE `+s+`.t RENAME COLUMN email TO mail`)
	e.clock.Advance(testTTL - time.Nanosecond)
	if got := name(); got != "email" {
		t.Fatalf("column 2 just before the TTL = %q, want the cached email", got)
	}
	e.clock.Advance(time.Nanosecond)
	if got := name(); got != "mail" {
		t.Fatalf("column 2 after the TTL = %q, want mail", got)
	}
	hits, misses := e.r.Stats()
	if hits != 1 || misses != 2 {
		t.Errorf("Stats = %d hits, %d misses; want 1, 2", hits, misses)
	}
}

func TestAddedColumnFoundWithoutInvalidate(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_added")
	e.db.Exec(t, `CREATE TABLE `+s+`.t (id int)`)
	oid := e.oid(t, s+".t")
	if _, err := e.r.Table(t.Context(), oid); err != nil {
		t.Fatal(err)
	}
	e.db.Exec(t, `ALTER TABLE `+s+`.t ADD COLUMN email text`)
	col, err := e.r.Column(t.Context(), oid, 2)
	if err != nil || col.Name != "email" {
		t.Fatalf("Column(2) = %+v, %v; want email", col, err)
	}
	if _, err := e.r.Column(t.Context(), oid, 3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Column(3) error = %v, want ErrNotFound", err)
	}
	// The new table was cached: its columns resolve without a query.
	before := e.tr.queries.Load()
	for _, att := range []int16{1, 2} {
		if _, err := e.r.Column(t.Context(), oid, att); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.tr.queries.Load(); n != before {
		t.Errorf("%d catalog queries for cached columns", n-before)
	}
}

func TestUnknownOIDNegativeCached(t *testing.T) {
	e := newEnv(t)
	const unknown = 4_000_000_000
	for range 3 {
		if _, err := e.r.Table(t.Context(), unknown); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Table(unknown) error = %v, want ErrNotFound", err)
		}
		if _, err := e.r.Column(t.Context(), unknown, 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Column(unknown) error = %v, want ErrNotFound", err)
		}
	}
	if n := e.tr.queries.Load(); n != 1 {
		t.Errorf("%d catalog queries, want 1", n)
	}
	if hits, misses := e.r.Stats(); hits != 5 || misses != 1 {
		t.Errorf("Stats = %d hits, %d misses; want 5, 1", hits, misses)
	}
	e.clock.Advance(testTTL)
	if _, err := e.r.Table(t.Context(), unknown); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Table(unknown) error = %v, want ErrNotFound", err)
	}
	if n := e.tr.queries.Load(); n != 2 {
		t.Errorf("%d catalog queries after the TTL, want 2", n)
	}
}

func TestDroppedTable(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_drop")
	e.db.Exec(t, `CREATE TABLE `+s+`.t (id int)`)
	oid := e.oid(t, s+".t")
	if _, err := e.r.Table(t.Context(), oid); err != nil {
		t.Fatal(err)
	}
	e.db.Exec(t, `DROP TABLE `+s+`.t`)
	e.r.Invalidate()
	if _, err := e.r.Table(t.Context(), oid); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Table(dropped) error = %v, want ErrNotFound", err)
	}
}

// gateFirst blocks the first catalog query until release is closed or its
// context ends, and lets later queries through.
func gateFirst(tr *tracer) (release func()) {
	ch := make(chan struct{})
	var started atomic.Bool
	gate := func(ctx context.Context) {
		if started.CompareAndSwap(false, true) {
			select {
			case <-ch:
			case <-ctx.Done():
			}
		}
	}
	tr.gate.Store(&gate)
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

func TestConcurrentMissesCollapse(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_concurrent")
	e.db.Exec(t, `CREATE TABLE `+s+`.t (id int, email text)`)
	oid := e.oid(t, s+".t")

	release := gateFirst(e.tr)
	defer release()
	const n = 50
	results := make([]*Table, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = e.r.Table(t.Context(), oid) })
	}
	waitFor(t, "all lookups to miss", func() bool {
		_, misses := e.r.Stats()
		return misses == n && e.tr.queries.Load() == 1
	})
	release()
	wg.Wait()

	for i := range n {
		if errs[i] != nil {
			t.Fatalf("lookup %d: %v", i, errs[i])
		}
		if results[i] != results[0] {
			t.Fatalf("lookup %d got a different *Table", i)
		}
	}
	if got := e.tr.queries.Load(); got != 1 {
		t.Errorf("%d catalog queries for %d concurrent misses, want 1", got, n)
	}
	if _, err := e.r.Table(t.Context(), oid); err != nil {
		t.Fatal(err)
	}
	if hits, misses := e.r.Stats(); hits != 1 || misses != n {
		t.Errorf("Stats = %d hits, %d misses; want 1, %d", hits, misses, n)
	}
}

func TestReadDuringInvalidateNotCached(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_inflight")
	e.db.Exec(t, `CREATE TABLE `+s+`.t (id int, email text)`)
	oid := e.oid(t, s+".t")

	// lookup runs Table in a goroutine, gated by the tracer.
	type result struct {
		table *Table
		err   error
	}
	lookup := func() chan result {
		ch := make(chan result, 1)
		go func() {
			table, err := e.r.Table(t.Context(), oid)
			ch <- result{table, err}
		}()
		return ch
	}

	t.Run("alone", func(t *testing.T) {
		release := gateFirst(e.tr)
		defer release()
		old := lookup()
		waitFor(t, "the read", func() bool { return e.tr.queries.Load() == 1 })
		e.r.Invalidate()
		release()
		if r := <-old; r.err != nil {
			t.Fatal(r.err)
		}
		if _, err := e.r.Table(t.Context(), oid); err != nil {
			t.Fatal(err)
		}
		if n := e.tr.queries.Load(); n != 2 {
			t.Errorf("%d catalog queries, want 2: a read begun before Invalidate was cached", n)
		}
	})

	t.Run("overtaken", func(t *testing.T) {
		e.r.Invalidate()
		e.tr.queries.Store(0)
		release := gateFirst(e.tr)
		defer release()
		old := lookup()
		waitFor(t, "the first read", func() bool { return e.tr.queries.Load() == 1 })
		e.r.Invalidate()
		// A lookup after Invalidate does not join the read begun before it.
		newer, err := e.r.Table(t.Context(), oid)
		if err != nil {
			t.Fatal(err)
		}
		if n := e.tr.queries.Load(); n != 2 {
			t.Fatalf("%d catalog queries, want 2", n)
		}
		release()
		r := <-old
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.table == newer {
			t.Fatal("the two reads returned the same *Table")
		}
		// The older read, finishing last, did not replace the newer one.
		cached, err := e.r.Table(t.Context(), oid)
		if err != nil {
			t.Fatal(err)
		}
		if cached != newer || e.tr.queries.Load() != 2 {
			t.Error("the read begun before Invalidate replaced the cached table")
		}
	})
}

func TestCancelledReaderDoesNotFailWaiters(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_cancel")
	e.db.Exec(t, `CREATE TABLE `+s+`.t (id int)`)
	oid := e.oid(t, s+".t")

	release := gateFirst(e.tr)
	defer release()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	leader := make(chan error, 1)
	go func() {
		_, err := e.r.Table(ctx, oid)
		leader <- err
	}()
	waitFor(t, "the first read", func() bool { return e.tr.queries.Load() == 1 })

	follower := make(chan error, 1)
	go func() {
		_, err := e.r.Table(t.Context(), oid)
		follower <- err
	}()
	waitFor(t, "the second lookup", func() bool { _, m := e.r.Stats(); return m == 2 })
	cancel()
	if err := <-leader; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled lookup error = %v, want context.Canceled", err)
	}
	if err := <-follower; err != nil {
		t.Errorf("waiting lookup error = %v, want success", err)
	}
}

func TestCancelledWaiterReturns(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_waiter")
	e.db.Exec(t, `CREATE TABLE `+s+`.t (id int)`)
	oid := e.oid(t, s+".t")

	release := gateFirst(e.tr)
	defer release()
	leader := make(chan error, 1)
	go func() {
		_, err := e.r.Table(t.Context(), oid)
		leader <- err
	}()
	waitFor(t, "the first read", func() bool { return e.tr.queries.Load() == 1 })

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.r.Table(ctx, oid); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting lookup error = %v, want context.DeadlineExceeded", err)
	}
	release()
	if err := <-leader; err != nil {
		t.Errorf("reading lookup error = %v", err)
	}
}

func TestHitsDoNotAllocate(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_allocs")
	e.db.Exec(t, `CREATE TABLE `+s+`.t (id int, email text)`)
	oid := e.oid(t, s+".t")
	ctx := t.Context()
	if _, err := e.r.Column(ctx, oid, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Table(ctx, 4_000_000_000); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := e.r.Column(ctx, oid, 2); err != nil {
			t.Fatal(err)
		}
		if _, err := e.r.Column(ctx, oid, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := e.r.Table(ctx, 4_000_000_000); err == nil {
			t.Fatal("unknown OID found")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per cache hit, want 0", allocs)
	}
}

func TestLRUEviction(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_lru")
	e.db.Exec(t, `CREATE TABLE `+s+`.a (id int); CREATE TABLE `+s+`.b (id int)`)
	r, err := New(Config{Pool: e.pool, Size: 1, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	a, b := e.oid(t, s+".a"), e.oid(t, s+".b")
	for _, oid := range []uint32{a, b, a} {
		if _, err := r.Table(t.Context(), oid); err != nil {
			t.Fatal(err)
		}
	}
	if hits, misses := r.Stats(); hits != 0 || misses != 3 {
		t.Errorf("Stats = %d hits, %d misses; want 0, 3 with room for one table", hits, misses)
	}
}
