package norm

import (
	"math"
	"time"
)

// Headroom is how much more of a PII feature an employee may receive in the
// open buckets before a volume anomaly of that feature reaches a score: a
// statement that would go past Left is the one that crosses it, and can be
// stopped at that point instead of after it.
type Headroom struct {
	Feature string // "pii_values", "pii_rows" or "pii_values.<category>"
	// Window is the window whose bucket leaves the least room, and
	// Threshold its alert threshold (score 1).
	Window    string
	Threshold float64
	// Observed is what that bucket holds so far, and Left what may still
	// be added without the score reaching the one asked (never negative).
	Observed, Left int64
}

// Headroom returns, for each PII feature, the room left before an anomaly
// of the employee's would reach score at now: the tightest of the 10
// minute, hour and day buckets. It is empty while the employee is learning
// (their anomalies only alert) and for an unknown employee.
func (m *Model) Headroom(employee string, now time.Time, score float64) []Headroom {
	if score <= 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.emps[employee]
	if !ok || now.Before(e.firstSeen.Add(timeDays(m.cfg.LearningDays))) {
		return nil
	}
	ls := m.local(now)
	ns, _ := m.normsFor(e)
	// The buckets that have ended since e's last statement hold nothing
	// for now (roll would clear them).
	open := [numWindows]bool{
		w10m: floorDiv(ls, 600) == e.b10,
		w1h:  floorDiv(ls, 3600) == e.b1h,
		w1d:  floorDiv(ls, 86400) == e.day,
	}
	features := []int{fPIIValues, fPIIRows}
	for i := range m.catNames {
		features = append(features, numFixed+i)
	}
	out := make([]Headroom, 0, len(features))
	for _, f := range features {
		best := Headroom{Feature: m.featureName(f), Left: math.MaxInt64}
		for w := range numWindows {
			var obs int64
			if open[w] && f < len(e.cur[w]) {
				obs = e.cur[w][f]
			}
			hi := ns.high(w, f)
			if hi <= 0 {
				continue
			}
			// A volume anomaly scores obs/hi: it reaches score from
			// ceil(score*hi).
			left := max(int64(math.Ceil(score*hi))-1-obs, 0)
			if left < best.Left {
				best.Window, best.Threshold, best.Observed, best.Left = windowNames[w], hi, obs, left
			}
		}
		if best.Window != "" {
			out = append(out, best)
		}
	}
	return out
}
