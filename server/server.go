package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/internal/buildinfo"
	"github.com/pgwarden/pgwarden/internal/clock"
	"github.com/pgwarden/pgwarden/internal/crash"
	"github.com/pgwarden/pgwarden/internal/lazylog"
	"github.com/pgwarden/pgwarden/internal/metrics"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/proxy/catalog"
	"github.com/pgwarden/pgwarden/state/alertlog"
	"github.com/pgwarden/pgwarden/state/cluster/normshare"
	"github.com/pgwarden/pgwarden/state/cluster/share"
	"github.com/pgwarden/pgwarden/state/holds"
	"github.com/pgwarden/pgwarden/state/quarantine"
)

// Server is pgwarden serve: the proxy, its guard and what they write to.
type Server struct {
	cfg    config.Config
	logger *slog.Logger
	clock  *clock.Virtual // nil on the wall clock
	now    func() time.Time

	// The pools, one per database; nil when it is not configured.
	catalogPool, auditPool, statePool *pgxpool.Pool
	// instance names this instance among those sharing the state database.
	instance string

	catalogs *catalogs
	audit    *audit.Log
	pgAudit  *audit.PGSink
	trail    auditAppender // nil without an audit trail

	// The state directory's files; nil without --state-dir.
	fileQuarantine *quarantine.List
	holds          *holds.Registry
	outboxDB       *bbolt.DB
	// quarantine is the list in force: the state directory's, or the state
	// database's when configured (shared by instances); nil without either.
	quarantine quarantine.Store
	notifier   *notify.Notifier // nil without sinks
	// stream sends the whole trail to SIEMs; nil without a receiver.
	stream      atomic.Pointer[notify.Stream]
	streamWhere string        // where its outbox and cursor are, for logs
	outboxWhere string        // where the notifier's outbox is, for logs
	alerts      *alertlog.Log // security's queue
	spool       *notify.Spool // nil without a notifier
	alertsTo    atomic.Pointer[alertTee]
	decisionLog *os.File

	metrics    *metrics.Metrics
	sharer     *share.Sharer     // nil unless --share-state
	normSharer *normshare.Sharer // nil unless --share-state
	saveNorms  func()
	guard      *guard.Guard

	proxy   *proxy.Server
	ln      net.Listener
	admin   *http.Server // nil without --admin-listen
	adminLn net.Listener
	// closeReady closes the readiness probes' pools.
	closeReady func()
	// tls keeps the TLS files current; nil when none is configured.
	tls      *tlsFiles
	reloader *reloader // nil without a policy file

	hurry     chan struct{}
	hurryOnce sync.Once
	closeOnce sync.Once
}

// auditAppender is the audit trail as the server's other parts write to it.
type auditAppender interface {
	Append(ctx context.Context, ev audit.Event) (uint64, error)
}

// New builds the server cfg describes and listens on cfg.Listen and
// cfg.Admin.Listen; Run serves. cfg should have its defaults set and be
// valid (config.Config.SetDefaults, Validate). ctx bounds the connections
// made while building. On error, everything opened is closed again.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger) (_ *Server, err error) {
	if logger == nil {
		logger = slog.Default()
	}
	// Each session derives loggers with its own attributes; formatting
	// them waits until one of its lines is written.
	logger = slog.New(lazylog.Wrap(logger.Handler()))
	s := &Server{cfg: cfg, logger: logger, now: time.Now, hurry: make(chan struct{})}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	pcfg, err := s.proxyConfig()
	if err != nil {
		return nil, err
	}
	if s.tls, err = newTLSFiles(&s.cfg, &pcfg, logger); err != nil {
		return nil, err
	}
	if err := s.buildGuard(ctx); err != nil {
		return nil, err
	}
	pcfg.Inspector = s.guard
	pcfg.Observe = s.metrics.Observe
	s.stateMetrics(pcfg.UpstreamAddr)
	if s.catalogs != nil {
		pcfg.OnDDL, pcfg.IsDDLTag = s.catalogs.invalidate, catalog.IsDDLTag
	}
	if s.proxy, err = proxy.NewServer(pcfg); err != nil {
		return nil, err
	}
	if pcfg.Reuse != nil {
		s.reuseMetrics()
	}
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, err
	}
	logger.Info("listening", "version", buildinfo.Get().Version, "addr", s.ln.Addr().String(), "upstream", pcfg.UpstreamAddr, "upstream_tls", string(pcfg.UpstreamTLSMode),
		"client_tls", pcfg.ClientTLS != nil, "max_rows_per_statement", cfg.Limits.MaxRowsPerStatement)
	if cfg.Policy != "" {
		s.reloader = &reloader{path: cfg.Policy, g: s.guard, log: logger, alerts: alertTee{s.alerts}}
		if s.notifier != nil {
			s.reloader.alerts = alertTee{s.alerts, s.notifier}
		}
	}
	if cfg.Admin.Listen != "" {
		if err := s.openAdmin(); err != nil {
			return nil, err
		}
	} else if s.clock != nil {
		return nil, errors.New("--clock virtual needs the admin listener (--admin-listen) to move the clock")
	}
	return s, nil
}

// Addr is the address the proxy listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// AdminAddr is the address the admin API listens on; nil without one.
func (s *Server) AdminAddr() net.Addr {
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}

// Reload reads the policy file again and applies it if it is valid; an
// invalid file is logged and alerted, and the policy in force stays. why
// says what asked (SIGHUP, the admin API). Without a policy file the
// built-in policy stays, which is logged.
func (s *Server) Reload(why string) (err error) {
	defer crash.Catch(s.logger, "policy_reload", &err)
	if s.tls != nil {
		// Certificates are read again on SIGHUP too; a bad one is
		// logged and the ones in force stay.
		s.tls.reload(why, true)
	}
	if s.reloader == nil {
		s.logger.Info("policy_reload_skipped", "trigger", why, "reason", "the built-in policy is in force (no --policy)")
		return nil
	}
	return s.reloader.reload(why)
}

// Hurry closes at once the sessions a shutdown in progress (or the next
// one) would wait for.
func (s *Server) Hurry() { s.hurryOnce.Do(func() { close(s.hurry) }) }

// Close releases what New opened, in order: the listeners, the decision
// log, the state directory's outbox, the state database, the central audit
// table, the audit log, the catalogs. Call it after Run has returned, or
// instead of Run. It is safe to call twice.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		for _, ln := range []net.Listener{s.ln, s.adminLn} {
			if ln != nil {
				ln.Close()
			}
		}
		if s.decisionLog != nil {
			s.decisionLog.Close()
		}
		if s.closeReady != nil {
			s.closeReady()
		}
		if s.outboxDB != nil {
			s.outboxDB.Close()
		}
		if s.statePool != nil {
			s.statePool.Close()
		}
		if s.pgAudit != nil {
			s.pgAudit.Close()
		}
		if s.auditPool != nil {
			s.auditPool.Close()
		}
		if s.audit != nil {
			if err := s.audit.Close(); err != nil {
				s.logger.Error("audit_close_failed", "error", err)
			}
		}
		if s.catalogs != nil {
			s.catalogs.close()
		}
		if s.catalogPool != nil {
			s.catalogPool.Close()
		}
	})
	return nil
}

// Run serves until ctx is done or serving fails, then stops: the
// listeners close, sessions get cfg.Limits.ShutdownTimeout to finish (less
// after Hurry), and the loops stop in the reverse order of their start.
// It returns nil after a shutdown ctx asked for.
func (s *Server) Run(ctx context.Context) error {
	delivery := startStage(s.logger, s.deliveryLoops())
	sharing := startStage(s.logger, s.sharingLoops())
	upkeep := startStage(s.logger, []loop{{"guard_upkeep", s.upkeep}})

	err := s.serve(ctx)

	upkeep.stop()
	s.guard.AdvanceNorms(s.now())
	s.guard.ReleaseHeldNovelties()
	s.saveNorms()
	sharing.stop()
	if s.notifier != nil {
		// Give deliveries in progress a moment; the outbox keeps the rest
		// for the next start.
		fctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := s.notifier.Flush(fctx); err != nil {
			s.logger.Warn("notifications_pending_at_exit", "kept_in", s.outboxWhere)
		}
		cancel()
	}
	if st := s.stream.Load(); st != nil {
		fctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := st.Flush(fctx); err != nil {
			s.logger.Warn("stream_pending_at_exit", "lag", st.Stats().Lag, "resumes_from", s.streamWhere)
		}
		cancel()
	}
	delivery.stop()
	if err == nil {
		s.logger.Info("stopped")
	}
	return err
}

// serve runs the proxy, the admin API and the policy file's watcher until
// ctx is done or one of them fails, and then shuts them down.
func (s *Server) serve(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.proxy.Serve(s.ln); !errors.Is(err, proxy.ErrServerClosed) {
			return err
		}
		return nil
	})
	if s.admin != nil {
		g.Go(func() error {
			if err := s.admin.Serve(s.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.logger.Error("admin_stopped", "error", err)
			}
			return nil
		})
	}
	if s.reloader != nil {
		g.Go(func() error {
			runLoop(gctx, s.logger, loop{"policy_watch", func(ctx context.Context) { s.reloader.watch(ctx, 2*time.Second) }})
			return nil
		})
	}
	if s.tls != nil {
		g.Go(func() error {
			runLoop(gctx, s.logger, loop{"tls_watch", func(ctx context.Context) { s.tls.watch(ctx, 2*time.Second) }})
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		s.shutdown(ctx.Err() != nil, context.Cause(ctx))
		return nil
	})
	return g.Wait()
}

// shutdown stops the proxy, gracefully when asked (sessions get the
// shutdown timeout), at once when serving failed; then the admin API.
func (s *Server) shutdown(graceful bool, cause error) {
	if graceful {
		timeout := time.Duration(s.cfg.Limits.ShutdownTimeout)
		s.logger.Info("shutting_down", "cause", fmt.Sprint(cause), "sessions", s.proxy.Sessions(), "deadline", timeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		go func() {
			select {
			case <-s.hurry:
				cancel()
			case <-sctx.Done():
			}
		}()
		if err := s.proxy.Shutdown(sctx); err != nil {
			s.logger.Warn("shutdown_deadline_passed", "closed_sessions", true)
		}
	} else {
		s.proxy.Close()
	}
	if s.admin != nil {
		actx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s.admin.Shutdown(actx)
	}
}
