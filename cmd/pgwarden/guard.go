package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/internal/clock"
	"github.com/pgwarden/pgwarden/internal/crash"
	"github.com/pgwarden/pgwarden/internal/metrics"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/proxy/catalog"
	"github.com/pgwarden/pgwarden/state/alertlog"
	"github.com/pgwarden/pgwarden/state/cluster/normshare"
	"github.com/pgwarden/pgwarden/state/cluster/share"
	"github.com/pgwarden/pgwarden/state/quarantine"
)

// guardParts is the inspector serve runs and what it was built from.
type guardParts struct {
	guard   *guard.Guard
	state   *stateParts
	clock   *clock.Virtual // nil on the wall clock
	now     func() time.Time
	trail   auditAppender // nil without an audit trail
	metrics *metrics.Metrics
	alerts  *alertlog.Log // security's queue
	// quarantine is the list in force: the state directory's, or the state
	// database's when configured (shared by instances); nil without either.
	quarantine quarantine.Store
	catalog    *catalogs
	audit      *audit.Log
	pgAudit    *audit.PGSink
	// normSharer shares the norms with the other instances; nil unless
	// --share-state.
	normSharer *normshare.Sharer
}

// auditAppender is the audit trail as serve's other parts write to it.
type auditAppender interface {
	Append(ctx context.Context, ev audit.Event) (uint64, error)
}

// alertTee hands each alert to the queue and the notifier, giving it an id
// first if it has none.
type alertTee []guard.Alerter

func (t alertTee) Notify(a notify.Alert) error {
	if a.ID == "" {
		var b [16]byte
		rand.Read(b[:])
		a.ID = hex.EncodeToString(b[:])
	}
	if a.Time.IsZero() {
		a.Time = time.Now().UTC()
	}
	var first error
	for _, x := range t {
		if err := x.Notify(a); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// auditChanged alerts security through t (nil before the alerts are
// wired) that the audit log became unavailable or resumed
// (audit.Config.OnChange).
func auditChanged(fc *config.Config, t *alertTee, up bool, err error) {
	if t == nil {
		return
	}
	a := notify.Alert{Action: "alert", Rule: "audit:resumed", Severity: "medium", Scope: "instance",
		Reason: fmt.Sprintf("the audit log in %s is written again: sessions and statements are accepted and recorded", fc.Audit.Dir)}
	if !up {
		consequence := "pgwarden refuses statements and new sessions until it can (fail closed)"
		if fc.Audit.FailOpen {
			consequence = "sessions carry on unrecorded (fail open)"
		}
		a.Rule, a.Severity = "audit:unavailable", "critical"
		a.Reason = fmt.Sprintf("the audit log in %s cannot be written (%v): %s", fc.Audit.Dir, err, consequence)
	}
	t.Notify(a)
}

// auditTee appends each event to every sink, in order; an event counts as
// recorded only when all have it.
type auditTee []guard.AuditLog

func (t auditTee) Append(ctx context.Context, ev audit.Event) (uint64, error) {
	return t.append(ctx, ev, false)
}

// AppendWritten implements guard.AuditWriter: each sink that is one only
// writes the event, the others append it.
func (t auditTee) AppendWritten(ctx context.Context, ev audit.Event) (uint64, error) {
	return t.append(ctx, ev, true)
}

func (t auditTee) append(ctx context.Context, ev audit.Event, written bool) (uint64, error) {
	var seq uint64
	for i, s := range t {
		var n uint64
		var err error
		if w, ok := s.(guard.AuditWriter); ok && written {
			n, err = w.AppendWritten(ctx, ev)
		} else {
			n, err = s.Append(ctx, ev)
		}
		if err != nil {
			return 0, err
		}
		if i == 0 {
			seq = n
		}
	}
	return seq, nil
}

// newPool connects pgwarden's own pool to url, taking the password from env
// when the URL has none, and checks the connection.
func newPool(what, url, env string, maxConns int32) (*pgxpool.Pool, error) {
	pcfg, err := poolConfig(what, url, env)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("%s connection: %w", what, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s connection to %s@%s:%d: %w", what, pcfg.ConnConfig.User, pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, err)
	}
	return pool, nil
}

// poolConfig parses a pool's URL, with the password from env when the URL
// has none.
func poolConfig(what, url, env string) (*pgxpool.Config, error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%s URL: %w", what, err)
	}
	if pw := os.Getenv(env); pw != "" && pcfg.ConnConfig.Password == "" {
		pcfg.ConnConfig.Password = pw
	}
	return pcfg, nil
}

// newGuard builds the guard from the configuration: the policy, the catalog
// connection and the audit log. The returned func releases them.
func newGuard(fc *config.Config, logger *slog.Logger) (*guardParts, func(), error) {
	var parts guardParts
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*guardParts, func(), error) {
		closeAll()
		return nil, nil, err
	}

	parts.now = time.Now
	switch fc.Clock {
	case "", "wall":
	case "virtual":
		start := time.Now().UTC()
		if fc.ClockStart != "" {
			t, err := time.Parse(time.RFC3339, fc.ClockStart)
			if err != nil {
				return fail(fmt.Errorf("--clock-start: %w", err))
			}
			start = t
		}
		parts.clock = clock.NewVirtual(start)
		parts.now = parts.clock.Now
		logger.Warn("virtual_clock", "time", start, "note", "time moves only through POST /v1/clock on the admin listener")
	default:
		return fail(fmt.Errorf("--clock %q: want wall or virtual", fc.Clock))
	}

	pol := policy.Default()
	if fc.Policy != "" {
		var err error
		if pol, err = policy.Load(fc.Policy); err != nil {
			return fail(err)
		}
	}

	if fc.Catalog.URL != "" {
		pool, err := newPool("catalog", fc.Catalog.URL, "PGWARDEN_CATALOG_PASSWORD", 4)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, pool.Close)
		home, err := catalog.New(catalog.Config{Pool: pool, TTL: time.Duration(fc.Catalog.TTL), Logger: logger})
		if err != nil {
			return fail(err)
		}
		base, err := poolConfig("catalog", fc.Catalog.URL, "PGWARDEN_CATALOG_PASSWORD")
		if err != nil {
			return fail(err)
		}
		parts.catalog = newCatalogs(home, base, time.Duration(fc.Catalog.TTL), logger)
		closers = append(closers, parts.catalog.close)
	} else {
		logger.Warn("no_catalog_connection", "consequence", "declared PII columns cannot be recognised; content detectors only",
			"fix", "set --catalog-url (or catalog.url)")
	}

	// Where the audit log's alerts go, once wired below.
	var alertsTo atomic.Pointer[alertTee]
	if fc.Audit.Dir != "" {
		key, err := loadAuditKey(fc.Audit.KeyFile)
		if err != nil {
			return fail(err)
		}
		if key == nil {
			return fail(fmt.Errorf("the audit log needs a checkpoint key: --audit-key-file or %s", auditKeyEnv))
		}
		acfg := audit.Config{Dir: fc.Audit.Dir, Key: key, Logger: logger, Now: parts.now,
			OnChange: func(up bool, err error) { auditChanged(fc, alertsTo.Load(), up, err) }}
		if fc.Audit.Sync != "" {
			if acfg.Sync, err = audit.ParseSyncPolicy(fc.Audit.Sync); err != nil {
				return fail(err)
			}
		}
		if parts.audit, err = audit.Open(acfg); err != nil {
			return fail(err)
		}
		al := parts.audit
		closers = append(closers, func() {
			if err := al.Close(); err != nil {
				logger.Error("audit_close_failed", "error", err)
			}
		})
	}

	if fc.Audit.URL != "" {
		pool, err := newPool("audit", fc.Audit.URL, "PGWARDEN_AUDIT_PASSWORD", 4)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, pool.Close)
		if parts.pgAudit, err = audit.NewPGSink(context.Background(), audit.PGSinkConfig{Pool: pool, Logger: logger, Now: parts.now}); err != nil {
			return fail(err)
		}
		sink := parts.pgAudit
		closers = append(closers, func() { sink.Close() })
	}

	// With --share-state, the instances share one state database.
	var shared *sharedState
	if fc.ShareWindows {
		if fc.StateURL == "" {
			return fail(errors.New("--share-state needs the state database: --state-url"))
		}
		pool, err := newPool("state", fc.StateURL, "PGWARDEN_STATE_PASSWORD", 6)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, pool.Close)
		shared = &sharedState{pool: pool, instance: fc.Instance}
		if shared.instance == "" {
			host, _ := os.Hostname()
			shared.instance = host + "/" + fc.Listen
		}
	}
	st, closeState, err := openState(fc, pol, logger, shared)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, closeState)
	parts.state = st

	parts.metrics = metrics.New()
	if n := st.notifier; n != nil {
		sum := func(f func(notify.SinkStats) float64) func() float64 {
			return func() float64 {
				var t float64
				for _, ss := range n.Stats().Sinks {
					t += f(ss)
				}
				return t
			}
		}
		parts.metrics.GaugeFunc("pgwarden_notify_outbox_depth", "Alerts in the outbox not yet acknowledged by their sink.",
			sum(func(s notify.SinkStats) float64 { return float64(s.Pending) }))
		parts.metrics.CounterFunc("pgwarden_notify_delivered_total", "Alerts acknowledged by their sink.",
			sum(func(s notify.SinkStats) float64 { return float64(s.Delivered) }))
		parts.metrics.CounterFunc("pgwarden_notify_failures_total", "Failed delivery attempts.",
			sum(func(s notify.SinkStats) float64 { return float64(s.Failed) }))
		parts.metrics.CounterFunc("pgwarden_notify_dropped_total", "Alerts given up on (permanent error or attempts exhausted).",
			sum(func(s notify.SinkStats) float64 { return float64(s.Dropped) }))
	}
	// The keys of the service accounts the policy names (their tags name
	// the end users of pooled connections).
	serviceKeys, err := guard.LoadServiceKeys(pol, os.LookupEnv, os.ReadFile)
	if err != nil {
		return fail(err)
	}
	gcfg := guard.Config{Policy: pol, ServiceKeys: serviceKeys, MaxRowsPerStatement: fc.Limits.MaxRowsPerStatement,
		AuditFailOpen: fc.Audit.FailOpen, Logger: logger, Now: parts.now, Metrics: parts.metrics}
	if st.quarantine != nil {
		gcfg.Quarantine, parts.quarantine = st.quarantine, st.quarantine
	}
	if fc.StateURL != "" {
		// With a state database the quarantine list is shared by every
		// instance.
		pool, err := newPool("state", fc.StateURL, "PGWARDEN_STATE_PASSWORD", 2)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, pool.Close)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		q, err := quarantine.OpenPG(ctx, pool)
		cancel()
		if err != nil {
			return fail(err)
		}
		gcfg.Quarantine, parts.quarantine = q, q
	}
	if fc.DecisionLog != "" {
		f, err := os.OpenFile(fc.DecisionLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fail(fmt.Errorf("decision log: %w", err))
		}
		closers = append(closers, func() { f.Close() })
		gcfg.DecisionLog = f
	}
	if st.holds != nil {
		gcfg.Holds = st.holds
	}
	alertsPath := ""
	if fc.StateDir != "" {
		alertsPath = filepath.Join(fc.StateDir, "alerts.json")
	}
	if parts.alerts, err = alertlog.Open(alertsPath); err != nil {
		return fail(err)
	}
	tee := alertTee{parts.alerts}
	var spool *notify.Spool
	if st.notifier != nil {
		// An alert the outbox cannot take (its disk is full) waits in
		// memory and is retried.
		spool = notify.NewSpool(notify.SpoolConfig{Next: st.notifier, Logger: logger})
		tee = append(tee, spool)
	}
	gcfg.Alerts = tee
	alertsTo.Store(&tee)
	if parts.catalog != nil {
		gcfg.Catalog, gcfg.CatalogFor = parts.catalog.home, parts.catalog.forDatabase
	}
	var sinks auditTee
	if parts.audit != nil {
		sinks = append(sinks, parts.audit)
	}
	if parts.pgAudit != nil {
		sinks = append(sinks, parts.pgAudit)
	}
	switch len(sinks) {
	case 1:
		gcfg.Audit = sinks[0]
		parts.trail = sinks[0]
	case 2:
		gcfg.Audit = sinks
		parts.trail = sinks
	}
	var sharing *normsSharing
	var g *guard.Guard
	if shared != nil {
		pool, name := shared.pool, shared.instance
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		sharer, err := share.New(ctx, share.Config{Pool: pool, Instance: name, Now: parts.now, Logger: logger})
		cancel()
		if err != nil {
			return fail(err)
		}
		gcfg.Shared = sharer
		runCtx, stopShare := context.WithCancel(context.Background())
		runDone := make(chan struct{})
		crash.Loop(logger, "share_run", runDone, func() {
			sharer.Run(runCtx) // flushes once more when stopped
		})
		crash.Loop(logger, "share_prune", nil, func() {
			prune := time.NewTicker(time.Hour)
			defer prune.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-prune.C:
					if err := sharer.Prune(runCtx); err != nil {
						logger.Warn("share_prune_failed", "error", err)
					}
				}
			}
		})
		closers = append(closers, func() { stopShare(); <-runDone })
		logger.Info("sharing_windows", "instance", name)
		// g is set before the norms' sharer runs.
		sharing = &normsSharing{pool: pool, instance: name, onRemote: func(a []norm.Anomaly) { g.EnforceRemoteNorms(a) }}
	}
	model, normSharer, saveNorms, err := openNorms(fc, pol, logger, sharing)
	if err != nil {
		return fail(err)
	}
	gcfg.Norms = model
	if normSharer != nil {
		gcfg.NormShare = normSharer
	}
	g, err = guard.New(gcfg)
	if err != nil {
		return fail(err)
	}
	parts.guard = g
	if normSharer != nil {
		parts.normSharer = normSharer
		runCtx, stop := context.WithCancel(context.Background())
		runDone := make(chan struct{})
		crash.Loop(logger, "norm_share_run", runDone, func() {
			normSharer.Run(runCtx) // writes its queue once more when stopped
		})
		// Closed after the guard's last save (closers run in reverse).
		closers = append(closers, func() { stop(); <-runDone })
		logger.Info("sharing_norms", "instance", sharing.instance)
	}
	// Employees idle for a day leave the windows; the norm model closes its
	// buckets and days as the clock moves (drift is found then), and its
	// state is saved now and then and at exit.
	stop := make(chan struct{})
	done := make(chan struct{})
	crash.Loop(logger, "guard_upkeep", done, func() {
		sweep := time.NewTicker(10 * time.Minute)
		defer sweep.Stop()
		advance := time.NewTicker(2 * time.Second)
		defer advance.Stop()
		save := time.NewTicker(time.Minute)
		defer save.Stop()
		retry := time.NewTicker(time.Second)
		defer retry.Stop()
		var alertsErr error
		for {
			select {
			case <-retry.C:
				if spool != nil {
					spool.Retry()
				}
				err := parts.alerts.Flush()
				if err != nil && alertsErr == nil {
					logger.Error("alert_queue_not_saved", "error", err, "detail", "kept in memory and saved again every second")
				} else if err == nil && alertsErr != nil {
					logger.Info("alert_queue_saved")
				}
				alertsErr = err
			case <-sweep.C:
				if n := g.Windows().Sweep(parts.now()); n > 0 {
					logger.Debug("windows_swept", "employees", n)
				}
			case <-advance.C:
				g.AdvanceNorms(parts.now())
			case <-save.C:
				saveNorms()
			case <-stop:
				return
			}
		}
	})
	closers = append(closers, func() {
		close(stop)
		<-done
		g.AdvanceNorms(parts.now())
		g.ReleaseHeldNovelties()
		saveNorms()
	})
	logger.Info("guard_ready", "policy", pol.Name(), "rules", len(pol.Rules()), "shadow", pol.Shadow(),
		"catalog", parts.catalog != nil, "audit_dir", fc.Audit.Dir,
		"audit_db", parts.pgAudit != nil, "audit_fail_open", fc.Audit.FailOpen, "state_dir", fc.StateDir)
	return &parts, closeAll, nil
}
