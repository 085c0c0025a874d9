package replay

import (
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
)

func TestReplay(t *testing.T) {
	p, err := policy.Parse("p.yaml", []byte(`version: 1
rules:
  - {name: big-statement, when: {pii_values: 100}, action: block}
  - {name: hourly, scope: 1h, when: {pii_values: {email: 150}}, action: alert}
  - {name: session-rows, scope: session, when: {pii_rows: 120}, action: alert}
  - {name: egress, when: {statements: [server_egress]}, action: block}
  - {name: night, when: {hours: "22:00-06:00", pii_rows: 0}, action: alert, shadow: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	r.StartSession(Session{ID: "s1", Employee: "alice", ClientAddr: "10.0.0.5:50000"})
	emails := func(n int64) map[string]int64 { return map[string]int64{"email": n} }
	steps := []struct {
		at    time.Duration
		sess  string
		sql   string
		pii   int64
		rules []string
	}{
		{0, "s1", "SELECT email FROM customers WHERE id = $1", 1, nil},
		{time.Minute, "s1", "SELECT email FROM customers LIMIT $1", 80, nil},
		{2 * time.Minute, "s1", "SELECT email FROM customers LIMIT $1", 80, []string{"hourly", "session-rows"}},
		{3 * time.Minute, "s1", "SELECT email FROM customers", 500, []string{"big-statement", "hourly", "session-rows"}},
		{4 * time.Minute, "s1", "COPY customers TO '/tmp/x'", 0, []string{"egress"}},
		{2 * time.Hour, "s2", "SELECT email FROM customers LIMIT $1", 80, nil},
		{14 * time.Hour, "s2", "SELECT email FROM customers WHERE id = $1", 1, []string{"night"}},
	}
	r.StartSession(Session{ID: "s2", Employee: "alice"})
	for _, s := range steps {
		ds := r.Statement(Statement{Session: s.sess, Time: t0.Add(s.at), SQL: s.sql, Rows: s.pii, PIIRows: s.pii, PIIValues: emails(s.pii)})
		var got []string
		for _, d := range ds {
			got = append(got, d.Rule)
		}
		if len(got) != len(s.rules) {
			t.Errorf("%v %s: fired %v, want %v", s.at, s.sql, got, s.rules)
			continue
		}
		for i := range got {
			if got[i] != s.rules[i] {
				t.Errorf("%v %s: fired %v, want %v", s.at, s.sql, got, s.rules)
			}
		}
		for _, d := range ds {
			if d.Rule == "night" && (d.Action != "would alert" || !d.Shadow) {
				t.Errorf("shadow decision %+v", d)
			}
		}
	}
}

// TestReplayNorms: the norm model learns from the replayed trail, and a
// burst far above what it learned is a norm decision.
func TestReplayNorms(t *testing.T) {
	p, err := policy.Parse("p.yaml", []byte("version: 1\nnorms:\n  learning_days: 2\n  min_active_days: 3\n  block_score: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := norm.New(norm.Config{LearningDays: 2, MinActiveDays: 3})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(p, m)
	if err != nil {
		t.Fatal(err)
	}
	r.StartSession(Session{ID: "s", Employee: "alice", ClientAddr: "10.0.0.5:4000"})
	day0 := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var got []Decision
	for d := 0; d < 10; d++ {
		for h := 9; h < 17; h++ {
			at := day0.AddDate(0, 0, d).Add(time.Duration(h)*time.Hour + 10*time.Minute)
			got = append(got, r.Statement(Statement{Session: "s", Time: at, SQL: "SELECT email FROM customers WHERE id = 1",
				Rows: 2, PIIRows: 2, PIIValues: map[string]int64{"email": 2}, Tables: []string{"public.customers"}})...)
		}
	}
	if len(got) != 0 {
		t.Fatalf("decisions on ordinary days: %+v", got)
	}
	at := day0.AddDate(0, 0, 10).Add(10 * time.Hour)
	got = r.Statement(Statement{Session: "s", Time: at, SQL: "SELECT email FROM customers", Rows: 3000, PIIRows: 3000,
		PIIValues: map[string]int64{"email": 3000}, Tables: []string{"public.customers"}})
	if len(got) == 0 || got[0].Rule != "norm:volume" || got[0].Action != "block" {
		t.Fatalf("burst: %+v", got)
	}
	if n := m.Norm("alice", at); n.ActiveDays < 10 {
		t.Errorf("the replay taught %d active days", n.ActiveDays)
	}
}

// TestReplayTaggedStatements: a service account's tagged statements count
// against the employees they name, and its untagged use matches the
// service_account condition, as when they ran.
func TestReplayTaggedStatements(t *testing.T) {
	p, err := policy.Parse("p.yaml", []byte(`version: 1
service_accounts:
  - {role: crm_app, key_env: CRM_KEY}
rules:
  - {name: hourly, scope: 1h, when: {pii_values: {email: 100}}, action: block}
  - {name: untagged, when: {service_account: untagged, pii_values: 0}, action: alert}
`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	r.StartSession(Session{ID: "pool", Employee: "crm_app"})
	run := func(employee string, tagged bool, n int64) []string {
		t.Helper()
		use := policy.ServiceUse{Account: "crm_app", Tagged: tagged}
		ds := r.Statement(Statement{Session: "pool", Employee: employee, Service: use, Time: t0, SQL: "SELECT email FROM customers",
			Rows: n, PIIRows: n, PIIValues: map[string]int64{"email": n}})
		var got []string
		for _, d := range ds {
			got = append(got, d.Employee+":"+d.Rule)
		}
		return got
	}
	// 60 each for alice and bob: under each one's hour; 120 for the pool.
	for _, e := range []string{"alice", "bob"} {
		if got := run(e, true, 60); len(got) != 0 {
			t.Errorf("%s's 60: %v", e, got)
		}
	}
	if got := run("alice", true, 60); len(got) != 1 || got[0] != "alice:hourly" {
		t.Errorf("alice's next 60: %v, want her hourly block", got)
	}
	if got := run("", false, 1); len(got) != 1 || got[0] != "crm_app:untagged" {
		t.Errorf("an untagged statement: %v", got)
	}
}
