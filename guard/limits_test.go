package guard_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/internal/metrics"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// idList is "1,2,...,n".
func idList(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i))
	}
	return b.String()
}

// timed runs sql on conn, reads its rows, and returns how long it took and
// how many rows came back.
func timed(t *testing.T, conn *pgx.Conn, sql string) (time.Duration, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return time.Since(start), n
}

// TestLargeStatementCost: a statement of 200,000 literals costs about as
// much through pgwarden as direct; the guard does not parse it, counts
// its result all the same, and says so in the audit trail and a metric.
func TestLargeStatementCost(t *testing.T) {
	m := metrics.New()
	ev, conn := setup(t, func(c *guard.Config) { c.Metrics = m })
	db := pgtest.Shared(t)
	direct, err := pgx.Connect(context.Background(), db.DSN(pgtest.TrustUser))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(context.Background())

	sql := "SELECT id, email FROM customers WHERE id IN (" + idList(200000) + ")"
	timed(t, direct, sql) // warm the server's caches
	dDirect, nDirect := timed(t, direct, sql)
	dProxy, nProxy := timed(t, conn, sql)
	t.Logf("200,000 literals: direct %v, through pgwarden %v", dDirect, dProxy)
	if nDirect != 100000 || nProxy != nDirect {
		t.Fatalf("rows: direct %d, through pgwarden %d; want 100000", nDirect, nProxy)
	}
	if limit := 2*dDirect + time.Second; dProxy > limit {
		t.Errorf("through pgwarden %v, direct %v: want at most %v", dProxy, dDirect, limit)
	}
	last := ev.last(t)
	if last.PIIValues["email"] != 100000 {
		t.Errorf("pii_values = %v, want 100000 emails (declared column, counted without the parse)", last.PIIValues)
	}
	if data := ev.lastData(t); data["sql_unanalyzed"] != "tokens" || data["sql"] != nil {
		t.Errorf("audit data: sql_unanalyzed %v, sql %.40v; want tokens and no text", data["sql_unanalyzed"], data["sql"])
	}
	var got dto.Metric
	if err := m.AnalysisSkipped.WithLabelValues("tokens").Write(&got); err != nil {
		t.Fatal(err)
	}
	if n := got.GetCounter().GetValue(); n != 1 {
		t.Errorf("pgwarden_analysis_skipped_total{reason=tokens} = %v, want 1", n)
	}
}

// TestLargeStatementNoSideDoor: what the parse would have told, a statement
// made too large to parse is assumed to do: server-side egress is still
// refused, an expression over a declared column still counts, a tables
// condition still holds.
func TestLargeStatementNoSideDoor(t *testing.T) {
	ev, conn := setup(t, withRules(t, `rules:
  - name: server-egress
    when: {statements: [server_egress]}
    action: block
  - name: orders-watch
    when: {tables: [public.orders]}
    action: log
`))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pad := " AND id IN (" + idList(30000) + ")"

	for _, sql := range []string{
		"COPY (SELECT email FROM customers WHERE true" + pad + ") TO PROGRAM 'cat > /dev/null'",
		`SELECT pg_catalog."lo_export"(0, '/tmp/x') FROM customers WHERE true` + pad,
		`SELECT U&"lo\005fexport"(0, '/tmp/x') FROM customers WHERE true` + pad,
	} {
		_, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		wantRuleBlock(t, err, "server-egress")
	}

	// reverse(email) is no email to the detectors: lineage counts it, and so
	// does the fallback when the text is too large for lineage.
	for _, sql := range []string{
		"SELECT reverse(email) FROM customers WHERE id <= 100",
		"SELECT reverse(email) FROM customers WHERE id <= 100" + pad,
	} {
		if _, n := timed(t, conn, sql); n != 100 {
			t.Fatalf("%d rows, want 100", n)
		}
		if got := ev.last(t).PIIValues["email"]; got != 100 {
			t.Errorf("%.60s...: %d emails counted, want 100", sql, got)
		}
	}
	var logged bool
	for _, d := range ev.decisions(t) {
		logged = logged || d["rule"] == "orders-watch"
	}
	if !logged {
		t.Error("rule orders-watch (tables: public.orders) did not hold for a statement too large to read")
	}
	if _, n := timed(t, conn, "SELECT id, length(full_name) FROM customers WHERE id <= 10"); n != 10 {
		t.Fatal("want 10 rows")
	}
	for _, d := range ev.decisions(t) {
		if d["rule"] == "orders-watch" {
			t.Error("rule orders-watch held for a statement that does not name public.orders")
		}
	}
}

// lastData returns the data of the last statement event as a map.
func (e *events) lastData(t *testing.T) map[string]any {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.all) - 1; i >= 0; i-- {
		if e.all[i].Type == audit.TypeStatement {
			var d map[string]any
			if err := json.Unmarshal(e.all[i].Data, &d); err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatal("no statement event")
	return nil
}

// TestEstimateDeadline: the planner estimate of a statement gives up at
// the catalog deadline; the client has its answer then, and pgwarden
// leaves no EXPLAIN running: a query whose planning PostgreSQL cannot
// interrupt (hundreds of chained CTEs) is never sent, one that can be is
// cancelled, and the next estimate is made on a healthy connection.
func TestEstimateDeadline(t *testing.T) {
	const deadline = 500 * time.Millisecond
	ev, conn := setup(t, withRules(t, `rules:
  - name: big
    when: {estimated_rows: 1000}
    action: alert
  - name: marker
    when: {tables: [public.never_run]}
    action: block
`), func(c *guard.Config) { c.CatalogTimeout = deadline })
	db := pgtest.Shared(t)
	db.Exec(t, `CREATE TABLE IF NOT EXISTS never_run (id int);
GRANT SELECT ON never_run TO `+pgtest.TrustUser+`;
CREATE OR REPLACE FUNCTION slow_ten() RETURNS int IMMUTABLE LANGUAGE plpgsql AS 'BEGIN PERFORM pg_sleep(5); RETURN 10; END'`)
	watch, err := pgx.Connect(context.Background(), db.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(context.Background())
	explains := func() int {
		var n int
		if err := watch.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
WHERE query LIKE 'EXPLAIN%' AND state = 'active' AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	var chain strings.Builder
	chain.WriteString("WITH c1 AS (SELECT email AS x FROM customers WHERE EXISTS (SELECT 1 FROM never_run))")
	for i := 2; i <= 600; i++ {
		chain.WriteString(", c" + strconv.Itoa(i) + " AS (SELECT x FROM c" + strconv.Itoa(i-1) + ")")
	}
	chain.WriteString(" SELECT x FROM c600")
	for _, sql := range []string{
		chain.String(), // planned in about 15 s, deaf to cancels meanwhile
		"SELECT email FROM customers WHERE id < slow_ten() AND EXISTS (SELECT 1 FROM never_run)",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		start := time.Now()
		_, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		took := time.Since(start)
		cancel()
		wantRuleBlock(t, err, "marker")
		t.Logf("%.40s...: answered in %v", sql, took)
		if took > deadline+time.Second {
			t.Errorf("%.40s...: answered in %v, want about the deadline (%v) at most", sql, took, deadline)
		}
		gone := time.Now().Add(2 * time.Second)
		for explains() > 0 {
			if time.Now().After(gone) {
				t.Fatalf("%.40s...: an EXPLAIN is still running %v after the client's answer", sql, time.Since(start)-took)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	ev.decisions(t)
	// The estimate has the same deadline: on a loaded machine one may miss
	// it, a broken catalog connection misses every one.
	var estimated bool
	for attempt := 1; attempt <= 5 && !estimated; attempt++ {
		if _, n := timed(t, conn, "SELECT email FROM customers WHERE id <= 5000"); n != 5000 {
			t.Fatalf("%d rows, want 5000", n)
		}
		for _, d := range ev.decisions(t) {
			estimated = estimated || d["rule"] == "big"
		}
	}
	if !estimated {
		t.Error("no estimate after a deadline in 5 attempts: rule big did not alert")
	}
}

// TestOwnLocksDoNotStallLookups: in a transaction holding ACCESS
// EXCLUSIVE locks on the tables and view it reads, the lookups that would
// wait on those locks (the planner estimate, the view's definition, the
// explained_access query) give up at once, and the result is counted by
// the detectors.
func TestOwnLocksDoNotStallLookups(t *testing.T) {
	ev, conn := setup(t, withRules(t, `explained_access:
  table: public.customers
  key: id
  query: "SELECT customer_id FROM tickets WHERE assignee = $1"
  refresh: 1m
rules:
  - name: big
    when: {estimated_rows: 1000}
    action: alert
`))
	pgtest.Shared(t).Exec(t, `DROP TABLE IF EXISTS tickets CASCADE;
CREATE TABLE tickets (customer_id int, assignee text);
CREATE OR REPLACE VIEW customer_emails AS SELECT id, email AS contact FROM customers;
GRANT SELECT, UPDATE ON customers, tickets, customer_emails TO `+pgtest.TrustUser)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE customers, tickets, customer_emails IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"SELECT id, email FROM customers WHERE id <= 4",
		"SELECT id, contact FROM customer_emails WHERE id <= 4",
	} {
		start := time.Now()
		rows, err := tx.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil || n != 4 {
			t.Fatalf("%s: %d rows, %v", sql, n, err)
		}
		took := time.Since(start)
		t.Logf("%s: %v", sql, took)
		if took > 700*time.Millisecond {
			t.Errorf("%s: took %v under the session's own locks, want well under a second", sql, took)
		}
		if got := ev.last(t).PIIValues["email"]; got != 4 {
			t.Errorf("%s: %d emails counted, want 4", sql, got)
		}
	}
}
