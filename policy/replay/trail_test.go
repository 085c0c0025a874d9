package replay

import (
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/policy"
)

// TestTrail: a trail's decisions are kept and summed per day and
// employee; shadow and log decisions are listed but not counted.
func TestTrail(t *testing.T) {
	p, err := policy.Parse("p.yaml", []byte(`version: 1
rules:
  - {name: big, when: {pii_values: 100}, action: block}
  - {name: some, when: {pii_values: 10}, action: alert}
  - {name: watch, when: {pii_values: 10}, action: alert, shadow: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTrail(r)
	tr.StartSession(Session{ID: "a", Employee: "alice"})
	tr.StartSession(Session{ID: "b", Employee: "bob"})
	day := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	st := func(sess, emp string, at time.Time, n int64) {
		tr.Statement(Statement{Session: sess, Employee: emp, Time: at, SQL: "SELECT email FROM customers",
			Rows: n, PIIRows: n, PIIValues: map[string]int64{"email": n}})
	}
	st("a", "alice", day, 5)
	st("a", "alice", day.Add(time.Hour), 20)
	st("b", "bob", day, 500)
	st("a", "alice", day.AddDate(0, 0, 1), 1)
	tr.Close()

	days := tr.Days()
	if len(days) != 3 || tr.Statements != 4 {
		t.Fatalf("%d days, %d statements: %+v", len(days), tr.Statements, days)
	}
	want := []struct {
		date, employee           string
		statements, pii          int64
		alerts, blocks, watching int
	}{
		{"2026-03-02", "alice", 2, 25, 1, 0, 1},
		{"2026-03-02", "bob", 1, 500, 1, 1, 1},
		{"2026-03-03", "alice", 1, 1, 0, 0, 0},
	}
	for i, w := range want {
		d := days[i]
		if d.Date != w.date || d.Employee != w.employee || d.Statements != w.statements || d.PIIValues != w.pii ||
			d.Alerts != w.alerts || d.Blocks != w.blocks || d.Rules["watch"] != w.watching {
			t.Errorf("day %d = %+v, want %+v", i, d, w)
		}
	}
	if len(tr.Decisions) != 5 {
		t.Errorf("%d decisions kept, want 5: %+v", len(tr.Decisions), tr.Decisions)
	}
}
