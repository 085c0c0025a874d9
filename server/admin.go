package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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
	"github.com/pgwarden/pgwarden/state/adminlog"
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
	scopes, err := certScopes(s.cfg.Admin.ClientScopes)
	if err != nil {
		return err
	}
	cfg := admin.Config{Token: token, Clock: s.clock, Now: s.now, Logger: s.logger, ClientCerts: s.cfg.Admin.ClientCAFile != "", CertScopes: scopes, Pprof: s.cfg.Admin.Pprof,
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

// certScopes reads admin.client_scopes.
func certScopes(m map[string]string) (map[string]admin.Scope, error) {
	out := make(map[string]admin.Scope, len(m))
	for name, v := range m {
		sc, err := admin.ParseScope(v)
		if err != nil {
			return nil, fmt.Errorf("admin.client_scopes[%q]: %w", name, err)
		}
		out[name] = sc
	}
	return out, nil
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
		cfg.Events = func(f admin.EventFilter) (any, int, error) { return findEvents(dir, f) }
	}
	cfg.Alerts = func(f admin.AlertFilter) (any, int) {
		page, total := []alertlog.Entry{}, 0
		for _, a := range s.alerts.List("", f.Unacked, 0) {
			if !f.Match(a.Employee, a.Action, a.Rule, a.Time) {
				continue
			}
			if total >= f.Offset && (f.Limit == 0 || len(page) < f.Limit) {
				page = append(page, a)
			}
			total++
		}
		return page, total
	}
	cfg.Ack = func(id, by, note string) error {
		_, err := s.alerts.Ack(id, by, note, s.now())
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
		cfg.DecideHold = func(id string, approve bool, by, via, reason string) (string, error) {
			h, err := hs.DecideWith(id, holds.Decision{Approve: approve, By: by, Via: via, Reason: reason})
			if errors.Is(err, holds.ErrNotFound) {
				return "", admin.ErrNotFound
			}
			return h.Employee, err
		}
		cfg.HoldOf = func(id string) (admin.HoldSummary, bool) {
			l, _ := hs.List()
			for _, h := range l {
				if h.ID == id {
					return admin.HoldSummary{Employee: h.Employee, Rule: h.Rule, Reason: h.Reason, Statement: h.Statement,
						Justification: h.Justification, Deadline: h.Deadline}, true
				}
			}
			return admin.HoldSummary{}, false
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
	if s.trail != nil {
		cfg.Audit = func(action string, data map[string]any) {
			if err := s.auditAdmin(action, data); err != nil {
				s.logger.Error("admin_audit_failed", "action", action, "error", err)
			}
		}
	}
}

// auditAdmin appends an admin event: data says who, how and why; its
// "employee", when set, is the event's employee, so that the employee's
// trail shows what was done about them.
func (s *Server) auditAdmin(action string, data map[string]any) error {
	data["action"] = action
	ev := audit.Event{Type: audit.TypeAdmin}
	if emp, ok := data["employee"].(string); ok {
		ev.Employee = emp
		delete(data, "employee")
	}
	raw, err := audit.MarshalData(data)
	if err != nil {
		return err
	}
	ev.Data = raw
	_, err = s.trail.Append(context.Background(), ev)
	return err
}

// drainAdminActions audits the changes the command line made in the
// state directory (users release, holds approve and deny) or the state
// database (users release --state-url), each once its event is written.
func (s *Server) drainAdminActions() {
	if s.trail == nil {
		return
	}
	audit := func(a adminlog.Action) error {
		data := map[string]any{"by": a.By, "via": a.Via, "at": a.At}
		for k, v := range map[string]string{"reason": a.Reason, "employee": a.Employee, "hold_id": a.HoldID, "rule": a.Rule} {
			if v != "" {
				data[k] = v
			}
		}
		return s.auditAdmin(a.Action, data)
	}
	var err error
	if s.cfg.StateDir != "" {
		err = adminlog.Drain(s.cfg.StateDir, audit)
	}
	if s.statePool != nil && err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = adminlog.DrainPG(ctx, s.statePool, audit)
		cancel()
	}
	if err != nil {
		s.logger.Error("admin_actions_not_audited", "error", err, "detail", "tried again every second")
	}
}

// findEvents is the page of the audit log in dir that f asks for: of the
// events that match, oldest first, the f.Limit that come after skipping
// the f.Offset newest; and how many match in all.
func findEvents(dir string, f admin.EventFilter) ([]audit.Event, int, error) {
	keep := f.Limit + f.Offset
	var ring []audit.Event
	total := 0
	err := audit.Read(dir, func(ev audit.Event) bool {
		if ev.Type == audit.TypeCheckpoint || ev.Type == audit.TypeFileStart || !f.MatchSeq(ev.Seq) {
			return false
		}
		var d struct {
			Action string `json:"action"`
			Rule   string `json:"rule"`
		}
		if f.Action != "" || f.Rule != "" {
			json.Unmarshal(ev.Data, &d)
		}
		return f.Match(ev.Seq, ev.Employee, ev.Type, d.Action, d.Rule, ev.Time)
	}, func(ev audit.Event) error {
		total++
		ring = append(ring, ev)
		if len(ring) > keep {
			ring = ring[1:]
		}
		return nil
	})
	end := max(0, len(ring)-f.Offset)
	page := append([]audit.Event{}, ring[max(0, end-f.Limit):end]...)
	return page, total, err
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
