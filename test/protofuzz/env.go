package protofuzz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/proxy/catalog"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// Policy declares the PII columns of pf_people, the table the sequences
// read, so that the guard resolves and counts their results.
const Policy = `version: 1
pii:
  columns:
    - match: public.pf_people.email
      category: email
    - match: public.pf_people.full_name
      category: name
`

// setupSQL creates pf_people, unless it exists, with a few rows the
// trust user may read.
var setupSQL = `create table if not exists pf_people (id int primary key, full_name text, email text);
insert into pf_people select i, 'Person ' || i, 'person' || i || '@example.com'
  from generate_series(1, 20) i on conflict do nothing;
grant select on pf_people to ` + pgx.Identifier{pgtest.TrustUser}.Sanitize()

// BlockRows is the "limit" proxy's row limit per statement: the large
// results of the generator pass it, the others do not.
const BlockRows = 1000

// Env is a PostgreSQL cluster and pgwardens in front of it: Direct is the
// cluster itself, Proxies relay without an inspector ("plain"), with the
// guard ("guard"), and with a guard that blocks statements past BlockRows
// rows ("limit").
type Env struct {
	Runner  *Runner
	Direct  Target
	Proxies []Target
	closers []func()
}

// NewEnv prepares c for the sequences and starts the proxies, which log to
// logger (nil: nowhere).
func NewEnv(ctx context.Context, c *pgtest.Cluster, logger *slog.Logger) (*Env, error) {
	admin, err := pgxpool.New(ctx, c.DSN(pgtest.SuperUser))
	if err != nil {
		return nil, err
	}
	e := &Env{
		Runner: &Runner{User: pgtest.TrustUser, Database: c.Database, Admin: admin},
		Direct: Target{Name: "postgres", Addr: c.Addr()},
	}
	e.closers = append(e.closers, admin.Close)
	if _, err := admin.Exec(ctx, setupSQL); err != nil {
		e.Close()
		return nil, fmt.Errorf("set up pf_people: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	res, err := catalog.New(catalog.Config{Pool: admin})
	if err != nil {
		e.Close()
		return nil, err
	}
	pol, err := policy.Parse("protofuzz.yaml", []byte(Policy))
	if err != nil {
		e.Close()
		return nil, err
	}
	g, err := guard.New(guard.Config{Policy: pol, Catalog: res, Logger: logger})
	if err != nil {
		e.Close()
		return nil, err
	}
	limited, err := guard.New(guard.Config{Policy: pol, Catalog: res, Logger: logger, MaxRowsPerStatement: BlockRows})
	if err != nil {
		e.Close()
		return nil, err
	}
	for _, p := range []struct {
		name   string
		blocks bool
		cfg    proxy.Config
	}{
		{"plain", false, proxy.Config{UpstreamAddr: c.Addr(), Logger: logger}},
		{"guard", false, proxy.Config{UpstreamAddr: c.Addr(), Logger: logger, Inspector: g,
			OnDDL: res.Invalidate, IsDDLTag: catalog.IsDDLTag}},
		{"limit", true, proxy.Config{UpstreamAddr: c.Addr(), Logger: logger, Inspector: limited,
			OnDDL: res.Invalidate, IsDDLTag: catalog.IsDDLTag}},
	} {
		t, err := e.startProxy(p.name, p.cfg)
		if err != nil {
			e.Close()
			return nil, err
		}
		t.Blocks = p.blocks
		e.Proxies = append(e.Proxies, t)
	}
	return e, nil
}

func (e *Env) startProxy(name string, cfg proxy.Config) (Target, error) {
	srv, err := proxy.NewServer(cfg)
	if err != nil {
		return Target{}, fmt.Errorf("proxy %s: %w", name, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Target{}, err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	e.closers = append(e.closers, func() {
		srv.Close()
		if err := <-served; !errors.Is(err, proxy.ErrServerClosed) {
			slog.Error("protofuzz: proxy serve", "proxy", name, "err", err)
		}
	})
	return Target{Name: name, Addr: ln.Addr().String(), Sessions: srv.Sessions}, nil
}

// Proxy returns the proxy target named name.
func (e *Env) Proxy(name string) Target {
	for _, t := range e.Proxies {
		if t.Name == name {
			return t
		}
	}
	panic("protofuzz: no proxy " + name)
}

// Close stops the proxies and closes the admin pool.
func (e *Env) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}
