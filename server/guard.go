package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/internal/clock"
	"github.com/pgwarden/pgwarden/internal/metrics"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/proxy/catalog"
	"github.com/pgwarden/pgwarden/state/alertlog"
	"github.com/pgwarden/pgwarden/state/cluster/share"
	"github.com/pgwarden/pgwarden/state/quarantine"
)

// Environment variables holding the passwords of pgwarden's own
// databases, when their URLs have none.
const (
	catalogPasswordEnv = "PGWARDEN_CATALOG_PASSWORD"
	auditPasswordEnv   = "PGWARDEN_AUDIT_PASSWORD"
	// StatePasswordEnv holds the state database's password.
	StatePasswordEnv = "PGWARDEN_STATE_PASSWORD"
)

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

// auditChanged alerts security (once the alerts are wired) that the audit
// log became unavailable or resumed (audit.Config.OnChange).
func (s *Server) auditChanged(up bool, err error) {
	t := s.alertsTo.Load()
	if t == nil {
		return
	}
	dir := s.cfg.Audit.Dir
	a := notify.Alert{Action: "alert", Rule: "audit:resumed", Severity: "medium", Scope: "instance",
		Reason: fmt.Sprintf("the audit log in %s is written again: sessions and statements are accepted and recorded", dir)}
	if !up {
		consequence := "pgwarden refuses statements and new sessions until it can (fail closed)"
		if s.cfg.Audit.FailOpen {
			consequence = "sessions carry on unrecorded (fail open)"
		}
		a.Rule, a.Severity = "audit:unavailable", "critical"
		a.Reason = fmt.Sprintf("the audit log in %s cannot be written (%v): %s", dir, err, consequence)
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

// NewPool connects a pool of pgwarden's own to url (what names it in
// errors), taking the password from the environment variable passwordEnv
// when the URL has none, and checks the connection within ctx.
func NewPool(ctx context.Context, what, url, passwordEnv string, maxConns int32) (*pgxpool.Pool, error) {
	pcfg, err := poolConfig(what, url, passwordEnv)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("%s connection: %w", what, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
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

// buildGuard builds the guard and what it writes to from the
// configuration: the clock, the policy, the catalogs, the audit trail, the
// state, the alerts and the norms.
func (s *Server) buildGuard(ctx context.Context) error {
	fc := &s.cfg
	if err := s.setClock(); err != nil {
		return err
	}
	pol := policy.Default()
	if fc.Policy != "" {
		var err error
		if pol, err = policy.Load(fc.Policy); err != nil {
			return err
		}
	}
	if err := s.openCatalogs(ctx); err != nil {
		return err
	}
	if err := s.openAudit(ctx); err != nil {
		return err
	}
	if err := s.openStateDB(ctx); err != nil {
		return err
	}
	if err := s.openState(pol); err != nil {
		return err
	}
	if err := s.openStream(ctx); err != nil {
		return err
	}
	s.metrics = metrics.New()
	s.notifyMetrics()
	s.streamMetrics()
	// The keys of the service accounts the policy names (their tags name
	// the end users of pooled connections).
	serviceKeys, err := guard.LoadServiceKeys(pol, os.LookupEnv, os.ReadFile)
	if err != nil {
		return err
	}
	gcfg := guard.Config{Policy: pol, ServiceKeys: serviceKeys, MaxRowsPerStatement: fc.Limits.MaxRowsPerStatement,
		AuditFailOpen: fc.Audit.FailOpen, Logger: s.logger, Now: s.now, Metrics: s.metrics}
	if err := s.wireRecords(ctx, &gcfg); err != nil {
		return err
	}
	if err := s.openSharing(ctx, &gcfg); err != nil {
		return err
	}
	if gcfg.Norms, s.normSharer, s.saveNorms, err = s.openNorms(ctx, pol); err != nil {
		return err
	}
	if s.normSharer != nil {
		gcfg.NormShare = s.normSharer
		s.logger.Info("sharing_norms", "instance", s.instance)
	}
	if s.guard, err = guard.New(gcfg); err != nil {
		return err
	}
	s.logger.Info("guard_ready", "policy", pol.Name(), "rules", len(pol.Rules()), "shadow", pol.Shadow(),
		"catalog", s.catalogs != nil, "audit_dir", fc.Audit.Dir,
		"audit_db", s.pgAudit != nil, "audit_fail_open", fc.Audit.FailOpen, "state_dir", fc.StateDir)
	return nil
}

// setClock sets the clock the guard runs on: the wall's, or a virtual one
// that only the admin API moves.
func (s *Server) setClock() error {
	switch s.cfg.Clock {
	case "", "wall":
	case "virtual":
		start := time.Now().UTC()
		if s.cfg.ClockStart != "" {
			t, err := time.Parse(time.RFC3339, s.cfg.ClockStart)
			if err != nil {
				return fmt.Errorf("--clock-start: %w", err)
			}
			start = t
		}
		s.clock = clock.NewVirtual(start)
		s.now = s.clock.Now
		s.logger.Warn("virtual_clock", "time", start, "note", "time moves only through POST /v1/clock on the admin listener")
	default:
		return fmt.Errorf("--clock %q: want wall or virtual", s.cfg.Clock)
	}
	return nil
}

// openCatalogs connects to the catalog that resolves declared PII
// columns.
func (s *Server) openCatalogs(ctx context.Context) error {
	c := &s.cfg.Catalog
	if c.URL == "" {
		s.logger.Warn("no_catalog_connection", "consequence", "declared PII columns cannot be recognised; content detectors only",
			"fix", "set --catalog-url (or catalog.url)")
		return nil
	}
	var err error
	if s.catalogPool, err = NewPool(ctx, "catalog", c.URL, catalogPasswordEnv, 4); err != nil {
		return err
	}
	home, err := catalog.New(catalog.Config{Pool: s.catalogPool, TTL: time.Duration(c.TTL), Logger: s.logger})
	if err != nil {
		return err
	}
	base, err := poolConfig("catalog", c.URL, catalogPasswordEnv)
	if err != nil {
		return err
	}
	s.catalogs = newCatalogs(home, base, time.Duration(c.TTL), s.logger)
	return nil
}

// openAudit opens the audit log and the central audit table.
func (s *Server) openAudit(ctx context.Context) error {
	fc := &s.cfg
	if fc.Audit.Dir != "" {
		key, err := AuditKey(fc.Audit.KeyFile)
		if err != nil {
			return err
		}
		if key == nil {
			return fmt.Errorf("the audit log needs a checkpoint key: --audit-key-file or %s", AuditKeyEnv)
		}
		acfg := audit.Config{Dir: fc.Audit.Dir, Key: key, Logger: s.logger, Now: s.now, OnChange: s.auditChanged, Tap: s.tap}
		if fc.Audit.Sync != "" {
			if acfg.Sync, err = audit.ParseSyncPolicy(fc.Audit.Sync); err != nil {
				return err
			}
		}
		if s.audit, err = audit.Open(acfg); err != nil {
			return err
		}
	}
	if fc.Audit.URL != "" {
		var err error
		if s.auditPool, err = NewPool(ctx, "audit", fc.Audit.URL, auditPasswordEnv, 4); err != nil {
			return err
		}
		if s.pgAudit, err = audit.NewPGSink(ctx, audit.PGSinkConfig{Pool: s.auditPool, Logger: s.logger, Now: s.now}); err != nil {
			return err
		}
	}
	return nil
}

// openStateDB connects to the state database: one pool for the stored
// norms, the shared quarantine list and, with --share-state, the shared
// windows, norms and outbox.
func (s *Server) openStateDB(ctx context.Context) error {
	fc := &s.cfg
	if fc.ShareWindows && fc.StateURL == "" {
		return errors.New("--share-state needs the state database: --state-url")
	}
	if fc.StateURL == "" {
		return nil
	}
	conns := int32(4)
	if streaming(fc) && (fc.ShareWindows || fc.StateDir == "") {
		conns += 2 // the stream's outbox: a delivery and a spill at a time
	}
	if fc.ShareWindows {
		conns += 6
		s.instance = fc.Instance
		if s.instance == "" {
			host, _ := os.Hostname()
			s.instance = host + "/" + fc.Listen
		}
	}
	var err error
	s.statePool, err = NewPool(ctx, "state", fc.StateURL, StatePasswordEnv, conns)
	return err
}

// notifyMetrics exports the notifier's figures.
func (s *Server) notifyMetrics() {
	n := s.notifier
	if n == nil {
		return
	}
	sum := func(f func(notify.SinkStats) float64) func() float64 {
		return func() float64 {
			var t float64
			for _, ss := range n.Stats().Sinks {
				t += f(ss)
			}
			return t
		}
	}
	s.metrics.GaugeFunc("pgwarden_notify_outbox_depth", "Alerts in the outbox not yet acknowledged by their sink.",
		sum(func(s notify.SinkStats) float64 { return float64(s.Pending) }))
	s.metrics.CounterFunc("pgwarden_notify_delivered_total", "Alerts acknowledged by their sink.",
		sum(func(s notify.SinkStats) float64 { return float64(s.Delivered) }))
	s.metrics.CounterFunc("pgwarden_notify_failures_total", "Failed delivery attempts.",
		sum(func(s notify.SinkStats) float64 { return float64(s.Failed) }))
	s.metrics.CounterFunc("pgwarden_notify_dropped_total", "Alerts given up on (permanent error or attempts exhausted).",
		sum(func(s notify.SinkStats) float64 { return float64(s.Dropped) }))
}

// stateMetrics registers the gauges and counters of what security and
// the DBA watch beside the decisions: policy reloads, holds waiting,
// employees quarantined, and whether the upstream accepts connections.
func (s *Server) stateMetrics(upstream string) {
	s.metrics.CounterFunc("pgwarden_policy_reloads_total", "Policy reloads applied.", func() float64 {
		if s.reloader == nil {
			return 0
		}
		return float64(s.reloader.reloads.Load())
	})
	s.metrics.CounterFunc("pgwarden_policy_reload_failures_total", "Policy reloads refused (the policy in force was kept).", func() float64 {
		if s.reloader == nil {
			return 0
		}
		return float64(s.reloader.failures.Load())
	})
	s.metrics.GaugeFunc("pgwarden_holds_pending", "Statements held for approval.", func() float64 {
		if s.holds == nil {
			return 0
		}
		l, err := s.holds.List()
		if err != nil {
			return 0
		}
		return float64(len(l))
	})
	s.metrics.GaugeFunc("pgwarden_employees_quarantined", "Employees quarantined until security releases them.", func() float64 {
		if s.quarantine == nil {
			return 0
		}
		l, err := s.quarantine.All()
		if err != nil {
			return 0
		}
		return float64(len(l))
	})
	up := &upstreamProbe{check: upstreamCheck(upstream)}
	s.metrics.GaugeFunc("pgwarden_upstream_up", "1 when the upstream server accepted a TCP connection at the last probe (at most every 10 s, at scrape time), else 0.", up.up)
}

// upstreamProbe runs the readiness check of the upstream at scrape time,
// at most every 10 s.
type upstreamProbe struct {
	check func(context.Context) error
	mu    sync.Mutex
	at    time.Time
	ok    bool
}

func (p *upstreamProbe) up() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.at) >= 10*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		p.at, p.ok = time.Now(), p.check(ctx) == nil
		cancel()
	}
	if p.ok {
		return 1
	}
	return 0
}

// wireRecords gives the guard what it records decisions in: the
// quarantine list, the decision log, holds, the alert queue and notifier,
// the catalogs and the audit trail.
func (s *Server) wireRecords(ctx context.Context, gcfg *guard.Config) error {
	fc := &s.cfg
	if s.fileQuarantine != nil {
		gcfg.Quarantine, s.quarantine = s.fileQuarantine, s.fileQuarantine
	}
	if s.statePool != nil {
		// With a state database the quarantine list is shared by every
		// instance.
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		q, err := quarantine.OpenPG(qctx, s.statePool)
		cancel()
		if err != nil {
			return err
		}
		gcfg.Quarantine, s.quarantine = q, q
	}
	if fc.DecisionLog != "" {
		f, err := os.OpenFile(fc.DecisionLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("decision log: %w", err)
		}
		s.decisionLog, gcfg.DecisionLog = f, f
	}
	if s.holds != nil {
		gcfg.Holds = s.holds
	}
	alertsPath := ""
	if fc.StateDir != "" {
		alertsPath = filepath.Join(fc.StateDir, "alerts.json")
	}
	var err error
	if s.alerts, err = alertlog.Open(alertsPath); err != nil {
		return err
	}
	tee := alertTee{s.alerts}
	if s.notifier != nil {
		// An alert the outbox cannot take (its disk is full) waits in
		// memory and is retried.
		s.spool = notify.NewSpool(notify.SpoolConfig{Next: s.notifier, Logger: s.logger})
		tee = append(tee, s.spool)
	}
	gcfg.Alerts = tee
	s.alertsTo.Store(&tee)
	if s.catalogs != nil {
		gcfg.Catalog, gcfg.CatalogFor = s.catalogs.home, s.catalogs.forDatabase
	}
	var sinks auditTee
	if s.audit != nil {
		sinks = append(sinks, s.audit)
	}
	if s.pgAudit != nil {
		sinks = append(sinks, s.pgAudit)
	}
	switch len(sinks) {
	case 1:
		gcfg.Audit, s.trail = sinks[0], sinks[0]
	case 2:
		gcfg.Audit, s.trail = sinks, sinks
	}
	return nil
}

// openSharing shares the windows with the other instances through the
// state database (--share-state).
func (s *Server) openSharing(ctx context.Context, gcfg *guard.Config) error {
	if !s.cfg.ShareWindows {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var err error
	s.sharer, err = share.New(sctx, share.Config{Pool: s.statePool, Instance: s.instance, Now: s.now, Logger: s.logger})
	if err != nil {
		return err
	}
	gcfg.Shared = s.sharer
	s.logger.Info("sharing_windows", "instance", s.instance)
	return nil
}

// enforceRemoteNorms acts on the anomalies other instances found.
func (s *Server) enforceRemoteNorms(a []norm.Anomaly) { s.guard.EnforceRemoteNorms(a) }
