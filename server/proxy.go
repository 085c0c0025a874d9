package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/identity"
	"github.com/pgwarden/pgwarden/identity/oidc"
	"github.com/pgwarden/pgwarden/identity/userstore"
	"github.com/pgwarden/pgwarden/proxy"
)

// proxyConfig builds the proxy's settings but its Inspector: the upstream,
// TLS to clients, how employees are named and pgwarden's own login.
func (s *Server) proxyConfig() (proxy.Config, error) {
	fc := &s.cfg
	addr, mode, upTLS, err := upstreamSettings(fc.Upstream.URL, fc.Upstream.TLSMode, fc.Upstream.CAFile, fc.Upstream.ServerName)
	if err != nil {
		return proxy.Config{}, err
	}
	clientTLS, err := clientTLSConfig(fc.ClientTLS.CertFile, fc.ClientTLS.KeyFile)
	if err != nil {
		return proxy.Config{}, err
	}
	identify, err := identifyConfig(fc, clientTLS, s.logger)
	if err != nil {
		return proxy.Config{}, err
	}
	login, err := loginConfig(fc, s.logger)
	if err != nil {
		return proxy.Config{}, err
	}
	var reuse *proxy.Reuse
	if r := fc.Login.Reuse; r.Enabled {
		reuse = &proxy.Reuse{MaxIdle: r.MaxIdle, IdleTimeout: time.Duration(r.IdleTimeout), MaxLifetime: time.Duration(r.MaxLifetime)}
	}
	return proxy.Config{
		Login:                login,
		Reuse:                reuse,
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
		Logger:               s.logger,
	}, nil
}

// upstreamSettings turns an upstream URL (postgres://host:port/db?sslmode=...
// &sslrootcert=...) and explicit settings into the proxy's fields.
func upstreamSettings(rawURL, tlsMode, caFile, serverName string) (addr string, mode proxy.TLSMode, tc *tls.Config, err error) {
	rawURL = config.UpstreamURL(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", "", nil, fmt.Errorf("upstream URL %q: want postgres://host:port or host:port", rawURL)
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

// identifyConfig builds the proxy's Identify hook from the configured
// identity modes; nil when employees are their database roles.
func identifyConfig(fc *config.Config, clientTLS *tls.Config, logger *slog.Logger) (func(context.Context, *proxy.SessionInfo) error, error) {
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

// loginConfig builds pgwarden's own login from the configuration; nil
// when it is off.
func loginConfig(fc *config.Config, logger *slog.Logger) (*proxy.Login, error) {
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
	tokens, tokenTargets, err := oidcConfig(&lc.OIDC, logger)
	if err != nil {
		return nil, err
	}
	var accounts proxy.Accounts
	path := UsersFile(lc.UsersFile, fc.StateDir)
	switch {
	case path == "" && tokens == nil:
		return nil, errors.New("--login needs the logins file: --users-file or --state-dir")
	case path != "":
		if _, err := os.Stat(path); err != nil {
			if tokens != nil && lc.UsersFile == "" && os.IsNotExist(err) {
				break // sign-in with the identity provider only
			}
			return nil, fmt.Errorf("logins file: %w (add employees with: pgwarden users add NAME --role ROLE --users-file %s)", err, path)
		}
		// Lockouts run on the wall clock, whatever clock the guard runs on.
		store, err := userstore.Open(path, userstore.Options{Logger: logger})
		if err != nil {
			return nil, err
		}
		accounts = store
	}
	logger.Info("login", "users_file", path, "method", cmp.Or(lc.Method, "scram"), "relay", strings.Join(lc.Relay, ","),
		"oidc_issuer", lc.OIDC.Issuer)
	l := &proxy.Login{
		Accounts: accounts,
		Method: func(info *proxy.SessionInfo) proxy.LoginMethod {
			if relay.Match(info.Database, info.User) {
				return proxy.LoginRelay
			}
			if tokens != nil && tokenTargets.Match(info.Database, info.User) {
				return proxy.LoginToken
			}
			return method
		},
		Credentials: func(_ context.Context, role string) (string, error) { return rolePassword(lc.Roles, role) },
	}
	if tokens != nil {
		l.Token = tokens.Token
	}
	return l, nil
}

// oidcConfig builds the verifier of the identity provider's tokens and
// the database/role patterns that sign in with them; nil when no issuer
// is configured. Discovery is tried at once, and again at the first token
// if the provider cannot be reached now.
func oidcConfig(oc *config.OIDC, logger *slog.Logger) (*oidc.Verifier, identity.Targets, error) {
	if oc.Issuer == "" {
		return nil, nil, nil
	}
	patterns := oc.Targets
	if len(patterns) == 0 {
		patterns = []string{"*/*"}
	}
	targets, err := identity.ParseTargets(patterns)
	if err != nil {
		return nil, nil, fmt.Errorf("login.oidc.targets: %w", err)
	}
	roles := make([]oidc.RoleRule, len(oc.Roles))
	for i, r := range oc.Roles {
		roles[i] = oidc.RoleRule{Group: r.Group, Role: r.Role}
	}
	v, err := oidc.New(oidc.Config{
		Issuer: oc.Issuer, Audience: oc.Audience, TokenType: oc.TokenType,
		UsernameClaim: oc.UsernameClaim, GroupsClaim: oc.GroupsClaim, GroupMap: oc.GroupMap,
		Roles: roles, DefaultRole: oc.DefaultRole, Algorithms: oc.Algorithms,
		Skew: time.Duration(oc.Skew), MinRefreshInterval: time.Duration(oc.MinRefreshInterval),
		KeysMaxAge: time.Duration(oc.KeysMaxAge), OnExpiry: oc.OnExpiry, MaxSession: time.Duration(oc.MaxSession),
		Logger: logger,
	})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.Discover(ctx); err != nil {
		logger.Warn("oidc_unavailable_at_start", "issuer", oc.Issuer, "error", err)
	}
	return v, targets, nil
}

// rolePassword is the upstream password of a mapped role: from the file or
// variable its entry names, else from $PGWARDEN_ROLE_PASSWORD_<ROLE> (the
// role upper-cased, other characters than letters and digits as _).
func rolePassword(roles map[string]config.RoleSecret, role string) (string, error) {
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

// reuseMetrics registers the gauge and counters of upstream connection
// reuse (login.reuse).
func (s *Server) reuseMetrics() {
	s.metrics.GaugeFunc("pgwarden_upstream_parked", "Upstream connections idle, waiting for the next session of their role, database and parameters.",
		func() float64 { return float64(s.proxy.ReuseStats().Parked) })
	s.metrics.CounterFunc("pgwarden_upstream_opened_total", "Upstream connections opened for sessions under pgwarden's login that could have reused one.",
		func() float64 { return float64(s.proxy.ReuseStats().Opened) })
	s.metrics.CounterFunc("pgwarden_upstream_reused_total", "Sessions under pgwarden's login that took a parked upstream connection.",
		func() float64 { return float64(s.proxy.ReuseStats().Reused) })
}
