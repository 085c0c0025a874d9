package guard_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/guard/guardtest"
	"github.com/pgwarden/pgwarden/internal/clock"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/proxy"
)

// The tests in this file drive the guard as the proxy would, through
// guardtest, with a catalog of one table and a virtual clock: no
// PostgreSQL, a few milliseconds each. They cover the rule engine; what
// needs a server (the relay, real catalogs, the planner) is in the other
// files.

// customers is the table of testPolicy, as the fake catalog knows it.
var customers = guardtest.Table{OID: 16500, Schema: "public", Name: "customers",
	Columns: []string{"id", "full_name", "email", "phone", "support_note"}}

// pgClass is a system catalog: results read only from it are exempt from
// the row limit.
var pgClass = guardtest.Table{OID: 1259, Schema: "pg_catalog", Name: "pg_class", Columns: []string{"relname"}}

// engine is a guard over the fake catalog, with a virtual clock.
type engine struct {
	g      *guard.Guard
	clock  *clock.Virtual
	alerts *alerts
	events *events
}

func newEngine(t *testing.T, rules string, opts ...func(*guard.Config)) *engine {
	t.Helper()
	p, err := policy.Parse("rules.yaml", []byte(testPolicy+rules))
	if err != nil {
		t.Fatal(err)
	}
	e := &engine{clock: clock.NewVirtual(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)), alerts: &alerts{}, events: &events{}}
	cfg := guard.Config{Policy: p, Catalog: guardtest.NewCatalog(customers, pgClass), Now: e.clock.Now,
		Alerts: e.alerts, Audit: e.events}
	for _, o := range opts {
		o(&cfg)
	}
	if e.g, err = guard.New(cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// session starts a session of employee alice.
func (e *engine) session(t *testing.T) *guardtest.Session {
	t.Helper()
	return guardtest.Start(t, e.g, proxy.SessionInfo{User: "alice"})
}

// emailRows are n rows of customers' id and email, from id 1.
func emailRows(n int) [][]string {
	rows := make([][]string, n)
	for i := range rows {
		rows[i] = []string{fmt.Sprint(i + 1), fmt.Sprintf("customer%d@example.com", i+1)}
	}
	return rows
}

var emailFields = customers.Fields("id", "email")

// wantStopped fails the test unless r was stopped by action at, by rule.
func wantStopped(t *testing.T, r guardtest.Result, action proxy.Action, at, rule string) {
	t.Helper()
	if r.Verdict.Action != action || r.At != at || !strings.Contains(r.Verdict.Reason, rule) {
		t.Fatalf("got %v at %q (%q), want %v at %q by %s", r.Verdict.Action, r.At, r.Verdict.Reason, action, at, rule)
	}
}

// wantThrough fails the test unless every one of n rows reached the client.
func wantThrough(t *testing.T, r guardtest.Result, n int) {
	t.Helper()
	if r.Blocked() || len(r.Rows) != n {
		t.Fatalf("got %v at %q (%q) after %d rows, want all %d rows through", r.Verdict.Action, r.At, r.Verdict.Reason, len(r.Rows), n)
	}
}

// TestEngineStatementThresholds: a statement-scope rule stops the result
// at the first row past its limit, whatever it counts.
func TestEngineStatementThresholds(t *testing.T) {
	rule := func(when, action string) string {
		return "rules:\n  - name: r\n    when:\n      " + when + "\n    action: " + action + "\n"
	}
	namesAndEmails := make([][]string, 40)
	for i := range namesAndEmails {
		namesAndEmails[i] = []string{fmt.Sprintf("Customer %d", i), fmt.Sprintf("c%d@example.com", i)}
	}
	phones := make([][]string, 10)
	for i := range phones {
		phones[i] = []string{fmt.Sprintf("+1415555%04d", i)}
	}
	var lowered [][]string
	for _, r := range emailRows(10) {
		lowered = append(lowered, []string{r[1]})
	}
	notes := make([][]string, 10)
	for i := range notes {
		notes[i] = []string{"contact help@example.org"}
	}
	for _, tc := range []struct {
		name   string
		rules  string
		fields []pgproto3.FieldDescription
		rows   [][]string
		want   proxy.Action
		at     string // "" when every row goes through
	}{
		{"one category, past the limit", rule("pii_values: {email: 50}", "block"), emailFields, emailRows(100), proxy.Block, "row 51"},
		{"one category, at the limit", rule("pii_values: {email: 50}", "block"), emailFields, emailRows(50), proxy.Continue, ""},
		{"every category together", rule("pii_values: 60", "block"), customers.Fields("full_name", "email"), namesAndEmails, proxy.Block, "row 31"},
		{"PII rows", rule("pii_rows: 10", "block"), emailFields, emailRows(30), proxy.Block, "row 11"},
		{"rows, PII or not", rule("rows: 5", "block"), customers.Fields("id"), [][]string{{"1"}, {"2"}, {"3"}, {"4"}, {"5"}, {"6"}}, proxy.Block, "row 6"},
		{"kill ends the session", rule("pii_values: {email: 50}", "kill"), emailFields, emailRows(60), proxy.Kill, "row 51"},
		{"alert lets the result through", rule("pii_values: {email: 50}", "alert"), emailFields, emailRows(60), proxy.Continue, ""},
		{"undeclared values found by the detectors", rule("pii_values: {phone: 5}", "block"), customers.Fields("phone"), phones, proxy.Block, "row 6"},
		{"computed column found by the detectors", rule("pii_values: {email: 5}", "block"), []pgproto3.FieldDescription{guardtest.Expression("lower")}, lowered, proxy.Block, "row 6"},
		{"excluded column not counted", rule("pii_values: {email: 5}", "block"), customers.Fields("support_note"), notes, proxy.Continue, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, tc.rules)
			r := e.session(t).Query("SELECT ...", tc.fields, tc.rows...)
			if tc.at == "" {
				wantThrough(t, r, len(tc.rows))
			} else {
				wantStopped(t, r, tc.want, tc.at, "rule r")
				if n := len(r.Rows); fmt.Sprintf("row %d", n+1) != tc.at {
					t.Errorf("client received %d rows before the %v at %s", n, tc.want, tc.at)
				}
			}
			a := e.alerts.take()
			if tc.at == "" && !strings.Contains(tc.rules, "alert") && len(a) != 0 {
				t.Errorf("alerts %+v, want none", a)
			}
			if (tc.at != "" || strings.Contains(tc.rules, "alert")) && (len(a) != 1 || a[0].Rule != "r") {
				t.Errorf("alerts %+v, want one of rule r", a)
			}
		})
	}
}

// TestEngineShadow: a shadow rule records what it would have done and
// does nothing.
func TestEngineShadow(t *testing.T) {
	e := newEngine(t, `rules:
  - name: r
    when:
      pii_values: {email: 50}
    action: block
    shadow: true
`)
	wantThrough(t, e.session(t).Query("SELECT id, email FROM customers", emailFields, emailRows(200)...), 200)
	if a := e.alerts.take(); len(a) != 1 || a[0].Rule != "r" || !a[0].Shadow {
		t.Errorf("alerts %+v, want one shadow alert of rule r", a)
	}
}

// scopeRules limit the emails of a session to 100 and an employee's PII
// values in an hour to 150.
const scopeRules = `rules:
  - name: session-emails
    scope: session
    when:
      pii_values: {email: 100}
    action: block
  - name: hourly-emails
    scope: 1h
    when:
      pii_values: 150
    action: block
`

// TestEngineSessionAndWindowScopes: session limits add up a session's
// statements, window limits an employee's sessions over time.
func TestEngineSessionAndWindowScopes(t *testing.T) {
	e := newEngine(t, scopeRules)
	s := e.session(t)
	wantThrough(t, s.Query("SELECT id, email FROM customers", emailFields, emailRows(60)...), 60)
	wantStopped(t, s.Query("SELECT id, email FROM customers", emailFields, emailRows(60)...), proxy.Block, "row 41", "rule session-emails")

	// A new session: its own total is 0, the hour holds 100.
	s2 := e.session(t)
	wantStopped(t, s2.Query("SELECT id, email FROM customers", emailFields, emailRows(80)...), proxy.Block, "row 51", "rule hourly-emails")

	// Two hours later the hour is empty again.
	e.clock.Advance(2 * time.Hour)
	wantThrough(t, e.session(t).Query("SELECT id, email FROM customers", emailFields, emailRows(100)...), 100)
}

// contextRules refuse staging copies of customers and data leaving through
// the server, and alert on COPY TO STDOUT.
const contextRules = `rules:
  - name: no-staging
    when:
      statements: [create_table_as, insert_select]
      tables: [public.customers]
    action: block
  - name: server-egress
    when:
      statements: [server_egress]
    action: block
  - name: copy-watch
    when:
      statements: [copy_to_stdout]
    action: alert
`

// TestEngineContextRules: rules on statement kinds and tables refuse the
// statement before the server runs it, or alert on it.
func TestEngineContextRules(t *testing.T) {
	e := newEngine(t, contextRules)
	s := e.session(t)
	for _, tc := range []struct {
		sql, rule string
	}{
		{"CREATE TABLE stash AS SELECT email FROM customers", "no-staging"},
		{"SELECT email INTO stash FROM public.customers", "no-staging"},
		{"INSERT INTO stash SELECT email FROM customers", "no-staging"},
		{"SELECT lo_export(lo_from_bytea(0, 'x'), '/tmp/x')", "server-egress"},
		{"COPY customers TO '/tmp/x'", "server-egress"},
	} {
		wantStopped(t, s.Query(tc.sql, nil), proxy.Block, "statement", "rule "+tc.rule)
	}
	wantThrough(t, s.Query("CREATE TABLE stash AS SELECT 1 AS x", nil), 0)
	e.alerts.take()
	wantThrough(t, s.Copy("COPY (SELECT id FROM customers) TO STDOUT", "1", "2", "3"), 3)
	if a := e.alerts.take(); len(a) != 1 || a[0].Rule != "copy-watch" || a[0].Action != "alert" {
		t.Errorf("COPY alerts %+v, want one of copy-watch", a)
	}
}

// TestEngineRedact: a redact rule masks the PII of matching results from
// the first row, and leaves other results alone.
func TestEngineRedact(t *testing.T) {
	e := newEngine(t, `rules:
  - name: mask-support
    subjects: [alice]
    when:
      tables: [public.customers]
    action: redact
`)
	s := e.session(t)
	r := s.Query("SELECT id, email, full_name FROM customers", customers.Fields("id", "email", "full_name"),
		[]string{"1", "customer1@example.com", "Customer One"}, []string{"2", "customer2@example.com", "Customer Two"})
	if r.Blocked() || r.Rewritten != 2 {
		t.Fatalf("got %v (%q), %d rows rewritten; want both masked", r.Verdict.Action, r.Verdict.Reason, r.Rewritten)
	}
	for i, row := range r.Rows {
		if row[0] != fmt.Sprint(i+1) || row[1] != "c***@example.com" || row[2] != "C***" {
			t.Errorf("row %d = %q, want the id in clear and the email and name masked", i+1, row)
		}
	}
	r = s.Query("SELECT 'someone@example.org'", []pgproto3.FieldDescription{guardtest.Expression("x")}, []string{"someone@example.org"})
	if r.Rewritten != 0 || len(r.Rows) != 1 || r.Rows[0][0] != "someone@example.org" {
		t.Errorf("a result of no table: %+v, want it in clear", r)
	}
}

// TestEngineCanaries: a canary alerts at once; a session that receives
// the policy's block_at (2 by default) is blocked.
func TestEngineCanaries(t *testing.T) {
	e := newEngine(t, `canaries:
  values: [canary.one@example.com, canary.two@example.com]
`)
	s := e.session(t)
	wantThrough(t, s.Query("SELECT id, email FROM customers", emailFields, []string{"1", "customer1@example.com"}), 1)
	if a := e.alerts.take(); len(a) != 0 {
		t.Errorf("alerts %+v without a canary", a)
	}
	r := s.Query("SELECT id, email FROM customers", emailFields,
		[]string{"1", "customer1@example.com"}, []string{"100001", "canary.one@example.com"}, []string{"2", "customer2@example.com"})
	wantThrough(t, r, 3)
	if a := e.alerts.take(); len(a) != 1 || !strings.Contains(a[0].Rule, "canary") {
		t.Errorf("alerts %+v, want one canary alert", a)
	}
	// The session received one already: the next is the second.
	r = s.Query("SELECT id, email FROM customers", emailFields,
		[]string{"3", "customer3@example.com"}, []string{"100002", "canary.two@example.com"})
	wantStopped(t, r, proxy.Block, "row 2", "2 canary (honeytoken) values")
	// A new session receiving both in one statement.
	r = e.session(t).Query("SELECT id, email FROM customers", emailFields,
		[]string{"100001", "canary.one@example.com"}, []string{"100002", "canary.two@example.com"}, []string{"3", "customer3@example.com"})
	wantStopped(t, r, proxy.Block, "row 2", "2 canary (honeytoken) values")
}

// TestEngineRowLimit: MaxRowsPerStatement stops any result past it, except
// one read only from the system catalogs.
func TestEngineRowLimit(t *testing.T) {
	e := newEngine(t, "", func(c *guard.Config) { c.MaxRowsPerStatement = 10 })
	s := e.session(t)
	ids := make([][]string, 20)
	for i := range ids {
		ids[i] = []string{fmt.Sprint(i)}
	}
	wantStopped(t, s.Query("SELECT id FROM customers", customers.Fields("id"), ids...), proxy.Block, "row 11", "max_rows_per_statement")
	wantThrough(t, s.Query("SELECT id FROM customers", customers.Fields("id"), ids[:10]...), 10)
	wantThrough(t, s.Query("SELECT relname FROM pg_class", pgClass.Fields("relname"), ids...), 20)
}
