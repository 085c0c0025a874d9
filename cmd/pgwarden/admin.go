package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/internal/admin"
)

// startAdmin serves the admin API on fc.Admin.Listen and returns a func
// that stops it.
func startAdmin(fc *fileConfig, g *guardParts, logger *slog.Logger) (func(), error) {
	token, err := adminToken(fc.Admin.TokenFile)
	if err != nil {
		return nil, err
	}
	cfg := admin.Config{Token: token, Clock: g.clock, Now: g.now, Logger: logger,
		Norm: func(name string) (any, bool) { return g.guard.NormOf(name, g.now()) }}
	if g.metrics != nil {
		cfg.Metrics = promhttp.HandlerFor(g.metrics.Registry, promhttp.HandlerOpts{})
	}
	if m := g.guard.Norms(); m != nil {
		cfg.Snapshot, cfg.Restore = m.Snapshot, m.Restore
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
	h, err := admin.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", fc.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); !net.ParseIP(host).IsLoopback() {
		logger.Warn("admin_not_loopback", "addr", ln.Addr().String(), "note", "the admin API is reachable from the network; keep its token secret")
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin_stopped", "error", err)
		}
	}()
	logger.Info("admin_listening", "addr", ln.Addr().String(), "virtual_clock", g.clock != nil)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
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
