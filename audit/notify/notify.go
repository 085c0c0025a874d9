package notify

import (
	"cmp"
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

	"github.com/jackc/pgx/v5/pgxpool"
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
	// HoldID names the hold of a held statement (Action "hold"), which
	// security approves or denies until HoldDeadline; empty otherwise.
	HoldID       string    `json:"hold_id,omitempty"`
	HoldDeadline time.Time `json:"hold_deadline,omitzero"`
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

// Config configures a Notifier. Exactly one of DB and Pool holds the outbox.
type Config struct {
	// DB holds the outbox of a single process (bucket "notify_outbox").
	// Leave DB.NoSync false: the outbox is only as durable as its fsync.
	DB *bbolt.DB
	// Pool holds an outbox that several pgwarden instances share (tables
	// pgwarden_outbox and pgwarden_leases, created if missing). Every
	// instance must configure the same sinks under the same names.
	Pool *pgxpool.Pool
	// Instance names this instance among those sharing Pool; required with
	// Pool. The lease rows name their holder "Instance/<random suffix>",
	// the suffix telling apart two Notifiers, or two runs, of one instance.
	Instance string
	// Lease is how long a sink's queue stays with the instance delivering
	// it after that instance last renewed its lease (default 10s, at least
	// 100ms): an instance that dies is replaced after at most Lease. The
	// holder renews every PollInterval while idle and every Lease/3 during a
	// delivery. PollInterval is how often an instance looks for alerts that
	// other instances enqueued and for a lease to take (default 1s, at most
	// Lease/3). DBTimeout bounds each outbox statement (default 5s). These
	// three apply only with Pool.
	Lease, PollInterval, DBTimeout time.Duration

	Sinks []Sink
	// DedupeWindow: alerts with the same (Employee, Rule, Action), but
	// those of holds (HoldID set), within
	// DedupeWindow after one was accepted are counted, not sent again; when
	// the window ends a summary ("and N more within 1m0s; the latest: ...") is sent.
	// Default 1 minute; negative disables deduplication. The window is kept
	// per Notifier, also when instances share Pool.
	DedupeWindow time.Duration
	// RatePerEmployee: at most this many notifications per employee per
	// minute are enqueued (default 20; negative disables the limit). Beyond
	// that they are dropped from delivery but counted, and one "rate
	// limited" notice is sent, followed by a count when the minute ends.
	// The limit is per Notifier: N instances sharing Pool together enqueue
	// up to N times as many.
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
//
// With a shared outbox (Config.Pool), Pending is the depth of the shared
// queue, refreshed every PollInterval while Run runs; the other counters
// count this Notifier's own deliveries.
type SinkStats struct {
	Pending   int    // outbox depth: alerts not yet acknowledged by the sink
	Delivered uint64 // alerts acknowledged
	Failed    uint64 // failed delivery attempts
	Dropped   uint64 // alerts given up on: permanent error or MaxAttempts reached
}

// Notifier accepts alerts into a durable outbox and delivers them to its
// sinks. Its methods are safe for concurrent use.
type Notifier struct {
	store       outbox
	shared      bool          // store is shared with other Notifiers (Config.Pool)
	lease       time.Duration // with shared: the sink lease
	poll        time.Duration // with shared: how often an idle worker looks again
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
// whose entries Run delivers first. With Config.Pool it creates the outbox
// tables if they are missing, so it fails when the database is unreachable.
func New(cfg Config) (*Notifier, error) {
	if (cfg.DB == nil) == (cfg.Pool == nil) {
		return nil, errors.New("notify: exactly one of Config.DB and Config.Pool is required")
	}
	n := &Notifier{
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
	if cfg.DB != nil {
		n.store = boltOutbox{cfg.DB}
		if cfg.DB.NoSync {
			n.log.Warn("notify_outbox_nosync", "detail", "bbolt DB has NoSync set; the outbox is not durable across machine crashes")
		}
	} else {
		if cfg.Instance == "" {
			return nil, errors.New("notify: Config.Instance is required with Config.Pool")
		}
		if cfg.Lease < 0 || (cfg.Lease > 0 && cfg.Lease < 100*time.Millisecond) {
			return nil, fmt.Errorf("notify: Config.Lease %v is shorter than 100ms", cfg.Lease)
		}
		n.shared = true
		n.lease = cmp.Or(cfg.Lease, 10*time.Second)
		n.poll = min(cmp.Or(max(cfg.PollInterval, 0), time.Second), n.lease/3)
		o, err := newPGOutbox(cfg.Pool, cfg.Instance+"/"+newID()[:12], n.lease, cmp.Or(max(cfg.DBTimeout, 0), 5*time.Second))
		if err != nil {
			return nil, err
		}
		n.store = o
	}
	pending, orphans, err := n.loadDepths(context.Background())
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
// in the outbox once per sink in one transaction (fsync'd by bbolt, or
// committed by PostgreSQL), and returns. It never waits for delivery. It
// returns an error only if the outbox cannot be written, in which case the
// alert is not accepted; with Config.Pool an error after the statement was
// sent (a timeout, a lost connection) may hide a commit, and an alert the
// caller then notifies again may be delivered twice.
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
//
// With a shared outbox (Config.Pool) a worker delivers a sink's queue only
// while it holds the sink's lease, and gives the lease up when Run returns;
// the workers of the other instances look for the lease and for new
// entries every PollInterval.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("notify: Run is already running")
	}
	defer n.running.Store(false)
	var wg sync.WaitGroup
	for i := range n.sinks {
		wg.Go(func() { n.worker(ctx, i) })
	}
	if n.shared {
		wg.Go(func() { n.watchDepths(ctx) })
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
// ctx ends. It needs Run to be running to make progress; with a shared
// outbox, Run on any instance sharing it will do, and Flush waits for the
// alerts every instance enqueued. The summaries of dedupe and rate-limit
// windows still open are not sent: they go out when the window ends (checked
// by Run every second and by Notify).
func (n *Notifier) Flush(ctx context.Context) error {
	var dbErr error
	for {
		n.mu.Lock()
		pending := 0
		for _, s := range n.sinkSt {
			pending += s.Pending
		}
		ch := n.changed
		n.mu.Unlock()
		var poll *time.Timer
		if n.shared {
			// Other instances change the queues too: count them.
			if p, err := n.refreshDepths(ctx); err != nil {
				dbErr = err
			} else {
				pending, dbErr = p, nil
			}
			poll = time.NewTimer(n.poll)
		}
		if pending == 0 && dbErr == nil {
			return nil
		}
		err := n.flushWait(ctx, ch, poll)
		if err != nil && dbErr != nil {
			return fmt.Errorf("notify: flush: %w (outbox: %w)", err, dbErr)
		}
		if err != nil {
			return fmt.Errorf("notify: flush: %d alerts pending: %w", pending, err)
		}
	}
}

// flushWait waits for ctx, a change of the counts, or poll (which may be nil).
func (n *Notifier) flushWait(ctx context.Context, changed <-chan struct{}, poll *time.Timer) error {
	var tick <-chan time.Time
	if poll != nil {
		defer poll.Stop()
		tick = poll.C
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-tick:
	}
	return nil
}

// watchDepths keeps the pending counts of a shared outbox current.
func (n *Notifier) watchDepths(ctx context.Context) {
	t := time.NewTicker(n.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := n.refreshDepths(ctx); err != nil && ctx.Err() == nil {
				n.log.Debug("notify_outbox_depth_failed", "error", err)
			}
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
	// The outbox writes that record an outcome outlive ctx: a delivered alert
	// left in the queue would be delivered again.
	bg := context.WithoutCancel(ctx)
	defer func() {
		if err := n.store.release(bg, name); err != nil {
			log.Warn("notify_lease_release_failed", "error", err,
				"consequence", "another instance takes the sink's queue over when the lease expires")
		}
	}()
	dbFailures := 0
	for ctx.Err() == nil {
		held, err := n.claim(ctx, i)
		var e entry
		ok := false
		if err == nil && held {
			e, ok, err = n.oldest(ctx, i)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			dbFailures++
			log.Error("notify_outbox_read_failed", "error", err)
			n.sleepOutbox(ctx, dbFailures)
			continue
		}
		dbFailures = 0
		if !ok {
			n.idle(ctx, i)
			continue
		}
		err = n.deliver(ctx, i, e)
		if err == nil {
			if err := n.remove(bg, i, e.key, func(s *SinkStats) { s.Delivered++ }); err != nil {
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
			n.drop(ctx, i, e.key, log)
		case n.maxAttempts > 0 && e.Attempts >= n.maxAttempts:
			log.Error("notify_alert_dropped", append(attrs, "why", "max attempts reached")...)
			n.drop(ctx, i, e.key, log)
		default:
			log.Warn("notify_delivery_failed", attrs...)
			n.mu.Lock()
			n.sinkSt[i].Failed++
			n.mu.Unlock()
			if err := n.store.setAttempts(bg, name, e.key, e); err != nil {
				log.Error("notify_outbox_update_failed", "alert_id", e.Alert.ID, "error", err)
			}
			n.sleep(ctx, e.Attempts)
		}
	}
}

// idle waits for a local enqueue or, with a shared outbox, PollInterval.
func (n *Notifier) idle(ctx context.Context, i int) {
	var poll <-chan time.Time
	if n.shared {
		t := time.NewTimer(n.poll)
		defer t.Stop()
		poll = t.C
	}
	select {
	case <-ctx.Done():
	case <-n.wake[i]:
	case <-poll:
	}
}

func (n *Notifier) drop(ctx context.Context, i int, key []byte, log *slog.Logger) {
	err := n.remove(context.WithoutCancel(ctx), i, key, func(s *SinkStats) { s.Failed++; s.Dropped++ })
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
	n.sleepFor(ctx, n.backoff(attempts))
}

// sleepOutbox waits after failures to read the outbox. A shared outbox is
// tried again at least once per lease, so that an instance resumes soon
// after the database returns.
func (n *Notifier) sleepOutbox(ctx context.Context, failures int) {
	d := n.backoff(failures)
	if n.shared {
		d = min(d, n.lease)
	}
	n.sleepFor(ctx, d)
}

func (n *Notifier) sleepFor(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
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
