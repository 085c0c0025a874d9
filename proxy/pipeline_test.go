package proxy

import "testing"

// TestCopyInputSettlesDeferredSyncs: the Syncs the client sends while the
// server reads COPY input are deferred, each with the line ends sent
// before it, and settled when the COPY ends: a COPY that failed on line N
// read those sent before line N's end and none after; one that failed
// before any line (on its end) read none of them; one that completed read
// them all. The count is taken by the COPY's end, so the next COPY starts
// from nothing.
func TestCopyInputSettlesDeferredSyncs(t *testing.T) {
	for _, c := range []struct {
		name     string
		lines    []int64 // line ends sent before each Sync
		ok       bool
		canceled bool
		failLine int64
		release  int
	}{
		{"failed on line 1, Sync right after it", []int64{1}, false, false, 1, 1},
		{"failed on line 3, Syncs after lines 1 and 3", []int64{1, 2}, false, false, 3, 1},
		{"failed naming no line, Syncs before and after data", []int64{0, 1}, false, false, 0, 1},
		{"completed", []int64{1, 1}, true, false, 0, 0},
		{"canceled", []int64{1}, false, true, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var q pendingQueue
			q.push(&pending{kind: pendExecute})
			q.beginCopyIn()
			for _, n := range c.lines {
				if n > 0 {
					q.copyInput(n)
				}
				if q.pushSync() {
					t.Fatal("a Sync sent as COPY input was queued, want it deferred")
				}
			}
			if got := q.copyInEnded(c.ok, c.canceled, c.failLine); got != c.release {
				t.Errorf("released %d Syncs, want %d", got, c.release)
			}
			if q.copyLines != 0 {
				t.Errorf("%d line ends left after the COPY's end, want none", q.copyLines)
			}
			if !q.pushSync() {
				t.Error("a Sync after the COPY was deferred, want it queued")
			}
		})
	}
}
