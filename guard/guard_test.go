package guard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/window"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/proxy/catalog"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// events is an AuditLog that keeps statement events in memory.
type events struct {
	mu  sync.Mutex
	all []audit.Event
}

func (e *events) Append(_ context.Context, ev audit.Event) (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
	return uint64(len(e.all)), nil
}

// stmt is the data of a statement event.
type stmt struct {
	Rows      int64          `json:"rows"`
	PIIRows   int64          `json:"pii_rows"`
	PIIValues map[string]int `json:"pii_values"`
	Distinct  uint64         `json:"distinct_subjects"`
	Tables    []string       `json:"tables"`
}

// last returns the data of the last statement event.
func (e *events) last(t *testing.T) stmt {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.all) - 1; i >= 0; i-- {
		if e.all[i].Type == audit.TypeStatement {
			var s stmt
			if err := json.Unmarshal(e.all[i].Data, &s); err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	t.Fatal("no statement event")
	return stmt{}
}

const testPolicy = `version: 1
pii:
  columns:
    - match: public.customers.email
      category: email
    - match: public.customers.full_name
      category: name
  exclude:
    - match: public.customers.support_note
`

func setup(t *testing.T, opts ...func(*guard.Config)) (*events, *pgx.Conn) {
	t.Helper()
	ev, conn, _ := setupGuard(t, opts...)
	return ev, conn
}

func setupGuard(t *testing.T, opts ...func(*guard.Config)) (*events, *pgx.Conn, *guard.Guard) {
	t.Helper()
	db := pgtest.Shared(t)
	ctx := context.Background()
	db.Exec(t, `DROP TABLE IF EXISTS customers CASCADE;
CREATE TABLE customers (id int PRIMARY KEY, full_name text, email text, phone text, support_note text);
INSERT INTO customers SELECT i, 'Customer ' || i, 'customer' || i || '@example.com',
  '+1415555' || lpad(i::text, 4, '0'), 'contact help@example.org'
FROM generate_series(1, 100000) i;
ANALYZE customers;
GRANT SELECT ON customers TO `+pgtest.TrustUser)
	pool := db.Pool(t, pgtest.SuperUser)
	res, err := catalog.New(catalog.Config{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	cfg := guard.Config{Policy: pol, Catalog: res, Audit: ev}
	for _, o := range opts {
		o(&cfg)
	}
	g, err := guard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := proxytest.Start(t, proxytest.WithInspector(g), proxytest.WithConfig(func(c *proxy.Config) {
		c.OnDDL, c.IsDDLTag = res.Invalidate, catalog.IsDDLTag
	}))
	conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
	return ev, conn, g
}

// TestCountsMatchTruth runs query shapes from THREATS.md classes V, P, X and
// C through the guard and compares its counts with what the query returns.
func TestCountsMatchTruth(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tests := []struct {
		name    string
		sql     string
		mode    pgx.QueryExecMode
		rows    int64
		piiRows int64
		values  map[string]int
	}{
		{"declared columns, simple protocol", "SELECT id, full_name, email FROM customers WHERE id <= 100",
			pgx.QueryExecModeSimpleProtocol, 100, 100, map[string]int{"email": 100, "name": 100}},
		{"declared columns, extended protocol", "SELECT id, full_name, email FROM customers WHERE id <= 100",
			pgx.QueryExecModeCacheStatement, 100, 100, map[string]int{"email": 100, "name": 100}},
		{"undeclared column found by the detectors", "SELECT phone FROM customers WHERE id <= 40",
			pgx.QueryExecModeSimpleProtocol, 40, 40, map[string]int{"phone": 40}},
		{"excluded column not counted", "SELECT support_note FROM customers WHERE id <= 40",
			pgx.QueryExecModeSimpleProtocol, 40, 0, map[string]int{}},
		{"expression hides the column", "SELECT lower(email) FROM customers WHERE id <= 50",
			pgx.QueryExecModeSimpleProtocol, 50, 50, map[string]int{"email": 50}},
		{"packed with string_agg", "SELECT string_agg(email, ',') FROM customers WHERE id <= 500",
			pgx.QueryExecModeSimpleProtocol, 1, 1, map[string]int{"email": 500}},
		// Each packed row carries two addresses: the email and the one in
		// support_note, whose exclusion applies to the column, not to its
		// value packed into another.
		{"packed with json_agg", "SELECT json_agg(c) FROM customers c WHERE id <= 20",
			pgx.QueryExecModeSimpleProtocol, 1, 1, map[string]int{"email": 40, "phone": 20}},
		{"binary extended protocol", "SELECT email::text || '' FROM customers WHERE id <= 10",
			pgx.QueryExecModeCacheStatement, 10, 10, map[string]int{"email": 10}},
		{"not a leak: length", "SELECT length(email) FROM customers",
			pgx.QueryExecModeSimpleProtocol, 100000, 0, map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := conn.Query(ctx, tt.sql, tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if n != tt.rows {
				t.Fatalf("query returned %d rows, want %d", n, tt.rows)
			}
			got := ev.last(t)
			if got.Rows != tt.rows || got.PIIRows != tt.piiRows || !sameCounts(got.PIIValues, tt.values) {
				t.Errorf("counted rows %d, PII rows %d, values %v; want %d, %d, %v",
					got.Rows, got.PIIRows, got.PIIValues, tt.rows, tt.piiRows, tt.values)
			}
		})
	}

	t.Run("COPY TO STDOUT", func(t *testing.T) {
		var sb strings.Builder
		tag, err := conn.PgConn().CopyTo(ctx, &sb, "COPY (SELECT email, phone FROM customers WHERE id <= 30) TO STDOUT (FORMAT csv)")
		if err != nil {
			t.Fatal(err)
		}
		got := ev.last(t)
		if got.Rows != tag.RowsAffected() || got.PIIValues["email"] != 30 || got.PIIValues["phone"] != 30 {
			t.Errorf("COPY counted %+v, want 30 rows with 30 emails and 30 phones", got)
		}
	})
	t.Run("planner statistics", func(t *testing.T) {
		// pg_stats.most_common_vals quotes the commonest values of a
		// column: support_note's one address is there.
		if _, err := conn.Exec(ctx, "SELECT most_common_vals FROM pg_stats WHERE tablename = 'customers' AND attname = 'support_note'", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		if got := ev.last(t); got.PIIValues["email"] != 1 {
			t.Errorf("pg_stats counted %v, want the 1 address", got.PIIValues)
		}
	})
	t.Run("whole table", func(t *testing.T) {
		var want int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&want); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "SELECT full_name, email, phone FROM customers", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		got := ev.last(t)
		if got.Rows != want || got.PIIRows != want || got.PIIValues["email"] != int(want) || got.PIIValues["name"] != int(want) || got.PIIValues["phone"] != int(want) {
			t.Errorf("whole table counted %+v, want %d of each", got, want)
		}
		if d := float64(got.Distinct); d < 0.97*float64(want) || d > 1.03*float64(want) {
			t.Errorf("distinct subjects %d, want %d within 3%%", got.Distinct, want)
		}
	})
	t.Run("distinct subjects and tables", func(t *testing.T) {
		if _, err := conn.Exec(ctx, "SELECT full_name, email FROM customers WHERE id <= 200", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		got := ev.last(t)
		if got.Distinct < 194 || got.Distinct > 206 || len(got.Tables) != 1 || got.Tables[0] != "public.customers" {
			t.Errorf("distinct %d, tables %v; want about 200 (one subject per row, not per value) and [public.customers]", got.Distinct, got.Tables)
		}
	})
}

func sameCounts(got, want map[string]int) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// TestRowLimitBlocks checks the guard's per-statement row limit: the row past
// it is blocked with 42501, the decision is in the audit trail, and the
// session carries on.
func TestRowLimitBlocks(t *testing.T) {
	ev, conn := setup(t, func(c *guard.Config) { c.MaxRowsPerStatement = 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := conn.Exec(ctx, "SELECT email FROM customers WHERE id <= 6", pgx.QueryExecModeSimpleProtocol)
	if err == nil || !strings.Contains(err.Error(), "pgwarden: statement returned more than 5 rows") || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("6 rows with a limit of 5: %v", err)
	}
	var decided bool
	ev.mu.Lock()
	for _, e := range ev.all {
		decided = decided || (e.Type == audit.TypeDecision && strings.Contains(string(e.Data), `"action":"block"`))
	}
	ev.mu.Unlock()
	if !decided {
		t.Error("no block decision in the audit trail")
	}
	if got := ev.last(t); got.Rows != 5 || got.PIIValues["email"] != 5 {
		t.Errorf("blocked statement counted %+v, want the 5 rows and emails the client received", got)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil || n != 100000 {
		t.Fatalf("session after the block: %d, %v", n, err)
	}
}

// failingLog is an AuditLog that fails from its n-th append on.
type failingLog struct {
	mu    sync.Mutex
	n, at int
}

func (f *failingLog) Append(context.Context, audit.Event) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.at++
	if f.at >= f.n {
		return 0, fmt.Errorf("disk full")
	}
	return uint64(f.at), nil
}

// TestAuditFailClosed: with the audit log failing, a new session is refused
// and a running one ends before it is told its statement completed, unless
// auditing fails open.
func TestAuditFailClosed(t *testing.T) {
	al, dl := &alerts{}, &syncBuffer{}
	start := func(t *testing.T, log guard.AuditLog, failOpen bool) string {
		g, err := guard.New(guard.Config{Audit: log, AuditFailOpen: failOpen, Alerts: al, DecisionLog: dl})
		if err != nil {
			t.Fatal(err)
		}
		return proxytest.Start(t, proxytest.WithInspector(g)).DSN(pgtest.TrustUser)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("new session refused", func(t *testing.T) {
		_, err := pgx.Connect(ctx, start(t, &failingLog{n: 1}, false))
		if err == nil || !strings.Contains(err.Error(), "audit log cannot be written") {
			t.Fatalf("connect with a failing audit log: %v", err)
		}
		// The refusal is a decision security hears of, not only a log line.
		if a := al.take(); len(a) != 1 || a[0].Rule != "audit-unavailable" || a[0].Action != "block" {
			t.Errorf("alerts %+v, want one audit-unavailable", a)
		}
		if d := dl.decisions(t); len(d) != 1 || d[0].Rule != "audit-unavailable" {
			t.Errorf("decision log %+v", d)
		}
	})
	t.Run("running session ended", func(t *testing.T) {
		// Its start and the statement_start are written; the statement's
		// record is not.
		conn, err := pgx.Connect(ctx, start(t, &failingLog{n: 3}, false))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol)
		if err == nil || !strings.Contains(err.Error(), "audit log cannot be written") || !strings.Contains(err.Error(), "FATAL") {
			t.Fatalf("statement with a failing audit log: %v", err)
		}
		if !conn.IsClosed() {
			t.Error("session still open")
		}
	})
	t.Run("fail open carries on", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, start(t, &failingLog{n: 1}, true))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
	})
}

// TestOtherChannels counts PII that leaves in a notice, an error message and
// a notification payload (THREATS.md class C).
func TestOtherChannels(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	channel := func(t *testing.T, name string) stmt {
		t.Helper()
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for i := len(ev.all) - 1; i >= 0; i-- {
			var s struct {
				stmt
				Channels map[string]int `json:"channels"`
			}
			if ev.all[i].Type == audit.TypeStatement && json.Unmarshal(ev.all[i].Data, &s) == nil && s.Channels[name] > 0 {
				return s.stmt
			}
		}
		t.Fatalf("no statement event with PII in channel %q", name)
		return stmt{}
	}
	t.Run("notice", func(t *testing.T) {
		_, err := conn.Exec(ctx, `DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT email FROM customers WHERE id <= 7 LOOP RAISE NOTICE 'leak %', r.email; END LOOP; END $$`)
		if err != nil {
			t.Fatal(err)
		}
		if got := channel(t, "notice"); got.PIIValues["email"] != 7 {
			t.Errorf("notices counted %v, want 7 emails", got.PIIValues)
		}
	})
	t.Run("error message", func(t *testing.T) {
		_, err := conn.Exec(ctx, "SELECT ('x' || email)::int FROM customers WHERE id = 3", pgx.QueryExecModeSimpleProtocol)
		if err == nil {
			t.Fatal("cast succeeded")
		}
		if got := channel(t, "error"); got.PIIValues["email"] != 1 {
			t.Errorf("error counted %v, want 1 email", got.PIIValues)
		}
	})
	t.Run("notification", func(t *testing.T) {
		if _, err := conn.Exec(ctx, "LISTEN leak"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "SELECT pg_notify('leak', string_agg(email, ' ')) FROM customers WHERE id <= 4", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		// The notification arrives with the statement; the next batch
		// boundary records it.
		if _, err := conn.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		if got := channel(t, "notification"); got.PIIValues["email"] != 4 {
			t.Errorf("notification counted %v, want 4 emails: %+v", got.PIIValues, got)
		}
	})
}

// TestCursorFetchesRollUp reads a server-side cursor in pieces: each FETCH
// is a statement of its own, and the trail also carries the cursor's total.
// Statement texts are recorded with their literals redacted.
func TestCursorFetchesRollUp(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "DECLARE c CURSOR FOR SELECT email FROM customers WHERE id <= 30 AND full_name <> 'nobody'"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := tx.Exec(ctx, "FETCH 10 FROM c", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
	}
	ev.mu.Lock()
	var last struct {
		stmt
		SQL         string `json:"sql"`
		Cursor      string `json:"cursor"`
		CursorTotal struct {
			Fetches   int64            `json:"fetches"`
			Rows      int64            `json:"rows"`
			PIIValues map[string]int64 `json:"pii_values"`
		} `json:"cursor_total"`
	}
	var declare string
	for _, e := range ev.all {
		if e.Type != audit.TypeStatement {
			continue
		}
		if strings.Contains(string(e.Data), "DECLARE") {
			declare = string(e.Data)
		}
		if strings.Contains(string(e.Data), `"cursor":"c"`) {
			json.Unmarshal(e.Data, &last)
		}
	}
	ev.mu.Unlock()
	if last.Rows != 10 || last.CursorTotal.Fetches != 3 || last.CursorTotal.Rows != 30 || last.CursorTotal.PIIValues["email"] != 30 {
		t.Errorf("last fetch: %+v", last)
	}
	if strings.Contains(declare, "nobody") || !strings.Contains(declare, "full_name <> $") {
		t.Errorf("DECLARE not recorded, or recorded with its literal: %q", declare)
	}
}

// TestMoreShapes covers further ways of reading customers (THREATS.md V, C,
// O): each must be counted as the PII it returns.
func TestMoreShapes(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := pgtest.Shared(t)
	db.Exec(t, `CREATE OR REPLACE FUNCTION customer_emails(n int) RETURNS SETOF text LANGUAGE sql AS
  'SELECT email FROM customers WHERE id <= n';
GRANT EXECUTE ON FUNCTION customer_emails(int) TO `+pgtest.TrustUser+`;
CREATE TABLE IF NOT EXISTS scratch (id int, email text);
GRANT ALL ON scratch TO `+pgtest.TrustUser)
	tests := []struct {
		name   string
		sql    string
		email  int
		phones int
	}{
		{"TABLE", "TABLE customers LIMIT 15", 15, 15},                           // support_note is excluded as a column
		{"whole-row value", "SELECT c FROM customers c WHERE id <= 12", 24, 12}, // packed: support_note's address too
		{"function returning a set", "SELECT * FROM customer_emails(9)", 9, 0},
		// The column's lineage reaches customers.email through one branch,
		// and which branch a row came from is unknown: the harmless rows
		// count too (the side of caution).
		{"UNION with a harmless table", "SELECT email FROM customers WHERE id <= 5 UNION ALL SELECT 'none' FROM generate_series(1, 3)", 8, 0},
		{"CTE", "WITH x AS (SELECT email FROM customers WHERE id <= 6) SELECT * FROM x", 6, 0},
		{"RETURNING", "WITH u AS (INSERT INTO scratch SELECT id, email FROM customers WHERE id <= 8 RETURNING email) SELECT email FROM u", 8, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := conn.Exec(ctx, tt.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatal(err)
			}
			got := ev.last(t)
			if got.PIIValues["email"] != tt.email || got.PIIValues["phone"] != tt.phones {
				t.Errorf("counted %v, want %d emails and %d phones", got.PIIValues, tt.email, tt.phones)
			}
		})
	}
	t.Run("two statements in one Query", func(t *testing.T) {
		if _, err := conn.Exec(ctx, "SELECT email FROM customers WHERE id <= 3; SELECT phone FROM customers WHERE id <= 4"); err != nil {
			t.Fatal(err)
		}
		if got := ev.last(t); got.PIIValues["email"] != 3 || got.PIIValues["phone"] != 4 || got.Rows != 7 {
			t.Errorf("counted %+v, want 3 emails and 4 phones in 7 rows", got)
		}
	})
	t.Run("COPY binary", func(t *testing.T) {
		var sb strings.Builder
		if _, err := conn.PgConn().CopyTo(ctx, &sb, "COPY (SELECT email FROM customers WHERE id <= 11) TO STDOUT (FORMAT binary)"); err != nil {
			t.Fatal(err)
		}
		if got := ev.last(t); got.PIIValues["email"] != 11 {
			t.Errorf("binary COPY counted %v, want 11 emails", got.PIIValues)
		}
	})
}

// TestExpressionsOverDeclaredColumns: a declared column hidden in an
// expression the detectors cannot see through is still counted (THREATS.md
// X), and the listed non-leaks are not.
func TestExpressionsOverDeclaredColumns(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tests := []struct {
		sql   string
		email int
		name  int
	}{
		{"SELECT md5(email) FROM customers WHERE id <= 10", 10, 0},
		{"SELECT reverse(c.email) FROM customers c WHERE id <= 11", 11, 0},
		{"SELECT encode(convert_to(email, 'UTF8'), 'base64') FROM customers WHERE id <= 12", 12, 0},
		{"SELECT upper(full_name) FROM public.customers WHERE id <= 13", 0, 13},
		{"SELECT length(email) FROM customers WHERE id <= 14", 0, 0},
		{"SELECT count(DISTINCT email) FROM customers", 0, 0},
		{"SELECT split_part(email, '@', 2) FROM customers WHERE id <= 15", 0, 0},
		{"WITH x AS (SELECT md5(email) AS h FROM customers WHERE id <= 16) SELECT h FROM x", 16, 0},
		{"SELECT s.r FROM (SELECT reverse(full_name) AS r FROM customers WHERE id <= 17) s", 0, 17},
	}
	for _, tt := range tests {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			if _, err := conn.Exec(ctx, tt.sql, mode); err != nil {
				t.Fatal(err)
			}
			got := ev.last(t)
			if got.PIIValues["email"] != tt.email || got.PIIValues["name"] != tt.name {
				t.Errorf("%s (%v): counted %v, want %d emails and %d names", tt.sql, mode, got.PIIValues, tt.email, tt.name)
			}
			if !slices.Contains(got.Tables, "public.customers") {
				t.Errorf("%s (%v): tables %v, want public.customers", tt.sql, mode, got.Tables)
			}
		}
	}
}

// TestViewsExposeBaseColumns: a view over customers is as sensitive as
// customers (THREATS.md O), its columns traced to the declared ones.
func TestViewsExposeBaseColumns(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pgtest.Shared(t).Exec(t, `CREATE OR REPLACE VIEW customer_contacts AS
  SELECT id, upper(full_name) AS who, email AS contact FROM customers;
GRANT SELECT ON customer_contacts TO `+pgtest.TrustUser)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		if _, err := conn.Exec(ctx, "SELECT who, contact, id FROM customer_contacts WHERE id <= 9", mode); err != nil {
			t.Fatal(err)
		}
		if got := ev.last(t); got.PIIValues["email"] != 9 || got.PIIValues["name"] != 9 || got.PIIRows != 9 {
			t.Errorf("view (%v): counted %+v, want 9 names and 9 emails in 9 PII rows", mode, got)
		}
	}
}

// TestFastPathFunctionCall counts what a fast-path FunctionCall returns
// (THREATS.md C): here btrim(text) by OID, fed an address.
func TestFastPathFunctionCall(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := rawConn(t, ctx, conn)
	var fnOID uint32
	if err := conn.QueryRow(ctx, "SELECT 'btrim(text)'::regprocedure::oid").Scan(&fnOID); err != nil {
		t.Fatal(err)
	}
	hc.Frontend.Send(&pgproto3.FunctionCall{Function: fnOID, ArgFormatCodes: []uint16{0},
		Arguments: [][]byte{[]byte("  ann.lee@example.com  ")}, ResultFormatCode: 0})
	if err := hc.Frontend.Flush(); err != nil {
		t.Fatal(err)
	}
	var result string
	for {
		msg, err := hc.Frontend.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := msg.(*pgproto3.FunctionCallResponse); ok {
			result = string(r.Result)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if result != "ann.lee@example.com" {
		t.Fatalf("function result %q", result)
	}
	if got := ev.last(t); got.PIIValues["email"] != 1 || got.Rows != 1 {
		t.Errorf("fast-path call counted %+v, want 1 email", got)
	}
}

// TestPortalFetchedInPieces reads one portal ten rows at a time with
// Execute row limits, as JDBC does with a fetch size: the pieces are one
// statement, counted in full.
func TestPortalFetchedInPieces(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := rawConn(t, ctx, conn)
	fe := hc.Frontend
	fe.Send(&pgproto3.Query{String: "BEGIN"})
	fe.Send(&pgproto3.Parse{Query: "SELECT email FROM customers WHERE id <= 35"})
	fe.Send(&pgproto3.Bind{})
	fe.Send(&pgproto3.Describe{ObjectType: 'P'})
	for i := 0; i < 4; i++ {
		fe.Send(&pgproto3.Execute{MaxRows: 10})
	}
	fe.Send(&pgproto3.Sync{})
	fe.Send(&pgproto3.Query{String: "COMMIT"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	rows, ready := 0, 0
	for ready < 3 {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			rows++
		case *pgproto3.ReadyForQuery:
			ready++
		case *pgproto3.ErrorResponse:
			t.Fatalf("%s: %s", m.Code, m.Message)
		}
	}
	if rows != 35 {
		t.Fatalf("client read %d rows, want 35", rows)
	}
	ev.mu.Lock()
	var found bool
	for _, e := range ev.all {
		if e.Type == audit.TypeStatement && strings.Contains(string(e.Data), `"rows":35`) && strings.Contains(string(e.Data), `"pii_values":{"email":35}`) {
			found = true
		}
	}
	ev.mu.Unlock()
	if !found {
		t.Error("no statement counted the portal's 35 rows and emails as one")
	}
}

// TestBatchRecordedInOrder: the statements of one pipelined batch reach
// the trail in the order the client sent them.
func TestBatchRecordedInOrder(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := &pgx.Batch{}
	for i := 1; i <= 6; i++ {
		b.Queue(fmt.Sprintf("SELECT email FROM customers WHERE id = %d", i))
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var seqs []int
	for _, e := range ev.all {
		var d struct {
			Seq int `json:"seq"`
		}
		if e.Type == audit.TypeStatement && json.Unmarshal(e.Data, &d) == nil {
			seqs = append(seqs, d.Seq)
		}
	}
	if len(seqs) < 6 || !slices.IsSorted(seqs[len(seqs)-6:]) {
		t.Errorf("statement seqs in the trail: %v, want the batch's six in order", seqs)
	}
}

// TestWindowsPerEmployee: a statement's figures land in the employee's
// windows. A session keeps no windows of its own: session-scope rules
// read the session's running totals.
func TestWindowsPerEmployee(t *testing.T) {
	_, conn, g := setupGuard(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, had := g.Windows().GetCounts(pgtest.TrustUser, time.Now())
	keys := g.Windows().Len()
	if !had {
		keys++ // the employee's, made by the statement
	}
	if _, err := conn.Exec(ctx, "SELECT email FROM customers WHERE id <= 21", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	after, ok := g.Windows().GetCounts(pgtest.TrustUser, now)
	if !ok || after[window.Minute].PIIRows-before[window.Minute].PIIRows != 21 || after[window.Day].PIIRows-before[window.Day].PIIRows != 21 {
		t.Errorf("employee windows: before %+v, after %+v; want 21 more PII rows in each", before[window.Minute], after[window.Minute])
	}
	if n := g.Windows().Len(); n != keys {
		t.Errorf("windows kept for %d keys after the statement, %d before; want the employee's alone", n, keys)
	}
}

// rawConn opens a second connection to the proxy conn goes through and
// hands over its wire, for messages pgx does not send (FunctionCall,
// Execute row limits). It is closed when the test ends.
func rawConn(t *testing.T, ctx context.Context, conn *pgx.Conn) *pgconn.HijackedConn {
	t.Helper()
	cfg := conn.Config()
	pc, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, cfg.Database))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	return hc
}

// TestSQLFunctionBodies: a SQL function's result carries the PII its body
// reads, whether called in the select list or in FROM (THREATS.md O).
func TestSQLFunctionBodies(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pgtest.Shared(t).Exec(t, `
CREATE OR REPLACE FUNCTION hashed_emails(n int) RETURNS SETOF text LANGUAGE sql
  AS 'SELECT md5(email) FROM customers WHERE id <= n';
CREATE OR REPLACE FUNCTION contact_of(i int) RETURNS text LANGUAGE sql
  RETURN (SELECT reverse(full_name) FROM public.customers WHERE id = i);
CREATE OR REPLACE FUNCTION contacts(n int) RETURNS TABLE (cid int, who text, hint text) LANGUAGE sql
  BEGIN ATOMIC SELECT id, md5(full_name), 'none' FROM customers WHERE id <= n; END;
CREATE OR REPLACE FUNCTION wrapped(n int) RETURNS SETOF text LANGUAGE sql
  AS 'SELECT upper(h) FROM hashed_emails(n) h';
CREATE OR REPLACE FUNCTION email_lengths(n int) RETURNS SETOF int LANGUAGE sql
  AS 'SELECT length(email) FROM customers WHERE id <= n';`)
	tests := []struct {
		sql         string
		email, name int
	}{
		{"SELECT hashed_emails(10)", 10, 0},
		{"SELECT * FROM hashed_emails(11)", 11, 0},
		{"SELECT h FROM hashed_emails(12) AS h", 12, 0},
		{"SELECT contact_of(id) FROM generate_series(1, 13) id", 0, 13},
		{"SELECT who, cid FROM contacts(14)", 0, 14},
		{"SELECT cid, hint FROM contacts(14)", 0, 0},
		{"SELECT * FROM contacts(15)", 0, 15},
		{"SELECT wrapped(16)", 16, 0},
		{"SELECT email_lengths(17)", 0, 0},
	}
	for _, tt := range tests {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			if _, err := conn.Exec(ctx, tt.sql, mode); err != nil {
				t.Fatalf("%s: %v", tt.sql, err)
			}
			got := ev.last(t)
			if got.PIIValues["email"] != tt.email || got.PIIValues["name"] != tt.name {
				t.Errorf("%s (%v): counted %v, want %d emails and %d names", tt.sql, mode, got.PIIValues, tt.email, tt.name)
			}
		}
	}
}

// TestSearchPath: an unqualified table is the one the session's search_path
// finds, however the path was set.
func TestSearchPath(t *testing.T) {
	db := pgtest.Shared(t)
	db.Exec(t, `DROP SCHEMA IF EXISTS crm CASCADE;
CREATE SCHEMA crm;
CREATE TABLE crm.contacts (id int, email text);
INSERT INTO crm.contacts SELECT i, 'crm' || i || '@example.com' FROM generate_series(1, 20) i;
DROP TABLE IF EXISTS public.contacts;
CREATE TABLE public.contacts (id int, email text);
INSERT INTO public.contacts SELECT i, 'not-pii-' || i FROM generate_series(1, 20) i;
GRANT USAGE ON SCHEMA crm TO `+pgtest.TrustUser+`;
GRANT SELECT ON crm.contacts, public.contacts TO `+pgtest.TrustUser)
	const pol = `version: 1
pii:
  columns:
    - match: crm.contacts.email
      category: email
`
	ev, conn := setup(t, func(c *guard.Config) {
		p, err := policy.Parse("crm.yaml", []byte(pol))
		if err != nil {
			t.Fatal(err)
		}
		c.Policy = p
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const q = "SELECT md5(email) FROM contacts WHERE id <= 5"
	check := func(c *pgx.Conn, step string, want int) {
		t.Helper()
		if _, err := c.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		if got := ev.last(t); got.PIIValues["email"] != want {
			t.Errorf("%s: counted %v, want %d emails", step, got.PIIValues, want)
		}
	}
	exec := func(c *pgx.Conn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	check(conn, "default path", 0)
	exec(conn, "SET search_path TO crm, public")
	check(conn, "SET", 5)
	exec(conn, "RESET search_path")
	check(conn, "RESET", 0)
	exec(conn, "SELECT set_config('search_path', 'crm', false)")
	check(conn, "set_config", 5)
	exec(conn, "SET search_path = public")
	exec(conn, "BEGIN")
	exec(conn, "SET LOCAL search_path = crm")
	check(conn, "SET LOCAL", 5)
	exec(conn, "COMMIT")
	check(conn, "after the transaction", 0)
	exec(conn, "SELECT set_config('search_path', (SELECT 'crm'), false)")
	check(conn, "unreadable path", 5) // every schema holding the name

	cfg := conn.Config().Copy()
	cfg.RuntimeParams["search_path"] = "crm"
	c2, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	check(c2, "startup search_path", 5)

	// Through pgwarden: the role's facts cached for new sessions are read
	// again (a change made on the server directly applies within a TTL).
	exec(conn, "ALTER ROLE "+pgtest.TrustUser+" IN DATABASE "+db.Database+" SET search_path = crm")
	defer db.Exec(t, "ALTER ROLE "+pgtest.TrustUser+" IN DATABASE "+db.Database+" RESET search_path")
	c3, err := pgx.ConnectConfig(ctx, conn.Config().Copy())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close(ctx)
	check(c3, "ALTER ROLE ... SET search_path", 5)

	// pg_dump sets the path to '', PostgreSQL's regression suite to ' ':
	// unqualified names then resolve through pg_catalog alone.
	for _, empty := range []string{"''", "' '", `'""'`} {
		exec(conn, "SET search_path = "+empty)
		if _, err := conn.Exec(ctx, "SELECT 1 FROM nosuch", pgx.QueryExecModeSimpleProtocol); proxytest.Code(err) != "42P01" {
			t.Fatalf("search_path %s: a missing table: %v, want 42P01", empty, err)
		}
		if _, err := conn.Exec(ctx, "SELECT relname FROM pg_class LIMIT 1"); err != nil {
			t.Fatalf("search_path %s: a catalog read: %v", empty, err)
		}
		if _, err := conn.Exec(ctx, "SELECT email FROM crm.contacts WHERE id <= 5", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		if got := ev.last(t); got.PIIValues["email"] != 5 {
			t.Errorf("search_path %s: counted %v, want 5 emails", empty, got.PIIValues)
		}
	}
}

// TestSessionNamesItsEmployee: the session's audit events name the
// employee, how they were identified, the database role, the client
// address and the application.
func TestSessionNamesItsEmployee(t *testing.T) {
	ev, conn := setup(t)
	if _, err := conn.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var start *audit.Event
	for i := range ev.all {
		if ev.all[i].Type == audit.TypeSessionStart {
			start = &ev.all[i]
		}
	}
	if start == nil {
		t.Fatal("no session_start event")
	}
	var d map[string]any
	if err := json.Unmarshal(start.Data, &d); err != nil {
		t.Fatal(err)
	}
	if start.Employee != pgtest.TrustUser || d["employee"] != pgtest.TrustUser || d["identified_by"] != "role" ||
		d["user"] != pgtest.TrustUser || d["client_addr"] == "" || d["application_name"] == nil {
		t.Errorf("session_start: employee %q, data %v", start.Employee, d)
	}
}
