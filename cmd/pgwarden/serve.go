package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pgwarden/pgwarden/identity"
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
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, serveUsage); fs.PrintDefaults() }
	var (
		configPath   = fs.String("config", os.Getenv("PGWARDEN_CONFIG"), "YAML config `file`")
		listen       = fs.String("listen", "", "client listen `address` (default 127.0.0.1:6432)")
		upstream     = fs.String("upstream", "", "upstream PostgreSQL `URL`, postgres://host:port[/db][?sslmode=...&sslrootcert=...]")
		upTLSMode    = fs.String("upstream-tls-mode", "", "upstream TLS: disable, require or verify-full (default verify-full when a CA file is given, else disable)")
		upCAFile     = fs.String("upstream-ca-file", "", "PEM `file` of CAs trusted for the upstream certificate (default: system roots)")
		upServerName = fs.String("upstream-server-name", "", "TLS server `name` for SNI and verification (default: the upstream host)")
		tlsCert      = fs.String("tls-cert", "", "certificate `file` presented to clients that ask for TLS")
		tlsKey       = fs.String("tls-key", "", "private key `file` for --tls-cert")
		clientCA     = fs.String("client-ca", "", "comma-separated PEM `files` of the CAs of employees' client certificates: a certificate names the employee (needs --tls-cert)")
		clientCRL    = fs.String("client-crl", "", "comma-separated revocation list `files` (PEM or DER) of --client-ca, reloaded when they change")
		clientMap    = fs.String("client-cert-map", "", "what in a client certificate names the employee: email (the first SAN email, default), cn, or email,cn")
		login        = fs.Bool("login", false, "employees log in to pgwarden (pgwarden users add), which logs in upstream as their mapped role with the role's password from $PGWARDEN_ROLE_PASSWORD_<ROLE> or the config file")
		usersFile    = fs.String("users-file", "", "pgwarden's logins `file` (default users.json in --state-dir, or $PGWARDEN_USERS_FILE)")
		loginMethod  = fs.String("login-method", "", "how employees prove their password: scram (default) or password (cleartext, over TLS only, for clients without SCRAM)")
		loginRelay   = fs.String("login-relay", "", "comma-separated `database/role` patterns whose clients authenticate to PostgreSQL itself, not to pgwarden (e.g. service accounts)")
		requireCert  = fs.String("require-client-cert", "", "comma-separated `database/role` patterns (* and ?) whose sessions must present a client certificate, e.g. 'prod/*'")
		maxConns     = fs.Int("max-connections", 0, "maximum concurrent client connections (default 1000)")
		maxMsg       = fs.Int("max-message-size", 0, "maximum size in `bytes` of a client message once authenticated (default 64 MiB; before authentication: 65535)")
		maxStartup   = fs.Int("max-startup-per-address", 0, "maximum connections from one client IP address (IPv6: one /64) that have not authenticated yet (default 64; -1: no limit)")
		startupTO    = fs.Duration("startup-timeout", 0, "time allowed from connect to the first ReadyForQuery (default 30s)")
		idleTO       = fs.Duration("idle-timeout", 0, "end sessions idle this long outside a statement (default 0: never)")
		shutdownTO   = fs.Duration("shutdown-timeout", 0, "on SIGTERM, time sessions get to finish before they are closed (default 30s)")
		maxRows      = fs.Int64("max-rows-per-statement", 0, "block statements that return more rows than this, system catalogs excepted (default 0: no limit)")
		policyPath   = fs.String("policy", "", "policy `file` (default: the built-in policy, content detectors only)")
		catalogURL   = fs.String("catalog-url", "", "`URL` of pgwarden's own connection for resolving result columns (needed for declared columns); other databases are reached as the same role")
		auditDir     = fs.String("audit-dir", "", "`directory` of the hash-chained audit log (default: no audit log)")
		auditKeyFile = fs.String("audit-key-file", "", "`file` holding the audit checkpoint key in hex (default: $PGWARDEN_AUDIT_KEY)")
		auditSync    = fs.String("audit-sync", "", "audit durability: always, interval or never (default always)")
		auditURL     = fs.String("audit-url", "", "PostgreSQL `URL` of a central audit table (pgwarden_audit), in addition to or instead of --audit-dir")
		auditOpen    = fs.Bool("audit-fail-open", false, "let sessions continue when the audit log cannot be written (default: stop them)")
		stateDir     = fs.String("state-dir", "", "`directory` for state that survives restarts: quarantine list, held results, notification outbox")
		shareState   = fs.Bool("share-state", false, "several instances act as one guard: window figures, norms and the notification outbox shared through --state-url (at most about a second behind)")
		shareWindows = fs.Bool("share-windows", false, "the former name of --share-state")
		instance     = fs.String("instance", "", "this instance's `name` among several (default hostname and listen address)")
		stateURL     = fs.String("state-url", "", "PostgreSQL `URL` of pgwarden's own database for learned norms (table pgwarden_state), instead of or beside --state-dir")
		webhookURL   = fs.String("webhook-url", "", "`URL` that receives alerts and blocks as signed JSON (secret: --webhook-secret-file or $PGWARDEN_WEBHOOK_SECRET)")
		webhookKey   = fs.String("webhook-secret-file", "", "`file` holding the webhook's HMAC-SHA256 signing secret")
		syslogAddr   = fs.String("syslog-addr", "", "syslog receiver `host:port` for alerts (RFC 5424)")
		syslogNet    = fs.String("syslog-network", "", "syslog transport: udp, tcp or tcp+tls (default udp)")
		syslogFormat = fs.String("syslog-format", "", "syslog message format: rfc5424 or cef (default rfc5424)")
		clockMode    = fs.String("clock", "", "wall, or virtual: time moves only through POST /v1/clock on the admin listener (simulations, replays)")
		clockStart   = fs.String("clock-start", "", "the virtual clock's start `time`, RFC 3339 (default now)")
		decisionLog  = fs.String("decision-log", "", "append every decision as a JSON line to `file`")
		adminListen  = fs.String("admin-listen", "", "admin API listen `address` (off by default; loopback recommended), bearer token from --admin-token-file or $PGWARDEN_ADMIN_TOKEN")
		adminToken   = fs.String("admin-token-file", "", "`file` holding the admin API bearer token")
		adminCert    = fs.String("admin-tls-cert", "", "certificate `file`: the admin API over TLS")
		adminKey     = fs.String("admin-tls-key", "", "private key `file` for --admin-tls-cert")
		adminPprof   = fs.Bool("admin-pprof", false, "serve Go's CPU, heap and goroutine profiles at /debug/pprof/ on the admin listener (token required)")
		adminCA      = fs.String("admin-client-ca", "", "PEM `file` of CAs: admin clients presenting a certificate they verify need no token (mTLS)")
		logLevel     = fs.String("log-level", "", "debug, info, warn or error (default info)")
		logFormat    = fs.String("log-format", "", "text or json (default text)")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pgwarden serve: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}

	fc := &fileConfig{}
	if *configPath != "" {
		var err error
		if fc, err = loadConfigFile(*configPath); err != nil {
			return err
		}
	}
	set := func(dst *string, flagVal string) {
		if flagVal != "" {
			*dst = flagVal
		}
	}
	set(&fc.Listen, *listen)
	set(&fc.Upstream.URL, *upstream)
	set(&fc.Upstream.TLSMode, *upTLSMode)
	set(&fc.Upstream.CAFile, *upCAFile)
	set(&fc.Upstream.ServerName, *upServerName)
	set(&fc.ClientTLS.CertFile, *tlsCert)
	set(&fc.ClientTLS.KeyFile, *tlsKey)
	if *clientCA != "" {
		fc.ClientCerts.CAFiles = splitList(*clientCA)
	}
	if *clientCRL != "" {
		fc.ClientCerts.CRLFiles = splitList(*clientCRL)
	}
	set(&fc.ClientCerts.Map, *clientMap)
	if *login {
		fc.Login.Enabled = true
	}
	set(&fc.Login.UsersFile, *usersFile)
	set(&fc.Login.Method, *loginMethod)
	if *loginRelay != "" {
		fc.Login.Relay = splitList(*loginRelay)
	}
	for _, target := range splitList(*requireCert) {
		fc.ClientCerts.Rules = append(fc.ClientCerts.Rules, identity.CertRule{Target: target, Require: true})
	}
	set(&fc.Log.Level, *logLevel)
	set(&fc.Policy, *policyPath)
	set(&fc.Catalog.URL, *catalogURL)
	set(&fc.Audit.Dir, *auditDir)
	set(&fc.Audit.KeyFile, *auditKeyFile)
	set(&fc.Audit.Sync, *auditSync)
	set(&fc.Audit.URL, *auditURL)
	if *auditOpen {
		fc.Audit.FailOpen = true
	}
	set(&fc.Log.Format, *logFormat)
	set(&fc.StateDir, *stateDir)
	set(&fc.StateURL, *stateURL)
	set(&fc.Instance, *instance)
	if *shareState || *shareWindows {
		fc.ShareWindows = true
	}
	set(&fc.Clock, *clockMode)
	set(&fc.ClockStart, *clockStart)
	set(&fc.DecisionLog, *decisionLog)
	set(&fc.Admin.Listen, *adminListen)
	set(&fc.Admin.TokenFile, *adminToken)
	set(&fc.Admin.CertFile, *adminCert)
	set(&fc.Admin.KeyFile, *adminKey)
	set(&fc.Admin.ClientCAFile, *adminCA)
	if *adminPprof {
		fc.Admin.Pprof = true
	}
	set(&fc.Notify.Webhook.URL, *webhookURL)
	set(&fc.Notify.Webhook.SecretFile, *webhookKey)
	set(&fc.Notify.Syslog.Addr, *syslogAddr)
	set(&fc.Notify.Syslog.Network, *syslogNet)
	set(&fc.Notify.Syslog.Format, *syslogFormat)
	if *maxConns > 0 {
		fc.Limits.MaxConnections = *maxConns
	}
	if *maxMsg > 0 {
		fc.Limits.MaxMessageSize = *maxMsg
	}
	if *maxStartup != 0 {
		fc.Limits.MaxStartupPerAddress = *maxStartup
	}
	if *startupTO > 0 {
		fc.Limits.StartupTimeout = duration(*startupTO)
	}
	if *idleTO > 0 {
		fc.Limits.IdleTimeout = duration(*idleTO)
	}
	if *shutdownTO > 0 {
		fc.Limits.ShutdownTimeout = duration(*shutdownTO)
	}
	if *maxRows > 0 {
		fc.Limits.MaxRowsPerStatement = *maxRows
	}
	if fc.Listen == "" {
		fc.Listen = "127.0.0.1:6432"
	}
	if fc.Upstream.URL == "" {
		fmt.Fprintln(stderr, "pgwarden serve: --upstream (or upstream.url in the config file) is required")
		return errUsage
	}
	if fc.Limits.ShutdownTimeout <= 0 {
		fc.Limits.ShutdownTimeout = duration(30 * time.Second)
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
	logger.Info("listening", "addr", ln.Addr().String(), "upstream", addr, "upstream_tls", string(mode),
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
