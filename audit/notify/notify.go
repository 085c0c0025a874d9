package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// Alert is one decision security must hear about.
type Alert struct {
	// ID is unique and stable across retries (delivery is at-least-once;
	// receivers dedupe on it). Notify fills a random ID if it is empty.
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Action is "alert", "block", "kill", "quarantine", or "would block" etc.
	// in shadow mode. Notices made by the Notifier itself use
	// ActionRateLimited.
	Action   string `json:"action"`
	Shadow   bool   `json:"shadow"`
	Employee string `json:"employee"`
	Role     string `json:"role"` // database role
	Rule     string `json:"rule"` // rule name, or "" for norms
	// Reason is one human sentence: "alice received 1,200 emails in one
	// statement; the limit is 1,000".
	Reason      string   `json:"reason"`
	Observed    int64    `json:"observed"`
	Limit       int64    `json:"limit"`
	Measure     string   `json:"measure"` // e.g. "pii_values.email", "pii_rows"
	Scope       string   `json:"scope"`   // "statement", "session", "10m", ...
	SessionID   string   `json:"session_id"`
	ClientAddr  string   `json:"client_addr"`
	Application string   `json:"application"`
	Database    string   `json:"database"`
	Statement   string   `json:"statement"`  // normalized SQL (literals redacted), may be ""
	AuditSeqs   []uint64 `json:"audit_seqs"` // audit event sequence numbers this alert links to
	Severity    string   `json:"severity"`   // "low", "medium", "high", "critical"
}

// ActionRateLimited is the Action of the notices the Notifier sends when an
// employee's notifications are rate limited.
const ActionRateLimited = "rate limited"

// Sink delivers one alert somewhere. Deliver must be safe to retry: the
// Notifier calls it again for the same alert after an error, and after a
// restart for an alert whose acknowledgement it did not record.
//
// A Deliver error wrapped with Permanent is not retried: the alert is dropped
// for that sink and logged at error level. Any other error is retried with
// backoff. Name identifies the sink's queue in the outbox, so it must be
// unique among a Notifier's sinks and stable across restarts.
type Sink interface {
	Name() string
	Deliver(ctx context.Context, a Alert) error
}

// Config configures a Notifier.
type Config struct {
	// DB holds the persistent outbox (bucket "notify_outbox"); required.
	// Leave DB.NoSync false: the outbox is only as durable as its fsync.
	DB    *bbolt.DB
	Sinks []Sink
	// DedupeWindow: alerts with the same (Employee, Rule, Action) within
	// DedupeWindow after one was accepted are counted, not sent again; when
	// the window ends a summary ("and N more within 1m0s; the latest: ...") is sent.
	// Default 1 minute; negative disables deduplication.
	DedupeWindow time.Duration
	// RatePerEmployee: at most this many notifications per employee per
	// minute are enqueued (default 20; negative disables the limit). Beyond
	// that they are dropped from delivery but counted, and one "rate
	// limited" notice is sent, followed by a count when the minute ends.
	RatePerEmployee int
	// MaxAttempts per sink and alert; 0 (default) retries forever.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the exponential backoff (with jitter)
	// between attempts; defaults 500ms and 5m.
	MinBackoff, MaxBackoff time.Duration
	Now                    func() time.Time
	Logger                 *slog.Logger
}

// Stats are counters for metrics.
type Stats struct {
	Accepted     uint64 // alerts written to the outbox (including the Notifier's own summaries and notices)
	Deduplicated uint64 // alerts counted but not sent because of the dedupe window
	RateLimited  uint64 // alerts dropped by the per-employee rate limit
	Sinks        map[string]SinkStats
}

// SinkStats are one sink's counters.
type SinkStats struct {
	Pending   int    // outbox depth: alerts not yet acknowledged by the sink
	Delivered uint64 // alerts acknowledged
	Failed    uint64 // failed delivery attempts
	Dropped   uint64 // alerts given up on: permanent error or MaxAttempts reached
}

// Notifier accepts alerts into a durable outbox and delivers them to its
// sinks. Its methods are safe for concurrent use.
type Notifier struct {
	db          *bbolt.DB
	sinks       []Sink
	window      time.Duration
	rate        int
	maxAttempts int
	minBackoff  time.Duration
	maxBackoff  time.Duration
	now         func() time.Time
	log         *slog.Logger

	sweepEvery time.Duration // how often Run looks for ended limiter windows

	wake    []chan struct{} // one per sink, capacity 1
	running atomic.Bool

	// acceptMu serializes Notify and the limiter sweeps with their outbox
	// writes, so limiter state and outbox agree.
	acceptMu sync.Mutex
	lim      limiter

	mu      sync.Mutex // guards the fields below
	stats   Stats
	sinkSt  []SinkStats
	changed chan struct{} // closed and replaced whenever the outbox shrinks or grows
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as a permanent delivery failure: the Notifier drops the
// alert for that sink instead of retrying it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err (or an error it wraps) was marked by
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// New returns a Notifier. It reads the outbox left by a previous process,
// whose entries Run delivers first.
func New(cfg Config) (*Notifier, error) {
	if cfg.DB == nil {
		return nil, errors.New("notify: Config.DB is required")
	}
	n := &Notifier{
		db:          cfg.DB,
		sinks:       append([]Sink(nil), cfg.Sinks...),
		window:      cfg.DedupeWindow,
		rate:        cfg.RatePerEmployee,
		maxAttempts: cfg.MaxAttempts,
		minBackoff:  cfg.MinBackoff,
		maxBackoff:  cfg.MaxBackoff,
		now:         cfg.Now,
		log:         cfg.Logger,
		changed:     make(chan struct{}),
		sweepEvery:  time.Second,
	}
	if n.window == 0 {
		n.window = time.Minute
	}
	if n.rate == 0 {
		n.rate = 20
	}
	if n.maxAttempts < 0 {
		n.maxAttempts = 0
	}
	if n.minBackoff <= 0 {
		n.minBackoff = 500 * time.Millisecond
	}
	if n.maxBackoff <= 0 {
		n.maxBackoff = 5 * time.Minute
	}
	if n.maxBackoff < n.minBackoff {
		n.maxBackoff = n.minBackoff
	}
	if n.now == nil {
		n.now = time.Now
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	seen := make(map[string]bool)
	for i, s := range n.sinks {
		if s == nil {
			return nil, fmt.Errorf("notify: sink %d is nil", i)
		}
		name := s.Name()
		if name == "" {
			return nil, fmt.Errorf("notify: sink %d has an empty name", i)
		}
		if seen[name] {
			return nil, fmt.Errorf("notify: duplicate sink name %q (sink names must be unique)", name)
		}
		seen[name] = true
		n.wake = append(n.wake, make(chan struct{}, 1))
	}
	n.lim = newLimiter(n.window, n.rate)
	n.sinkSt = make([]SinkStats, len(n.sinks))
	if n.db.NoSync {
		n.log.Warn("notify_outbox_nosync", "detail", "bbolt DB has NoSync set; the outbox is not durable across machine crashes")
	}
	pending, orphans, err := n.loadDepths()
	if err != nil {
		return nil, err
	}
	for i, p := range pending {
		n.sinkSt[i].Pending = p
	}
	for name, c := range orphans {
		n.log.Warn("notify_outbox_unknown_sink", "detail", "alerts for a sink that is not configured stay in the outbox",
			"sink", name, "pending", c)
	}
	return n, nil
}

// Notify accepts an alert: deduplicates and rate-limits it, then persists it
// in the outbox once per sink in one fsync'd bbolt transaction, and returns.
// It never waits for delivery. It returns an error only if the outbox cannot
// be written, in which case the alert is not accepted.
func (n *Notifier) Notify(a Alert) error {
	now := n.now()
	if a.ID == "" {
		a.ID = newID()
	}
	if a.Time.IsZero() {
		a.Time = now
	}

	n.acceptMu.Lock()
	defer n.acceptMu.Unlock()
	undo := n.lim.snapshot()
	out := n.lim.sweep(now)
	send, d := n.lim.admit(a, now)
	out = append(out, send...)
	if err := n.enqueue(out); err != nil {
		n.lim.restore(undo)
		return err
	}
	if d != admitted {
		n.mu.Lock()
		if d == deduped {
			n.stats.Deduplicated++
		} else {
			n.stats.RateLimited++
		}
		n.mu.Unlock()
	}
	return nil
}

// sweep enqueues the summaries of dedupe and rate windows that have ended.
func (n *Notifier) sweep() {
	n.acceptMu.Lock()
	defer n.acceptMu.Unlock()
	undo := n.lim.snapshot()
	out := n.lim.sweep(n.now())
	if err := n.enqueue(out); err != nil {
		n.lim.restore(undo)
		n.log.Error("notify_summary_failed", "error", err)
	}
}

// Run delivers from the outbox until ctx ends, then returns nil once every
// delivery in progress has returned. Each sink has its own goroutine, so a
// down sink does not hold up the others; each sink gets its alerts oldest
// first, and an alert is deleted from a sink's queue only after the sink
// acknowledged it (or failed permanently, or MaxAttempts was reached).
// Entries left by a previous process are delivered first. Run may be called
// again after it returned, but not concurrently.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("notify: Run is already running")
	}
	defer n.running.Store(false)
	var wg sync.WaitGroup
	for i := range n.sinks {
		wg.Go(func() { n.worker(ctx, i) })
	}
	wg.Go(func() {
		t := time.NewTicker(n.sweepEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n.sweep()
			}
		}
	})
	wg.Wait()
	return nil
}

// Flush waits until every configured sink's queue in the outbox is empty or
// ctx ends. It needs Run to be running to make progress. The summaries of
// dedupe and rate-limit windows still open are not sent: they go out when
// the window ends (checked by Run every second and by Notify).
func (n *Notifier) Flush(ctx context.Context) error {
	for {
		n.mu.Lock()
		pending := 0
		for _, s := range n.sinkSt {
			pending += s.Pending
		}
		ch := n.changed
		n.mu.Unlock()
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("notify: flush: %d alerts pending: %w", pending, ctx.Err())
		case <-ch:
		}
	}
}

// Stats returns the current counters.
func (n *Notifier) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.stats
	st.Sinks = make(map[string]SinkStats, len(n.sinks))
	for i, s := range n.sinks {
		st.Sinks[s.Name()] = n.sinkSt[i]
	}
	return st
}

// worker delivers sink i's queue until ctx ends.
func (n *Notifier) worker(ctx context.Context, i int) {
	sink := n.sinks[i]
	name := sink.Name()
	log := n.log.With("sink", name)
	dbFailures := 0
	for ctx.Err() == nil {
		key, e, ok, err := n.oldest(i)
		if err != nil {
			dbFailures++
			log.Error("notify_outbox_read_failed", "error", err)
			n.sleep(ctx, dbFailures)
			continue
		}
		dbFailures = 0
		if !ok {
			select {
			case <-ctx.Done():
			case <-n.wake[i]:
			}
			continue
		}
		err = sink.Deliver(ctx, e.Alert)
		if err == nil {
			if err := n.remove(i, key, func(s *SinkStats) { s.Delivered++ }); err != nil {
				log.Error("notify_outbox_delete_failed", "alert_id", e.Alert.ID, "error", err)
				n.sleep(ctx, 1)
			}
			continue
		}
		if ctx.Err() != nil {
			return // shutting down: the interrupted attempt does not count
		}
		e.Attempts++
		attrs := []any{"alert_id", e.Alert.ID, "attempt", e.Attempts, "error", err}
		switch {
		case IsPermanent(err):
			log.Error("notify_alert_dropped", append(attrs, "why", "permanent failure")...)
			n.drop(ctx, i, key, log)
		case n.maxAttempts > 0 && e.Attempts >= n.maxAttempts:
			log.Error("notify_alert_dropped", append(attrs, "why", "max attempts reached")...)
			n.drop(ctx, i, key, log)
		default:
			log.Warn("notify_delivery_failed", attrs...)
			n.mu.Lock()
			n.sinkSt[i].Failed++
			n.mu.Unlock()
			if err := n.update(i, key, e); err != nil {
				log.Error("notify_outbox_update_failed", "alert_id", e.Alert.ID, "error", err)
			}
			n.sleep(ctx, e.Attempts)
		}
	}
}

func (n *Notifier) drop(ctx context.Context, i int, key []byte, log *slog.Logger) {
	err := n.remove(i, key, func(s *SinkStats) { s.Failed++; s.Dropped++ })
	if err != nil {
		log.Error("notify_outbox_delete_failed", "error", err)
		n.sleep(ctx, 1)
	}
}

// backoff returns the delay after the given number of failed attempts:
// MinBackoff doubled per attempt, capped at MaxBackoff, with "equal jitter"
// (uniform in [d/2, d]).
func (n *Notifier) backoff(attempts int) time.Duration {
	d := n.minBackoff
	for i := 1; i < attempts && d < n.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, n.maxBackoff)
	half := d / 2
	return half + mrand.N(d-half+1)
}

func (n *Notifier) sleep(ctx context.Context, attempts int) {
	t := time.NewTimer(n.backoff(attempts))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// changedLocked wakes Flush callers; n.mu must be held.
func (n *Notifier) changedLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b[:])
}
