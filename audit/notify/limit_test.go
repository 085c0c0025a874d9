package notify

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/internal/clock"
)

// memSink records what it is given.
type memSink struct {
	mu  sync.Mutex
	got []Alert
}

func (s *memSink) Name() string { return "mem" }
func (s *memSink) Deliver(_ context.Context, a Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, a)
	return nil
}

func (s *memSink) take() []Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.got
	s.got = nil
	return got
}

func newLimitTest(t *testing.T, cfg Config) (*Notifier, *memSink, *clock.Virtual) {
	t.Helper()
	db := openDB(t, filepath.Join(t.TempDir(), "n.db"))
	t.Cleanup(func() { db.Close() })
	clk := clock.NewVirtual(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	sink := &memSink{}
	cfg.Sinks = []Sink{sink}
	cfg.Now = clk.Now
	n := newTestNotifier(t, db, cfg)
	return n, sink, clk
}

func notify(t *testing.T, n *Notifier, a Alert) {
	t.Helper()
	if err := n.Notify(a); err != nil {
		t.Fatal(err)
	}
}

// pending returns what is queued in the outbox for the only sink, by
// delivering it.
func deliverAll(t *testing.T, n *Notifier, s *memSink) []Alert {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx2, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { n.Run(ctx2); close(done) }()
	err := n.Flush(ctx)
	stop()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	return s.take()
}

func TestDedupe(t *testing.T) {
	n, sink, clock := newLimitTest(t, Config{RatePerEmployee: -1})
	base := testAlert("")
	for i := range 5 {
		a := base
		a.ID = fmt.Sprintf("d%d", i)
		a.Observed = int64(1200 + i)
		a.AuditSeqs = []uint64{uint64(100 + i)}
		notify(t, n, a)
		clock.Advance(10 * time.Second)
	}
	// Different action or rule or employee: not duplicates.
	other := base
	other.ID, other.Action = "other-action", "alert"
	notify(t, n, other)
	other = base
	other.ID, other.Employee = "other-employee", "bob"
	notify(t, n, other)

	got := deliverAll(t, n, sink)
	if ids := alertIDs(got); ids != "d0,other-action,other-employee" {
		t.Fatalf("delivered %s", ids)
	}
	if st := n.Stats(); st.Deduplicated != 4 {
		t.Errorf("deduplicated = %d, want 4", st.Deduplicated)
	}

	// The window (1 minute after d0) ends: the next Notify sends the summary
	// first, and a new alert with the same key is sent again.
	clock.Advance(15 * time.Second)
	a := base
	a.ID = "d-next"
	notify(t, n, a)
	got = deliverAll(t, n, sink)
	if len(got) != 2 || got[1].ID != "d-next" {
		t.Fatalf("delivered %s, want summary,d-next", alertIDs(got))
	}
	sum := got[0]
	if !strings.HasPrefix(sum.Reason, "and 4 more within 1m0s") || !strings.Contains(sum.Reason, base.Reason) {
		t.Errorf("summary reason %q", sum.Reason)
	}
	if sum.Observed != 1204 || sum.Action != "block" || sum.Employee != "alice" || sum.Rule != base.Rule {
		t.Errorf("summary %+v", sum)
	}
	if fmt.Sprint(sum.AuditSeqs) != "[101 102 103 104]" {
		t.Errorf("summary seqs %v", sum.AuditSeqs)
	}
	if sum.ID == "" || sum.ID == "d4" {
		t.Errorf("summary ID %q", sum.ID)
	}
}

func TestRunSendsSummaryWhenWindowEnds(t *testing.T) {
	n, sink, clock := newLimitTest(t, Config{})
	n.sweepEvery = 5 * time.Millisecond
	notify(t, n, testAlert("f0"))
	notify(t, n, testAlert("f1"))
	run(t, n)
	waitFor(t, "first alert", func() bool { return n.Stats().Sinks["mem"].Delivered == 1 })
	clock.Advance(time.Minute) // no further Notify: Run's sweep sends the summary
	waitFor(t, "summary", func() bool { return n.Stats().Sinks["mem"].Delivered == 2 })
	got := sink.take()
	if len(got) != 2 || got[0].ID != "f0" || !strings.HasPrefix(got[1].Reason, "and 1 more within 1m0s") {
		t.Fatalf("delivered %+v", got)
	}
}

func TestRateLimit(t *testing.T) {
	n, sink, clock := newLimitTest(t, Config{RatePerEmployee: 3})
	for i := range 10 {
		a := testAlert(fmt.Sprintf("r%d", i))
		a.Rule = fmt.Sprintf("rule%d", i) // distinct: not deduplicated
		notify(t, n, a)
		clock.Advance(time.Second)
	}
	b := testAlert("bob0")
	b.Employee = "bob"
	notify(t, n, b)

	got := deliverAll(t, n, sink)
	if len(got) != 5 {
		t.Fatalf("delivered %s, want r0,r1,r2,notice,bob0", alertIDs(got))
	}
	if ids := alertIDs(got[:3]); ids != "r0,r1,r2" {
		t.Errorf("delivered %s", ids)
	}
	notice := got[3]
	if notice.Action != ActionRateLimited || notice.Employee != "alice" || !strings.Contains(notice.Reason, "more than 3 notifications") {
		t.Errorf("notice %+v", notice)
	}
	if got[4].ID != "bob0" {
		t.Errorf("bob's alert: %s", got[4].ID)
	}
	if st := n.Stats(); st.RateLimited != 7 {
		t.Errorf("rate limited = %d, want 7", st.RateLimited)
	}

	// After the minute, alice's dropped count is summarized and her alerts
	// flow again.
	clock.Advance(time.Minute)
	a := testAlert("r-later")
	a.Rule = "later"
	notify(t, n, a)
	got = deliverAll(t, n, sink)
	if len(got) != 2 || got[1].ID != "r-later" {
		t.Fatalf("delivered %s", alertIDs(got))
	}
	if sum := got[0]; sum.Action != ActionRateLimited || sum.Observed != 7 || !strings.HasPrefix(sum.Reason, "and 7 more notifications for alice") {
		t.Errorf("summary %+v", sum)
	}
}

func TestLimitsDisabled(t *testing.T) {
	n, sink, _ := newLimitTest(t, Config{DedupeWindow: -1, RatePerEmployee: -1})
	for i := range 30 {
		notify(t, n, testAlert(fmt.Sprintf("x%d", i)))
	}
	if got := deliverAll(t, n, sink); len(got) != 30 {
		t.Errorf("delivered %d, want 30", len(got))
	}
}

func alertIDs(as []Alert) string {
	var ids []string
	for _, a := range as {
		ids = append(ids, a.ID)
	}
	return strings.Join(ids, ",")
}

// TestHoldsAreNotDeduplicated: every hold waits for its own decision, so
// the alert of each, which offers to decide it, is sent.
func TestHoldsAreNotDeduplicated(t *testing.T) {
	n, sink, clock := newLimitTest(t, Config{RatePerEmployee: -1})
	for i := range 3 {
		a := testAlert(fmt.Sprintf("h%d", i))
		a.Action, a.HoldID, a.HoldDeadline = "hold", fmt.Sprintf("s1-%d-%d", i, i), clock.Now().Add(time.Minute)
		notify(t, n, a)
		clock.Advance(5 * time.Second)
	}
	if got := deliverAll(t, n, sink); alertIDs(got) != "h0,h1,h2" {
		t.Errorf("delivered %s, want every hold's alert", alertIDs(got))
	}
	if st := n.Stats(); st.Deduplicated != 0 {
		t.Errorf("deduplicated = %d", st.Deduplicated)
	}
}
