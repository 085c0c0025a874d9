package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pgwarden/pgwarden/internal/buildinfo"
	"github.com/pgwarden/pgwarden/internal/crash"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/proxy/catalog"
)

const serveUsage = `Usage: pgwarden serve [flags]

Runs the proxy: clients connect to --listen as they would to PostgreSQL and
are relayed to --upstream. Flags override the --config file.

pgwarden counts the rows and PII values every statement sends: columns the
policy declares (resolved through --catalog-url) and values its content
detectors recognise, per employee in sliding windows, and records each
statement in the audit log when --audit-dir is given.

Policies: --policy FILE is reloaded on SIGHUP and when the file changes; a
file with errors is refused (logged, and alerted when notifications are on)
and the policy in force stays. Without --policy the built-in policy runs
(pgwarden policy default prints it).

Environment:
  PGWARDEN_CONFIG            config file, when --config is not given
  PGWARDEN_WEBHOOK_SECRET    webhook signing secret, when --webhook-secret-file is not given
  PGWARDEN_ADMIN_TOKEN       admin API bearer token, when --admin-token-file is not given
  PGWARDEN_STATE_PASSWORD    password for --state-url, when the URL has none
  PGWARDEN_SLACK_URL         Slack-compatible incoming webhook URL for alerts (notify.slack.url)
  PGWARDEN_CATALOG_PASSWORD  password for --catalog-url, when the URL has none
  PGWARDEN_AUDIT_KEY         audit checkpoint HMAC key in hex, when --audit-key-file is not given
  PGWARDEN_AUDIT_PASSWORD    password for --audit-url, when the URL has none

Flags:
`

func runServe(args []string, stdout, stderr io.Writer) error {
	fc, err := loadConfig("serve", serveUsage, args, stderr)
	if err != nil {
		return err
	}
	if fc.Upstream.URL == "" {
		fmt.Fprintln(stderr, "pgwarden serve: --upstream (or upstream.url in the config file) is required")
		return errUsage
	}
	if err := fc.Validate(); err != nil {
		return err
	}

	logger, err := newLogger(os.Stderr, fc.Log.Level, fc.Log.Format)
	if err != nil {
		return err
	}
	addr, mode, upTLS, err := upstreamSettings(fc.Upstream.URL, fc.Upstream.TLSMode, fc.Upstream.CAFile, fc.Upstream.ServerName)
	if err != nil {
		return err
	}
	clientTLS, err := clientTLSConfig(fc.ClientTLS.CertFile, fc.ClientTLS.KeyFile)
	if err != nil {
		return err
	}
	identify, err := identifyConfig(fc, clientTLS, logger)
	if err != nil {
		return err
	}
	loginCfg, err := loginConfig(fc, logger)
	if err != nil {
		return err
	}
	cfg := proxy.Config{
		Login:                loginCfg,
		Identify:             identify,
		UpstreamAddr:         addr,
		UpstreamTLSMode:      mode,
		UpstreamTLS:          upTLS,
		ClientTLS:            clientTLS,
		MaxConnections:       fc.Limits.MaxConnections,
		MaxMessageSize:       fc.Limits.MaxMessageSize,
		MaxStartupPerAddress: fc.Limits.MaxStartupPerAddress,
		StartupTimeout:       time.Duration(fc.Limits.StartupTimeout),
		IdleTimeout:          time.Duration(fc.Limits.IdleTimeout),
		Logger:               logger,
	}
	tlsCtx, stopTLS := context.WithCancel(context.Background())
	defer stopTLS()
	if _, err := watchTLS(tlsCtx, fc, &cfg, logger); err != nil {
		return err
	}
	g, closeGuard, err := newGuard(fc, logger)
	if err != nil {
		return err
	}
	defer closeGuard()
	cfg.Inspector = g.guard
	cfg.Observe = g.metrics.Observe
	if g.catalog != nil {
		cfg.OnDDL, cfg.IsDDLTag = g.catalog.invalidate, catalog.IsDDLTag
	}
	srv, err := proxy.NewServer(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", fc.Listen)
	if err != nil {
		return err
	}
	logger.Info("listening", "version", buildinfo.Get().Version, "addr", ln.Addr().String(), "upstream", addr, "upstream_tls", string(mode),
		"client_tls", clientTLS != nil, "max_rows_per_statement", fc.Limits.MaxRowsPerStatement)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	var rl *reloader
	if fc.Policy != "" {
		r := &reloader{path: fc.Policy, g: g.guard, log: logger}
		rl = r
		r.alerts = alertTee{g.alerts}
		if g.state.notifier != nil {
			r.alerts = alertTee{g.alerts, g.state.notifier}
		}
		crash.Loop(logger, "policy_watch", nil, func() { r.watch(watchCtx, 2*time.Second) })
		crash.Loop(logger, "policy_reload", nil, func() {
			for range hups {
				r.reload("SIGHUP")
			}
		})
	} else {
		go func() {
			for range hups {
				logger.Info("policy_reload_skipped", "reason", "the built-in policy is in force (no --policy)")
			}
		}()
	}
	if fc.Admin.Listen != "" {
		stopAdmin, err := startAdmin(fc, g, srv, rl, logger)
		if err != nil {
			return err
		}
		defer stopAdmin()
	} else if g.clock != nil {
		return errors.New("--clock virtual needs the admin listener (--admin-listen) to move the clock")
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case sig := <-sigs:
		logger.Info("shutting_down", "signal", sig.String(), "sessions", srv.Sessions(),
			"deadline", time.Duration(fc.Limits.ShutdownTimeout).String())
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(fc.Limits.ShutdownTimeout))
		defer cancel()
		go func() {
			// A second signal closes the remaining sessions at once.
			<-sigs
			cancel()
		}()
		if err := srv.Shutdown(ctx); err != nil {
			logger.Warn("shutdown_deadline_passed", "closed_sessions", true)
		}
		<-errc
		logger.Info("stopped")
		return nil
	}
}
