package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgwarden/pgwarden/admin"
	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/state/alertlog"
	"github.com/pgwarden/pgwarden/state/holds"
)

// startAdmin serves the admin API on fc.Admin.Listen and returns a func
// that stops it.
func startAdmin(fc *config.Config, g *guardParts, srv *proxy.Server, rl *reloader, logger *slog.Logger) (func(), error) {
	token, err := adminToken(fc.Admin.TokenFile)
	if err != nil {
		return nil, err
	}
	cfg := admin.Config{Token: token, Clock: g.clock, Now: g.now, Logger: logger, ClientCerts: fc.Admin.ClientCAFile != "", Pprof: fc.Admin.Pprof,
		Norm: func(name string) (any, bool) { return g.guard.NormOf(name, g.now()) }}
	if g.metrics != nil {
		cfg.Metrics = promhttp.HandlerFor(g.metrics.Registry, promhttp.HandlerOpts{})
	}
	cfg.Sessions = func() any { return srv.List() }
	cfg.Employees = func() any {
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
		for _, s := range srv.List() {
			open[s.Employee]++
		}
		now := g.now()
		names := g.guard.Employees()
		for name := range open {
			names = append(names, name)
		}
		for _, a := range g.alerts.List("", false, 0) {
			names = append(names, a.Employee)
		}
		slices.Sort(names)
		for _, name := range slices.Compact(names) {
			if name == "" {
				continue
			}
			r := row{Employee: name, UnackedAlerts: len(g.alerts.List(name, true, 0)), OpenedSessions: open[name]}
			if n, ok := g.guard.NormOf(name, now); ok {
				r.ActiveDays, r.Learning, r.Peer = n.ActiveDays, n.Learning, n.Peer
			}
			for _, p := range g.guard.Timeline(name, now, 24) {
				r.PIIValues24h += p.PIIValues
			}
			out = append(out, r)
		}
		return out
	}
	cfg.Timeline = func(name string, hours int) any {
		out := map[string]any{"employee": name, "points": g.guard.Timeline(name, g.now(), hours)}
		if n, ok := g.guard.NormOf(name, g.now()); ok {
			if fn, ok := n.Features["pii_values/1h"]; ok {
				out["norm"] = map[string]float64{"median": fn.Median, "high": fn.High}
			}
		}
		return out
	}
	if fc.Audit.Dir != "" {
		dir := fc.Audit.Dir
		cfg.Events = func(employee, typ string, limit int) (any, error) {
			// The newest limit events that match, oldest first.
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
	}
	cfg.Alerts = func(employee string, unacked bool, limit int) any { return g.alerts.List(employee, unacked, limit) }
	cfg.Ack = func(id, by string) error {
		_, err := g.alerts.Ack(id, by, g.now())
		if errors.Is(err, alertlog.ErrNotFound) {
			return admin.ErrNotFound
		}
		return err
	}
	cfg.KillSession = srv.Kill
	if q := g.quarantine; q != nil {
		cfg.Quarantine = func() (any, error) { return q.All() }
		cfg.Release = func(who string) (bool, error) {
			_, ok, err := q.Release(who)
			return ok, err
		}
	}
	if hs := g.state.holds; hs != nil {
		cfg.Holds = func() (any, error) { return hs.List() }
		cfg.DecideHold = func(id string, approve bool, by string) error {
			_, err := hs.Decide(id, approve, by)
			if errors.Is(err, holds.ErrNotFound) {
				return admin.ErrNotFound
			}
			return err
		}
	}
	cfg.Policy = func() any {
		p := g.guard.Policy()
		rules := make([]string, 0, len(p.Rules()))
		for _, r := range p.Rules() {
			rules = append(rules, r.Name)
		}
		return map[string]any{"name": p.Name(), "shadow": p.Shadow(), "rules": rules, "norms": p.Norms().Enabled}
	}
	if rl != nil {
		cfg.Reload = func() error { return rl.reload("admin API") }
	}
	if m := g.guard.Norms(); m != nil {
		cfg.Snapshot, cfg.Restore = m.Snapshot, m.Restore
		if g.normSharer != nil {
			// The shared form, with the rows it includes; a restore
			// replaces this instance's model only, and goes on sharing
			// from the rows it holds.
			cfg.Snapshot, cfg.Restore = g.normSharer.Snapshot, g.normSharer.Restore
		}
	}
	if g.trail != nil {
		trail := g.trail
		cfg.Audit = func(action string, data map[string]any) {
			data["action"] = action
			raw, err := audit.MarshalData(data)
			if err == nil {
				_, err = trail.Append(context.Background(), audit.Event{Type: audit.TypeAdmin, Data: raw})
			}
			if err != nil {
				logger.Error("admin_audit_failed", "action", action, "error", err)
			}
		}
	}
	ready, closeReady, err := readyChecks(fc, g, logger)
	if err != nil {
		return nil, err
	}
	cfg.Ready = ready
	h, err := admin.New(cfg)
	if err != nil {
		closeReady()
		return nil, err
	}
	ln, err := net.Listen("tcp", fc.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	if fc.Admin.CertFile != "" || fc.Admin.KeyFile != "" {
		tc, err := clientTLSConfig(fc.Admin.CertFile, fc.Admin.KeyFile)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("admin TLS: %w", err)
		}
		if fc.Admin.ClientCAFile != "" {
			pem, err := os.ReadFile(fc.Admin.ClientCAFile)
			if err != nil {
				ln.Close()
				return nil, fmt.Errorf("admin client CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				ln.Close()
				return nil, fmt.Errorf("admin client CA file %s holds no PEM certificate", fc.Admin.ClientCAFile)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
		}
		ln = tls.NewListener(ln, tc)
	} else if fc.Admin.ClientCAFile != "" {
		ln.Close()
		return nil, errors.New("--admin-client-ca needs TLS: --admin-tls-cert and --admin-tls-key")
	}
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); !net.ParseIP(host).IsLoopback() {
		logger.Warn("admin_not_loopback", "addr", ln.Addr().String(), "note", "the admin API is reachable from the network; keep its token secret")
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin_stopped", "error", err)
		}
	}()
	logger.Info("admin_listening", "addr", ln.Addr().String(), "virtual_clock", g.clock != nil)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		closeReady()
	}, nil
}

// adminToken reads the admin bearer token from a file, or from
// PGWARDEN_ADMIN_TOKEN.
func adminToken(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("admin token: %w", err)
		}
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if t := os.Getenv("PGWARDEN_ADMIN_TOKEN"); t != "" {
		return []byte(t), nil
	}
	return nil, errors.New("the admin API needs a bearer token: --admin-token-file or PGWARDEN_ADMIN_TOKEN")
}
