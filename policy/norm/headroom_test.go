package norm

import (
	"testing"
	"time"
)

// TestHeadroomIsWhereTheScoreIsReached: a statement of the headroom leaves
// the score under the one asked, one value more reaches it.
func TestHeadroomIsWhereTheScoreIsReached(t *testing.T) {
	const score = 4
	at := dayStart(14).Add(10*time.Hour + 5*time.Minute)
	headroom := func(m *Model, name string, at time.Time) Headroom {
		for _, h := range m.Headroom(name, at, score) {
			if h.Feature == "pii_values" {
				return h
			}
		}
		return Headroom{}
	}
	maxScore := func(as []Anomaly) float64 {
		s := 0.0
		for _, a := range as {
			if a.Kind == "volume" && a.Feature != "bytes" {
				s = max(s, a.Score)
			}
		}
		return s
	}
	for _, extra := range []int64{0, 1} {
		m, ws, _ := established(t, 5)
		agent := ws[0]
		if h := m.Headroom("nobody", at, score); h != nil {
			t.Errorf("headroom of an unknown employee: %+v", h)
		}
		// Some work first, so that the buckets hold something.
		m.Observe(lookup(agent, at.Add(-time.Minute), 2))
		pv := headroom(m, agent.name, at)
		if pv.Window == "" || pv.Left <= 0 || pv.Observed != 6 {
			t.Fatalf("pii_values headroom: %+v", m.Headroom(agent.name, at, score))
		}
		o := lookup(agent, at, 1)
		o.PIIValues = map[string]int64{"email": pv.Left + extra}
		got := maxScore(m.Observe(o))
		if extra == 0 && got >= score {
			t.Errorf("the headroom (%+v) reached score %.2f", pv, got)
		}
		if extra == 1 && got < score {
			t.Errorf("one value past the headroom (%+v) scored %.2f, want >= %d", pv, got, score)
		}
		if extra == 0 {
			if after := headroom(m, agent.name, at.Add(time.Second)); after.Left != 0 {
				t.Errorf("headroom after receiving it all: %+v", after)
			}
			// The next hour's bucket: room again, unless the day is
			// the tightest.
			if later := headroom(m, agent.name, at.Add(2*time.Hour)); later.Left == 0 && later.Window != "1d" {
				t.Errorf("headroom in a later bucket: %+v", later)
			}
		}
	}
}
