// Package normshare makes several pgwarden instances learn one norm per
// employee: every instance's observations (what each statement of an
// employee received) are written in batches to pgwarden's own PostgreSQL
// database, and every instance feeds the others' into its own norm model.
// An employee who splits their work, or a leak, across instances is
// measured against their norm with all of it, as on one instance, at most
// about two Intervals late.
//
// The hot path never waits on the database: Observe updates the local
// model and queues the observation, merged per employee, session and
// second; a background loop writes the queue and reads the others' rows
// every Interval. Each instance numbers its rows (seq) and writes them in
// order, one transaction at a time, so a reader that has seen seq N of an
// instance has seen all before it: a pull is exact, without margins.
//
// Snapshot writes the model with the sequence numbers it includes, so that
// an instance restored from it catches up from the table without counting
// anything twice: rows written after the snapshot, its own included, are
// fed again; rows before are not.
//
// Anomalies found over a day's close (drift) would be reported by every
// instance; one instance, the holder of a lease in the table
// pgwarden_leases, reports them (Leader). When the database is
// unreachable every instance reports for itself: an alert twice is better
// than none.
package normshare

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/state/cluster"
	"github.com/pgwarden/pgwarden/state/schema"
)

// Config configures a Sharer.
type Config struct {
	Pool     *pgxpool.Pool
	Instance string // unique per instance, stable across restarts
	Model    *norm.Model
	// Interval is how often the queue is written and the others' rows
	// read; default 500ms.
	Interval time.Duration
	// Lease is how long the reporting lease lasts without renewal;
	// default 10s.
	Lease time.Duration
	// Retention is how long rows are kept (Prune); default 48h. It must
	// exceed the time between snapshots by far.
	Retention time.Duration
	// OnRemote receives the anomalies that the other instances'
	// observations show in this instance's model and that their own
	// instance did not report: what only the sum of the instances shows,
	// such as a burst split across them. The lease holder decides them;
	// every instance enforces what follows (a block in force).
	OnRemote func([]norm.Anomaly)
	Logger   *slog.Logger
}

// Sharer exchanges norm observations with the other instances. Its
// methods are safe for concurrent use.
type Sharer struct {
	cfg Config

	// mu orders the model's observations with the sequence numbers, so
	// that a snapshot and its watermark agree.
	mu      sync.Mutex
	pending map[mergeKey]*shared // not yet numbered
	order   []mergeKey           // pending's keys, first seen first
	sealed  []row                // numbered, not yet written
	seq     int64                // the last number given
	applied map[string]int64     // per other instance, the last seq fed to the model
	// catchUp is the last seq of this instance's own rows that may be
	// missing from the model (those in the table at start, or numbered
	// before a restore): rows of its own past applied and up to it are fed
	// again by the pulls.
	catchUp int64

	flushMu sync.Mutex // one flush at a time: rows are committed in seq order

	ex    *cluster.Exchanger
	lease *cluster.Lease // "norms": who reports drift
}

type mergeKey struct {
	employee, peer, client, app, session string
	second                               int64
}

type row struct {
	seq int64
	o   *shared
}

// shared is an observation as the other instances read it: with the
// anomalies this instance already decided on when it observed it, so
// that the instance that decides for the others (the lease holder) does
// not decide them again.
type shared struct {
	norm.Observation
	Reported []string `json:"reported,omitempty"`
}

// anomalyKey names an anomaly for Reported.
func anomalyKey(a norm.Anomaly) string { return a.Kind + "/" + a.Feature + "/" + a.Window }

// maxQueued bounds the observations kept while the database is
// unreachable; beyond it the oldest are dropped (and logged).
const maxQueued = 200000

// New creates the tables if needed and reads where this instance's rows
// end.
func New(ctx context.Context, cfg Config) (*Sharer, error) {
	if cfg.Pool == nil || cfg.Model == nil {
		return nil, errors.New("normshare: Pool and Model are required")
	}
	if cfg.Instance == "" {
		return nil, errors.New("normshare: an instance name is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 10 * time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 48 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := schema.Create(ctx, cfg.Pool, schema.For("pgwarden_norm_observations", "pgwarden_leases"),
		"pgwarden_norm_observations", "pgwarden_leases"); err != nil {
		return nil, fmt.Errorf("normshare: %w", err)
	}
	s := &Sharer{cfg: cfg, pending: make(map[mergeKey]*shared), applied: make(map[string]int64)}
	if err := cfg.Pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM pgwarden_norm_observations WHERE instance = $1`,
		cfg.Instance).Scan(&s.seq); err != nil {
		return nil, fmt.Errorf("normshare: %w", err)
	}
	// Until a snapshot says otherwise, the model holds none of the
	// table's rows: all are fed, this instance's own included.
	s.catchUp = s.seq
	s.lease = cluster.NewLease(cfg.Pool, "norms", cfg.Instance, cfg.Lease)
	var err error
	s.ex, err = cluster.NewExchanger(cluster.ExchangerConfig{Name: "normshare",
		Unavailable: "norms count only this instance's traffic until the database returns; every instance reports drift",
		Flush:       s.flush, Pull: s.pull, Lease: s.lease, Interval: cfg.Interval, Logger: cfg.Logger,
		Upkeep: func(ctx context.Context) {
			if s.Leader() {
				if err := s.Prune(ctx); err != nil {
					s.cfg.Logger.Warn("normshare_prune_failed", "error", err)
				}
			}
		}})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Observe feeds a statement of this instance to the model, returning the
// anomalies it shows, and queues it for the other instances.
func (s *Sharer) Observe(o norm.Observation) []norm.Anomaly {
	if o.Employee == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.cfg.Model.Observe(o)
	k := mergeKey{o.Employee, o.Peer, o.ClientAddr, o.Application, o.SessionID, o.Time.Unix()}
	q := s.pending[k]
	if q != nil {
		merge(&q.Observation, &o)
	} else {
		q = &shared{Observation: o}
		q.PIIValues = maps.Clone(o.PIIValues)
		q.Tables = slices.Clone(o.Tables)
		s.pending[k] = q
		s.order = append(s.order, k)
	}
	for _, a := range out {
		if k := anomalyKey(a); !slices.Contains(q.Reported, k) {
			q.Reported = append(q.Reported, k)
		}
	}
	return out
}

// merge adds b's figures to a: one observation standing for both.
func merge(a, b *norm.Observation) {
	a.PIIRows += b.PIIRows
	a.Subjects += b.Subjects
	a.Rows += b.Rows
	a.Bytes += b.Bytes
	a.Statements += b.Statements
	a.Failed += b.Failed
	a.Copy += b.Copy
	a.UnexplainedStatements += b.UnexplainedStatements
	if b.Time.After(a.Time) {
		a.Time = b.Time
	}
	for c, n := range b.PIIValues {
		if a.PIIValues == nil {
			a.PIIValues = make(map[string]int64, len(b.PIIValues))
		}
		a.PIIValues[c] += n
	}
	for _, t := range b.Tables {
		if !slices.Contains(a.Tables, t) {
			a.Tables = append(a.Tables, t)
		}
	}
}

// sealLocked numbers the pending observations; s.mu must be held.
func (s *Sharer) sealLocked() {
	for _, k := range s.order {
		s.seq++
		s.sealed = append(s.sealed, row{seq: s.seq, o: s.pending[k]})
	}
	clear(s.pending)
	s.order = s.order[:0]
	if over := len(s.sealed) - maxQueued; over > 0 {
		s.cfg.Logger.Error("normshare_queue_full", "dropped", over,
			"consequence", "the other instances never see these observations")
		s.sealed = slices.Delete(s.sealed, 0, over)
	}
}

// Leader reports whether this instance reports the anomalies found as
// days close: it holds the lease, or the database cannot be reached.
func (s *Sharer) Leader() bool { return !s.ex.Healthy() || s.lease.Held() }

// Healthy reports whether the last exchange with the database worked.
func (s *Sharer) Healthy() bool { return s.ex.Healthy() }

// Run exchanges every Interval until ctx ends, then writes the queue
// once more and gives the lease up.
func (s *Sharer) Run(ctx context.Context) { s.ex.Run(ctx) }

// Exchange writes this instance's queue, reads the others' new rows into
// the model and renews or takes the lease.
func (s *Sharer) Exchange(ctx context.Context) { s.ex.Exchange(ctx) }

func (s *Sharer) flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	s.sealLocked()
	rows := slices.Clone(s.sealed)
	s.mu.Unlock()
	if len(rows) == 0 {
		return nil
	}
	src := make([][]any, len(rows))
	for i, r := range rows {
		b, err := json.Marshal(r.o)
		if err != nil {
			return fmt.Errorf("normshare: %w", err)
		}
		src[i] = []any{s.cfg.Instance, r.seq, r.o.Time, r.o.Employee, string(b)}
	}
	if _, err := s.cfg.Pool.CopyFrom(ctx, pgx.Identifier{"pgwarden_norm_observations"},
		[]string{"instance", "seq", "at", "employee", "obs"}, pgx.CopyFromRows(src)); err != nil {
		// A COPY whose reply was lost may have committed: the next
		// attempt writes only the rows the table lacks (if the table
		// cannot be read now, the next failure tries again).
		s.dropWritten(ctx)
		return fmt.Errorf("normshare: flush: %w", err)
	}
	s.mu.Lock()
	s.sealed = slices.Delete(s.sealed, 0, len(rows))
	s.mu.Unlock()
	return nil
}

// dropWritten removes from the sealed queue the rows the table already
// holds.
func (s *Sharer) dropWritten(ctx context.Context) error {
	var last int64
	if err := s.cfg.Pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM pgwarden_norm_observations WHERE instance = $1`,
		s.cfg.Instance).Scan(&last); err != nil {
		return err
	}
	s.mu.Lock()
	i := 0
	for i < len(s.sealed) && s.sealed[i].seq <= last {
		i++
	}
	s.sealed = slices.Delete(s.sealed, 0, i)
	s.mu.Unlock()
	return nil
}

// pull feeds the model the rows of other instances past what it holds,
// and, after a restore, this instance's own rows the snapshot lacks.
func (s *Sharer) pull(ctx context.Context) error {
	s.mu.Lock()
	applied, _ := json.Marshal(s.applied)
	catchUp := s.catchUp
	s.mu.Unlock()
	rows, err := s.cfg.Pool.Query(ctx, `SELECT instance, seq, obs FROM pgwarden_norm_observations
WHERE seq > coalesce(($1::jsonb ->> instance)::bigint, 0) AND (instance <> $2 OR seq <= $3)
ORDER BY instance, seq`, string(applied), s.cfg.Instance, catchUp)
	if err != nil {
		return fmt.Errorf("normshare: pull: %w", err)
	}
	type got struct {
		instance string
		seq      int64
		o        shared
	}
	var batch []got
	for rows.Next() {
		var g got
		var obs []byte
		if err := rows.Scan(&g.instance, &g.seq, &obs); err != nil {
			rows.Close()
			return fmt.Errorf("normshare: pull: %w", err)
		}
		if err := json.Unmarshal(obs, &g.o); err != nil {
			s.cfg.Logger.Error("normshare_row_undecodable", "instance", g.instance, "seq", g.seq, "error", err)
		}
		batch = append(batch, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("normshare: pull: %w", err)
	}
	if len(batch) == 0 {
		return nil
	}
	var anomalies []norm.Anomaly
	// In chunks: the instance's own statements wait on mu meanwhile.
	for chunk := range slices.Chunk(batch, 256) {
		s.mu.Lock()
		for _, g := range chunk {
			if g.seq <= s.applied[g.instance] {
				continue
			}
			s.applied[g.instance] = g.seq
			if g.o.Employee != "" {
				for _, a := range s.cfg.Model.Observe(g.o.Observation) {
					if !slices.Contains(g.o.Reported, anomalyKey(a)) {
						anomalies = append(anomalies, a)
					}
				}
			}
		}
		s.mu.Unlock()
	}
	if len(anomalies) > 0 && s.cfg.OnRemote != nil {
		s.cfg.OnRemote(anomalies)
	}
	return nil
}

// Prune deletes rows older than Retention, but for each instance's last:
// an instance that starts again numbers its rows after it, so the others,
// who remember where they are in its numbering, read them.
func (s *Sharer) Prune(ctx context.Context) error {
	cut := time.Now().Add(-s.cfg.Retention)
	if _, err := s.cfg.Pool.Exec(ctx, `DELETE FROM pgwarden_norm_observations o WHERE at < $1
AND seq < (SELECT max(seq) FROM pgwarden_norm_observations l WHERE l.instance = o.instance)`, cut); err != nil {
		return fmt.Errorf("normshare: prune: %w", err)
	}
	return nil
}

// envelope is a snapshot: the model and, per instance, the last seq it
// includes.
type envelope struct {
	Version int              `json:"normshare_version"`
	Applied map[string]int64 `json:"applied"`
	Model   json.RawMessage  `json:"model"`
}

// Snapshot writes the model and the rows it includes.
func (s *Sharer) Snapshot(w io.Writer) error {
	var buf bytes.Buffer
	s.mu.Lock()
	// Observations queued now are in the model: numbered now, they are
	// below the watermark, and are not fed again after a restore.
	s.sealLocked()
	err := s.cfg.Model.Snapshot(&buf)
	env := envelope{Version: 1, Applied: maps.Clone(s.applied), Model: buf.Bytes()}
	if env.Applied == nil {
		env.Applied = map[string]int64{}
	}
	env.Applied[s.cfg.Instance] = max(s.seq, env.Applied[s.cfg.Instance])
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(env)
}

// ModelOnly returns the model's snapshot in b: b itself, or the model a
// Snapshot envelope holds (for an instance that restores a shared
// instance's state without sharing).
func ModelOnly(b []byte) []byte {
	var env envelope
	if json.Unmarshal(b, &env) == nil && env.Version > 0 {
		return env.Model
	}
	return b
}

// Restore replaces the model with a snapshot written by Snapshot, or by
// a model alone (an instance that did not share), at start or while
// running (the admin API's snapshot PUT).
func (s *Sharer) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("normshare: restore: %w", err)
	}
	if env.Version == 0 {
		// A model without a watermark: it is taken to hold what the
		// table holds, so nothing in it is fed again; sharing goes on
		// from here.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		marks, err := s.highWater(ctx)
		if err != nil {
			return fmt.Errorf("normshare: restore: %w", err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := s.cfg.Model.Restore(bytes.NewReader(b)); err != nil {
			return err
		}
		s.applied, s.catchUp = marks, 0
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cfg.Model.Restore(bytes.NewReader(env.Model)); err != nil {
		return err
	}
	s.applied = make(map[string]int64, len(env.Applied))
	for inst, seq := range env.Applied {
		s.applied[inst] = seq
	}
	// This instance's rows up to the watermark are in the model; those
	// after it, to the last it numbered, are fed by the pulls that follow.
	// New rows are numbered after both.
	s.seq = max(s.seq, env.Applied[s.cfg.Instance])
	s.catchUp = s.seq
	return nil
}

// highWater reads the last seq of every instance in the table.
func (s *Sharer) highWater(ctx context.Context) (map[string]int64, error) {
	rows, err := s.cfg.Pool.Query(ctx, `SELECT instance, max(seq) FROM pgwarden_norm_observations GROUP BY instance`)
	if err != nil {
		return nil, err
	}
	marks := make(map[string]int64)
	for rows.Next() {
		var inst string
		var seq int64
		if err := rows.Scan(&inst, &seq); err != nil {
			rows.Close()
			return nil, err
		}
		marks[inst] = seq
	}
	return marks, rows.Err()
}
