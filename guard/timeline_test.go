package guard

import (
	"testing"
	"time"
)

func TestTimeline(t *testing.T) {
	g := &Guard{}
	t0 := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
	g.timeline.add("alice", t0, 5)
	g.timeline.add("alice", t0.Add(10*time.Minute), 3)
	g.timeline.add("alice", t0.Add(2*time.Hour), 7)
	pts := g.Timeline("alice", t0.Add(2*time.Hour), 3)
	if len(pts) != 3 || pts[0].PIIValues != 8 || pts[1].PIIValues != 0 || pts[2].PIIValues != 7 || !pts[0].Hour.Equal(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("timeline %+v", pts)
	}
	// Eight days later the old hours are gone.
	if pts := g.Timeline("alice", t0.Add(8*24*time.Hour), 168); pts[len(pts)-1].PIIValues != 0 || sum(pts) != 0 {
		t.Errorf("stale hours kept: %d", sum(pts))
	}
	if pts := g.Timeline("nobody", t0, 5); len(pts) != 5 || sum(pts) != 0 {
		t.Errorf("unknown employee: %+v", pts)
	}
}

func sum(pts []Point) int64 {
	var n int64
	for _, p := range pts {
		n += p.PIIValues
	}
	return n
}
