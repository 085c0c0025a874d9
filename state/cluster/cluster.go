// Package cluster is what several pgwarden instances sharing one state
// database (--share-state) have in common: an Exchanger that writes an
// instance's queue to the database and reads the others' every Interval,
// keeping the exchange's health, and a Lease that names the one instance
// doing some work for all, in the table pgwarden_leases.
//
// The streams exchanged are beneath: share (window figures per employee
// and minute) and normshare (norm observations, numbered). The shared
// alert outbox (audit/notify) takes one Lease per sink.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what a Lease needs of a pool.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Lease is a row of pgwarden_leases: the instance holder does the work
// called name for every instance until a time on the database's clock,
// so that the instances' clocks do not matter. Claim takes it when it is
// free or expired and renews it when holder has it: one conditional
// upsert, so two instances cannot both hold it. Its methods are safe for
// concurrent use.
type Lease struct {
	db     DB
	name   string
	holder string
	ttl    time.Duration
	until  atomic.Int64 // unix nanoseconds on this machine's clock
}

// NewLease returns the lease called name, claimed by holder (unique per
// instance) for ttl at a time.
func NewLease(db DB, name, holder string, ttl time.Duration) *Lease {
	return &Lease{db: db, name: name, holder: holder, ttl: ttl}
}

// Claim takes or renews the lease and reports whether this holder has it.
func (l *Lease) Claim(ctx context.Context) (bool, error) {
	start := time.Now()
	tag, err := l.db.Exec(ctx, `INSERT INTO pgwarden_leases AS l (name, holder, until)
VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
	WHERE l.holder = excluded.holder OR l.until < clock_timestamp()`, l.name, l.holder, l.ttl.Milliseconds())
	if err != nil {
		// Held stays as it was: the lease may still be this holder's,
		// which Release at shutdown then gives up.
		return false, fmt.Errorf("lease %s: %w", l.name, err)
	}
	if tag.RowsAffected() != 1 {
		l.until.Store(0)
		return false, nil
	}
	// Counted from before the request, on this machine's clock: the
	// lease ends here no later than in the database.
	l.until.Store(start.Add(l.ttl).UnixNano())
	return true, nil
}

// Held reports whether the last Claim took the lease and it has not
// expired since.
func (l *Lease) Held() bool { return time.Now().UnixNano() < l.until.Load() }

// Release gives the lease up, if this holder has it, so that another
// instance takes it at once instead of when it expires.
func (l *Lease) Release(ctx context.Context) error {
	l.until.Store(0)
	if _, err := l.db.Exec(ctx, `DELETE FROM pgwarden_leases WHERE name = $1 AND holder = $2`, l.name, l.holder); err != nil {
		return fmt.Errorf("lease %s: release: %w", l.name, err)
	}
	return nil
}

// ExchangerConfig configures an Exchanger. Flush and Pull are required.
type ExchangerConfig struct {
	// Name prefixes the log messages: "share" logs share_unavailable.
	Name string
	// Unavailable is the consequence logged when the database stops
	// answering.
	Unavailable string
	// Flush writes this instance's queue; it keeps what it could not
	// write for the next attempt.
	Flush func(ctx context.Context) error
	// Pull reads the other instances' new rows.
	Pull func(ctx context.Context) error
	// Lease, if set, is claimed after every exchange and released when
	// Run ends.
	Lease *Lease
	// Interval is the time between exchanges; default 500ms.
	Interval time.Duration
	// Upkeep, if set, runs every UpkeepEvery (default an hour).
	Upkeep      func(ctx context.Context)
	UpkeepEvery time.Duration
	Logger      *slog.Logger
}

// Exchanger runs the exchanges of one stream of rows with the other
// instances and keeps their health. The hot path never waits on it: the
// stream's own queue takes what the instance adds.
type Exchanger struct {
	cfg     ExchangerConfig
	healthy atomic.Bool
}

// NewExchanger returns an Exchanger, healthy until an exchange fails.
func NewExchanger(cfg ExchangerConfig) (*Exchanger, error) {
	if cfg.Flush == nil || cfg.Pull == nil {
		return nil, errors.New("cluster: ExchangerConfig.Flush and Pull are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.UpkeepEvery <= 0 {
		cfg.UpkeepEvery = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Exchanger{cfg: cfg}
	e.healthy.Store(true)
	return e, nil
}

// Healthy reports whether the last exchange with the database worked.
func (e *Exchanger) Healthy() bool { return e.healthy.Load() }

// Run exchanges at once and then every Interval until ctx ends, then
// flushes once more and gives the lease up.
func (e *Exchanger) Run(ctx context.Context) {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	upkeep := time.NewTicker(e.cfg.UpkeepEvery)
	defer upkeep.Stop()
	e.Exchange(ctx)
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := e.cfg.Flush(fctx); err != nil {
				e.cfg.Logger.Warn(e.cfg.Name+"_final_flush_failed", "error", err)
			}
			if l := e.cfg.Lease; l != nil && l.Held() {
				if err := l.Release(fctx); err != nil {
					e.cfg.Logger.Warn(e.cfg.Name+"_release_failed", "error", err)
				}
			}
			cancel()
			return
		case <-t.C:
			e.Exchange(ctx)
		case <-upkeep.C:
			if e.cfg.Upkeep != nil {
				e.cfg.Upkeep(ctx)
			}
		}
	}
}

// Exchange flushes this instance's queue, pulls the others' rows and
// claims the lease, and logs when the database stops or starts
// answering.
func (e *Exchanger) Exchange(ctx context.Context) {
	err := e.cfg.Flush(ctx)
	if err == nil {
		err = e.cfg.Pull(ctx)
	}
	if err == nil && e.cfg.Lease != nil {
		_, err = e.cfg.Lease.Claim(ctx)
	}
	was := e.healthy.Swap(err == nil)
	switch {
	case err != nil && was:
		e.cfg.Logger.Error(e.cfg.Name+"_unavailable", "error", err, "consequence", e.cfg.Unavailable)
	case err == nil && !was:
		e.cfg.Logger.Info(e.cfg.Name + "_restored")
	}
}
