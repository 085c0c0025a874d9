package guard

import (
	"slices"
	"sync"
	"time"
)

// timelineHours is how far back each employee's hourly series goes.
const timelineHours = 7 * 24

// timeline keeps, per employee, the PII values received in each of the
// last timelineHours hours, for the dashboard's chart. Statements of
// different employees add without meeting on a lock: the map of series
// is a sync.Map (an employee's series, once made, is read without a
// lock), each series has its own.
type timeline struct {
	by sync.Map // employee -> *series
}

type series struct {
	mu     sync.Mutex
	hours  [timelineHours]int64
	latest int64 // the hour (unix hours) of the newest slot
}

// Point is one hour of an employee's series.
type Point struct {
	Hour      time.Time `json:"hour"`
	PIIValues int64     `json:"pii_values"`
}

func (t *timeline) add(employee string, at time.Time, pii int64) {
	h := at.Unix() / 3600
	v, ok := t.by.Load(employee)
	if !ok {
		v, _ = t.by.LoadOrStore(employee, &series{latest: h})
	}
	s := v.(*series)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(h)
	if h > s.latest-timelineHours {
		s.hours[h%timelineHours] += pii
	}
}

// advance clears the slots between the newest hour and h.
func (s *series) advance(h int64) {
	if h <= s.latest {
		return
	}
	for x := s.latest + 1; x <= h && x <= s.latest+timelineHours; x++ {
		s.hours[x%timelineHours] = 0
	}
	s.latest = h
}

// Timeline returns the employee's PII values per hour over the last n
// hours (at most a week) ending at now, oldest first.
func (g *Guard) Timeline(employee string, now time.Time, n int) []Point {
	n = min(max(n, 1), timelineHours)
	h := now.Unix() / 3600
	out := make([]Point, 0, n)
	var s *series
	if v, ok := g.timeline.by.Load(employee); ok {
		s = v.(*series)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.advance(h)
	}
	for x := h - int64(n) + 1; x <= h; x++ {
		p := Point{Hour: time.Unix(x*3600, 0).UTC()}
		if s != nil && x > s.latest-timelineHours {
			p.PIIValues = s.hours[x%timelineHours]
		}
		out = append(out, p)
	}
	return out
}

// Employees lists, sorted, the employees with PII received in the last
// week or known to the norm model.
func (g *Guard) Employees() []string {
	seen := map[string]bool{}
	g.timeline.by.Range(func(name, _ any) bool {
		seen[name.(string)] = true
		return true
	})
	if m := g.cfg.Norms; m != nil {
		for _, name := range m.Employees() {
			seen[name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for name := range seen {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
