package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/admin"
)

// readyChecks are the dependencies of GET /v1/ready: the upstream server,
// the audit log (its directory and its central database), the catalog
// connection and the state database, each only when configured. The
// database checks use pools of their own, one connection each, so that a
// probe neither waits behind sessions' catalog reads nor takes their
// connections. The returned func closes those pools.
func (s *Server) readyChecks() ([]admin.ReadyCheck, func(), error) {
	fc, logger := &s.cfg, s.logger
	addr, _, _, err := upstreamSettings(fc.Upstream.URL, fc.Upstream.TLSMode, fc.Upstream.CAFile, fc.Upstream.ServerName)
	if err != nil {
		return nil, nil, err
	}
	checks := []admin.ReadyCheck{{Name: "upstream", Check: upstreamCheck(addr)}}
	if s.audit != nil {
		checks = append(checks, admin.ReadyCheck{Name: "audit", Check: auditCheck(fc.Audit.Dir, s.audit.Err)})
	}
	var pools []*pgxpool.Pool
	closeAll := func() {
		for _, p := range pools {
			p.Close()
		}
	}
	for _, db := range []struct{ name, url, env string }{
		{"audit_db", fc.Audit.URL, "PGWARDEN_AUDIT_PASSWORD"},
		{"catalog", fc.Catalog.URL, "PGWARDEN_CATALOG_PASSWORD"},
		{"state", fc.StateURL, "PGWARDEN_STATE_PASSWORD"},
	} {
		if db.url == "" {
			continue
		}
		pool, err := probePool(db.name, db.url, db.env)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		pools = append(pools, pool)
		checks = append(checks, admin.ReadyCheck{Name: db.name, Check: pool.Ping})
	}
	names := make([]string, len(checks))
	for i, c := range checks {
		names[i] = c.Name
	}
	logger.Debug("readiness_checks", "checks", names)
	return checks, closeAll, nil
}

// upstreamCheck connects to the upstream server and hangs up before the
// startup message, which PostgreSQL does not log.
func upstreamCheck(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
}

// auditCheck fails while the audit log has failed (it fails closed then),
// and when its directory can no longer take a file (removed, remounted
// read-only, full).
func auditCheck(dir string, failed func() error) func(context.Context) error {
	return func(context.Context) error {
		if err := failed(); err != nil {
			return err
		}
		f, err := os.CreateTemp(dir, ".ready-*")
		if err != nil {
			return fmt.Errorf("audit directory: %w", err)
		}
		_, werr := f.Write([]byte("ready\n"))
		err = errors.Join(werr, f.Close(), os.Remove(f.Name()))
		if err != nil {
			return fmt.Errorf("audit directory: %w", err)
		}
		return nil
	}
}

// probePool is a one-connection pool to url that connects when first
// pinged.
func probePool(what, url, env string) (*pgxpool.Pool, error) {
	pcfg, err := poolConfig(what, url, env)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns, pcfg.MinConns = 1, 0
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("%s readiness connection: %w", what, err)
	}
	return pool, nil
}
