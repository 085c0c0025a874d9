package replay

import (
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/policy"
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
	r, err := New(p)
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
