package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/proxy/catalog"
)

// maxCatalogDatabases bounds the databases pgwarden keeps a catalog
// connection to, the catalog URL's own aside.
const maxCatalogDatabases = 64

// catalogs are the catalogs of the databases sessions connect to. Table
// OIDs are per database: the catalog URL's database (home) resolves the
// columns of its own sessions, and every other database gets a resolver
// and a small pool of its own, with the same role and settings, opened
// when a session first connects to it and closed when idle.
type catalogs struct {
	home   *catalog.Resolver
	homeDB string
	base   *pgxpool.Config
	ttl    time.Duration
	logger *slog.Logger

	mu     sync.Mutex
	others map[string]*catalog.Resolver
	pools  []*pgxpool.Pool
	full   bool // the limit was reached and logged
}

func newCatalogs(home *catalog.Resolver, base *pgxpool.Config, ttl time.Duration, logger *slog.Logger) *catalogs {
	db := base.ConnConfig.Database
	if db == "" {
		db = base.ConnConfig.User // PostgreSQL's default database
	}
	return &catalogs{home: home, homeDB: db, base: base, ttl: ttl, logger: logger, others: make(map[string]*catalog.Resolver)}
}

// forDatabase returns the catalog of database, or nil when pgwarden
// cannot have one (too many databases): the session's columns are then
// scanned by the content detectors only.
func (c *catalogs) forDatabase(database string) guard.Resolver {
	if database == c.homeDB || database == "" {
		return c.home
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.others[database]; r != nil {
		return r
	}
	if len(c.others) >= maxCatalogDatabases {
		if !c.full {
			c.full = true
			c.logger.Warn("catalog_databases_limit", "databases", maxCatalogDatabases,
				"consequence", "declared PII columns of further databases are not recognised; content detectors only")
		}
		return nil
	}
	cfg := c.base.Copy()
	cfg.ConnConfig.Database = database
	cfg.MaxConns, cfg.MinConns = 2, 0
	// An idle connection would make DROP DATABASE, or CREATE DATABASE
	// from it as a template, fail: PostgreSQL waits only 5s for other
	// sessions to leave.
	cfg.MaxConnIdleTime, cfg.HealthCheckPeriod = time.Second, 500*time.Millisecond
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg) // connects on first use
	if err != nil {
		c.logger.Warn("catalog_connection_failed", "database", database, "error", err)
		return nil
	}
	r, err := catalog.New(catalog.Config{Pool: pool, TTL: c.ttl, Logger: c.logger})
	if err != nil {
		pool.Close()
		c.logger.Warn("catalog_connection_failed", "database", database, "error", err)
		return nil
	}
	c.others[database] = r
	c.pools = append(c.pools, pool)
	return r
}

// invalidate forgets what every catalog has cached, after DDL.
func (c *catalogs) invalidate() {
	c.home.Invalidate()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.others {
		r.Invalidate()
	}
}

// close closes the pools of the other databases.
func (c *catalogs) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pools {
		p.Close()
	}
	c.pools, c.others = nil, make(map[string]*catalog.Resolver)
}
