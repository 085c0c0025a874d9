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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/internal/crash"
	"github.com/pgwarden/pgwarden/state/schema"
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
// to BatchSize, assigns their Seq and Prev, writes them with one COPY and,
// once it commits, releases every Append of the batch. The next batch starts
// as soon as the previous one ends: there is no linger, because each guard
// waits for its own event and a linger would only add latency; batches grow
// with load.
//
// Several pgwarden instances, each with its own PGSink, pool and Instance,
// may append to one table and form one chain. Each batch is a transaction
// that takes an advisory lock on the table (pgLockSQL), reads the table's
// last row under it, so that it continues whichever instance wrote last,
// and releases it by committing. A batch costs two round trips, one more
// than a lone COPY but as many as the normalisation of its data and a COPY:
// the first pipelines BEGIN, the normalisation, the lock and the read of the
// last row; the second carries the COPY and the COMMIT in one message. The
// server runs five more small statements per batch (BEGIN, the timeouts,
// the lock, the read, COMMIT). The writers of a table commit one batch at a
// time, each holding the lock for about one round trip and the time it
// takes to chain its batch: an instance's batch waits while another's holds
// it, and meanwhile its next batch collects more events.
// The primary key on seq keeps the chain whole even without the lock (a
// writer that raced would fail on a duplicate seq); the lock keeps writers
// from failing each other's batches. Every writer of a table must take it:
// run the same pgwarden version on all of them. Each transaction sets
// lock_timeout, statement_timeout and idle_in_transaction_session_timeout to
// Timeout, so that an instance that dies or hangs while it holds the lock
// holds up the others for about Timeout, not until the server notices that
// its connection is dead.
//
// Errors are not sticky, unlike the file Log's: a file with a hole is broken
// forever, but a central database that was unreachable recovers, and the
// chain is continued from the table itself. A failed batch returns its error
// to each of its Appends (the guard fails open or closed) and assigned
// nothing: every batch reads the table's last row, so the next one neither
// leaves a gap nor, if a COMMIT whose reply was lost did commit, duplicates
// a seq. Acknowledged events are never reordered or lost.
//
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
}

// pgBatch is a group of events committed by one COPY.
type pgBatch struct {
	events []Event
	first  uint64 // seq of events[0], set on success
	err    error
	done   chan struct{}
}

// NewPGSink creates cfg.Table and its indexes if missing, checks that its
// last row continues the chain, and starts the flusher.
func NewPGSink(ctx context.Context, cfg PGSinkConfig) (*PGSink, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	s := &PGSink{cfg: cfg, table: tableIdent(cfg.Table), done: make(chan struct{})}
	s.cond.L = &s.mu
	if err := createPGTable(ctx, cfg.Pool, cfg.Table); err != nil {
		return nil, err
	}
	seq, _, err := readPGTail(ctx, cfg.Pool, s.table)
	if err != nil {
		return nil, err
	}
	cfg.Logger.Info("audit_pg_sink_opened", "table", cfg.Table, "seq", seq)
	crash.Loop(cfg.Logger, "audit_pg_flush", s.done, s.flusher)
	return s, nil
}

// tableIdent quotes "name" or "schema.name".
func tableIdent(table string) string {
	return pgx.Identifier(strings.Split(table, ".")).Sanitize()
}

func createPGTable(ctx context.Context, pool *pgxpool.Pool, table string) error {
	// Instances starting together would race in CREATE ... IF NOT EXISTS
	// (a unique violation in the catalog): the lock, held until the implicit
	// transaction of the statements ends, makes them take turns.
	sql := fmt.Sprintf("SELECT pg_advisory_xact_lock(%d);\n", pgLockClass<<32) + schema.Audit(table)
	if err := schema.Create(ctx, pool, sql, table); err != nil {
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

// pgLockClass is the upper half of the keys of pgwarden's advisory locks,
// "pgwd", which keeps them apart from other applications' keys. The lower
// half is 0 for table creation (no table has OID 0) and the table's OID for
// appends.
const pgLockClass = 0x70677764

// pgLockSQL takes the lock, in class $1, that serialises the writers of
// the table $2 (quoted as tableIdent does). Keyed by the OID, it is one lock
// however the instances spell the table's name.
const pgLockSQL = `SELECT pg_advisory_xact_lock($1::bigint << 32 | $2::regclass::oid::bigint)`

// pgTxSettings bounds, to $1, how long a batch's transaction waits for the
// lock, runs one statement, and sits idle holding the lock.
const pgTxSettings = `SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true), set_config('idle_in_transaction_session_timeout', $1, true)`

// pgNormaliseSQL returns the texts of $1 as PostgreSQL prints them as jsonb.
const pgNormaliseSQL = `SELECT array_agg(d::jsonb::text ORDER BY i) FROM unnest($1::text[]) WITH ORDINALITY AS u(d, i)`

// pgTailSQL reads the last two rows of table, for scanPGTail.
func pgTailSQL(table string) string {
	return `SELECT ` + pgColumns + ` FROM ` + table + ` ORDER BY seq DESC LIMIT 2`
}

// querier is what reading the tail needs of a pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readPGTail returns the last seq of the table and the hash of its line,
// after checking that the last row continues the one before it.
func readPGTail(ctx context.Context, q querier, table string) (uint64, [sha256.Size]byte, error) {
	rows, err := q.Query(ctx, pgTailSQL(table))
	if err != nil {
		return 0, zeroPrev, fmt.Errorf("audit: read last event: %w", err)
	}
	return scanPGTail(rows, table)
}

// scanPGTail is readPGTail on the rows of pgTailSQL; it closes rows.
func scanPGTail(rows pgx.Rows, table string) (uint64, [sha256.Size]byte, error) {
	defer rows.Close()
	var tail []Event
	for rows.Next() {
		ev, err := scanRow(rows)
		if err != nil {
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
			s.stats.Failures++
			b.err = fmt.Errorf("audit: pg sink: %w", err)
			s.cfg.Logger.Error("audit_pg_batch_failed", "error", err, "events", len(b.events))
		} else {
			s.stats.Batches++
			s.stats.Events += uint64(len(b.events))
		}
		s.mu.Unlock()
		close(b.done)
	}
}

// write commits b in one transaction on one connection, in two round trips
// (see PGSink). Reading the tail in a statement after the lock's, in READ
// COMMITTED, gives it a snapshot that sees the previous holder's commit.
func (s *PGSink) write(ctx context.Context, b *pgBatch) (err error) {
	conn, err := s.cfg.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire a connection: %w", err)
	}
	defer func() {
		// Release destroys a connection left in a transaction; roll back to
		// keep it while there is time.
		if err != nil && conn.Conn().PgConn().TxStatus() != 'I' && ctx.Err() == nil {
			conn.Exec(ctx, "ROLLBACK")
		}
		conn.Release()
	}()

	var raw []*string
	for i := range b.events {
		if d := b.events[i].Data; len(d) > 0 {
			str := string(d)
			raw = append(raw, &str)
		}
	}
	batch := &pgx.Batch{}
	batch.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
	batch.Queue(pgTxSettings, fmt.Sprintf("%dms", max(s.cfg.Timeout.Milliseconds(), 1)))
	if len(raw) > 0 {
		batch.Queue(pgNormaliseSQL, raw)
	}
	batch.Queue(pgLockSQL, pgLockClass, s.table)
	batch.Queue(pgTailSQL(s.table))
	seq, prev, canon, err := readBegin(conn.SendBatch(ctx, batch), len(raw) > 0, s.table)
	if err != nil {
		return err
	}
	if len(canon) != len(raw) {
		return fmt.Errorf("normalise data: %d values for %d", len(canon), len(raw))
	}

	var rows []byte
	first := seq + 1
	for i := range b.events {
		ev := &b.events[i]
		ev.Seq = seq + 1
		ev.Prev = hex.EncodeToString(prev[:])
		if len(ev.Data) > 0 {
			ev.Data = json.RawMessage(*canon[0])
			canon = canon[1:]
		}
		line, err := pgLine(ev)
		if err != nil {
			return err
		}
		rows = appendCopyRow(rows, ev, s.cfg.Instance)
		seq, prev = ev.Seq, sha256.Sum256(line)
	}
	// A simple Query runs its statements in turn, the COPY reading the rows
	// sent after it, and skips the COMMIT if the COPY fails.
	// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY
	tag, err := conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(rows),
		`COPY `+s.table+` (seq, time, type, session_id, employee, data, prev, instance) FROM STDIN; COMMIT`)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if tag.String() != "COMMIT" {
		return fmt.Errorf("commit: the transaction ended with %s", tag)
	}
	b.first = first
	return nil
}

// readBegin reads the results of write's first round trip: the table's last
// seq, the hash of its line, and the normalised data if normalise.
func readBegin(br pgx.BatchResults, normalise bool, table string) (seq uint64, prev [sha256.Size]byte, canon []*string, err error) {
	defer func() {
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("begin: %w", cerr)
		}
	}()
	for _, step := range []string{"begin", "set timeouts"} {
		if _, err := br.Exec(); err != nil {
			return 0, zeroPrev, nil, fmt.Errorf("%s: %w", step, err)
		}
	}
	if normalise {
		if err := br.QueryRow().Scan(&canon); err != nil {
			return 0, zeroPrev, nil, fmt.Errorf("normalise data: %w", err)
		}
	}
	if _, err := br.Exec(); err != nil {
		return 0, zeroPrev, nil, fmt.Errorf("lock the table: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return 0, zeroPrev, nil, fmt.Errorf("read last event: %w", err)
	}
	seq, prev, err = scanPGTail(rows, table)
	return seq, prev, canon, err
}

// appendCopyRow appends ev as a line of COPY's text format, in the columns
// of write's COPY. Empty strings are NULL, except the instance.
// https://www.postgresql.org/docs/current/sql-copy.html (Text Format)
func appendCopyRow(buf []byte, ev *Event, instance string) []byte {
	buf = strconv.AppendUint(buf, ev.Seq, 10)
	buf = ev.Time.AppendFormat(append(buf, '\t'), "2006-01-02 15:04:05.000000-07")
	for _, v := range []string{ev.Type, ev.SessionID, ev.Employee, string(ev.Data), ev.Prev} {
		buf = append(buf, '\t')
		if v == "" {
			buf = append(buf, `\N`...)
		} else {
			buf = appendCopyText(buf, v)
		}
	}
	buf = appendCopyText(append(buf, '\t'), instance)
	return append(buf, '\n')
}

// appendCopyText appends v escaped for COPY's text format. Append has
// rejected NUL, which the format cannot carry.
func appendCopyText(buf []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			buf = append(buf, `\\`...)
		case '\n':
			buf = append(buf, `\n`...)
		case '\r':
			buf = append(buf, `\r`...)
		case '\t':
			buf = append(buf, `\t`...)
		default:
			buf = append(buf, c)
		}
	}
	return buf
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
