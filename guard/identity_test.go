package guard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/identity/tag"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/policy/window"
	"github.com/pgwarden/pgwarden/state/quarantine"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// svcKey is the key the test application signs its tags with.
var svcKey = []byte("the crm application's signing key")

// serviceAccount makes the test role an allow-listed service account of
// the crm application.
var serviceAccount = `service_accounts:
  - role: ` + pgtest.TrustUser + `
    key_env: PGWARDEN_CRM_KEY
    applications: ["crm-*"]
    clients: ["127.0.0.0/8", "::1"]
`

func withService(t *testing.T, rules string) func(*guard.Config) {
	t.Helper()
	rulesOpt := withRules(t, serviceAccount+rules)
	return func(c *guard.Config) {
		rulesOpt(c)
		c.ServiceKeys = map[string][]byte{pgtest.TrustUser: svcKey}
	}
}

// signed tags sql for employee on conn, signed now with the application's
// key.
func signed(conn *pgx.Conn, employee, sql string) string {
	return tag.Sign(svcKey, employee, conn.PgConn().PID(), time.Now(), sql)
}

// poolAs connects a pool through the guard's proxy, as the application
// named app.
func poolAs(t *testing.T, conn *pgx.Conn, app string, size int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(conn.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	cfg.MaxConns, cfg.MinConns = size, size
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func connAs(t *testing.T, ctx context.Context, conn *pgx.Conn, app string) *pgx.Conn {
	t.Helper()
	cfg := conn.Config().Copy()
	cfg.RuntimeParams["application_name"] = app
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func poolRows(ctx context.Context, pool *pgxpool.Pool, employee, sql string, mode pgx.QueryExecMode) (int, error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Release()
	if employee != "" {
		sql = signed(c.Conn(), employee, sql)
	}
	return countRows(ctx, c.Conn(), sql, mode)
}

// event is an audit event's employee and data.
type event struct {
	employee string
	data     map[string]any
}

// take returns the events of type typ recorded so far, and forgets them.
func (e *events) take(t *testing.T, typ string) []event {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []event
	var kept []audit.Event
	for _, ev := range e.all {
		if ev.Type != typ {
			kept = append(kept, ev)
			continue
		}
		var d map[string]any
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, event{ev.Employee, d})
	}
	e.all = kept
	return out
}

// emails sums the emails statement events count per employee.
func emails(evs []event) map[string]int {
	out := make(map[string]int)
	for _, ev := range evs {
		if pv, ok := ev.data["pii_values"].(map[string]any); ok {
			n, _ := pv["email"].(float64)
			out[ev.employee] += int(n)
		}
	}
	return out
}

// wantNamed checks that an event names its employee, how they were
// identified, the database role, the client address and the application.
func wantNamed(t *testing.T, what string, ev event, employee, identifiedBy, app string) {
	t.Helper()
	d := ev.data
	if ev.employee != employee || d["employee"] != employee || d["identified_by"] != identifiedBy ||
		d["user"] != pgtest.TrustUser || !strings.HasPrefix(fmt.Sprint(d["client_addr"]), "127.0.0.1:") || d["application_name"] != app {
		t.Errorf("%s: employee %q, data %v; want %s identified by %s, role %s, from 127.0.0.1, application %q",
			what, ev.employee, d, employee, identifiedBy, pgtest.TrustUser, app)
	}
}

// syncBuffer is a DecisionLog safe to read while the guard writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) decisions(t *testing.T) []guard.Decision {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []guard.Decision
	for _, line := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if line == "" {
			continue
		}
		var d guard.Decision
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	s.b.Reset()
	return out
}

// TestServiceAccountPoolKeepsEmployeesApart: one pool of connections,
// under one service account, serves three employees at once; each
// statement is counted against the employee its tag names, so a window
// limit per employee stops only the one over it, and every event and
// decision names them.
func TestServiceAccountPoolKeepsEmployeesApart(t *testing.T) {
	al := &alerts{}
	dl := &syncBuffer{}
	ev, conn, g := setupGuard(t, withService(t, `rules:
  - name: employee-emails-10m
    scope: 10m
    when:
      pii_values: {email: 30}
    action: block
`), func(c *guard.Config) { c.Alerts, c.DecisionLog = al, dl })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool := poolAs(t, conn, "crm-web", 2)
	ev.take(t, audit.TypeSessionStart)

	// 25 emails each, at once, over two connections, in three exec modes:
	// 75 in all, over the limit had they been counted together.
	employees := []string{"alice", "bob", "carol"}
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec}
	var wg sync.WaitGroup
	errs := make([]error, len(employees))
	for i, e := range employees {
		wg.Go(func() {
			for part := range 5 {
				lo := 1000*i + 5*part
				n, err := poolRows(ctx, pool, e, fmt.Sprintf("SELECT id, email FROM customers WHERE id > %d AND id <= %d", lo, lo+5), modes[i])
				if err == nil && n != 5 {
					err = fmt.Errorf("%d rows", n)
				}
				if err != nil {
					errs[i] = fmt.Errorf("%s, part %d: %w", e, part, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := emails(ev.take(t, audit.TypeStatement)); got["alice"] != 25 || got["bob"] != 25 || got["carol"] != 25 || got[pgtest.TrustUser] != 0 {
		t.Errorf("emails counted per employee: %v", got)
	}

	// alice goes over her limit: blocked after 5 more; bob is not.
	n, err := poolRows(ctx, pool, "alice", "SELECT email FROM customers WHERE id > 500 AND id <= 510", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "employee-emails-10m")
	if n != 5 {
		t.Errorf("alice received %d more, limit 5", n)
	}
	if n, err := poolRows(ctx, pool, "bob", "SELECT email FROM customers WHERE id > 600 AND id <= 605", pgx.QueryExecModeCacheStatement); err != nil || n != 5 {
		t.Errorf("bob: %d, %v", n, err)
	}
	for e, want := range map[string]int64{"alice": 30, "bob": 30, "carol": 25, pgtest.TrustUser: 0} {
		totals, _ := g.Windows().GetCounts(e, time.Now())
		if got := totals[window.TenMinutes].PIIValues[pii.IdxEmail]; got != want {
			t.Errorf("%s's 10-minute window: %d emails, want %d", e, got, want)
		}
	}

	// The block names alice everywhere.
	stmts := ev.take(t, audit.TypeStatement)
	if len(stmts) != 2 {
		t.Fatalf("%d statement events", len(stmts))
	}
	wantNamed(t, "alice's statement", stmts[0], "alice", guard.IdentifiedByTag, "crm-web")
	wantNamed(t, "bob's statement", stmts[1], "bob", guard.IdentifiedByTag, "crm-web")
	decs := ev.take(t, audit.TypeDecision)
	if len(decs) != 1 || decs[0].data["rule"] != "employee-emails-10m" {
		t.Fatalf("decisions %v", decs)
	}
	wantNamed(t, "decision", decs[0], "alice", guard.IdentifiedByTag, "crm-web")
	if !strings.HasPrefix(fmt.Sprint(decs[0].data["reason"]), "alice received more than 30 email values in 10 minutes") {
		t.Errorf("reason %q", decs[0].data["reason"])
	}
	if d := dl.decisions(t); len(d) != 1 || d[0].Employee != "alice" || d[0].IdentifiedBy != "tag" || d[0].User != pgtest.TrustUser ||
		d[0].Application != "crm-web" || d[0].ClientAddr == "" {
		t.Errorf("decision log %+v", d)
	}
	if a := al.take(); len(a) != 1 || a[0].Employee != "alice" || a[0].Role != pgtest.TrustUser || a[0].Application != "crm-web" ||
		strings.Contains(a[0].Statement, "pgwarden_sig") {
		t.Errorf("alerts %+v", a)
	}
}

// TestTaggedPipelineKeepsEmployeesApart: statements of several employees
// pipelined on one connection are counted against each: a later
// statement starts before an earlier one's rows arrive.
func TestTaggedPipelineKeepsEmployeesApart(t *testing.T) {
	ev, conn := setup(t, withService(t, `rules:
  - name: employee-emails-10m
    scope: 10m
    when:
      pii_values: {email: 6}
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := connAs(t, ctx, conn, "crm-worker")
	for m, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			base, suffix := 2000+1000*m, fmt.Sprintf("-%d", m)
			// Each employee stays within the limit, carol excepted, which
			// no sum of the others' counts would tell.
			queries := []struct {
				employee string
				rows     int
			}{{"", 2}, {"dave", 3}, {"erin", 5}, {"frank", 7}}
			batch := &pgx.Batch{}
			for i, q := range queries {
				sql := fmt.Sprintf("SELECT email FROM customers WHERE id > %d AND id <= %d", base+100*i, base+100*i+q.rows)
				if q.employee != "" {
					sql = signed(app, q.employee+suffix, sql)
				}
				batch.QueuedQueries = append(batch.QueuedQueries, &pgx.QueuedQuery{SQL: sql})
			}
			br := app.SendBatch(ctx, batch)
			got := make([]int, len(queries))
			var blockErr error
			for i := range queries {
				rows, err := br.Query()
				if err != nil {
					blockErr = err
					break
				}
				for rows.Next() {
					got[i]++
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					blockErr = err
					break
				}
			}
			br.Close()
			wantRuleBlock(t, blockErr, "employee-emails-10m")
			if got[0] != 2 || got[1] != 3 || got[2] != 5 || got[3] != 6 {
				t.Errorf("received %v, want [2 3 5 6]", got)
			}
			counted := emails(ev.take(t, audit.TypeStatement))
			want := map[string]int{pgtest.TrustUser: 2, "dave" + suffix: 3, "erin" + suffix: 5, "frank" + suffix: 6}
			if fmt.Sprint(counted) != fmt.Sprint(want) {
				t.Errorf("counted %v, want %v", counted, want)
			}
			if d := ev.take(t, audit.TypeDecision); len(d) != 1 || d[0].employee != "frank"+suffix {
				t.Errorf("decisions %v", d)
			}
		})
	}
}

// TestForgedTagsIgnoredAndAlerted: a tag signed with another key, lifted
// onto another statement, out of time or malformed names no one: the
// statement runs as the service account's own, and security is alerted.
func TestForgedTagsIgnoredAndAlerted(t *testing.T) {
	al := &alerts{}
	ev, conn, g := setupGuard(t, withService(t, ""), func(c *guard.Config) { c.Alerts = al })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := connAs(t, ctx, conn, "crm-web")
	const leak = "SELECT email FROM customers WHERE id <= 3"
	lifted := signed(app, "alice", "SELECT 1")
	tests := []struct {
		name, sql, why string
	}{
		{"another key", tag.Sign([]byte("a key that is not the application's"), "alice", app.PgConn().PID(), time.Now(), leak), "signature does not match"},
		{"lifted onto another statement", leak + " " + lifted[strings.Index(lifted, "/*"):], "signature does not match"},
		{"another connection's", tag.Sign(svcKey, "alice", app.PgConn().PID()+1, time.Now(), leak), "signature does not match"},
		{"expired", tag.Sign(svcKey, "alice", app.PgConn().PID(), time.Now().Add(-6*time.Minute), leak), "timestamp outside the accepted skew"},
		{"from the future", tag.Sign(svcKey, "alice", app.PgConn().PID(), time.Now().Add(6*time.Minute), leak), "timestamp outside the accepted skew"},
		{"malformed", leak + " /*pgwarden_user='alice'*/", "malformed pgwarden tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n, err := countRows(ctx, app, tt.sql, pgx.QueryExecModeSimpleProtocol); err != nil || n != 3 {
				t.Fatalf("%d rows, %v", n, err)
			}
			stmts := ev.take(t, audit.TypeStatement)
			if len(stmts) != 1 {
				t.Fatalf("%d statement events", len(stmts))
			}
			wantNamed(t, "statement", stmts[0], pgtest.TrustUser, "role", "crm-web")
			if !strings.Contains(fmt.Sprint(stmts[0].data["tag_error"]), tt.why) {
				t.Errorf("tag_error %q, want %q", stmts[0].data["tag_error"], tt.why)
			}
			decs := ev.take(t, audit.TypeDecision)
			if len(decs) != 1 || decs[0].data["rule"] != "identity:forged-tag" || decs[0].data["action"] != "alert" {
				t.Fatalf("decisions %v", decs)
			}
			wantNamed(t, "decision", decs[0], pgtest.TrustUser, "role", "crm-web")
			a := al.take()
			if len(a) != 1 || a[0].Rule != "identity:forged-tag" || a[0].Employee != pgtest.TrustUser || !strings.Contains(a[0].Reason, tt.why) {
				t.Errorf("alerts %+v", a)
			}
		})
	}
	// A forged SET application_name too; what follows is not alice's.
	if _, err := app.Exec(ctx, "SET application_name = '"+tag.ApplicationName([]byte("a key that is not the application's"), "alice", app.PgConn().PID(), time.Now())+"'"); err != nil {
		t.Fatal(err)
	}
	if n, err := countRows(ctx, app, leak, pgx.QueryExecModeSimpleProtocol); err != nil || n != 3 {
		t.Fatalf("%d rows, %v", n, err)
	}
	stmts := ev.take(t, audit.TypeStatement)
	if len(stmts) != 2 || stmts[0].employee != pgtest.TrustUser || stmts[1].employee != pgtest.TrustUser {
		t.Errorf("after a forged SET: %v", stmts)
	}
	if decs := ev.take(t, audit.TypeDecision); len(decs) != 1 || decs[0].data["rule"] != "identity:forged-tag" ||
		!strings.Contains(fmt.Sprint(decs[0].data["tag_error"]), "application_name: signature does not match") {
		t.Errorf("decisions %v", decs)
	}
	if totals, _ := g.Windows().GetCounts("alice", time.Now()); totals[window.Day].Statements != 0 {
		t.Errorf("alice was credited with %d statements", totals[3].Statements)
	}
}

// TestServiceAccountUsedInteractively: a person at a console with the
// service account's password sends no tag, from an application the
// service does not use: rules on service_account untagged and unusual
// block and alert.
func TestServiceAccountUsedInteractively(t *testing.T) {
	al := &alerts{}
	ev, conn := setup(t, withService(t, `rules:
  - name: service-account-untagged-pii
    when:
      service_account: untagged
      pii_values: 0
    action: block
  - name: service-account-unusual
    when:
      service_account: unusual
    action: alert
`), func(c *guard.Config) { c.Alerts = al })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	console := connAs(t, ctx, conn, "psql")
	n, err := countRows(ctx, console, "SELECT email FROM customers WHERE id <= 10", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "service-account-untagged-pii")
	if n != 0 {
		t.Errorf("the console received %d emails", n)
	}
	decs := ev.take(t, audit.TypeDecision)
	rules := map[string]event{}
	for _, d := range decs {
		rules[fmt.Sprint(d.data["rule"])] = d
	}
	if len(decs) != 2 || rules["service-account-unusual"].data["unusual"] != `application "psql" matches none of crm-*` {
		t.Fatalf("decisions %v", decs)
	}
	wantNamed(t, "decision", rules["service-account-untagged-pii"], pgtest.TrustUser, "role", "psql")
	if a := al.take(); len(a) != 2 {
		t.Errorf("alerts %+v", a)
	}
	// Without PII the console is only alerted.
	if n, err := countRows(ctx, console, "SELECT count(*) FROM customers", pgx.QueryExecModeSimpleProtocol); err != nil || n != 1 {
		t.Fatalf("count: %d, %v", n, err)
	}
	if decs := ev.take(t, audit.TypeDecision); len(decs) != 1 || decs[0].data["rule"] != "service-account-unusual" {
		t.Errorf("decisions %v", decs)
	}

	// The application, tagging its statements, is neither; untagged, its
	// PII is blocked too.
	web := connAs(t, ctx, conn, "crm-web")
	if n, err := countRows(ctx, web, signed(web, "alice", "SELECT email FROM customers WHERE id <= 10"), pgx.QueryExecModeCacheStatement); err != nil || n != 10 {
		t.Fatalf("tagged: %d, %v", n, err)
	}
	if n, err := countRows(ctx, web, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil || n != 1 {
		t.Fatalf("untagged without PII: %d, %v", n, err)
	}
	if decs := ev.take(t, audit.TypeDecision); len(decs) != 0 {
		t.Errorf("decisions %v", decs)
	}
	_, err = countRows(ctx, web, "SELECT email FROM customers WHERE id <= 10", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "service-account-untagged-pii")

	// psql itself, if installed.
	psql, err := exec.LookPath("psql")
	if err != nil {
		return
	}
	cfg := conn.Config()
	cmd := exec.Command(psql, "-X", "-A", "-t", "-h", cfg.Host, "-p", fmt.Sprint(cfg.Port), "-U", cfg.User, "-d", cfg.Database,
		"-c", "SELECT email FROM customers WHERE id <= 10")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "PGSSLMODE=disable")
	if err := cmd.Run(); err == nil || !strings.Contains(errb.String(), "rule service-account-untagged-pii") || strings.Contains(out.String(), "@example.com") {
		t.Errorf("psql: %v, stdout %q, stderr %q", err, out.String(), errb.String())
	}
}

// TestQuarantinedEmployeeRefusedOnTaggedStatement: the pooled session of
// the service account goes on, but a statement tagged for a quarantined
// employee is refused before it runs.
func TestQuarantinedEmployeeRefusedOnTaggedStatement(t *testing.T) {
	q, err := quarantine.Open(filepath.Join(t.TempDir(), "quarantine.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(quarantine.Entry{Employee: "mallory", Since: time.Now(), Rule: "mass-read"}); err != nil {
		t.Fatal(err)
	}
	al := &alerts{}
	ev, conn := setup(t, withService(t, ""), func(c *guard.Config) { c.Quarantine, c.Alerts = q, al })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := poolAs(t, conn, "crm-web", 1)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		n, err := poolRows(ctx, pool, "mallory", "SELECT email FROM customers WHERE id <= 10", mode)
		var pgErr *pgconn.PgError
		if !asPgError(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, "mallory is quarantined") ||
			!strings.Contains(pgErr.Message, "mass-read") || n != 0 {
			t.Fatalf("%v: mallory's statement: %d rows, %v", mode, n, err)
		}
		// The same connection serves alice.
		if n, err := poolRows(ctx, pool, "alice", "SELECT email FROM customers WHERE id <= 10", mode); err != nil || n != 10 {
			t.Fatalf("%v: alice: %d, %v", mode, n, err)
		}
	}
	decs := ev.take(t, audit.TypeDecision)
	if len(decs) != 2 || decs[0].data["rule"] != "identity:quarantined" || decs[0].data["action"] != "block" {
		t.Fatalf("decisions %v", decs)
	}
	wantNamed(t, "decision", decs[0], "mallory", guard.IdentifiedByTag, "crm-web")
	if a := al.take(); len(a) != 0 {
		t.Errorf("a refusal of a known quarantine is not alerted again: %+v", a)
	}
	// Named with SET application_name too.
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	if _, err := c.Exec(ctx, "SET application_name = '"+tag.ApplicationName(svcKey, "mallory", c.Conn().PgConn().PID(), time.Now())+"'"); err != nil {
		t.Fatal(err)
	}
	_, err = countRows(ctx, c.Conn(), "SELECT email FROM customers WHERE id <= 10", pgx.QueryExecModeSimpleProtocol)
	if err == nil || !strings.Contains(err.Error(), "mallory is quarantined") {
		t.Errorf("after SET application_name: %v", err)
	}
}

// TestSetApplicationNameNamesTheEmployee: a tag in application_name names
// the employee of the statements that follow, until it is reset; set
// LOCAL, until the transaction ends, pipelined or not.
func TestSetApplicationNameNamesTheEmployee(t *testing.T) {
	ev, conn := setup(t, withService(t, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := connAs(t, ctx, conn, "crm-web")
	set := func(local bool, employee string) string {
		s := "SET "
		if local {
			s += "LOCAL "
		}
		return s + "application_name = '" + tag.ApplicationName(svcKey, employee, app.PgConn().PID(), time.Now()) + "'"
	}
	read := func(id int) string { return fmt.Sprintf("SELECT email FROM customers WHERE id = %d", id) }
	exec := func(sqls ...string) {
		t.Helper()
		for _, sql := range sqls {
			if _, err := app.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
	}
	// who lists the employees of the statements that read an email.
	who := func() []string {
		var out []string
		for _, ev := range ev.take(t, audit.TypeStatement) {
			if pv, ok := ev.data["pii_values"].(map[string]any); ok && pv["email"] != nil {
				out = append(out, ev.employee+"/"+fmt.Sprint(ev.data["identified_by"]))
			}
		}
		return out
	}
	wantWho := func(what string, want ...string) {
		t.Helper()
		if got := who(); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	svc := pgtest.TrustUser + "/role"

	exec(set(false, "bob"), read(1), read(2), "SET application_name = 'crm-web'", read(3))
	wantWho("SET, then another name", "bob/tag", "bob/tag", svc)
	exec(set(false, "bob"), read(1), "RESET application_name", read(2))
	wantWho("SET, then RESET", "bob/tag", svc)
	exec(set(false, "bob"), "DISCARD ALL", read(1))
	wantWho("DISCARD ALL", svc)
	exec("BEGIN", set(true, "carol"), read(1), "COMMIT", read(2))
	wantWho("SET LOCAL", "carol/tag", svc)
	// A SET LOCAL outside a transaction lapses with the statement.
	exec(set(true, "carol"), read(1))
	wantWho("SET LOCAL alone", svc)
	// A comment tag wins over the application_name's.
	exec(set(false, "bob"), signed(app, "alice", read(1)), read(2), "RESET application_name")
	wantWho("comment over SET", "alice/tag", "bob/tag")

	// Pipelined: the statement after COMMIT is sent before the server
	// has answered any.
	batch := &pgx.Batch{}
	for _, sql := range []string{"BEGIN", set(true, "carol"), read(1), "COMMIT", read(2)} {
		batch.QueuedQueries = append(batch.QueuedQueries, &pgx.QueuedQuery{SQL: sql})
	}
	if err := app.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatal(err)
	}
	wantWho("pipelined SET LOCAL", "carol/tag", svc)
}

// TestServiceKeysRequired: the guard refuses a policy naming a service
// account it has no key for, and LoadServiceKeys reads keys from where
// the policy says.
func TestServiceKeysRequired(t *testing.T) {
	p, err := policy.Parse("p.yaml", []byte(`version: 1
service_accounts:
  - {role: crm_app, key_env: CRM_KEY}
  - {role: billing, key_file: /etc/pgwarden/billing.key}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := guard.New(guard.Config{Policy: p}); err == nil || !strings.Contains(err.Error(), "no signing key for service account crm_app") {
		t.Errorf("New without keys: %v", err)
	}
	env := map[string]string{"CRM_KEY": "  0123456789abcdef0123456789abcdef\n"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	files := map[string][]byte{"/etc/pgwarden/billing.key": []byte("fedcba9876543210fedcba9876543210\n")}
	readFile := func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			return b, nil
		}
		return nil, os.ErrNotExist
	}
	keys, err := guard.LoadServiceKeys(p, getenv, readFile)
	if err != nil || string(keys["crm_app"]) != "0123456789abcdef0123456789abcdef" || string(keys["billing"]) != "fedcba9876543210fedcba9876543210" {
		t.Fatalf("LoadServiceKeys: %q, %v", keys, err)
	}
	g, err := guard.New(guard.Config{Policy: p, ServiceKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	env["CRM_KEY"] = "tiny-key"
	if _, err := guard.LoadServiceKeys(p, getenv, readFile); err == nil || strings.Contains(err.Error(), "tiny-key") {
		t.Errorf("a short key: %v (the key never appears in errors)", err)
	}
	delete(env, "CRM_KEY")
	if _, err := guard.LoadServiceKeys(p, getenv, readFile); err == nil || !strings.Contains(err.Error(), "CRM_KEY is not set") {
		t.Errorf("no variable: %v", err)
	}
	// A reload adding an account needs its key.
	p2, err := policy.Parse("p2.yaml", []byte("version: 1\nservice_accounts: [{role: hr_app, key_env: HR_KEY}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetPolicy(p2); err == nil {
		t.Error("SetPolicy accepted an account without a key")
	}
	if err := g.SetPolicyAndKeys(p2, map[string][]byte{"hr_app": []byte("0123456789abcdef0123")}); err != nil || g.Policy() != p2 {
		t.Errorf("SetPolicyAndKeys: %v", err)
	}
}

// TestSetApplicationNameExpires: a tag set in application_name names the
// employee for the skew after it was signed, not for the rest of the
// session; after that, statements are the service account's again, and
// the lapse is told once.
func TestSetApplicationNameExpires(t *testing.T) {
	now := time.Now()
	ev, conn := setup(t, withService(t, ""), func(c *guard.Config) { c.Now = func() time.Time { return now } })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := connAs(t, ctx, conn, "crm-web")
	if _, err := app.Exec(ctx, "SET application_name = '"+tag.ApplicationName(svcKey, "bob", app.PgConn().PID(), now)+"'"); err != nil {
		t.Fatal(err)
	}
	read := func() {
		t.Helper()
		if _, err := countRows(ctx, app, "SELECT email FROM customers WHERE id = 1", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
	}
	read()
	now = now.Add(4 * time.Minute)
	read()
	now = now.Add(2 * time.Minute) // six minutes after signing
	read()
	read()
	var got []string
	for _, e := range ev.take(t, audit.TypeStatement) {
		if pv, ok := e.data["pii_values"].(map[string]any); ok && pv["email"] != nil {
			got = append(got, e.employee)
		}
	}
	if want := []string{"bob", "bob", pgtest.TrustUser, pgtest.TrustUser}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("employees %v, want %v", got, want)
	}
	lapses := 0
	for _, d := range ev.take(t, audit.TypeDecision) {
		if d.data["rule"] == "identity:forged-tag" && strings.Contains(fmt.Sprint(d.data["tag_error"]), "set it again") {
			lapses++
		}
	}
	if lapses != 1 {
		t.Errorf("%d lapse decisions, want 1", lapses)
	}
}

// TestTaggedKillBlocksOnly: kill and quarantine on a tagged statement
// refuse the statement, not the pooled connection other employees share;
// the quarantined employee's next tagged statement is refused, the
// others' go on.
func TestTaggedKillBlocksOnly(t *testing.T) {
	dir := t.TempDir()
	q, err := quarantine.Open(filepath.Join(dir, "quarantine.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, conn := setup(t, withService(t, `rules:
  - name: kill-big
    subjects: [alice]
    when:
      pii_values: {email: 8}
    action: kill
  - name: quarantine-bigger
    subjects: [carol]
    when:
      pii_values: {email: 15}
    action: quarantine
`), func(c *guard.Config) { c.Quarantine = q })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := connAs(t, ctx, conn, "crm-web")
	read := func(employee string, n int) error {
		_, err := countRows(ctx, app, signed(app, employee, fmt.Sprintf("SELECT email FROM customers WHERE id <= %d", n)), pgx.QueryExecModeSimpleProtocol)
		return err
	}
	if err := read("alice", 10); err == nil || !strings.Contains(err.Error(), "kill-big") {
		t.Fatalf("alice over the kill limit: %v", err)
	}
	if err := read("bob", 3); err != nil {
		t.Fatalf("bob after alice's kill, on the same connection: %v", err)
	}
	if err := read("carol", 20); err == nil || !strings.Contains(err.Error(), "quarantined") {
		t.Fatalf("carol over the quarantine limit: %v", err)
	}
	if err := read("carol", 1); err == nil || !strings.Contains(err.Error(), "carol is quarantined") {
		t.Errorf("carol after her quarantine: %v", err)
	}
	if err := read("bob", 3); err != nil {
		t.Errorf("bob after carol's quarantine: %v", err)
	}
}

// TestSetApplicationNameInLargeStatement: a statement too large to parse
// that may set application_name is not parsed for it; the employee a tag
// named before is forgotten after it, as RESET application_name would,
// whatever it does: the statements that follow are the service account's.
func TestSetApplicationNameInLargeStatement(t *testing.T) {
	ev, conn := setup(t, withService(t, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := connAs(t, ctx, conn, "crm-web")
	if _, err := app.Exec(ctx, "SET application_name = '"+tag.ApplicationName(svcKey, "bob", app.PgConn().PID(), time.Now())+"'"); err != nil {
		t.Fatal(err)
	}
	// It may set application_name: the name is in it (here in a comment).
	large := "SELECT email FROM customers WHERE id IN (" + idList(30000) + ") /* application_name */"
	for _, sql := range []string{"SELECT email FROM customers WHERE id = 1", large, "SELECT email FROM customers WHERE id = 1"} {
		if _, err := countRows(ctx, app, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, e := range ev.take(t, audit.TypeStatement) {
		if pv, ok := e.data["pii_values"].(map[string]any); ok && pv["email"] != nil {
			got = append(got, e.employee)
		}
	}
	if want := []string{"bob", "bob", pgtest.TrustUser}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("employees %v, want %v", got, want)
	}
}
