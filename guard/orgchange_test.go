package guard_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// TestOrgChangeFoldsSharedNovelty: ten employees of an office appearing
// from a renumbered address range within minutes are one organisation
// level incident, one alert, with each employee's novelty recorded
// without notice; one employee's own new address is still alerted, once
// the wait for others sharing it is over, and a second new address of
// theirs in the same range is not alerted again.
func TestOrgChangeFoldsSharedNovelty(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).UnixNano()) // a Monday
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	set := func(t time.Time) { clock.Store(t.UnixNano()) }
	model, err := norm.New(norm.Config{LearningDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	al := &alerts{}
	ev, conn, g := setupGuard(t, withRules(t, `norms:
  learning_days: 1
`), func(c *guard.Config) { c.Now, c.Norms, c.Alerts = now, model, al })
	const office = 10
	var roles []string
	for i := 1; i <= office+1; i++ {
		roles = append(roles, fmt.Sprintf("pgw_office%d", i))
	}
	db := pgtest.Shared(t)
	for _, r := range roles {
		db.Exec(t, fmt.Sprintf(`DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[1]s LOGIN; END IF; END$$;
ALTER ROLE %[1]s PASSWORD '%[2]s';
GRANT SELECT ON customers TO %[1]s`, r, pgtest.Password))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// lookup runs one small read as role from the local address from.
	lookup := func(role, from string) {
		t.Helper()
		cfg := conn.Config().Copy()
		cfg.User, cfg.Password = role, pgtest.Password
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		cfg.DialFunc = d.DialContext
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("%s from %s: %v", role, from, err)
		}
		defer c.Close(ctx)
		if _, err := countRows(ctx, c, "SELECT email FROM customers WHERE id = 7", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s from %s: %v", role, from, err)
		}
	}
	// Day one, learning: everyone from the office's usual address.
	for _, r := range roles {
		lookup(r, "127.0.0.1")
	}
	if a := al.take(); len(a) != 0 {
		t.Fatalf("alerts while learning: %+v", a)
	}
	ev.decisions(t)

	// Two days later the office is renumbered into 127.0.5.0/24: its ten
	// employees arrive over nine minutes.
	start := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	for i, r := range roles[:office] {
		set(start.Add(time.Duration(i) * time.Minute))
		lookup(r, fmt.Sprintf("127.0.5.%d", 10+i))
	}
	set(start.Add(time.Hour))
	g.AdvanceNorms(now())
	a := al.take()
	if len(a) != 1 || a[0].Rule != "norm:org_change" || !strings.Contains(a[0].Reason, "127.0.5.0/24") ||
		!strings.Contains(a[0].Reason, "new to 3 employees") || !strings.Contains(a[0].Reason, "org_change") {
		t.Fatalf("alerts for a renumbered office: %d, want one org_change: %+v", len(a), a)
	}
	t.Log(a[0].Reason)
	var quiet int
	for _, d := range ev.decisions(t) {
		switch {
		case d["rule"] == "norm:org_change" && d["kind"] == "org_change" && d["action"] == "alert":
		case d["rule"] == "norm:novel_client" && d["kind"] == "novel_client" && d["action"] == "log" &&
			strings.Contains(fmt.Sprint(d["reason"]), "(norm novel_client)"):
			quiet++
		default:
			t.Errorf("unexpected decision %v", d)
		}
	}
	if quiet != office {
		t.Errorf("%d employees' novelties recorded, want %d", quiet, office)
	}

	// The next day one employee connects from an address of their own:
	// alerted, after the wait for others.
	single := roles[office]
	set(time.Date(2026, 3, 5, 10, 0, 0, 0, time.UTC))
	lookup(single, "127.0.9.1")
	set(now().Add(2 * time.Minute))
	lookup(single, "127.0.9.2") // another address of the same range: no second alert
	if a := al.take(); len(a) != 0 {
		t.Errorf("alerted before the wait: %+v", a)
	}
	// Nothing looks until hours later (a virtual clock that jumps, a
	// night without statements): the alert is dated when its wait ended.
	arrived := now().Add(-2 * time.Minute)
	set(now().Add(6 * time.Hour))
	g.AdvanceNorms(now())
	a = al.take()
	if len(a) != 1 || a[0].Rule != "norm:novel_client" || a[0].Employee != single || !strings.Contains(a[0].Reason, "127.0.9.1") ||
		!strings.Contains(a[0].Reason, "(norm novel_client)") {
		t.Fatalf("one employee's new address: %+v", a)
	}
	if due := arrived.Add(15 * time.Minute); !a[0].Time.Equal(due) {
		t.Errorf("alert dated %s, want %s, when its wait ended", a[0].Time, due)
	}
	if d := ev.decisions(t); len(d) != 2 || d[0]["kind"] != "novel_client" || d[0]["action"] != "log" ||
		d[1]["kind"] != "novel_client" || d[1]["action"] != "alert" {
		t.Errorf("decisions: %v", d)
	}
}

// TestNovelCategoryAlerted: an employee whose work never reads social
// security numbers reading 50 of them is alerted, naming the category,
// once the wait for others meeting it is over.
func TestNovelCategoryAlerted(t *testing.T) {
	pgtest.Shared(t).Exec(t, `DROP TABLE IF EXISTS pgw_people;
CREATE TABLE pgw_people (id int PRIMARY KEY, ssn text);
INSERT INTO pgw_people SELECT i, lpad((100000000 + i * 7919)::text, 9, '0') FROM generate_series(1, 1000) i;
GRANT SELECT ON pgw_people TO `+pgtest.TrustUser)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	model, err := norm.New(norm.Config{LearningDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	al := &alerts{}
	ev, conn, g := setupGuard(t, func(c *guard.Config) {
		p, err := policy.Parse("cat.yaml", []byte(`version: 1
pii:
  columns:
    - match: public.pgw_people.ssn
      category: national_id
    - match: public.customers.email
      category: email
norms:
  learning_days: 1
`))
		if err != nil {
			t.Fatal(err)
		}
		c.Policy, c.Now, c.Norms, c.Alerts = p, now, model, al
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	read := func(sql string) {
		t.Helper()
		if _, err := countRows(ctx, conn, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
	}
	// Three days of email lookups.
	for day := 0; day < 3; day++ {
		for h := 9; h < 17; h++ {
			clock.Store(time.Date(2026, 3, 2+day, h, 10, 0, 0, time.UTC).UnixNano())
			read(fmt.Sprintf("SELECT email FROM customers WHERE id = %d", 1+day*10+h))
		}
	}
	al.take()
	ev.decisions(t)
	clock.Store(time.Date(2026, 3, 5, 10, 0, 0, 0, time.UTC).UnixNano())
	read("SELECT id, ssn FROM pgw_people WHERE id <= 50")
	clock.Store(time.Date(2026, 3, 5, 10, 20, 0, 0, time.UTC).UnixNano())
	g.AdvanceNorms(now())
	// One statement, two novelties (a first table, a category never
	// read): one incident, named by the category, telling the table.
	var novelty []string
	var told bool
	for _, a := range al.take() {
		if strings.HasPrefix(a.Rule, "norm:novel_") {
			novelty = append(novelty, a.Rule)
		}
		if a.Rule == "norm:novel_category" && a.Employee == pgtest.TrustUser && strings.Contains(a.Reason, "50 national_id values") &&
			strings.Contains(a.Reason, "(norm novel_category)") && strings.Contains(a.Reason, `table "public.pgw_people"`) {
			told = true
		}
	}
	if len(novelty) != 1 || novelty[0] != "norm:novel_category" || !told {
		t.Errorf("novelty alerts %q, want one novel_category telling the table too; decisions %v", novelty, ev.decisions(t))
	}
	var quiet bool
	for _, d := range ev.decisions(t) {
		quiet = quiet || d["kind"] == "novel_table" && d["action"] == "log" && strings.Contains(fmt.Sprint(d["reason"]), "told with norm:novel_category")
	}
	if !quiet {
		t.Error("the first table's novelty is not recorded as told with the category's")
	}
}

// TestHeldNoveltyReleasedOnShutdown: a novelty alert still waiting for
// others when pgwarden stops is sent, not lost.
func TestHeldNoveltyReleasedOnShutdown(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	model, err := norm.New(norm.Config{LearningDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	al := &alerts{}
	_, conn, g := setupGuard(t, withRules(t, `norms:
  learning_days: 1
`), func(c *guard.Config) { c.Now, c.Norms, c.Alerts = now, model, al })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id = 1", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	clock.Store(time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC).UnixNano())
	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE pgw_novel AS SELECT email AS x FROM customers WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := countRows(ctx, conn, "SELECT x FROM pgw_novel", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if a := al.take(); len(a) != 0 {
		t.Fatalf("alerted before the wait: %+v", a)
	}
	g.ReleaseHeldNovelties()
	a := al.take()
	if len(a) != 1 || a[0].Rule != "norm:novel_table" || !strings.Contains(a[0].Reason, "pg_temp.pgw_novel") {
		t.Errorf("on shutdown: %+v", a)
	}
}

// TestShiftChangeOneIncident: a team whose shift moved works off its old
// hours together: one org_change for the day, a member meeting it hours
// later that day and a member meeting it the next day in the team's new
// hours recorded without notice; a member off hours at another hour is
// still alerted.
func TestShiftChangeOneIncident(t *testing.T) {
	var clock atomic.Int64
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	set := func(t time.Time) { clock.Store(t.UnixNano()) }
	set(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)) // a Monday
	model, err := norm.New(norm.Config{LearningDays: 1, MinActiveDays: 2})
	if err != nil {
		t.Fatal(err)
	}
	var roles []string
	for i := 1; i <= 5; i++ {
		roles = append(roles, fmt.Sprintf("pgw_shift%d", i))
	}
	al := &alerts{}
	ev, conn, g := setupGuard(t, withRules(t, `groups:
  shift: [`+strings.Join(roles, ", ")+`]
norms:
  learning_days: 1
  min_active_days: 2
`), func(c *guard.Config) { c.Now, c.Norms, c.Alerts = now, model, al })
	db := pgtest.Shared(t)
	for _, r := range roles {
		db.Exec(t, fmt.Sprintf(`DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[1]s LOGIN; END IF; END$$;
ALTER ROLE %[1]s PASSWORD '%[2]s';
GRANT SELECT ON customers TO %[1]s`, r, pgtest.Password))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	work := func(role string, at time.Time) {
		t.Helper()
		set(at)
		cfg := conn.Config().Copy()
		cfg.User, cfg.Password = role, pgtest.Password
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		defer c.Close(ctx)
		if _, err := countRows(ctx, c, "SELECT email FROM customers WHERE id <= 25", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s at %s: %v", role, at, err)
		}
	}
	day := func(d, h, m int) time.Time { return time.Date(2026, 3, 2+d, h, m, 0, 0, time.UTC) }
	for d := range 3 { // Monday to Wednesday, 09:00
		for i, r := range roles {
			work(r, day(d, 9, i))
		}
	}
	g.AdvanceNorms(day(3, 8, 0))
	al.take()
	ev.decisions(t)

	// Thursday the shift moves to the evening: three members within ten
	// minutes, a fourth hours later.
	for i, r := range roles[:3] {
		work(r, day(3, 18, 5*i))
	}
	work(roles[3], day(3, 21, 30))
	g.AdvanceNorms(day(3, 23, 0))
	// Friday: the fifth member in the new hours, the fourth at 03:00.
	work(roles[4], day(4, 18, 40))
	work(roles[3], day(4, 3, 0))
	g.AdvanceNorms(day(4, 19, 30))
	var got []string
	for _, a := range al.take() {
		got = append(got, a.Rule+" "+a.Employee)
	}
	want := []string{"norm:org_change ", "norm:off_hours pgw_shift4"}
	if !slices.Equal(got, want) {
		t.Errorf("alerts %q, want %q", got, want)
	}
	quiet := map[string]bool{}
	for _, d := range ev.decisions(t) {
		if d["kind"] == "off_hours" && d["action"] == "log" {
			quiet[fmt.Sprint(d["employee"])] = true
			if r := fmt.Sprint(d["reason"]); !strings.Contains(r, "working hours of peer group shift") {
				t.Errorf("recorded off_hours without the change it belongs to: %s", r)
			}
		}
	}
	for _, r := range roles {
		if !quiet[r] {
			t.Errorf("%s's off_hours in the moved shift not recorded quietly (recorded: %v)", r, quiet)
		}
	}
}

// TestStoppedStatementOneNotice: a statement a rule blocks is one notice
// to security, though its volume is also far beyond the employee's norm,
// at an hour they never work, of a category they never read: the norm's
// anomalies are recorded, not told again.
func TestStoppedStatementOneNotice(t *testing.T) {
	var clock atomic.Int64
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	model, err := norm.New(norm.Config{LearningDays: 1, MinActiveDays: 2})
	if err != nil {
		t.Fatal(err)
	}
	al := &alerts{}
	ev, conn, g := setupGuard(t, withRules(t, `rules:
  - name: statement-emails
    when:
      pii_values: 100
    action: block
norms:
  learning_days: 1
  min_active_days: 2
`), func(c *guard.Config) { c.Now, c.Norms, c.Alerts = now, model, al })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for d := range 3 {
		clock.Store(time.Date(2026, 3, 2+d, 10, 0, 0, 0, time.UTC).UnixNano())
		if _, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 2", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
	}
	al.take()
	ev.decisions(t)
	clock.Store(time.Date(2026, 3, 5, 3, 0, 0, 0, time.UTC).UnixNano())
	_, err = countRows(ctx, conn, "SELECT email, phone FROM customers WHERE id <= 500", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "statement-emails")
	g.ReleaseHeldNovelties()
	var got []string
	for _, a := range al.take() {
		got = append(got, a.Rule)
	}
	if !slices.Equal(got, []string{"statement-emails"}) {
		t.Errorf("alerts %q, want the block's alone", got)
	}
	recorded := map[string]bool{}
	for _, d := range ev.decisions(t) {
		if k := fmt.Sprint(d["kind"]); d["source"] == "norm" {
			recorded[k] = d["action"] == "log" && strings.Contains(fmt.Sprint(d["reason"]), "stopped by rule statement-emails")
		}
	}
	for _, k := range []string{"volume", "off_hours", "novel_category"} {
		if !recorded[k] {
			t.Errorf("the statement's %s anomaly is not recorded as part of the block: %v", k, recorded)
		}
	}
}
