package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgwarden/pgwarden/admin"
	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/state/alertlog"
	"github.com/pgwarden/pgwarden/state/holds"
)

// openAdmin builds the admin API and listens on cfg.Admin.Listen; Run
// serves it.
func (s *Server) openAdmin() error {
	token, err := AdminToken(s.cfg.Admin.TokenFile)
	if err != nil {
		return err
	}
	cfg := admin.Config{Token: token, Clock: s.clock, Now: s.now, Logger: s.logger, ClientCerts: s.cfg.Admin.ClientCAFile != "", Pprof: s.cfg.Admin.Pprof,
		Norm:     func(name string) (any, bool) { return s.guard.NormOf(name, s.now()) },
		Metrics:  promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}),
		Sessions: func() any { return s.proxy.List() }, KillSession: s.proxy.Kill,
		Employees: s.employees, Timeline: s.timeline, Policy: s.policySummary}
	s.wireAdminState(&cfg)
	ready, closeReady, err := s.readyChecks()
	if err != nil {
		return err
	}
	s.closeReady = closeReady
	cfg.Ready = ready
	h, err := admin.New(cfg)
	if err != nil {
		return err
	}
	if s.adminLn, err = s.adminListener(); err != nil {
		return err
	}
	if host, _, _ := net.SplitHostPort(s.adminLn.Addr().String()); !net.ParseIP(host).IsLoopback() {
		s.logger.Warn("admin_not_loopback", "addr", s.adminLn.Addr().String(), "note", "the admin API is reachable from the network; keep its token secret")
	}
	s.admin = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.logger.Info("admin_listening", "addr", s.adminLn.Addr().String(), "virtual_clock", s.clock != nil)
	return nil
}

// employees answers GET /v1/employees: every employee pgwarden knows of
// (from the windows, the live sessions and the alerts), with their recent
// figures.
func (s *Server) employees() any {
	type row struct {
		Employee       string `json:"employee"`
		ActiveDays     int    `json:"active_days"`
		Learning       bool   `json:"learning"`
		Peer           string `json:"peer,omitempty"`
		PIIValues24h   int64  `json:"pii_values_24h"`
		UnackedAlerts  int    `json:"unacknowledged_alerts"`
		OpenedSessions int    `json:"sessions_open"`
	}
	out := []row{}
	open := map[string]int{}
	for _, sess := range s.proxy.List() {
		open[sess.Employee]++
	}
	now := s.now()
	names := s.guard.Employees()
	for name := range open {
		names = append(names, name)
	}
	for _, a := range s.alerts.List("", false, 0) {
		names = append(names, a.Employee)
	}
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		if name == "" {
			continue
		}
		r := row{Employee: name, UnackedAlerts: len(s.alerts.List(name, true, 0)), OpenedSessions: open[name]}
		if n, ok := s.guard.NormOf(name, now); ok {
			r.ActiveDays, r.Learning, r.Peer = n.ActiveDays, n.Learning, n.Peer
		}
		for _, p := range s.guard.Timeline(name, now, 24) {
			r.PIIValues24h += p.PIIValues
		}
		out = append(out, r)
	}
	return out
}

// timeline answers GET /v1/employees/{name}/timeline: PII values per hour
// and the norm of an hour.
func (s *Server) timeline(name string, hours int) any {
	out := map[string]any{"employee": name, "points": s.guard.Timeline(name, s.now(), hours)}
	if n, ok := s.guard.NormOf(name, s.now()); ok {
		if fn, ok := n.Features["pii_values/1h"]; ok {
			out["norm"] = map[string]float64{"median": fn.Median, "high": fn.High}
		}
	}
	return out
}

// policySummary answers GET /v1/policy.
func (s *Server) policySummary() any {
	p := s.guard.Policy()
	rules := make([]string, 0, len(p.Rules()))
	for _, r := range p.Rules() {
		rules = append(rules, r.Name)
	}
	return map[string]any{"name": p.Name(), "shadow": p.Shadow(), "rules": rules, "norms": p.Norms().Enabled}
}

// wireAdminState gives the admin API what it reads and changes of the
// state: the audit trail, alerts, quarantine, holds, the policy file and
// the norms; each is left nil when it is not configured.
func (s *Server) wireAdminState(cfg *admin.Config) {
	if dir := s.cfg.Audit.Dir; dir != "" {
		cfg.Events = func(employee, typ string, limit int) (any, error) { return recentEvents(dir, employee, typ, limit) }
	}
	cfg.Alerts = func(employee string, unacked bool, limit int) any { return s.alerts.List(employee, unacked, limit) }
	cfg.Ack = func(id, by string) error {
		_, err := s.alerts.Ack(id, by, s.now())
		if errors.Is(err, alertlog.ErrNotFound) {
			return admin.ErrNotFound
		}
		return err
	}
	if q := s.quarantine; q != nil {
		cfg.Quarantine = func() (any, error) { return q.All() }
		cfg.Release = func(who string) (bool, error) {
			_, ok, err := q.Release(who)
			return ok, err
		}
	}
	if hs := s.holds; hs != nil {
		cfg.Holds = func() (any, error) { return hs.List() }
		cfg.DecideHold = func(id string, approve bool, by string) error {
			_, err := hs.Decide(id, approve, by)
			if errors.Is(err, holds.ErrNotFound) {
				return admin.ErrNotFound
			}
			return err
		}
	}
	if s.reloader != nil {
		cfg.Reload = func() error { return s.reloader.reload("admin API") }
	}
	if m := s.guard.Norms(); m != nil {
		cfg.Snapshot, cfg.Restore = m.Snapshot, m.Restore
		if s.normSharer != nil {
			// The shared form, with the rows it includes; a restore
			// replaces this instance's model only, and goes on sharing
			// from the rows it holds.
			cfg.Snapshot, cfg.Restore = s.normSharer.Snapshot, s.normSharer.Restore
		}
	}
	if trail := s.trail; trail != nil {
		cfg.Audit = func(action string, data map[string]any) {
			data["action"] = action
			raw, err := audit.MarshalData(data)
			if err == nil {
				_, err = trail.Append(context.Background(), audit.Event{Type: audit.TypeAdmin, Data: raw})
			}
			if err != nil {
				s.logger.Error("admin_audit_failed", "action", action, "error", err)
			}
		}
	}
}

// recentEvents is the newest limit events of the audit log in dir that
// match employee and typ (when set), oldest first.
func recentEvents(dir, employee, typ string, limit int) ([]audit.Event, error) {
	var ring []audit.Event
	err := audit.Read(dir, func(ev audit.Event) bool {
		return (employee == "" || ev.Employee == employee) && (typ == "" || ev.Type == typ) &&
			ev.Type != audit.TypeCheckpoint && ev.Type != audit.TypeFileStart
	}, func(ev audit.Event) error {
		ring = append(ring, ev)
		if len(ring) > limit {
			ring = ring[1:]
		}
		return nil
	})
	return ring, err
}

// adminListener listens on cfg.Admin.Listen, with TLS and client
// certificates when configured.
func (s *Server) adminListener() (net.Listener, error) {
	ac := &s.cfg.Admin
	var tc *tls.Config
	if ac.CertFile != "" || ac.KeyFile != "" {
		var err error
		if tc, err = clientTLSConfig(ac.CertFile, ac.KeyFile); err != nil {
			return nil, fmt.Errorf("admin TLS: %w", err)
		}
		if ac.ClientCAFile != "" {
			pem, err := os.ReadFile(ac.ClientCAFile)
			if err != nil {
				return nil, fmt.Errorf("admin client CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("admin client CA file %s holds no PEM certificate", ac.ClientCAFile)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
		}
	} else if ac.ClientCAFile != "" {
		return nil, errors.New("--admin-client-ca needs TLS: --admin-tls-cert and --admin-tls-key")
	}
	ln, err := net.Listen("tcp", ac.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return ln, nil
}
