package notify

import (
	"cmp"
	"context"
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

// Record is one line of the audit trail as a Stream carries it: its seq
// and its bytes (JSON, without the newline), exactly as the trail holds
// them, so that a receiver can check the hash chain.
type Record struct {
	Seq  uint64
	Line []byte
}

// Trail is the authoritative copy of what a Stream carries: the audit log.
// The Stream reads from it what it does not hold itself (what was written
// before it started, and what its queues could not take).
type Trail interface {
	// LastSeq is the seq of the last line that may be streamed: written
	// and, where the trail says so, on stable storage. Lines offered past
	// it wait.
	LastSeq() uint64
	// ReadFrom returns up to max records in seq order from seq from on (or
	// from the first one after it that the trail still has).
	ReadFrom(from uint64, max int) ([]Record, error)
}

// BatchSink delivers records to a SIEM. DeliverBatch gets records in seq
// order and returns nil once the receiver acknowledged them all. An error
// wrapped with Permanent says the receiver refuses the batch for good: the
// Stream then sends its records one at a time, and drops a single record
// refused so (logged and counted). A *RefusedError acknowledges the batch
// except the records it names, which are dropped. Any other error is
// retried with backoff.
type BatchSink interface {
	Name() string
	DeliverBatch(ctx context.Context, recs []Record) error
}

// RefusedError is returned by a BatchSink whose receiver took a batch but
// refused some of its records for good (Elasticsearch's per-item errors).
type RefusedError struct {
	Seqs   []uint64
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%d records refused: %s", len(e.Seqs), e.Reason)
}

// Defaults of StreamConfig.
const (
	DefaultStreamQueue = 10000
	DefaultStreamBatch = 500
)

// StreamConfig configures a Stream. Exactly one of DB and Pool holds the
// outbox, as for Config.
type StreamConfig struct {
	DB   *bbolt.DB
	Pool *pgxpool.Pool
	// Instance names this instance's queues in a shared Pool (each
	// instance streams its own trail); required with Pool.
	Instance string
	Sinks    []BatchSink
	Trail    Trail
	// Queue bounds each sink's queue in memory, in records (default
	// DefaultStreamQueue). Past half of it the oldest records spill to the
	// outbox; past all of it records are left to be read from the trail.
	Queue int
	// Batch is the most records one delivery carries (default
	// DefaultStreamBatch).
	Batch int
	// MinBackoff and MaxBackoff bound the wait between failed deliveries
	// (defaults 500ms and 30s). DBTimeout bounds each outbox statement with
	// Pool (default 5s).
	MinBackoff, MaxBackoff, DBTimeout time.Duration
	Logger                            *slog.Logger
}

// StreamStats are a Stream's counters, summed over its sinks.
type StreamStats struct {
	Delivered uint64 // records acknowledged by their sink
	Queued    int    // records held for delivery, in memory and in the outbox
	Spilled   uint64 // records moved from memory to the outbox
	Overflow  uint64 // records neither queue could take, read again from the trail
	Dropped   uint64 // records a receiver refused for good
	Failures  uint64 // failed deliveries
	// Lag is how many records of the trail a sink has not acknowledged
	// yet (the largest of the sinks').
	Lag uint64
	// LastError is the last delivery error and its time, empty after none.
	LastError     string
	LastErrorTime time.Time
}

// Stream delivers every line of the audit trail to its sinks, at least
// once and in seq order. The trail's writer hands each line to Offer,
// which never blocks: the line goes into each sink's bounded queue in
// memory. Past half of the bound, the oldest lines spill to the outbox (the
// Notifier's: its bbolt file or its database); past the bound, Offer
// leaves them out, and the sink reads them from the trail when their turn
// comes. Each sink's cursor, the seq of the last line it acknowledged, is
// stored with the outbox once acknowledged, and a restarted Stream goes on
// after it: from the outbox, memory or the trail, whichever holds the next
// seq. A crash between an acknowledgement and the cursor's write sends
// that batch again; receivers dedupe on seq (Elasticsearch by the
// document id).
type Stream struct {
	store  recordStore
	trail  Trail
	queues []*streamQueue
	batch  int
	spill  int // spill above this many records in memory
	limit  int
	minB   time.Duration
	maxB   time.Duration
	log    *slog.Logger

	running atomic.Bool
}

// streamQueue is one sink's queue.
type streamQueue struct {
	sink BatchSink
	name string // in the outbox

	// move serializes taking records from mem with spilling them, so that
	// the outbox always holds older records than mem.
	move sync.Mutex

	// mu is never held while calling the Trail: its writer offers with
	// its own lock held.
	mu        sync.Mutex
	mem       []Record
	outboxed  int // records in the outbox
	cursor    uint64
	stats     StreamStats
	changed   chan struct{} // closed and replaced when the cursor moves
	wake      chan struct{} // cap 1: records were offered
	spillWake chan struct{} // cap 1: mem passed the spill mark
}

// NewStream returns a Stream; Run delivers.
func NewStream(cfg StreamConfig) (*Stream, error) {
	if (cfg.DB == nil) == (cfg.Pool == nil) {
		return nil, errors.New("notify: stream: exactly one of StreamConfig.DB and StreamConfig.Pool is required")
	}
	if cfg.Trail == nil {
		return nil, errors.New("notify: stream: StreamConfig.Trail is required")
	}
	s := &Stream{
		trail: cfg.Trail,
		batch: cmp.Or(max(cfg.Batch, 0), DefaultStreamBatch),
		limit: cmp.Or(max(cfg.Queue, 0), DefaultStreamQueue),
		minB:  cmp.Or(max(cfg.MinBackoff, 0), 500*time.Millisecond),
		maxB:  cmp.Or(max(cfg.MaxBackoff, 0), 30*time.Second),
		log:   cmp.Or(cfg.Logger, slog.Default()),
	}
	s.spill = max(s.limit/2, 1)
	s.maxB = max(s.maxB, s.minB)
	suffix := ""
	if cfg.DB != nil {
		s.store = boltOutbox{cfg.DB}
	} else {
		if cfg.Instance == "" {
			return nil, errors.New("notify: stream: StreamConfig.Instance is required with StreamConfig.Pool")
		}
		o := &pgOutbox{pool: cfg.Pool, timeout: cmp.Or(max(cfg.DBTimeout, 0), 5*time.Second)}
		r, err := newPGRecords(context.Background(), o)
		if err != nil {
			return nil, err
		}
		s.store, suffix = r, "@"+cfg.Instance
	}
	seen := map[string]bool{}
	for i, sink := range cfg.Sinks {
		if sink == nil || sink.Name() == "" {
			return nil, fmt.Errorf("notify: stream: sink %d is nil or has no name", i)
		}
		if seen[sink.Name()] {
			return nil, fmt.Errorf("notify: stream: duplicate sink name %q", sink.Name())
		}
		seen[sink.Name()] = true
		s.queues = append(s.queues, &streamQueue{sink: sink, name: sink.Name() + suffix,
			changed: make(chan struct{}), wake: make(chan struct{}, 1), spillWake: make(chan struct{}, 1)})
	}
	return s, nil
}

// Offer queues a line of the trail for every sink. It never blocks on I/O;
// lines must be offered in seq order (audit.Config.Tap does).
func (s *Stream) Offer(seq uint64, line []byte) {
	r := Record{Seq: seq, Line: line}
	for _, q := range s.queues {
		q.mu.Lock()
		switch {
		case seq <= q.cursor:
		case len(q.mem) >= s.limit:
			q.stats.Overflow++
		default:
			q.mem = append(q.mem, r)
			if len(q.mem) > s.spill {
				signal(q.spillWake)
			}
		}
		q.mu.Unlock()
		signal(q.wake)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends: per sink one goroutine delivers and one
// spills. Run may be called again after it returned, but not concurrently.
func (s *Stream) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("notify: stream: Run is already running")
	}
	defer s.running.Store(false)
	var wg sync.WaitGroup
	for _, q := range s.queues {
		wg.Go(func() { s.deliverLoop(ctx, q) })
		wg.Go(func() { s.spillLoop(ctx, q) })
	}
	wg.Wait()
	return nil
}

// Flush waits until every sink acknowledged the trail up to its last line
// at the time of the call, or ctx ends.
func (s *Stream) Flush(ctx context.Context) error {
	target := s.trail.LastSeq()
	for _, q := range s.queues {
		for {
			q.mu.Lock()
			done, ch := q.cursor >= target, q.changed
			q.mu.Unlock()
			if done {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("notify: stream %s: flush: %w", q.sink.Name(), ctx.Err())
			case <-ch:
			}
		}
	}
	return nil
}

// Stats returns the counters summed over the sinks.
func (s *Stream) Stats() StreamStats {
	var st StreamStats
	last := s.trail.LastSeq()
	for _, q := range s.queues {
		q.mu.Lock()
		qs := q.stats
		qs.Queued = len(q.mem) + q.outboxed
		if last > q.cursor {
			qs.Lag = last - q.cursor
		}
		q.mu.Unlock()
		st.Delivered += qs.Delivered
		st.Queued += qs.Queued
		st.Spilled += qs.Spilled
		st.Overflow += qs.Overflow
		st.Dropped += qs.Dropped
		st.Failures += qs.Failures
		st.Lag = max(st.Lag, qs.Lag)
		if qs.LastErrorTime.After(st.LastErrorTime) {
			st.LastError, st.LastErrorTime = qs.LastError, qs.LastErrorTime
		}
	}
	return st
}

// deliverLoop delivers q's records from its cursor on until ctx ends.
func (s *Stream) deliverLoop(ctx context.Context, q *streamQueue) {
	log := s.log.With("sink", q.sink.Name())
	for failures := 0; ctx.Err() == nil; {
		err := s.load(ctx, q)
		if err == nil {
			break
		}
		failures++
		log.Error("stream_outbox_read_failed", "error", err)
		s.sleep(ctx, failures)
	}
	failures := 0
	for ctx.Err() == nil {
		q.mu.Lock()
		from := q.cursor + 1
		q.mu.Unlock()
		recs, outboxed, err := s.next(ctx, q, from, log)
		if err != nil {
			failures++
			log.Error("stream_read_failed", "from_seq", from, "error", err)
			s.sleep(ctx, failures)
			continue
		}
		failures = 0
		if len(recs) == 0 {
			q.mu.Lock()
			waiting := len(q.mem) > 0 && q.mem[0].Seq == from
			q.mu.Unlock()
			if waiting {
				// Offered but not durable yet: the fsync is under way.
				s.sleepFor(ctx, 2*time.Millisecond)
			} else {
				s.idle(ctx, q)
			}
			continue
		}
		s.deliver(ctx, q, recs, outboxed, log)
	}
}

// load reads q's cursor and outbox depth, left by the previous process.
func (s *Stream) load(ctx context.Context, q *streamQueue) error {
	cur, ok, err := s.store.cursor(ctx, q.name)
	if err != nil {
		return err
	}
	n, err := s.store.recordDepth(ctx, q.name)
	if err != nil {
		return err
	}
	q.mu.Lock()
	q.cursor, q.outboxed = cur, n
	q.mu.Unlock()
	if !ok {
		s.log.Info("stream_started", "sink", q.sink.Name(), "from_seq", 1, "detail", "no cursor stored: the trail is streamed from its start")
	} else {
		s.log.Info("stream_resumed", "sink", q.sink.Name(), "from_seq", cur+1, "spilled", n)
	}
	return nil
}

// next returns the records that follow from: from the outbox, which holds
// older records than memory, from memory, or else from the trail up to the
// first record either holds. fromOutbox says where they came from.
func (s *Stream) next(ctx context.Context, q *streamQueue, from uint64, log *slog.Logger) (recs []Record, fromOutbox bool, err error) {
	q.move.Lock()
	defer q.move.Unlock()
	var upper uint64 // the first seq a queue holds; 0: none
	q.mu.Lock()
	outboxed := q.outboxed
	q.mu.Unlock()
	if outboxed > 0 {
		recs, err := s.store.firstRecords(ctx, q.name, s.batch)
		if err != nil {
			return nil, false, err
		}
		i := 0
		for i < len(recs) && recs[i].Seq < from {
			i++ // acknowledged already: removed by the next ack
		}
		if i > 0 {
			q.mu.Lock()
			q.outboxed = max(q.outboxed-i, 0)
			q.mu.Unlock()
		}
		recs = recs[i:]
		if len(recs) > 0 && recs[0].Seq == from {
			return contiguous(recs), true, nil
		}
		if len(recs) > 0 {
			upper = recs[0].Seq
		}
	}
	// Read before taking q.mu: the trail's writer holds its own lock
	// while it offers.
	durable := s.trail.LastSeq()
	q.mu.Lock()
	i := 0
	for i < len(q.mem) && q.mem[i].Seq < from {
		i++
	}
	q.mem = q.mem[i:]
	if upper == 0 && len(q.mem) > 0 {
		if q.mem[0].Seq == from {
			n := 0
			for n < len(q.mem) && n < s.batch && q.mem[n].Seq <= durable {
				n++
			}
			recs := contiguous(q.mem[:n])
			q.mem = append(q.mem[:0:0], q.mem[len(recs):]...)
			q.mu.Unlock()
			return recs, false, nil
		}
		upper = q.mem[0].Seq
	}
	q.mu.Unlock()
	held := upper != 0 && upper <= durable+1 // upper is a record a queue holds
	if !held {
		upper = durable + 1
	}
	if from >= upper {
		return nil, false, nil
	}
	recs, err = s.trail.ReadFrom(from, int(min(uint64(s.batch), upper-from)))
	if err != nil {
		return nil, false, err
	}
	n := 0
	for n < len(recs) && recs[n].Seq < upper {
		n++
	}
	recs = recs[:n]
	switch {
	case len(recs) > 0 && recs[0].Seq > from:
		log.Warn("stream_trail_gap", "from_seq", from, "next_seq", recs[0].Seq,
			"detail", "the trail no longer holds these lines; they are not streamed")
	case len(recs) == 0 && held:
		log.Warn("stream_trail_gap", "from_seq", from, "next_seq", upper,
			"detail", "the trail no longer holds these lines; they are not streamed")
		if err := s.store.ack(ctx, q.name, upper-1); err != nil {
			return nil, false, err
		}
		q.mu.Lock()
		q.cursor = upper - 1
		q.mu.Unlock()
		signal(q.wake)
	}
	return recs, false, nil
}

// contiguous is the longest prefix of recs without a gap in seq.
func contiguous(recs []Record) []Record {
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq != recs[i-1].Seq+1 {
			return recs[:i]
		}
	}
	return recs
}

// deliver hands recs to q's sink until it acknowledges them, then moves
// the cursor past them. ctx ending stops it without moving the cursor.
func (s *Stream) deliver(ctx context.Context, q *streamQueue, recs []Record, fromOutbox bool, log *slog.Logger) {
	for attempts := 0; len(recs) > 0 && ctx.Err() == nil; {
		err := q.sink.DeliverBatch(ctx, recs)
		var refused *RefusedError
		switch {
		case err == nil:
			s.ack(ctx, q, recs, fromOutbox, 0, log)
			return
		case errors.As(err, &refused):
			log.Error("stream_records_dropped", "first_seq", recs[0].Seq, "last_seq", recs[len(recs)-1].Seq,
				"refused", len(refused.Seqs), "error", err)
			s.ack(ctx, q, recs, fromOutbox, len(refused.Seqs), log)
			return
		case ctx.Err() != nil:
			return
		}
		s.failed(q, err)
		if IsPermanent(err) {
			if len(recs) > 1 {
				log.Warn("stream_batch_refused", "first_seq", recs[0].Seq, "records", len(recs), "error", err,
					"detail", "sent again one record at a time")
				recs = recs[:1]
				continue
			}
			log.Error("stream_record_dropped", "seq", recs[0].Seq, "error", err)
			s.ack(ctx, q, recs, fromOutbox, 1, log)
			return
		}
		attempts++
		log.Warn("stream_delivery_failed", "first_seq", recs[0].Seq, "records", len(recs), "attempt", attempts, "error", err)
		s.sleep(ctx, attempts)
	}
}

func (s *Stream) failed(q *streamQueue, err error) {
	q.mu.Lock()
	q.stats.Failures++
	q.stats.LastError, q.stats.LastErrorTime = err.Error(), time.Now()
	q.mu.Unlock()
}

// ack records that q's sink has recs, dropped of them refused, retrying
// the outbox until it takes the cursor: the next batch must not start
// before.
func (s *Stream) ack(ctx context.Context, q *streamQueue, recs []Record, fromOutbox bool, dropped int, log *slog.Logger) {
	last := recs[len(recs)-1].Seq
	bg := context.WithoutCancel(ctx)
	for failures := 0; ; {
		err := s.store.ack(bg, q.name, last)
		if err == nil {
			break
		}
		failures++
		log.Error("stream_cursor_not_saved", "seq", last, "error", err)
		if ctx.Err() != nil {
			break // the next start sends the batch again
		}
		s.sleep(ctx, failures)
	}
	q.mu.Lock()
	if fromOutbox {
		q.outboxed = max(q.outboxed-len(recs), 0)
	}
	q.cursor = last
	q.stats.Delivered += uint64(len(recs) - dropped)
	q.stats.Dropped += uint64(dropped)
	close(q.changed)
	q.changed = make(chan struct{})
	q.mu.Unlock()
}

// spillLoop moves q's oldest records from memory to the outbox whenever
// memory holds more than the spill mark.
func (s *Stream) spillLoop(ctx context.Context, q *streamQueue) {
	log := s.log.With("sink", q.sink.Name())
	for failures := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-q.spillWake:
		}
		err := s.spillOnce(ctx, q)
		if err == nil {
			failures = 0
			continue
		}
		if errors.Is(err, errNotDurable) {
			s.sleepFor(ctx, 2*time.Millisecond) // the fsync is under way
			signal(q.spillWake)
			continue
		}
		failures++
		log.Error("stream_spill_failed", "error", err, "detail", "records past the memory bound are read from the trail")
		s.sleep(ctx, failures)
		signal(q.spillWake)
	}
}

// errNotDurable: the records to spill are not on the trail's stable
// storage yet.
var errNotDurable = errors.New("notify: stream: records not durable yet")

func (s *Stream) spillOnce(ctx context.Context, q *streamQueue) error {
	q.move.Lock()
	defer q.move.Unlock()
	durable := s.trail.LastSeq()
	q.mu.Lock()
	n := 0
	for n < len(q.mem) && q.mem[n].Seq <= durable {
		n++
	}
	if len(q.mem) <= s.spill || n == 0 {
		q.mu.Unlock()
		if n == 0 && len(q.mem) > s.spill {
			return errNotDurable
		}
		return nil
	}
	recs := append([]Record(nil), q.mem[:n]...)
	q.mu.Unlock()
	if err := s.store.pushRecords(ctx, q.name, recs); err != nil {
		return err
	}
	q.mu.Lock()
	// Offer only appends, and the move lock keeps next out: the records
	// written are still mem's first.
	q.mem = append(q.mem[:0:0], q.mem[len(recs):]...)
	q.outboxed += len(recs)
	q.stats.Spilled += uint64(len(recs))
	q.mu.Unlock()
	return nil
}

// idle waits for an Offer, or a second (the trail may hold what Offer
// did not see).
func (s *Stream) idle(ctx context.Context, q *streamQueue) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-q.wake:
	case <-t.C:
	}
}

// sleep waits the backoff after failures: MinBackoff doubled per failure
// up to MaxBackoff, with equal jitter.
func (s *Stream) sleep(ctx context.Context, failures int) {
	d := s.minB
	for i := 1; i < failures && d < s.maxB; i++ {
		d *= 2
	}
	d = min(d, s.maxB)
	s.sleepFor(ctx, d/2+mrand.N(d-d/2+1))
}

func (s *Stream) sleepFor(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
