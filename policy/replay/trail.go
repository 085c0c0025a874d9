package replay

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// Trail is a replay of a whole trail: a Replayer that also keeps every
// decision and sums statements, PII values, alerts and blocks per day (in
// the policy's time zone) and employee, as pgwarden replay reports them.
type Trail struct {
	*Replayer
	// Decisions are every decision so far, in order.
	Decisions []Decision
	// Statements counts the statements replayed.
	Statements int
	days       map[dayKey]*Day
	last       time.Time
}

type dayKey struct{ date, employee string }

// Day is the sums of one employee's day.
type Day struct {
	Date       string // 2006-01-02
	Employee   string
	Statements int64
	PIIValues  int64
	// Alerts and Blocks count the decisions that are neither shadow nor
	// log-only; blocks are every action other than alert.
	Alerts, Blocks int
	Rules          map[string]int // decisions per rule, shadow ones included
}

// NewTrail returns a Trail over r.
func NewTrail(r *Replayer) *Trail {
	return &Trail{Replayer: r, days: make(map[dayKey]*Day)}
}

// Statement replays st, keeps its decisions and adds it to the sums of
// st.Employee's day.
func (t *Trail) Statement(st Statement) []Decision {
	t.Statements++
	t.last = st.Time
	ds := t.Replayer.Statement(st)
	k := dayKey{st.Time.In(t.p.Location()).Format(time.DateOnly), st.Employee}
	d := t.days[k]
	if d == nil {
		d = &Day{Date: k.date, Employee: k.employee, Rules: make(map[string]int)}
		t.days[k] = d
	}
	d.Statements++
	for _, n := range st.PIIValues {
		d.PIIValues += n
	}
	for _, dec := range ds {
		switch {
		case dec.Shadow:
		case dec.Action == "log":
		case dec.Action == "alert":
			d.Alerts++
		default:
			d.Blocks++
		}
		d.Rules[dec.Rule]++
	}
	t.Decisions = append(t.Decisions, ds...)
	return ds
}

// Close ends the trail's last day, as the clock would have, and keeps
// the decisions that brings.
func (t *Trail) Close() {
	if !t.last.IsZero() {
		t.Decisions = append(t.Decisions, t.Advance(t.last.Add(24*time.Hour))...)
	}
}

// Days returns the sums per day and employee, by day then employee.
func (t *Trail) Days() []Day {
	keys := slices.SortedFunc(maps.Keys(t.days), func(a, b dayKey) int {
		return cmp.Or(cmp.Compare(a.date, b.date), cmp.Compare(a.employee, b.employee))
	})
	days := make([]Day, len(keys))
	for i, k := range keys {
		days[i] = *t.days[k]
	}
	return days
}
