package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of PGSinkConfig.
const (
	DefaultPGTable     = "pgwarden_audit"
	DefaultPGBatchSize = 500
	DefaultPGTimeout   = 5 * time.Second
)

// PGSinkConfig configures a PGSink. Zero fields take the defaults above.
type PGSinkConfig struct {
	// Pool connects to pgwarden's own database; the sink does not close it.
	Pool *pgxpool.Pool
	// Table is the audit table, "name" or "schema.name", created if missing.
	Table string
	// Instance is written in every row's instance column (default the host
	// name). It is not covered by the hash chain.
	Instance string
	// BatchSize is the most events one COPY carries.
	BatchSize int
	// Timeout bounds one batch: acquiring a connection, normalising
	// the data and the COPY.
	// It is what bounds Append's wait when the database is unreachable.
	Timeout time.Duration
	// Now is the clock of event times (default time.Now).
	Now func() time.Time
	// Logger receives the sink's own messages (default slog.Default()).
	Logger *slog.Logger
}

// CheckAndSetDefaults validates c and fills its zero fields.
func (c *PGSinkConfig) CheckAndSetDefaults() error {
	if c.Pool == nil {
		return errors.New("audit: PGSinkConfig.Pool is required")
	}
	if c.BatchSize < 0 || c.Timeout < 0 {
		return errors.New("audit: PGSinkConfig.BatchSize and Timeout must not be negative")
	}
	if c.Table == "" {
		c.Table = DefaultPGTable
	}
	if c.Instance == "" {
		c.Instance, _ = os.Hostname()
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultPGBatchSize
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultPGTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// PGSinkStats counts a PGSink's work since NewPGSink.
type PGSinkStats struct {
	Events   uint64 // events committed
	Batches  uint64 // COPYs committed
	Failures uint64 // batches that failed
}

// PGSink appends events to a table of pgwarden's own database, for a central
// store. Like the file Log it numbers events from 1 without gaps and chains
// them: Prev is the hex SHA-256 of the previous event's canonical line (see
// pgLine), so VerifyPG can check the table as Verify checks files. Data is
// chained as PostgreSQL prints the jsonb (keys sorted, spaces added), and
// Time is truncated to microseconds, so each line can be recomputed from
// its row.
//
// Appends are group-committed: a single flusher takes the queued events, up
// to BatchSize, assigns their Seq and Prev, writes them with one COPY
// (atomic on its own) and, once it commits, releases every Append of the
// batch. The next batch starts as soon as the previous one ends: there is no
// linger, because each guard waits for its own event and a linger would
// only add latency; batches grow with load.
//
// Errors are not sticky, unlike the file Log's: a file with a hole is broken
// forever, but a central database that was unreachable recovers, and the
// chain is continued from the table itself. A failed batch returns its error
// to each of its Appends (the guard fails open or closed) and assigned
// nothing: the next batch re-reads the table's last row first, so it neither
// leaves a gap nor, if a COPY whose reply was lost did commit, duplicates
// a seq. Acknowledged events are never reordered or lost.
//
// One PGSink writes a table at a time: give each pgwarden instance its own.
// The chain has no HMAC checkpoints: whoever can UPDATE the table can rewrite
// the whole chain, so grant pgwarden's role only INSERT and SELECT on it.
type PGSink struct {
	cfg   PGSinkConfig
	table string // sanitized identifier
	done  chan struct{}

	mu     sync.Mutex
	cond   sync.Cond // on mu: the queue grew or the sink closed
	queue  []*pgBatch
	closed bool
	stats  PGSinkStats

	// Owned by the flusher.
	seq    uint64
	prev   [sha256.Size]byte
	resync bool // a batch failed: re-read the tail before the next one
}

// pgBatch is a group of events committed by one COPY.
type pgBatch struct {
	events []Event
	first  uint64 // seq of events[0], set on success
	err    error
	done   chan struct{}
}

// NewPGSink creates cfg.Table and its indexes if missing, reads its last row
// to continue the sequence and the chain, and starts the flusher.
func NewPGSink(ctx context.Context, cfg PGSinkConfig) (*PGSink, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	s := &PGSink{cfg: cfg, table: tableIdent(cfg.Table), done: make(chan struct{})}
	s.cond.L = &s.mu
	if err := createPGTable(ctx, cfg.Pool, cfg.Table); err != nil {
		return nil, err
	}
	seq, prev, err := readPGTail(ctx, cfg.Pool, s.table)
	if err != nil {
		return nil, err
	}
	s.seq, s.prev = seq, prev
	cfg.Logger.Info("audit_pg_sink_opened", "table", cfg.Table, "seq", seq)
	go s.flusher()
	return s, nil
}

// tableIdent quotes "name" or "schema.name".
func tableIdent(table string) string {
	return pgx.Identifier(strings.Split(table, ".")).Sanitize()
}

func createPGTable(ctx context.Context, pool *pgxpool.Pool, table string) error {
	parts := strings.Split(table, ".")
	base := parts[len(parts)-1]
	ident := tableIdent(table)
	sql := `CREATE TABLE IF NOT EXISTS ` + ident + ` (
	seq bigint PRIMARY KEY,
	time timestamptz NOT NULL,
	type text NOT NULL,
	session_id text,
	employee text,
	data jsonb,
	prev text NOT NULL,
	instance text
);
CREATE INDEX IF NOT EXISTS ` + pgx.Identifier{base + "_employee_time_idx"}.Sanitize() + ` ON ` + ident + ` (employee, time);
CREATE INDEX IF NOT EXISTS ` + pgx.Identifier{base + "_time_idx"}.Sanitize() + ` ON ` + ident + ` (time);`
	// Simple protocol: several statements in one round trip.
	if _, err := pool.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("audit: create table %s: %w", table, err)
	}
	return nil
}

// pgColumns are the columns a row is read from, in scanRow's order. data is
// read as PostgreSQL prints the jsonb, which is deterministic.
const pgColumns = `seq, time, type, coalesce(session_id, ''), coalesce(employee, ''), data::text, prev`

func scanRow(row pgx.Row) (Event, error) {
	var ev Event
	var seq int64
	var data *string
	if err := row.Scan(&seq, &ev.Time, &ev.Type, &ev.SessionID, &ev.Employee, &data, &ev.Prev); err != nil {
		return ev, err
	}
	ev.Seq = uint64(seq)
	ev.Time = ev.Time.UTC()
	if data != nil {
		ev.Data = json.RawMessage(*data)
	}
	return ev, nil
}

// pgLine is an event's canonical line, whose SHA-256 is the next event's
// Prev: encoding/json of the Event with HTML escaping off, exactly as the
// file Log writes it (without the newline). Data must be as PostgreSQL
// prints the jsonb and Time a whole number of microseconds, so that the
// line can be recomputed from the row.
func pgLine(ev *Event) ([]byte, error) { return encodeLine(ev) }

// querier is what reading the tail needs of a pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readPGTail returns the last seq of the table and the hash of its line,
// after checking that the last row continues the one before it.
func readPGTail(ctx context.Context, q querier, table string) (uint64, [sha256.Size]byte, error) {
	rows, err := q.Query(ctx, `SELECT `+pgColumns+` FROM `+table+` ORDER BY seq DESC LIMIT 2`)
	if err != nil {
		return 0, zeroPrev, fmt.Errorf("audit: read last event: %w", err)
	}
	var tail []Event
	for rows.Next() {
		ev, err := scanRow(rows)
		if err != nil {
			rows.Close()
			return 0, zeroPrev, fmt.Errorf("audit: read last event: %w", err)
		}
		tail = append(tail, ev)
	}
	if err := rows.Err(); err != nil {
		return 0, zeroPrev, fmt.Errorf("audit: read last event: %w", err)
	}
	if len(tail) == 0 {
		return 0, zeroPrev, nil
	}
	last := tail[0]
	if len(tail) == 2 {
		line, err := pgLine(&tail[1])
		if err != nil {
			return 0, zeroPrev, err
		}
		h := sha256.Sum256(line)
		if tail[1].Seq+1 != last.Seq || last.Prev != hex.EncodeToString(h[:]) {
			return 0, zeroPrev, fmt.Errorf("audit: table %s: last row (seq %d) does not continue the chain; run VerifyPG", table, last.Seq)
		}
	}
	line, err := pgLine(&last)
	if err != nil {
		return 0, zeroPrev, err
	}
	return last.Seq, sha256.Sum256(line), nil
}

// Append queues ev and returns its seq once the COPY that writes it has
// committed. Seq, Time and Prev are set by the sink. An error means the
// event is not acknowledged (the caller fails open or closed); it may still
// have been written if the reply to its COPY was lost. ctx is only checked before
// queueing: the wait is bounded by Config.Timeout per batch.
func (s *PGSink) Append(ctx context.Context, ev Event) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if ev.Type == "" || isMACType(ev.Type) {
		return 0, fmt.Errorf("audit: cannot append an event of type %q", ev.Type)
	}
	// Reject here what PostgreSQL would reject in the COPY, which would fail
	// the other events of the batch too.
	if len(ev.Data) > 0 && !json.Valid(ev.Data) {
		return 0, errors.New("audit: event data is not valid JSON")
	}
	if strings.ContainsRune(ev.Type+ev.SessionID+ev.Employee, 0) || bytes.Contains(ev.Data, []byte(`\u0000`)) {
		return 0, errors.New("audit: event contains a NUL character, which PostgreSQL text cannot store")
	}
	ev.Time = s.cfg.Now().UTC().Truncate(time.Microsecond) // timestamptz precision
	ev.Seq, ev.Prev = 0, ""

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	var b *pgBatch
	if n := len(s.queue); n > 0 && len(s.queue[n-1].events) < s.cfg.BatchSize {
		b = s.queue[n-1]
	} else {
		b = &pgBatch{done: make(chan struct{})}
		s.queue = append(s.queue, b)
	}
	i := len(b.events)
	b.events = append(b.events, ev)
	s.cond.Signal()
	s.mu.Unlock()

	<-b.done
	if b.err != nil {
		return 0, b.err
	}
	return b.first + uint64(i), nil
}

// flusher writes the queued batches in order until the sink is closed and
// its queue empty.
func (s *PGSink) flusher() {
	defer close(s.done)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.closed {
			s.cond.Wait()
		}
		if len(s.queue) == 0 {
			s.mu.Unlock()
			return
		}
		b := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		err := s.write(ctx, b)
		cancel()

		s.mu.Lock()
		if err != nil {
			s.resync = true
			s.stats.Failures++
			b.err = fmt.Errorf("audit: pg sink: %w", err)
			s.cfg.Logger.Error("audit_pg_batch_failed", "error", err, "events", len(b.events), "seq", s.seq)
		} else {
			s.stats.Batches++
			s.stats.Events += uint64(len(b.events))
		}
		s.mu.Unlock()
		close(b.done)
	}
}

// write commits b with one COPY, which is atomic on its own (no BEGIN and
// COMMIT round trips), and advances the chain on success.
func (s *PGSink) write(ctx context.Context, b *pgBatch) error {
	pool := s.cfg.Pool
	seq, prev := s.seq, s.prev
	if s.resync {
		var err error
		if seq, prev, err = readPGTail(ctx, pool, s.table); err != nil {
			return err
		}
	}
	var raw []*string
	for i := range b.events {
		if d := b.events[i].Data; len(d) > 0 {
			str := string(d)
			raw = append(raw, &str)
		}
	}
	var canon []*string
	if len(raw) > 0 {
		err := pool.QueryRow(ctx, `SELECT array_agg(d::jsonb::text ORDER BY i) FROM unnest($1::text[]) WITH ORDINALITY AS u(d, i)`, raw).Scan(&canon)
		if err != nil {
			return fmt.Errorf("normalise data: %w", err)
		}
		if len(canon) != len(raw) {
			return fmt.Errorf("normalise data: %d values for %d", len(canon), len(raw))
		}
	}
	rows := make([][]any, len(b.events))
	first := seq + 1
	for i := range b.events {
		ev := &b.events[i]
		ev.Seq = seq + 1
		ev.Prev = hex.EncodeToString(prev[:])
		var data any
		if len(ev.Data) > 0 {
			ev.Data = json.RawMessage(*canon[0])
			canon = canon[1:]
			data = string(ev.Data)
		}
		line, err := pgLine(ev)
		if err != nil {
			return err
		}
		rows[i] = []any{int64(ev.Seq), ev.Time, ev.Type, nullString(ev.SessionID), nullString(ev.Employee), data, ev.Prev, s.cfg.Instance}
		seq, prev = ev.Seq, sha256.Sum256(line)
	}
	_, err := pool.CopyFrom(ctx, pgx.Identifier(strings.Split(s.cfg.Table, ".")),
		[]string{"seq", "time", "type", "session_id", "employee", "data", "prev", "instance"},
		pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	s.seq, s.prev, s.resync = seq, prev, false
	b.first = first
	return nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Stats returns counts of the sink's work.
func (s *PGSink) Stats() PGSinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close writes the queued events and stops the flusher; later Appends return
// ErrClosed. It does not close the pool. Safe to call more than once.
func (s *PGSink) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	<-s.done
	return nil
}

// VerifyPG checks the audit table of a PGSink: seq continuity from 1 and the
// hash chain, in seq order. It stops at the first problem, which it returns
// both in Report.Problem and as the error (a *Problem, whose File is the
// table and Line the row's position in seq order); other errors are database
// errors. There are no HMACs: Report.Unsigned counts every event.
func VerifyPG(ctx context.Context, pool *pgxpool.Pool, table string) (Report, error) {
	rep := Report{Files: 1}
	rows, err := pool.Query(ctx, `SELECT `+pgColumns+` FROM `+tableIdent(table)+` ORDER BY seq`)
	if err != nil {
		return rep, fmt.Errorf("audit: verify %s: %w", table, err)
	}
	defer rows.Close()
	expSeq, prevHash := uint64(1), zeroPrev
	for n := 1; rows.Next(); n++ {
		ev, err := scanRow(rows)
		if err != nil {
			return rep, fmt.Errorf("audit: verify %s: %w", table, err)
		}
		bad := func(kind ProblemKind, format string, args ...any) (Report, error) {
			return rep.fail(&Problem{File: table, Line: n, Seq: ev.Seq, Kind: kind, Detail: fmt.Sprintf(format, args...)})
		}
		prev, ok := parsePrev(ev.Prev)
		if !ok {
			return bad(ProblemMalformed, "prev is not a hex SHA-256")
		}
		if ev.Seq != expSeq {
			if n == 1 {
				return bad(ProblemRemoved, "the table starts at seq %d, not 1: seq 1 to %d are missing", ev.Seq, ev.Seq-1)
			}
			return bad(ProblemRemoved, "seq %d to %d are missing", expSeq, ev.Seq-1)
		}
		if prev != prevHash {
			return bad(ProblemEdited, "prev does not match seq %d: seq %d was edited", ev.Seq-1, ev.Seq-1)
		}
		line, err := pgLine(&ev)
		if err != nil {
			return bad(ProblemMalformed, "%v", err)
		}
		prevHash = sha256.Sum256(line)
		expSeq = ev.Seq + 1
		rep.Events++
		rep.LastSeq = ev.Seq
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("audit: verify %s: %w", table, err)
	}
	rep.Unsigned = int(rep.Events)
	return rep, nil
}

// PGFilter selects events for QueryPG; zero fields match everything.
type PGFilter struct {
	Employee string
	Type     string
	Since    time.Time // inclusive
	Until    time.Time // exclusive
}

// QueryPG calls fn, in seq order, for every event of the table that filter
// selects. It does not verify the chain. An error from fn stops QueryPG and
// is returned.
func QueryPG(ctx context.Context, pool *pgxpool.Pool, table string, filter PGFilter, fn func(Event) error) error {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if filter.Employee != "" {
		add("employee = $%d", filter.Employee)
	}
	if filter.Type != "" {
		add("type = $%d", filter.Type)
	}
	if !filter.Since.IsZero() {
		add("time >= $%d", filter.Since)
	}
	if !filter.Until.IsZero() {
		add("time < $%d", filter.Until)
	}
	sql := `SELECT ` + pgColumns + ` FROM ` + tableIdent(table)
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, " AND ")
	}
	rows, err := pool.Query(ctx, sql+` ORDER BY seq`, args...)
	if err != nil {
		return fmt.Errorf("audit: query %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		ev, err := scanRow(rows)
		if err != nil {
			return fmt.Errorf("audit: query %s: %w", table, err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: query %s: %w", table, err)
	}
	return nil
}
