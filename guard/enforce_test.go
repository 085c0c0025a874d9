package guard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/policy/window"
	"github.com/pgwarden/pgwarden/state/holds"
	"github.com/pgwarden/pgwarden/state/quarantine"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// alerts is an Alerter that keeps what it is given.
type alerts struct {
	mu  sync.Mutex
	all []notify.Alert
}

func (a *alerts) Notify(al notify.Alert) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, al)
	return nil
}

func (a *alerts) take() []notify.Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.all
	a.all = nil
	return out
}

func withRules(t *testing.T, rules string) func(*guard.Config) {
	t.Helper()
	return func(c *guard.Config) {
		p, err := policy.Parse("rules.yaml", []byte(testPolicy+rules))
		if err != nil {
			t.Fatal(err)
		}
		c.Policy = p
	}
}

// decisions returns the decision events recorded since the last call.
func (e *events) decisions(t *testing.T) []map[string]any {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []map[string]any
	for _, ev := range e.all {
		if ev.Type != audit.TypeDecision {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if _, ok := d["rule"]; ok {
			out = append(out, d)
		}
	}
	var kept []audit.Event
	for _, ev := range e.all {
		if ev.Type != audit.TypeDecision {
			kept = append(kept, ev)
		}
	}
	e.all = kept
	return out
}

func wantRuleBlock(t *testing.T, err error, rule string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !asPgError(err, &pgErr) || pgErr.Code != "42501" || !strings.HasPrefix(pgErr.Message, "pgwarden: statement blocked:") || !strings.Contains(pgErr.Message, "rule "+rule) {
		t.Fatalf("got %v, want a 42501 block naming rule %s", err, rule)
	}
}

func asPgError(err error, target **pgconn.PgError) bool {
	pe, ok := err.(*pgconn.PgError)
	if !ok {
		return false
	}
	*target = pe
	return true
}

var allModes = []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement,
	pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec}

// TestRuleBlocksMidResult: a statement-scope limit stops the result at the
// limit, in every exec mode and for COPY; the client never receives more
// than the limit, and the audit trail counts exactly what it received.
func TestRuleBlocksMidResult(t *testing.T) {
	al := &alerts{}
	ev, conn := setup(t, withRules(t, `rules:
  - name: email-bulk
    when:
      pii_values: {email: 50}
    action: block
`), func(c *guard.Config) { c.Alerts = al })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, mode := range allModes {
		n, err := countRows(ctx, conn, "SELECT id, email FROM customers ORDER BY id", mode)
		wantRuleBlock(t, err, "email-bulk")
		if n > 50 {
			t.Errorf("%v: client received %d rows, limit 50", mode, n)
		}
		got := ev.last(t)
		if got.PIIValues["email"] != 50 || got.Rows != 50 {
			t.Errorf("%v: audit counted %+v, want the 50 rows received", mode, got)
		}
		d := ev.decisions(t)
		if len(d) != 1 || d[0]["action"] != "block" || d[0]["rule"] != "email-bulk" || d[0]["observed"] != float64(51) {
			t.Errorf("%v: decisions %v", mode, d)
		}
		a := al.take()
		if len(a) != 1 || a[0].Action != "block" || a[0].Limit != 50 || a[0].Employee != pgtest.TrustUser || a[0].Statement == "" || len(a[0].AuditSeqs) != 1 {
			t.Errorf("%v: alerts %+v", mode, a)
		}
		// Under the limit nothing happens, and the session goes on.
		if n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 50", mode); err != nil || n != 50 {
			t.Fatalf("%v: 50 rows: %d, %v", mode, n, err)
		}
	}

	// COPY TO STDOUT, csv.
	var sb strings.Builder
	_, err := conn.PgConn().CopyTo(ctx, &writerFunc{&sb}, "COPY (SELECT email FROM customers ORDER BY id) TO STDOUT (FORMAT csv)")
	wantRuleBlock(t, err, "email-bulk")
	if lines := strings.Count(sb.String(), "\n"); lines > 50 {
		t.Errorf("COPY delivered %d lines, limit 50", lines)
	}

	// Packed into one value: blocked at that value, none delivered.
	n, err := countRows(ctx, conn, "SELECT string_agg(email, ',') FROM customers WHERE id <= 500", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "email-bulk")
	if n != 0 {
		t.Errorf("packed value delivered")
	}
}

type writerFunc struct{ sb *strings.Builder }

func (w *writerFunc) Write(p []byte) (int, error) { return w.sb.Write(p) }

func countRows(ctx context.Context, conn *pgx.Conn, sql string, mode pgx.QueryExecMode, args ...any) (int, error) {
	rows, err := conn.Query(ctx, sql, append([]any{mode}, args...)...)
	if err != nil {
		return 0, err
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	return n, rows.Err()
}

// TestSessionAndWindowScopes: a leak split over cursor fetches, statements
// and sessions is caught by session and window limits.
func TestSessionAndWindowScopes(t *testing.T) {
	dl := &syncBuffer{}
	ev, conn, g := setupGuard(t, func(c *guard.Config) { c.DecisionLog = dl }, withRules(t, scopeRules))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "DECLARE c CURSOR FOR SELECT email FROM customers ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	total := 0
	for i := range 5 {
		n, err := countRows(ctx, conn, "FETCH 30 FROM c", pgx.QueryExecModeSimpleProtocol)
		total += n
		if i < 3 && err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if i == 3 {
			wantRuleBlock(t, err, "session-emails")
			break
		}
	}
	tx.Rollback(ctx)
	if total != 100 {
		t.Errorf("fetched %d emails before the block, want exactly the session limit 100", total)
	}
	_ = ev

	// A second session of the same employee: the hour's window holds 100
	// already, so it gets 50 more.
	cfg := conn.Config().Copy()
	c2, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	n, err := countRows(ctx, c2, "SELECT email FROM customers WHERE id <= 1000", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "hourly-emails")
	if n != 50 {
		t.Errorf("second session received %d, want the 50 left in the hour", n)
	}
	// Each decision says how far back the reads it counts go.
	windows := map[string]string{}
	for _, d := range dl.decisions(t) {
		windows[d.Rule] = d.Window
	}
	if w, ok := windows["session-emails"]; !ok || w != "" {
		t.Errorf("session-emails decision window %q (logged %v), want none", w, ok)
	}
	if w := windows["hourly-emails"]; w != "1h" {
		t.Errorf("hourly-emails decision window %q, want 1h", w)
	}
	// Statements without PII still run.
	if _, err := c2.Exec(ctx, "SELECT count(*) FROM customers"); err != nil {
		t.Fatal(err)
	}
	_ = g
}

// TestContextRulesRefuseBeforeRunning: rules on statement kinds and tables
// refuse the statement before the server runs it (THREATS.md S).
func TestContextRulesRefuseBeforeRunning(t *testing.T) {
	al := &alerts{}
	_, conn := setup(t, withRules(t, contextRules), func(c *guard.Config) { c.Alerts = al })
	db := pgtest.Shared(t)
	db.Exec(t, "DROP TABLE IF EXISTS stash; GRANT CREATE ON SCHEMA public TO "+pgtest.TrustUser)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		for _, sql := range []string{
			"CREATE TABLE stash AS SELECT email FROM customers",
			"SELECT email INTO stash FROM public.customers",
		} {
			_, err := conn.Exec(ctx, sql, mode)
			var pgErr *pgconn.PgError
			if !asPgError(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, "rule no-staging") {
				t.Errorf("%s: %v", sql, err)
			}
		}
		_, err := conn.Exec(ctx, "SELECT lo_export(lo_from_bytea(0, 'x'), '/tmp/pgwarden-test-export')", mode)
		var pgErr *pgconn.PgError
		if !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "rule server-egress") {
			t.Errorf("lo_export: %v", err)
		}
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('public.stash') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Fatalf("stash created: %v %v", exists, err)
	}
	// Creating a table from something else is allowed.
	if _, err := conn.Exec(ctx, "CREATE TABLE stash AS SELECT 1 AS x"); err != nil {
		t.Fatal(err)
	}
	db.Exec(t, "DROP TABLE stash")
	al.take()
	var sb strings.Builder
	if _, err := conn.PgConn().CopyTo(ctx, &writerFunc{&sb}, "COPY (SELECT id FROM customers WHERE id <= 3) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	if a := al.take(); len(a) != 1 || a[0].Rule != "copy-watch" || a[0].Action != "alert" {
		t.Errorf("copy alert: %+v", a)
	}
}

// TestShadowMode: a shadow rule only records what it would have done.
func TestShadowMode(t *testing.T) {
	al := &alerts{}
	ev, conn := setup(t, withRules(t, `rules:
  - name: email-bulk
    when:
      pii_values: {email: 50}
    action: block
    shadow: true
`), func(c *guard.Config) { c.Alerts = al })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 200", pgx.QueryExecModeSimpleProtocol)
	if err != nil || n != 200 {
		t.Fatalf("shadow rule stopped the result: %d, %v", n, err)
	}
	d := ev.decisions(t)
	if len(d) != 1 || d[0]["action"] != "would block" || d[0]["shadow"] != true {
		t.Errorf("decisions %v", d)
	}
	if a := al.take(); len(a) != 1 || !a[0].Shadow || a[0].Action != "would block" {
		t.Errorf("alerts %+v", a)
	}
}

// TestKillAndQuarantine: kill ends the session; quarantine also refuses
// the employee's new sessions until released, across restarts of the list.
func TestKillAndQuarantine(t *testing.T) {
	al, dl := &alerts{}, &syncBuffer{}
	path := filepath.Join(t.TempDir(), "quarantine.json")
	q, err := quarantine.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ev, conn := setup(t, withRules(t, `rules:
  - name: mass-read
    when:
      pii_rows: 20
    action: quarantine
`), func(c *guard.Config) { c.Quarantine, c.Alerts, c.DecisionLog = q, al, dl })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 100", pgx.QueryExecModeSimpleProtocol)
	var pgErr *pgconn.PgError
	if !asPgError(err, &pgErr) || pgErr.Severity != "FATAL" || !strings.Contains(pgErr.Message, "quarantined") {
		t.Fatalf("got %v", err)
	}
	if n > 20 {
		t.Errorf("received %d rows, limit 20", n)
	}
	if d := ev.decisions(t); len(d) != 1 || d[0]["action"] != "quarantine" {
		t.Errorf("decisions %v", d)
	}
	_, err = pgx.ConnectConfig(ctx, conn.Config().Copy())
	if err == nil || !strings.Contains(err.Error(), "quarantined") || !strings.Contains(err.Error(), "mass-read") {
		t.Fatalf("new session of a quarantined employee: %v", err)
	}
	// The refusal is a decision: logged, alerted, in the trail.
	var rules []string
	for _, a := range al.take() {
		rules = append(rules, a.Rule)
	}
	if !slices.Equal(rules, []string{"mass-read", "identity:quarantined"}) {
		t.Errorf("alerts %q, want the quarantine and the refused session", rules)
	}
	if d := dl.decisions(t); len(d) != 2 || d[1].Rule != "identity:quarantined" || d[1].Action != "block" || !strings.Contains(d[1].Reason, "session refused") {
		t.Errorf("decision log %+v", d)
	}
	if d := ev.decisions(t); len(d) != 1 || d[0]["rule"] != "identity:quarantined" {
		t.Errorf("audited decisions %v", d)
	}
	// Released by another process (pgwarden users release).
	other, err := quarantine.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := other.Release(pgtest.TrustUser); !ok || err != nil {
		t.Fatalf("release: %v %v", ok, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := pgx.ConnectConfig(ctx, conn.Config().Copy())
		if err == nil {
			c.Close(ctx)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused after release: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReloadAppliesToRunningSessions: SetPolicy changes the rules of a
// session that stays connected.
func TestReloadAppliesToRunningSessions(t *testing.T) {
	_, conn, g := setupGuard(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 100", pgx.QueryExecModeSimpleProtocol); err != nil || n != 100 {
		t.Fatalf("before reload: %d %v", n, err)
	}
	p, err := policy.Parse("new.yaml", []byte(testPolicy+`rules:
  - name: tight
    when:
      pii_rows: 10
    action: block
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetPolicy(p); err != nil {
		t.Fatal(err)
	}
	n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 100", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "tight")
	if n != 10 {
		t.Errorf("received %d, want 10", n)
	}
}

// TestGroupsByRole: a group defined by a PostgreSQL role applies to its
// members only.
func TestGroupsByRole(t *testing.T) {
	db := pgtest.Shared(t)
	db.Exec(t, `DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgw_support') THEN CREATE ROLE pgw_support; END IF; END$$;
GRANT pgw_support TO `+pgtest.TrustUser)
	defer db.Exec(t, "REVOKE pgw_support FROM "+pgtest.TrustUser)
	_, conn := setup(t, withRules(t, `groups:
  support: {roles: [pgw_support]}
  others: [nobody]
rules:
  - name: support-limit
    subjects: [group:support]
    when:
      pii_rows: 5
    action: block
  - name: others-limit
    subjects: [group:others]
    when:
      pii_rows: 1
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 10", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "support-limit")
	if n != 5 {
		t.Errorf("received %d, want 5", n)
	}
}

// TestGroupsBySuperuser: a superuser, a member of every role to
// pg_has_role, is in a role's group only when granted the role; an
// employee granted it through an intermediate role is in the group.
func TestGroupsBySuperuser(t *testing.T) {
	db := pgtest.Shared(t)
	db.Exec(t, `DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgw_su_support') THEN CREATE ROLE pgw_su_support; END IF;
IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgw_su_tier1') THEN CREATE ROLE pgw_su_tier1 IN ROLE pgw_su_support; END IF; END$$;
GRANT pgw_su_tier1 TO `+pgtest.TrustUser)
	defer db.Exec(t, "REVOKE pgw_su_tier1 FROM "+pgtest.TrustUser)
	_, conn := setup(t, withRules(t, `groups:
  support: {roles: [pgw_su_support]}
rules:
  - name: support-limit
    subjects: [group:support]
    when:
      pii_rows: 5
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const q = "SELECT email FROM customers WHERE id <= 10"
	cfg := conn.Config().Copy()
	cfg.User = pgtest.SuperUser
	su, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	if n, err := countRows(ctx, su, q, pgx.QueryExecModeSimpleProtocol); err != nil || n != 10 {
		t.Errorf("superuser not granted pgw_su_support: %d rows, %v; want 10 and no block", n, err)
	}
	n, err := countRows(ctx, conn, q, pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "support-limit")
	if n != 5 {
		t.Errorf("granted through pgw_su_tier1: received %d, want 5", n)
	}
}

// TestRedactPastTheLimit: after the limit, PII values reach the client
// masked, in text and binary formats, the rest of the row intact.
func TestRedactPastTheLimit(t *testing.T) {
	ev, conn := setup(t, withRules(t, `rules:
  - name: mask-after-5
    when:
      pii_rows: 5
    action: redact
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range allModes {
		rows, err := conn.Query(ctx, "SELECT id, email, full_name, phone, support_note FROM customers WHERE id <= 8 ORDER BY id", mode)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var id int32
			var email, name, phone, note string
			if err := rows.Scan(&id, &email, &name, &phone, &note); err != nil {
				t.Fatalf("%v: %v", mode, err)
			}
			n++
			clear := n <= 5
			if clear && (email != fmt.Sprintf("customer%d@example.com", id) || !strings.HasPrefix(name, "Customer ")) {
				t.Errorf("%v row %d: %q %q before the limit", mode, n, email, name)
			}
			if !clear && (email != "c***@example.com" || name != "C***" || phone != fmt.Sprintf("+*******%04d", id) || note != "contact help@example.org") {
				t.Errorf("%v row %d: %q %q %q %q, want masked", mode, n, email, name, phone, note)
			}
			if id != int32(n) {
				t.Errorf("%v: id %d at row %d", mode, id, n)
			}
		}
		if err := rows.Err(); err != nil || n != 8 {
			t.Fatalf("%v: %d rows, %v", mode, n, err)
		}
		got := ev.last(t)
		if got.Rows != 8 || got.PIIRows != 5 || got.PIIValues["email"] != 5 {
			t.Errorf("%v: counted %+v, want 8 rows of which 5 with PII received", mode, got)
		}
	}
	// redact: null
	_, conn2 := setup(t, withRules(t, `rules:
  - name: null-after-2
    when:
      pii_rows: 2
    action: redact
    redact: "null"
`))
	rows, err := conn2.Query(ctx, "SELECT id, email FROM customers WHERE id <= 3 ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var id int32
		var email *string
		if err := rows.Scan(&id, &email); err != nil {
			t.Fatal(err)
		}
		if email == nil {
			got = append(got, "NULL")
		} else {
			got = append(got, *email)
		}
	}
	if rows.Err() != nil || strings.Join(got, ",") != "customer1@example.com,customer2@example.com,NULL" {
		t.Errorf("redact null: %v %v", got, rows.Err())
	}
}

// TestHoldApprovedOrDenied: a held result waits for security; approved it
// goes on, denied or timed out it is blocked, and meanwhile nothing more
// reaches the client.
func TestHoldApprovedOrDenied(t *testing.T) {
	reg, err := holds.Open(filepath.Join(t.TempDir(), "holds"))
	if err != nil {
		t.Fatal(err)
	}
	al := &alerts{}
	ev, conn := setup(t, withRules(t, `rules:
  - name: hold-bulk
    when:
      pii_rows: 10
    action: hold
    hold_timeout: 3s
`), func(c *guard.Config) { c.Holds, c.Alerts = reg, al })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var justified string // the reason the approver is to see
	var decidedID string
	decide := func(approve bool) {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			l, _ := reg.List()
			if len(l) == 1 {
				if l[0].Rule != "hold-bulk" || l[0].Employee != pgtest.TrustUser || l[0].Justification != justified {
					t.Errorf("hold %+v, want justification %q", l[0], justified)
				}
				decidedID = l[0].ID
				if _, err := reg.Decide(l[0].ID, approve, "security"); err != nil {
					t.Error(err)
				}
				return
			}
		}
		t.Error("no hold appeared")
	}
	// The employee says why, in a comment of the statement.
	justified = "ticket 4711: the customer asked for a copy"
	var notices []string
	var nmu sync.Mutex
	cfg := conn.Config().Copy()
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		nmu.Lock()
		notices = append(notices, n.Message)
		nmu.Unlock()
	}
	conn, err = pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	go decide(true)
	if n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 30 /* pgwarden.reason: ticket 4711: the customer asked for a copy */", pgx.QueryExecModeSimpleProtocol); err != nil || n != 30 {
		t.Fatalf("approved: %d rows, %v", n, err)
	}
	// Security's alert names the hold, so that its message can offer to
	// decide it, until the hold's deadline.
	var held []notify.Alert
	for _, a := range al.take() {
		if a.Action == "hold" {
			held = append(held, a)
		}
	}
	if len(held) != 1 || held[0].HoldID == "" || held[0].HoldID != decidedID ||
		held[0].HoldDeadline.Sub(held[0].Time) < 2*time.Second || held[0].HoldDeadline.Sub(held[0].Time) > 4*time.Second {
		t.Errorf("hold alerts %+v, want one naming hold %s with a deadline 3s on", held, decidedID)
	}
	// The employee was told at once, and then of the approval.
	nmu.Lock()
	if len(notices) != 2 || !strings.Contains(notices[0], "statement held for approval by security (hold ") ||
		!strings.Contains(notices[0], "rule hold-bulk") || !strings.Contains(notices[0], justified) ||
		!strings.Contains(notices[1], "approved by security") {
		t.Errorf("notices %q", notices)
	}
	nmu.Unlock()
	var outcome map[string]any
	for _, d := range ev.decisions(t) {
		if d["outcome"] != nil {
			outcome = d
		}
	}
	if outcome["outcome"] != "approved" || outcome["justification"] != justified || outcome["decided_by"] != "security" {
		t.Errorf("the hold's outcome in the trail: %v", outcome)
	}
	// Or before it, with SET pgwarden.reason (PostgreSQL takes it as a
	// custom setting).
	if _, err := conn.Exec(ctx, "SET pgwarden.reason = 'audit request from legal'"); err != nil {
		t.Fatal(err)
	}
	justified = "audit request from legal"
	go decide(false)
	n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 30", pgx.QueryExecModeCacheStatement)
	var pgErr *pgconn.PgError
	if !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "denied by security (security)") || n != 10 {
		t.Fatalf("denied: %d rows, %v", n, err)
	}
	justified = "" // a reason given once serves one hold
	start := time.Now()
	n, err = countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 30", pgx.QueryExecModeSimpleProtocol)
	if !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "not approved within 3s") || n != 10 {
		t.Fatalf("timed out: %d rows, %v", n, err)
	}
	if d := time.Since(start); d < 3*time.Second {
		t.Errorf("hold ended after %v, before its timeout", d)
	}
	checkUsable(t, ctx, conn)
}

func checkUsable(t *testing.T, ctx context.Context, conn *pgx.Conn) {
	t.Helper()
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("session not usable: %v", err)
	}
}

// TestPipelineCannotSplitALeak: statements pipelined in one batch count
// towards session and window limits before the batch ends.
func TestPipelineCannotSplitALeak(t *testing.T) {
	_, conn := setup(t, withRules(t, `rules:
  - name: session-emails
    scope: session
    when:
      pii_values: {email: 100}
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	batch := &pgx.Batch{}
	for i := range 5 {
		batch.Queue(fmt.Sprintf("SELECT email FROM customers WHERE id > %d AND id <= %d", i*30, (i+1)*30))
	}
	br := conn.SendBatch(ctx, batch)
	received := 0
	var blockErr error
	for range 5 {
		rows, err := br.Query()
		if err != nil {
			blockErr = err
			break
		}
		for rows.Next() {
			received++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			blockErr = err
			break
		}
	}
	br.Close()
	wantRuleBlock(t, blockErr, "session-emails")
	if received != 100 {
		t.Errorf("the pipeline received %d emails, the session limit is 100", received)
	}
	checkUsable(t, ctx, conn)
}

// TestBlockInsideTransaction: a block inside a transaction fails it, as a
// server error would; the client rolls back and goes on.
func TestBlockInsideTransaction(t *testing.T) {
	_, conn := setup(t, withRules(t, `rules:
  - name: email-bulk
    when:
      pii_values: {email: 20}
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range allModes {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 100", mode)
		wantRuleBlock(t, err, "email-bulk")
		if n > 20 {
			t.Errorf("%v: %d rows", mode, n)
		}
		_, err = tx.Exec(ctx, "SELECT 1")
		var pgErr *pgconn.PgError
		if !asPgError(err, &pgErr) || pgErr.Code != "25P02" {
			t.Errorf("%v: after a block in a transaction: %v, want 25P02", mode, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		checkUsable(t, ctx, conn)
	}
}

// TestContextConditions: application, client address and time of day
// decide whether a rule applies (the clock injected).
func TestContextConditions(t *testing.T) {
	now := time.Date(2026, 11, 28, 23, 30, 0, 0, time.UTC) // a Saturday night
	_, conn := setup(t, withRules(t, `timezone: UTC
rules:
  - name: night-bulk
    when:
      pii_rows: 5
      hours: "22:00-06:00"
    action: block
  - name: not-from-the-tool
    when:
      pii_rows: 3
      not_application: ["crm-*"]
      client: ["127.0.0.0/8"]
    action: block
`), func(c *guard.Config) { c.Now = func() time.Time { return now } })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// pgx's application_name is empty: not-from-the-tool applies at 3.
	n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 10", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "not-from-the-tool")
	if n != 3 {
		t.Errorf("%d rows", n)
	}
	cfg := conn.Config().Copy()
	cfg.RuntimeParams["application_name"] = "crm-web"
	tool, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Close(ctx)
	n, err = countRows(ctx, tool, "SELECT email FROM customers WHERE id <= 10", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "night-bulk")
	if n != 5 {
		t.Errorf("night: %d rows", n)
	}
	now = time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)
	if n, err := countRows(ctx, tool, "SELECT email FROM customers WHERE id <= 10", pgx.QueryExecModeSimpleProtocol); err != nil || n != 10 {
		t.Errorf("afternoon: %d rows, %v", n, err)
	}
}

// TestPsqlSeesTheBlock: psql, plain and with FETCH_COUNT (a cursor fetched
// in pieces), gets the block with the rule's name, and never more rows
// than the limit.
func TestPsqlSeesTheBlock(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql not installed")
	}
	_, conn := setup(t, withRules(t, `rules:
  - name: email-bulk
    when:
      pii_values: {email: 25}
    action: block
`))
	cfg := conn.Config()
	for _, fetch := range []string{"", "10"} {
		args := []string{"-X", "-A", "-t", "-h", cfg.Host, "-p", fmt.Sprint(cfg.Port), "-U", cfg.User, "-d", cfg.Database}
		if fetch != "" {
			args = append(args, "-v", "FETCH_COUNT="+fetch)
		}
		args = append(args, "-c", "SELECT email FROM customers ORDER BY id")
		cmd := exec.Command(psql, args...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.Env = append(os.Environ(), "PGSSLMODE=disable")
		runErr := cmd.Run()
		rows := strings.Count(out.String(), "@example.com")
		if runErr == nil || !strings.Contains(errb.String(), "pgwarden: statement blocked") || !strings.Contains(errb.String(), "rule email-bulk") {
			t.Errorf("FETCH_COUNT=%q: %v, stderr %q", fetch, runErr, errb.String())
		}
		if rows > 25 {
			t.Errorf("FETCH_COUNT=%q: psql printed %d rows, limit 25", fetch, rows)
		}
	}
}

// TestFastPathLoExportRefused: lo_export called through the fast-path
// protocol, by OID, is server-side egress like the SQL call.
func TestFastPathLoExportRefused(t *testing.T) {
	_, conn := setup(t, withRules(t, `rules:
  - name: server-egress
    when:
      statements: [server_egress]
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := rawConn(t, ctx, conn)
	hc.Frontend.Send(&pgproto3.FunctionCall{Function: 765, ArgFormatCodes: []uint16{0},
		Arguments: [][]byte{[]byte("12345"), []byte("/tmp/pgwarden-never")}})
	if err := hc.Frontend.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		msg, err := hc.Frontend.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			got = append(got, e.Code+" "+e.Message)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if len(got) != 1 || !strings.HasPrefix(got[0], "42501 pgwarden: statement blocked: statement refused by rule server-egress") {
		t.Errorf("fast-path lo_export: %q", got)
	}
}

// TestRulesSeeThroughViews: a rule on a table applies to a view over it,
// with thresholds and without (THREATS.md O).
func TestRulesSeeThroughViews(t *testing.T) {
	_, conn := setup(t, withRules(t, `rules:
  - name: customers-bulk
    when:
      tables: [public.customers]
      pii_rows: 5
    action: block
`))
	pgtest.Shared(t).Exec(t, `CREATE OR REPLACE VIEW contact_list AS SELECT id, email AS contact FROM customers;
GRANT SELECT ON contact_list TO `+pgtest.TrustUser)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range allModes {
		n, err := countRows(ctx, conn, "SELECT contact FROM contact_list WHERE id <= 20", mode)
		wantRuleBlock(t, err, "customers-bulk")
		if n != 5 {
			t.Errorf("%v: %d rows through the view", mode, n)
		}
	}
	_, conn2 := setup(t, withRules(t, `rules:
  - name: no-customers
    when:
      tables: [public.customers]
    action: block
`))
	pgtest.Shared(t).Exec(t, `CREATE OR REPLACE VIEW contact_list AS SELECT id, email AS contact FROM customers;
GRANT SELECT ON contact_list TO `+pgtest.TrustUser)
	n, err := countRows(ctx, conn2, "SELECT id, contact FROM contact_list WHERE id <= 3", pgx.QueryExecModeSimpleProtocol)
	var pgErr *pgconn.PgError
	if !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "rule no-customers") || n != 0 {
		t.Errorf("context rule through a view: %d rows, %v", n, err)
	}
}

// TestCanaries: a honeytoken row read once is alerted; a bulk read that
// reaches a second one is blocked before it arrives, however it is packed.
func TestCanaries(t *testing.T) {
	al := &alerts{}
	ev, conn := setup(t, withRules(t, `canaries:
  values: [canary.one@example.com, canary.two@example.com, canary.three@example.com]
`), func(c *guard.Config) { c.Alerts = al })
	pgtest.Shared(t).Exec(t, `INSERT INTO customers VALUES
  (100001, 'Canary One', 'canary.one@example.com', '+14155550001', ''),
  (100002, 'Canary Two', 'canary.two@example.com', '+14155550002', ''),
  (100003, 'Canary Three', 'canary.three@example.com', '+14155550003', '')`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id = 100002", pgx.QueryExecModeSimpleProtocol); err != nil || n != 1 {
		t.Fatalf("single canary lookup: %d %v", n, err)
	}
	if a := al.take(); len(a) != 1 || a[0].Rule != "canary" || a[0].Action != "alert" {
		t.Errorf("alerts after one canary: %+v", a)
	}
	ev.decisions(t)
	// A second session: its first canary is only alerted, the one after
	// blocked, here inside a dump ordered so that they come last.
	for _, q := range []string{
		"SELECT id, email FROM customers WHERE id > 99990 ORDER BY id",
		"SELECT string_agg(email, ',') FROM customers WHERE id > 99000",
	} {
		c2, err := pgx.ConnectConfig(ctx, conn.Config().Copy())
		if err != nil {
			t.Fatal(err)
		}
		n, err := countRows(ctx, c2, q, pgx.QueryExecModeSimpleProtocol)
		var pgErr *pgconn.PgError
		if !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "canary") {
			t.Errorf("%s: %d rows, %v; want a canary block", q, n, err)
		}
		if strings.Contains(q, "ORDER BY") && n != 11 {
			t.Errorf("dump: %d rows received, want the 10 before the canaries and the first canary", n)
		}
		c2.Close(ctx)
	}
	var sb strings.Builder
	c3, err := pgx.ConnectConfig(ctx, conn.Config().Copy())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close(ctx)
	_, err = c3.PgConn().CopyTo(ctx, &writerFunc{&sb}, "COPY (SELECT email FROM customers WHERE id > 99990 ORDER BY id) TO STDOUT")
	if err == nil || !strings.Contains(err.Error(), "canary") || strings.Contains(sb.String(), "canary.two") {
		t.Errorf("COPY: %v, received %q", err, sb.String())
	}
}

// TestCanaryExcept: canaries with except: [backup_svc] let the backup
// role read every row, canaries included, by COPY and by SELECT; an
// employee reading two of them is still blocked.
func TestCanaryExcept(t *testing.T) {
	al := &alerts{}
	_, conn := setup(t, withRules(t, `canaries:
  values: [canary.one@example.com, canary.two@example.com, canary.three@example.com]
  except: [backup_svc]
`), func(c *guard.Config) { c.Alerts = al })
	db := pgtest.Shared(t)
	db.Exec(t, `DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'backup_svc') THEN CREATE ROLE backup_svc LOGIN; END IF; END$$;
ALTER ROLE backup_svc PASSWORD '`+pgtest.Password+`';
GRANT SELECT ON customers TO backup_svc;
INSERT INTO customers VALUES
  (100001, 'Canary One', 'canary.one@example.com', '+14155550001', ''),
  (100002, 'Canary Two', 'canary.two@example.com', '+14155550002', ''),
  (100003, 'Canary Three', 'canary.three@example.com', '+14155550003', '')`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := conn.Config().Copy()
	cfg.User, cfg.Password = "backup_svc", pgtest.Password
	backup, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer backup.Close(ctx)
	var sb strings.Builder
	if _, err := backup.PgConn().CopyTo(ctx, &writerFunc{&sb}, "COPY customers TO STDOUT"); err != nil || !strings.Contains(sb.String(), "canary.three@example.com") {
		t.Errorf("backup COPY: %v, %d bytes", err, sb.Len())
	}
	if n, err := countRows(ctx, backup, "SELECT * FROM customers", pgx.QueryExecModeSimpleProtocol); err != nil || n != 100003 {
		t.Errorf("backup SELECT: %d rows, %v; want 100003", n, err)
	}
	if a := al.take(); len(a) != 0 {
		t.Errorf("alerts on the backup: %+v", a)
	}
	n, err := countRows(ctx, conn, "SELECT id, email FROM customers WHERE id > 99990 ORDER BY id", pgx.QueryExecModeSimpleProtocol)
	var pgErr *pgconn.PgError
	if !asPgError(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, "canary") {
		t.Errorf("employee: %v; want a canary block", err)
	}
	if n != 11 {
		t.Errorf("employee: %d rows received, want the 10 before the canaries and the first canary", n)
	}
	if a := al.take(); len(a) != 2 || a[1].Rule != "canary-bulk" || a[1].Employee != pgtest.TrustUser {
		t.Errorf("alerts on the employee: %+v", a)
	}
}

// TestNorms: a week of ordinary lookups teaches alice's norm; a burst far
// above it is alerted with an explanation, the adaptive statement limit
// stops a large read, and a block from the norm holds for the window.
func TestNorms(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) // a Monday
	clock := func() time.Time { return now }
	model, err := norm.New(norm.Config{LearningDays: 2, MinActiveDays: 3})
	if err != nil {
		t.Fatal(err)
	}
	al := &alerts{}
	ev, conn := setup(t, withRules(t, `norms:
  learning_days: 2
  min_active_days: 3
  block_score: 3
  statement_factor: 4
  statement_floor: 40
`), func(c *guard.Config) { c.Now, c.Norms, c.Alerts = clock, model, al })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lookup := normalWork(t, ctx, conn, &now)
	if d := ev.decisions(t); len(d) != 0 {
		t.Errorf("decisions on normal work: %v", d)
	}
	al.take()
	// Day 11 (a Friday), 10:00: a read of 300 customers in one statement.
	now = time.Date(2026, 3, 13, 10, 0, 0, 0, time.UTC)
	n, err := lookup(300)
	var pgErr *pgconn.PgError
	// The tighter of the adaptive statement limit and the norm's
	// headroom stops it.
	if !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "norm:statement") && !strings.Contains(pgErr.Message, "norm:volume") {
		t.Fatalf("a read 100x the norm: %d rows, %v", n, err)
	}
	if n >= 300 || n < 40 {
		t.Errorf("%d rows before the adaptive limit", n)
	}
	var sawVolume bool
	for _, a := range al.take() {
		if a.Rule == "norm:volume" && strings.Contains(a.Reason, "10 minutes") {
			sawVolume = true
		}
	}
	if !sawVolume {
		t.Errorf("no norm:volume alert with an explanation")
	}
	// Blocked for the rest of the bucket: even a small read with PII.
	now = now.Add(2 * time.Minute)
	if _, err := lookup(1); !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "norm:block") {
		t.Errorf("a lookup right after: %v", err)
	}
	// A statement without PII still runs.
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM customers"); err != nil {
		t.Errorf("count after a norm block: %v", err)
	}
	now = now.Add(2 * time.Hour)
	if _, err := lookup(1); err != nil {
		t.Errorf("two hours later: %v", err)
	}
}

// fakeShare is a NormShare whose lease the test holds or not.
type fakeShare struct {
	m      *norm.Model
	leader bool
}

func (f *fakeShare) Observe(o norm.Observation) []norm.Anomaly { return f.m.Observe(o) }
func (f *fakeShare) Leader() bool                              { return f.leader }

// TestRemoteNormBlock: an anomaly that only the other instances'
// statements showed here blocks the employee here too; on an instance
// without the norms lease without a decision of its own, on the lease
// holder with one (alert and block, once for all). A novelty or an anomaly
// in the learning period blocks nowhere.
func TestRemoteNormBlock(t *testing.T) {
	now := time.Date(2026, 3, 13, 10, 0, 0, 0, time.UTC)
	model, err := norm.New(norm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	share := &fakeShare{m: model}
	al := &alerts{}
	ev, conn, g := setupGuard(t, withRules(t, `norms:
  block_score: 3
`), func(c *guard.Config) {
		c.Now, c.Norms, c.NormShare, c.Alerts = func() time.Time { return now }, model, share, al
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lookup := func() error {
		_, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id = 7", pgx.QueryExecModeSimpleProtocol)
		return err
	}
	normDecisions := func() int {
		n := 0
		for _, d := range ev.decisions(t) {
			if d["rule"] == "norm:volume" {
				n++
			}
		}
		return n
	}
	g.EnforceRemoteNorms([]norm.Anomaly{
		{Employee: pgtest.TrustUser, Kind: "novel_table", Window: "1d", Score: 9, At: now},
		{Employee: pgtest.TrustUser, Kind: "volume", Window: "10m", Score: 9, Learning: true, At: now},
		{Employee: "someone-else", Kind: "volume", Window: "10m", Score: 9, At: now},
	})
	if err := lookup(); err != nil {
		t.Fatalf("after a novelty, a learning-period anomaly and another employee's: %v", err)
	}
	burst := norm.Anomaly{Employee: pgtest.TrustUser, Kind: "volume", Feature: "pii_values", Window: "10m",
		Score: 5, At: now, Explanation: "read 900 emails in 10 minutes"}
	g.EnforceRemoteNorms([]norm.Anomaly{burst})
	err = lookup()
	var pgErr *pgconn.PgError
	if !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "other pgwarden instances") {
		t.Fatalf("after another instance's burst: %v", err)
	}
	volumeAlerts := func() (out []notify.Alert) {
		for _, a := range al.take() {
			if a.Rule == "norm:volume" {
				out = append(out, a)
			}
		}
		return out
	}
	if n, a := normDecisions(), volumeAlerts(); n != 0 || len(a) != 0 {
		t.Errorf("without the lease: %d decisions, alerts %+v; want none", n, a)
	}
	now = now.Add(10 * time.Minute) // the window ended
	if err := lookup(); err != nil {
		t.Errorf("after the window: %v", err)
	}

	// The lease holder decides it.
	share.leader = true
	burst.At = now
	g.EnforceRemoteNorms([]norm.Anomaly{burst})
	if err := lookup(); !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "norm:block") {
		t.Errorf("after the lease holder's decision: %v", err)
	}
	if n, a := normDecisions(), volumeAlerts(); n != 1 || len(a) != 1 || a[0].Employee != pgtest.TrustUser ||
		!strings.Contains(a[0].Reason, "other pgwarden instances") {
		t.Errorf("with the lease: %d decisions, alerts %+v; want one for %s", n, a, pgtest.TrustUser)
	}
}

// TestDriftDecisionNamesTheEmployee: an anomaly found as days close (drift)
// is decided for the employee the model names.
func TestDriftDecisionNamesTheEmployee(t *testing.T) {
	now := time.Date(2026, 3, 13, 10, 0, 0, 0, time.UTC)
	model, err := norm.New(norm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	snap := `{"version": 2, "categories": [], "employees": [], "pending": [{"Employee": "erin", "Kind": "drift",
"Feature": "pii_values", "Window": "7d", "Observed": 900, "Norm": 300, "Score": 2, "Explanation": "erin received 900 PII values over the last 7 active days"}]}`
	if err := model.Restore(strings.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	al := &alerts{}
	ev, _, g := setupGuard(t, withRules(t, "norms: {enabled: true}\n"), func(c *guard.Config) {
		c.Now, c.Norms, c.Alerts = func() time.Time { return now }, model, al
	})
	g.AdvanceNorms(now)
	var found bool
	for _, d := range ev.decisions(t) {
		if d["rule"] == "norm:drift" {
			found = true
		}
	}
	got := al.take()
	if !found || len(got) != 1 || got[0].Employee != "erin" {
		t.Errorf("drift: decision %v, alerts %+v; want one for erin", found, got)
	}
}

// TestEstimatedRowsRefuseBeforeAnyRow: a statement the planner expects to
// return more than the limit is refused before it runs: nothing leaks.
func TestEstimatedRowsRefuseBeforeAnyRow(t *testing.T) {
	_, conn := setup(t, withRules(t, `rules:
  - name: big-reads
    when:
      tables: [public.customers]
      estimated_rows: 1000
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sql := range []string{
		"SELECT * FROM customers",
		"SELECT email FROM customers WHERE id > 10",
		"COPY customers TO STDOUT",
		"COPY (SELECT email, phone FROM customers) TO STDOUT",
	} {
		var err error
		n := 0
		if strings.HasPrefix(sql, "COPY") {
			var sb strings.Builder
			_, err = conn.PgConn().CopyTo(ctx, &writerFunc{&sb}, sql)
			n = strings.Count(sb.String(), "\n")
		} else {
			n, err = countRows(ctx, conn, sql, pgx.QueryExecModeSimpleProtocol)
		}
		var pgErr *pgconn.PgError
		if !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "big-reads") || n != 0 {
			t.Errorf("%s: %d rows, %v", sql, n, err)
		}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "DECLARE c CURSOR FOR SELECT email FROM customers")
	if err == nil || !strings.Contains(err.Error(), "big-reads") {
		t.Errorf("DECLARE of a big cursor: %v", err)
	}
	tx.Rollback(ctx)
	// Selective statements pass, and so do large results without PII.
	for _, sql := range []string{
		"SELECT email FROM customers WHERE id = 42",
		"SELECT email FROM customers WHERE id BETWEEN 1 AND 50",
		"SELECT count(*) FROM customers",
		"SELECT id, length(email) FROM customers",
		"SELECT split_part(email, '@', 2), count(*) FROM customers GROUP BY 1",
	} {
		if _, err := countRows(ctx, conn, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
	// With parameters the planner is asked with the values the Execute
	// binds, in whatever format and exec mode the client sends them.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeDescribeExec} {
		n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id > $1", mode, 10)
		var pgErr *pgconn.PgError
		if !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "big-reads") || n != 0 {
			t.Errorf("parameterized dump (%v): %d rows, %v", mode, n, err)
		}
		if n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id > $1", mode, 99990); err != nil || n != 10 {
			t.Errorf("parameterized lookup (%v): %d %v", mode, n, err)
		}
		if n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE email LIKE $1", mode, "%"); !asPgError(err, &pgErr) || n != 0 {
			t.Errorf("parameterized LIKE '%%' (%v): %d rows, %v", mode, n, err)
		}
	}
	tx, err = conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "DECLARE c CURSOR FOR SELECT email FROM customers WHERE id > $1", 5)
	if err == nil || !strings.Contains(err.Error(), "big-reads") {
		t.Errorf("DECLARE of a big parameterized cursor: %v", err)
	}
	tx.Rollback(ctx)
}

// TestExplainedAccess: lookups of customers with an open ticket assigned
// to the employee are explained; others count as unexplained rows, which a
// rule limits apart from the explained ones, in text and binary formats.
func TestExplainedAccess(t *testing.T) {
	al := &alerts{}
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	_, conn := setup(t, withRules(t, `explained_access:
  table: public.customers
  key: id
  query: "SELECT customer_id FROM tickets WHERE assignee = $1 AND status = 'open'"
  refresh: 1m
rules:
  - name: unexplained-lookups
    scope: 1h
    when:
      unexplained_rows: 3
    action: block
`), func(c *guard.Config) { c.Alerts, c.Now = al, func() time.Time { return now } })
	pgtest.Shared(t).Exec(t, `DROP TABLE IF EXISTS tickets;
CREATE TABLE tickets (id serial, customer_id int, assignee text, status text);
INSERT INTO tickets (customer_id, assignee, status) SELECT i, '`+pgtest.TrustUser+`', 'open' FROM generate_series(1, 20) i;
INSERT INTO tickets (customer_id, assignee, status) VALUES (21, 'someone_else', 'open'), (22, '`+pgtest.TrustUser+`', 'closed')`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Explained: any number of them, both protocols.
	for id := 1; id <= 20; id++ {
		mode := pgx.QueryExecModeSimpleProtocol
		if id%2 == 0 {
			mode = pgx.QueryExecModeCacheStatement // binary int4 key
		}
		if n, err := countRows(ctx, conn, "SELECT id, email FROM customers WHERE id = $1", mode, id); err != nil || n != 1 {
			t.Fatalf("explained lookup %d: %d %v", id, n, err)
		}
	}
	// Unexplained: the fourth is blocked.
	for i, id := range []int{21, 22, 500, 501} {
		n, err := countRows(ctx, conn, "SELECT id, email FROM customers WHERE id = $1", pgx.QueryExecModeCacheStatement, id)
		if i < 3 && (err != nil || n != 1) {
			t.Fatalf("unexplained lookup %d: %d %v", id, n, err)
		}
		if i == 3 {
			wantRuleBlock(t, err, "unexplained-lookups")
		}
	}
	// A result of customers without their key cannot be explained.
	now = now.Add(61 * time.Minute)
	for i := range 4 {
		_, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id = 5", pgx.QueryExecModeSimpleProtocol)
		if i == 3 {
			wantRuleBlock(t, err, "unexplained-lookups")
		} else if err != nil {
			t.Fatal(err)
		}
	}
	// An hour later the window is clear, and a newly assigned ticket
	// explains a customer once the keys are refreshed.
	pgtest.Shared(t).Exec(t, `INSERT INTO tickets (customer_id, assignee, status) VALUES (777, '`+pgtest.TrustUser+`', 'open')`)
	now = now.Add(61 * time.Minute)
	for range 5 {
		if _, err := countRows(ctx, conn, "SELECT id, email FROM customers WHERE id = 777", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("newly explained: %v", err)
		}
	}
}

// TestParallelSessions: a rule on the number of the employee's open
// sessions catches a leak split across them.
func TestParallelSessions(t *testing.T) {
	_, conn := setup(t, withRules(t, `rules:
  - name: parallel-readers
    when:
      sessions: 2
      pii_rows: 5
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 10", pgx.QueryExecModeSimpleProtocol); err != nil || n != 10 {
		t.Fatalf("one session: %d %v", n, err)
	}
	var extra []*pgx.Conn
	for range 2 {
		c, err := pgx.ConnectConfig(ctx, conn.Config().Copy())
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, c)
	}
	n, err := countRows(ctx, extra[1], "SELECT email FROM customers WHERE id <= 10", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "parallel-readers")
	if n != 5 {
		t.Errorf("third session: %d rows", n)
	}
	for _, c := range extra {
		c.Close(ctx)
	}
	// Once the others have ended, one session reads freely again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 10", pgx.QueryExecModeSimpleProtocol)
		if err == nil && n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the others closed: %d %v", n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sweepGuard is a session whose policy blocks more than limit sequential
// rows of customers an hour, on the clock *now.
func sweepGuard(t *testing.T, limit int, now *time.Time) *pgx.Conn {
	t.Helper()
	_, conn := setup(t, withRules(t, fmt.Sprintf(`explained_access:
  table: public.customers
  key: id
rules:
  - name: sweep
    scope: 1h
    when:
      sequential_rows: %d
    action: block
`, limit)), func(c *guard.Config) { c.Now = func() time.Time { return *now } })
	return conn
}

// TestSequentialSweep: reading customers one after another by key is a
// sweep, however small each statement; random lookups are not.
func TestSequentialSweep(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	conn := sweepGuard(t, 10, &now)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Scattered lookups: keys far apart.
	for i := range 40 {
		id := 1 + i*997%90000
		if _, err := countRows(ctx, conn, "SELECT id, email FROM customers WHERE id = $1", pgx.QueryExecModeCacheStatement, id); err != nil {
			t.Fatalf("scattered lookup %d: %v", id, err)
		}
		now = now.Add(time.Minute)
	}
	// One after another: the eleventh neighbour is blocked.
	var blocked error
	for id := 50000; id < 50020 && blocked == nil; id++ {
		_, blocked = countRows(ctx, conn, "SELECT id, email FROM customers WHERE id = $1", pgx.QueryExecModeCacheStatement, id)
	}
	wantRuleBlock(t, blocked, "sweep")
	// A range read is a sweep within one statement.
	now = now.Add(2 * time.Hour)
	n, err := countRows(ctx, conn, "SELECT id, email FROM customers WHERE id BETWEEN 70000 AND 70100 ORDER BY id", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "sweep")
	if n > 11 {
		t.Errorf("range read: %d rows before the block", n)
	}
}

// fakeShared is a Shared whose health the test sets.
type fakeShared struct {
	remote  *window.Registry
	healthy atomic.Bool
}

func (f *fakeShared) Add(string, time.Time, window.Figures) {}
func (f *fakeShared) Remote() *window.Registry              { return f.remote }
func (f *fakeShared) Healthy() bool                         { return f.healthy.Load() }

// TestSharedStateUnavailable: failing closed, results with PII are blocked
// while the other instances' figures cannot be read; failing open, they
// go on.
func TestSharedStateUnavailable(t *testing.T) {
	for _, open := range []bool{false, true} {
		reg, _ := window.NewRegistry(window.Config{})
		sh := &fakeShared{remote: reg}
		sh.healthy.Store(true)
		_, conn := setup(t, func(c *guard.Config) { c.Shared, c.AuditFailOpen = sh, open })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 3", pgx.QueryExecModeSimpleProtocol); err != nil || n != 3 {
			t.Fatalf("healthy: %d %v", n, err)
		}
		sh.healthy.Store(false)
		n, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 3", pgx.QueryExecModeSimpleProtocol)
		if open && (err != nil || n != 3) {
			t.Errorf("fail open: %d %v", n, err)
		}
		if !open {
			wantRuleBlock(t, err, "shared-state-unavailable")
		}
		// Statements without PII are not affected.
		if _, err := countRows(ctx, conn, "SELECT count(*) FROM customers", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Errorf("open=%v, no PII: %v", open, err)
		}
		cancel()
	}
}

// TestWantsParams: the proxy keeps a Bind's parameters only while a rule
// needs a planner estimate.
func TestWantsParams(t *testing.T) {
	for _, tt := range []struct {
		rules string
		want  bool
	}{
		{"rules:\n  - {name: big, when: {tables: [public.customers], estimated_rows: 100}, action: block}\n", true},
		{"rules:\n  - {name: emails, when: {pii_values: 100}, action: block}\n", false},
	} {
		p, err := policy.Parse("p.yaml", []byte("version: 1\n"+tt.rules))
		if err != nil {
			t.Fatal(err)
		}
		g, err := guard.New(guard.Config{Policy: p})
		if err != nil {
			t.Fatal(err)
		}
		if got := g.WantsParams(); got != tt.want {
			t.Errorf("%s: WantsParams %v, want %v", tt.rules, got, tt.want)
		}
	}
}

// TestUnexplainedLookupsReachTheNorms: with explained_access, the norm
// model counts the statements that returned rows no ticket explains, one
// per statement however many rows it returned.
func TestUnexplainedLookupsReachTheNorms(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	model, err := norm.New(norm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, conn := setup(t, withRules(t, `explained_access:
  table: public.customers
  key: id
  query: "SELECT customer_id FROM tickets WHERE assignee = $1 AND status = 'open'"
norms:
  enabled: true
`), func(c *guard.Config) { c.Norms, c.Now = model, func() time.Time { return now } })
	pgtest.Shared(t).Exec(t, `DROP TABLE IF EXISTS tickets;
CREATE TABLE tickets (id serial, customer_id int, assignee text, status text);
INSERT INTO tickets (customer_id, assignee, status) SELECT i, '`+pgtest.TrustUser+`', 'open' FROM generate_series(1, 20) i`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{
		"SELECT id, email FROM customers WHERE id = 3",                 // explained
		"SELECT id, email FROM customers WHERE id = 500",               // unexplained
		"SELECT id, email FROM customers WHERE id BETWEEN 600 AND 619", // one unexplained list
		"SELECT id, email FROM customers WHERE id BETWEEN 1 AND 10",    // explained list
	} {
		if _, err := countRows(ctx, conn, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var buf bytes.Buffer
	if err := model.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	var snap struct {
		Employees []struct {
			Name string    `json:"name"`
			Open [][]int64 `json:"open"`
		} `json:"employees"`
	}
	if err := json.Unmarshal(buf.Bytes(), &snap); err != nil {
		t.Fatal(err)
	}
	const day, unexplained, statements = 2, 8, 4 // window 1d; features unexplained_statements, statements
	if len(snap.Employees) != 1 || len(snap.Employees[0].Open) <= day || len(snap.Employees[0].Open[day]) <= unexplained {
		t.Fatalf("snapshot %s", buf.String())
	}
	open := snap.Employees[0].Open[day]
	if open[unexplained] != 2 || open[statements] != 4 {
		t.Errorf("the day holds %d unexplained statements of %d; want 2 of 4", open[unexplained], open[statements])
	}
}

// TestPeerGroupFromRoles: an employee in a policy group by PostgreSQL role
// membership has that group as the peer group of their norms.
func TestPeerGroupFromRoles(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	model, err := norm.New(norm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pgtest.Shared(t).Exec(t, `DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgw_job_support') THEN CREATE ROLE pgw_job_support NOLOGIN; END IF; END$$;
GRANT pgw_job_support TO `+pgtest.TrustUser)
	_, conn := setup(t, withRules(t, `groups:
  support: {roles: [pgw_job_support]}
norms:
  enabled: true
`), func(c *guard.Config) { c.Norms, c.Now = model, func() time.Time { return now } })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id = 1", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if n := model.Norm(pgtest.TrustUser, now); n.Peer != "support" {
		t.Errorf("peer group %q, want support", n.Peer)
	}
}

// tableShare is a NormShare that keeps the tables of each observation.
type tableShare struct {
	m      *norm.Model
	mu     sync.Mutex
	n      int // observations
	tables []string
}

func (r *tableShare) Observe(o norm.Observation) []norm.Anomaly {
	r.mu.Lock()
	r.n++
	r.tables = append(r.tables, o.Features.Tables...)
	r.mu.Unlock()
	return r.m.Observe(o)
}

func (r *tableShare) Leader() bool { return true }

func (r *tableShare) seen() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, slices.Clone(r.tables)
}

// TestTempTablesKnownToNorms: two sessions at once create and read the
// same temporary table, each in its backend's pg_temp_N; the norms see
// one table, pg_temp.agg_by_product, not a new table per session.
func TestTempTablesKnownToNorms(t *testing.T) {
	model, err := norm.New(norm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	share := &tableShare{m: model}
	_, conn := setup(t, withRules(t, `norms:
  enabled: true
`), func(c *guard.Config) { c.Norms, c.NormShare = model, share })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other, err := pgx.ConnectConfig(ctx, conn.Config().Copy())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	var schemas []string
	for _, c := range []*pgx.Conn{conn, other} {
		if _, err := c.Exec(ctx, "CREATE TEMP TABLE agg_by_product AS SELECT id % 10 AS product, count(*) AS n FROM customers WHERE id <= 100 GROUP BY 1", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		if n, err := countRows(ctx, c, "SELECT product, n FROM agg_by_product", pgx.QueryExecModeSimpleProtocol); err != nil || n != 10 {
			t.Fatalf("read the temporary table: %d rows, %v", n, err)
		}
		var s string
		if err := c.QueryRow(ctx, "SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()").Scan(&s); err != nil {
			t.Fatal(err)
		}
		schemas = append(schemas, s)
	}
	if schemas[0] == schemas[1] {
		t.Fatalf("both sessions' temporary tables are in %s", schemas[0])
	}
	// Three statements a session.
	deadline := time.Now().Add(10 * time.Second)
	n, tables := share.seen()
	for ; n < 6 && time.Now().Before(deadline); n, tables = share.seen() {
		time.Sleep(10 * time.Millisecond)
	}
	var temp []string
	for _, tb := range tables {
		if strings.Contains(tb, "agg_by_product") {
			temp = append(temp, tb)
		}
	}
	slices.Sort(temp)
	if temp = slices.Compact(temp); n < 6 || !slices.Equal(temp, []string{"pg_temp.agg_by_product"}) {
		t.Errorf("after %d statements the norms saw %q (the sessions' schemas %q), want pg_temp.agg_by_product alone", n, temp, schemas)
	}
}

// normalWork plays eight working days, from *now, of 3-6 lookups of 1-3
// customers an hour, moving *now (the guard's clock) as it goes, and
// returns the lookup it used: a read of the next n customers.
func normalWork(t *testing.T, ctx context.Context, conn *pgx.Conn, now *time.Time) func(n int) (int, error) {
	t.Helper()
	id := 1
	lookup := func(n int) (int, error) {
		q := fmt.Sprintf("SELECT email FROM customers WHERE id >= %d AND id < %d", id, id+n)
		id += n
		return countRows(ctx, conn, q, pgx.QueryExecModeSimpleProtocol)
	}
	start := *now
	for day := 0; day < 10; day++ {
		d := start.AddDate(0, 0, day)
		if wd := d.Weekday(); wd == time.Saturday || wd == time.Sunday {
			continue
		}
		for h := 9; h < 17; h++ {
			for k := 0; k < 3+(day+h)%4; k++ {
				*now = time.Date(d.Year(), d.Month(), d.Day(), h, 5+k*12, 0, 0, time.UTC)
				if _, err := lookup(1 + (h+k)%3); err != nil {
					t.Fatalf("normal work on day %d: %v", day, err)
				}
			}
		}
	}
	return lookup
}

// TestNormStopsTheCrossingStatement: without an adaptive statement limit,
// the statement that takes the employee's volume past the norm's block
// score is stopped at that point, not delivered whole with the block
// beginning at the next one.
func TestNormStopsTheCrossingStatement(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) // a Monday
	model, err := norm.New(norm.Config{LearningDays: 2, MinActiveDays: 3})
	if err != nil {
		t.Fatal(err)
	}
	ev, conn := setup(t, withRules(t, `norms:
  learning_days: 2
  min_active_days: 3
  block_score: 3
`), func(c *guard.Config) { c.Now, c.Norms = func() time.Time { return now }, model })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lookup := normalWork(t, ctx, conn, &now)
	ev.decisions(t)
	now = time.Date(2026, 3, 13, 10, 0, 0, 0, time.UTC)
	var room int64
	for _, h := range model.Headroom(pgtest.TrustUser, now, 3) {
		if h.Feature == "pii_rows" || h.Feature == "pii_values" {
			if room == 0 || h.Left < room {
				room = h.Left
			}
		}
	}
	if room <= 0 || room >= 300 {
		t.Fatalf("headroom %d: the test needs one between 0 and 300", room)
	}
	n, err := lookup(300)
	var pgErr *pgconn.PgError
	if !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "norm:volume") {
		t.Fatalf("a read past the norm: %d rows, %v", n, err)
	}
	if int64(n) > room {
		t.Errorf("%d rows delivered, the norm's headroom was %d", n, room)
	}
	d := ev.decisions(t)
	if len(d) == 0 || d[0]["rule"] != "norm:volume" || d[0]["action"] != "block" || d[0]["source"] != "norm" {
		t.Errorf("decisions %v", d)
	}
	// Blocked for the rest of the bucket.
	now = now.Add(time.Minute)
	if _, err := lookup(1); !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "norm:block") {
		t.Errorf("a lookup right after: %v", err)
	}
}

// TestKeylessSweep: a sweep that leaves the key out of its result is told
// by its predicate: the keys are the constants and the bound values it
// compares the key with.
func TestKeylessSweep(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	conn := sweepGuard(t, 50, &now)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		sql  string
		mode pgx.QueryExecMode
		args func(from int) []any
	}{
		{"bound range", "SELECT full_name, email, phone FROM customers WHERE id BETWEEN $1 AND $1 + 19", pgx.QueryExecModeCacheStatement,
			func(from int) []any { return []any{from} }},
		{"text parameters", "SELECT full_name, email FROM customers WHERE id >= $1 AND id < $2", pgx.QueryExecModeExec,
			func(from int) []any { return []any{from, from + 20} }},
		{"one by one", "SELECT email FROM customers WHERE id = $1", pgx.QueryExecModeCacheStatement,
			func(from int) []any { return []any{from} }},
		{"constants", "", pgx.QueryExecModeSimpleProtocol, nil},
	} {
		base := 20000 * (len(tc.name) % 4)
		t.Run(tc.name, func(t *testing.T) {
			now = now.Add(2 * time.Hour)
			delivered := 0
			var err error
			for from := base; from < base+1000 && err == nil; {
				var n int
				switch {
				case tc.args == nil:
					n, err = countRows(ctx, conn, fmt.Sprintf("SELECT email FROM customers WHERE id BETWEEN %d AND %d", from, from+19), tc.mode)
					from += 20
				case strings.Contains(tc.sql, "id = $1"):
					n, err = countRows(ctx, conn, tc.sql, tc.mode, tc.args(from)...)
					from++
				default:
					n, err = countRows(ctx, conn, tc.sql, tc.mode, tc.args(from)...)
					from += 20
				}
				delivered += n
				now = now.Add(10 * time.Second)
			}
			wantRuleBlock(t, err, "sweep")
			t.Logf("%s: %d customers before the block", tc.name, delivered)
			if delivered > 60 {
				t.Errorf("%d customers delivered before the block, limit 50 sequential rows", delivered)
			}
		})
	}
}

// TestNormsExcept: an employee the norms' except names is neither learned
// nor judged by them; rules still apply.
func TestNormsExcept(t *testing.T) {
	model, err := norm.New(norm.Config{LearningDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, conn := setup(t, withRules(t, `norms:
  learning_days: 1
  except: [`+pgtest.TrustUser+`]
`), func(c *guard.Config) { c.Norms = model })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 20", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if got := model.Employees(); slices.Contains(got, pgtest.TrustUser) {
		t.Errorf("the norms learned an excepted employee: %v", got)
	}
	_, conn2 := setup(t, withRules(t, `norms:
  learning_days: 1
  except: [someone_else]
`), func(c *guard.Config) { c.Norms = model })
	if _, err := countRows(ctx, conn2, "SELECT email FROM customers WHERE id <= 20", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if got := model.Employees(); !slices.Contains(got, pgtest.TrustUser) {
		t.Errorf("the norms did not learn an employee they watch: %v", got)
	}
}

// TestNoNormYetIsRecordedNotAlerted: an employee with neither a history nor
// a peer group's norm (a first deployment, a new account) reading past the
// default threshold is recorded, not sent to security: the threshold is a
// guess. Rules still alert.
func TestNoNormYetIsRecordedNotAlerted(t *testing.T) {
	model, err := norm.New(norm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	al := &alerts{}
	ev, conn := setup(t, withRules(t, `norms:
  learning_days: 7
rules:
  - name: statement-alert
    when:
      pii_values: 250
    action: alert
`), func(c *guard.Config) { c.Norms, c.Alerts = model, al })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 300", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	var norms, rules int
	for _, d := range ev.decisions(t) {
		switch {
		case d["rule"] == "norm:volume":
			norms++
			if d["action"] != "log" || !strings.Contains(fmt.Sprint(d["reason"]), "no norm yet") {
				t.Errorf("norm decision %v, want a log saying there is no norm yet", d)
			}
		case d["rule"] == "statement-alert":
			rules++
		}
	}
	if norms == 0 || rules != 1 {
		t.Errorf("%d norm and %d rule decisions, want the default threshold's and the rule's", norms, rules)
	}
	for _, a := range al.take() {
		if strings.HasPrefix(a.Rule, "norm:") {
			t.Errorf("security alerted of a guess: %+v", a)
		}
	}
}
