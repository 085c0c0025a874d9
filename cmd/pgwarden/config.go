package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pgwarden/pgwarden/identity"
	"github.com/pgwarden/pgwarden/identity/userstore"
	"github.com/pgwarden/pgwarden/proxy"
)

// fileConfig is the YAML configuration file. Flags override it.
type fileConfig struct {
	Listen   string `yaml:"listen"`
	Policy   string `yaml:"policy"`
	Upstream struct {
		URL        string `yaml:"url"`
		TLSMode    string `yaml:"tls_mode"`
		CAFile     string `yaml:"ca_file"`
		ServerName string `yaml:"server_name"`
	} `yaml:"upstream"`
	ClientTLS struct {
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
	} `yaml:"client_tls"`
	// ClientCerts names employees by their client certificates.
	ClientCerts identity.CertConfig `yaml:"client_certs"`
	// Login has employees log in to pgwarden itself.
	Login struct {
		Enabled   bool   `yaml:"enabled"`
		UsersFile string `yaml:"users_file"`
		// Method is scram (default) or password (cleartext, TLS only).
		Method string `yaml:"method"`
		// Relay are database/role patterns authenticated by PostgreSQL.
		Relay []string `yaml:"relay"`
		// Roles give the upstream password of each mapped role; by
		// default it is read from $PGWARDEN_ROLE_PASSWORD_<ROLE>.
		Roles map[string]roleSecret `yaml:"roles"`
	} `yaml:"login"`
	Limits struct {
		MaxConnections       int      `yaml:"max_connections"`
		MaxMessageSize       int      `yaml:"max_message_size"`
		MaxStartupPerAddress int      `yaml:"max_startup_per_address"`
		StartupTimeout       duration `yaml:"startup_timeout"`
		IdleTimeout          duration `yaml:"idle_timeout"`
		ShutdownTimeout      duration `yaml:"shutdown_timeout"`
		MaxRowsPerStatement  int64    `yaml:"max_rows_per_statement"`
	} `yaml:"limits"`
	Catalog struct {
		URL string   `yaml:"url"`
		TTL duration `yaml:"ttl"`
	} `yaml:"catalog"`
	Audit struct {
		Dir string `yaml:"dir"`
		// URL is a PostgreSQL database for a central copy of the trail
		// (password: PGWARDEN_AUDIT_PASSWORD).
		URL     string `yaml:"url"`
		KeyFile string `yaml:"key_file"`
		Sync    string `yaml:"sync"`
		// FailOpen lets sessions continue when the audit log cannot be
		// written; the default stops them.
		FailOpen bool `yaml:"fail_open"`
	} `yaml:"audit"`
	Log struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
	// Clock is "wall" (default) or "virtual": time moves only through the
	// admin API (POST /v1/clock), for simulations and replays.
	Clock      string `yaml:"clock"`
	ClockStart string `yaml:"clock_start"` // RFC 3339; default now
	// DecisionLog is a JSON Lines file receiving every decision.
	DecisionLog string `yaml:"decision_log"`
	Admin       struct {
		Listen string `yaml:"listen"`
		// TokenFile holds the bearer token (else PGWARDEN_ADMIN_TOKEN).
		TokenFile string `yaml:"token_file"`
		// TLS for the listener; with ClientCAFile, clients presenting a
		// certificate it verifies need no token (mTLS).
		CertFile     string `yaml:"cert_file"`
		KeyFile      string `yaml:"key_file"`
		ClientCAFile string `yaml:"client_ca_file"`
		// Pprof serves Go's profiles at /debug/pprof/ (token required).
		Pprof bool `yaml:"pprof"`
	} `yaml:"admin"`
	// StateDir keeps what must survive a restart: the quarantine list,
	// held results and the notification outbox.
	StateDir string `yaml:"state_dir"`
	// StateURL is pgwarden's own PostgreSQL database for learned state
	// (norms), instead of or beside the state directory (password:
	// PGWARDEN_STATE_PASSWORD).
	StateURL string `yaml:"state_url"`
	// ShareWindows (share_state, or its former name share_windows) makes
	// several instances one guard: window figures, norms and the
	// notification outbox live in the state database. Instance names
	// this one (default hostname and listen address).
	ShareWindows bool   `yaml:"share_state"`
	ShareLegacy  bool   `yaml:"share_windows"`
	Instance     string `yaml:"instance"`
	Notify       struct {
		Webhook struct {
			URL string `yaml:"url"`
			// SecretFile holds the HMAC key (else PGWARDEN_WEBHOOK_SECRET).
			SecretFile string `yaml:"secret_file"`
		} `yaml:"webhook"`
		Slack struct {
			// URL is a secret; PGWARDEN_SLACK_URL is read when it is empty.
			URL string `yaml:"url"`
		} `yaml:"slack"`
		Syslog struct {
			Addr    string `yaml:"addr"`
			Network string `yaml:"network"`
			Format  string `yaml:"format"`
		} `yaml:"syslog"`
		DedupeWindow    duration `yaml:"dedupe_window"`
		RatePerEmployee int      `yaml:"rate_per_employee"`
	} `yaml:"notify"`
}

// duration is a time.Duration written as "30s" in YAML.
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q (want e.g. 30s, 5m)", n.Line, n.Value)
	}
	*d = duration(v)
	return nil
}

// loadConfigFile reads path strictly: unknown keys are errors with line numbers.
func loadConfigFile(path string) (*fileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) { // io.EOF: empty file
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	fc.ShareWindows = fc.ShareWindows || fc.ShareLegacy
	return &fc, nil
}

// upstreamSettings turns an upstream URL (postgres://host:port/db?sslmode=...
// &sslrootcert=...) and explicit settings into the proxy's fields.
func upstreamSettings(rawURL, tlsMode, caFile, serverName string) (addr string, mode proxy.TLSMode, tc *tls.Config, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", "", nil, fmt.Errorf("upstream URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", "", nil, fmt.Errorf("upstream URL %q: want postgres://host:port", rawURL)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return "", "", nil, fmt.Errorf("upstream URL %q has no host", rawURL)
	}
	if port == "" {
		port = "5432"
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", "", nil, fmt.Errorf("upstream URL %q: bad port", rawURL)
	}
	addr = net.JoinHostPort(host, port)
	q := u.Query()
	if tlsMode == "" {
		tlsMode = q.Get("sslmode")
	}
	if caFile == "" {
		caFile = q.Get("sslrootcert")
	}
	switch tlsMode {
	case "":
		mode = proxy.TLSDisable
		if caFile != "" {
			mode = proxy.TLSVerifyFull
		}
	case "disable":
		mode = proxy.TLSDisable
	case "require":
		mode = proxy.TLSRequire
	case "verify-full":
		mode = proxy.TLSVerifyFull
	default:
		return "", "", nil, fmt.Errorf("upstream TLS mode %q: want disable, require or verify-full", tlsMode)
	}
	if mode == proxy.TLSDisable {
		return addr, mode, nil, nil
	}
	tc = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return "", "", nil, fmt.Errorf("upstream CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return "", "", nil, fmt.Errorf("upstream CA file %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	return addr, mode, tc, nil
}

// clientTLSConfig loads the certificate pgwarden presents to clients.
func clientTLSConfig(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("client TLS needs both a certificate and a key file")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// newLogger builds the process logger.
func newLogger(w *os.File, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(orDefault(level, "info")))); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch orDefault(format, "text") {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// identifyConfig builds the proxy's Identify hook from the configured
// identity modes; nil when employees are their database roles.
func identifyConfig(fc *fileConfig, clientTLS *tls.Config, logger *slog.Logger) (func(context.Context, *proxy.SessionInfo) error, error) {
	cc := fc.ClientCerts
	if len(cc.CAFiles) == 0 {
		if len(cc.CRLFiles) > 0 || len(cc.Rules) > 0 {
			return nil, errors.New("client certificates: --client-crl and --require-client-cert need --client-ca")
		}
		return nil, nil
	}
	if clientTLS == nil {
		return nil, errors.New("client certificates need TLS to clients: set --tls-cert and --tls-key")
	}
	cc.Logger = logger
	certs, err := identity.NewCerts(cc)
	if err != nil {
		return nil, err
	}
	certs.ConfigureTLS(clientTLS)
	logger.Info("client_certificates", "cas", len(cc.CAFiles), "crls", len(cc.CRLFiles), "rules", len(cc.Rules))
	return certs.Identify, nil
}

// roleSecret says where the upstream password of a mapped role is.
type roleSecret struct {
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
}

// loginConfig builds pgwarden's own login from the configuration; nil
// when it is off.
func loginConfig(fc *fileConfig, logger *slog.Logger) (*proxy.Login, error) {
	lc := &fc.Login
	if !lc.Enabled {
		if lc.UsersFile != "" || lc.Method != "" || len(lc.Relay) > 0 {
			return nil, errors.New("--users-file, --login-method and --login-relay need --login")
		}
		return nil, nil
	}
	method := proxy.LoginSCRAM
	switch lc.Method {
	case "", "scram":
	case "password":
		method = proxy.LoginPassword
	default:
		return nil, fmt.Errorf("login method %q: want scram or password", lc.Method)
	}
	relay, err := identity.ParseTargets(lc.Relay)
	if err != nil {
		return nil, fmt.Errorf("--login-relay: %w", err)
	}
	path := usersFilePath(lc.UsersFile, fc.StateDir)
	if path == "" {
		return nil, errors.New("--login needs the logins file: --users-file or --state-dir")
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("logins file: %w (add employees with: pgwarden users add NAME --role ROLE --users-file %s)", err, path)
	}
	// Lockouts run on the wall clock, whatever clock the guard runs on.
	store, err := userstore.Open(path, userstore.Options{Logger: logger})
	if err != nil {
		return nil, err
	}
	logger.Info("login", "users_file", path, "method", cmp.Or(lc.Method, "scram"), "relay", strings.Join(lc.Relay, ","))
	return &proxy.Login{
		Accounts: store,
		Method: func(info *proxy.SessionInfo) proxy.LoginMethod {
			if relay.Match(info.Database, info.User) {
				return proxy.LoginRelay
			}
			return method
		},
		Credentials: func(_ context.Context, role string) (string, error) { return rolePassword(lc.Roles, role) },
	}, nil
}

// rolePassword is the upstream password of a mapped role: from the file or
// variable its entry names, else from $PGWARDEN_ROLE_PASSWORD_<ROLE> (the
// role upper-cased, other characters than letters and digits as _).
func rolePassword(roles map[string]roleSecret, role string) (string, error) {
	if r, ok := roles[role]; ok {
		switch {
		case r.PasswordFile != "":
			b, err := os.ReadFile(r.PasswordFile)
			if err != nil {
				return "", fmt.Errorf("password of role %q: %w", role, err)
			}
			return strings.TrimRight(string(b), "\r\n"), nil
		case r.PasswordEnv != "":
			if v, ok := os.LookupEnv(r.PasswordEnv); ok {
				return v, nil
			}
			return "", fmt.Errorf("password of role %q: $%s is not set", role, r.PasswordEnv)
		}
	}
	name := "PGWARDEN_ROLE_PASSWORD_" + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, role)
	if v, ok := os.LookupEnv(name); ok {
		return v, nil
	}
	return "", fmt.Errorf("no password for role %q: set $%s or login.roles in the config file", role, name)
}
