package config

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate reports every setting that is wrong on its face, as Errors:
// those in the file in the file's order, then those set by flags or left
// out; nil when there is none. What needs a
// file or a connection to judge (a CA file that does not parse, a
// database that refuses) is reported when pgwarden serve opens it.
func (c *Config) Validate() error {
	var es Errors
	bad := func(key, format string, args ...any) {
		es = append(es, c.errorAt(key, fmt.Sprintf(format, args...)))
	}

	c.validateUpstream(bad)
	c.validateClients(bad)
	c.validateLogin(bad)
	c.validateTrail(bad)
	c.validateRuntime(bad)

	if len(es) == 0 {
		return nil
	}
	slices.SortStableFunc(es, func(a, b *Error) int {
		switch {
		case a.Line == 0 && b.Line == 0:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return es
}

// badFunc records a validation error at a configuration key.
type badFunc func(key, format string, args ...any)

// validateUpstream checks the upstream server and its TLS mode.
func (c *Config) validateUpstream(bad badFunc) {
	if c.Upstream.URL == "" {
		bad("upstream.url", "the upstream server is required: upstream.url or --upstream")
	} else if err := checkUpstreamURL(c.Upstream.URL); err != nil {
		bad("upstream.url", "%v", err)
	}
	modeKey, mode := "upstream.tls_mode", c.Upstream.TLSMode
	if mode == "" {
		if u, err := url.Parse(c.Upstream.URL); err == nil {
			modeKey, mode = "upstream.url", u.Query().Get("sslmode")
		}
	}
	switch mode {
	case "", "disable", "require", "verify-full":
	default:
		bad(modeKey, "upstream TLS mode %q: want disable, require or verify-full", mode)
	}
}

// validateClients checks TLS to clients and client certificates.
func (c *Config) validateClients(bad badFunc) {
	switch {
	case c.ClientTLS.CertFile != "" && c.ClientTLS.KeyFile == "":
		bad("client_tls.cert_file", "client TLS needs both a certificate and a key file")
	case c.ClientTLS.CertFile == "" && c.ClientTLS.KeyFile != "":
		bad("client_tls.key_file", "client TLS needs both a certificate and a key file")
	}
	cc := &c.ClientCerts
	if len(cc.CAFiles) == 0 && (len(cc.CRLFiles) > 0 || len(cc.Rules) > 0) {
		bad(firstSet(map[string]bool{"client_certs.crl_files": len(cc.CRLFiles) > 0, "client_certs.rules.0": len(cc.Rules) > 0}), "client certificates: crl_files and rules (--client-crl, --require-client-cert) need ca_files (--client-ca)")
	}
	if len(cc.CAFiles) > 0 && c.ClientTLS.CertFile == "" && c.ClientTLS.KeyFile == "" {
		bad("client_certs.ca_files", "client certificates need TLS to clients: set client_tls (--tls-cert and --tls-key)")
	}
	for i, r := range cc.Rules {
		if err := validTargets([]string{r.Target}); err != nil {
			bad("client_certs.rules."+strconv.Itoa(i)+".target", "%v", err)
		}
	}
}

// validateLogin checks pgwarden's own login and its OIDC sign-in.
func (c *Config) validateLogin(bad badFunc) {
	lc := &c.Login
	if !lc.Enabled {
		if lc.UsersFile != "" || lc.Method != "" || len(lc.Relay) > 0 {
			bad(firstSet(map[string]bool{"login.users_file": lc.UsersFile != "", "login.method": lc.Method != "", "login.relay": len(lc.Relay) > 0}), "login.users_file, login.method and login.relay (--users-file, --login-method, --login-relay) need login.enabled (--login)")
		}
	} else {
		switch lc.Method {
		case "", "scram", "password":
		default:
			bad("login.method", "login method %q: want scram or password", lc.Method)
		}
		for i, p := range lc.Relay {
			if err := validTargets([]string{p}); err != nil {
				bad("login.relay."+strconv.Itoa(i), "%v", err)
			}
		}
		if oc := &lc.OIDC; oc.Issuer != "" {
			if oc.Audience == "" {
				bad("login.oidc.audience", "login.oidc.audience (the client id) is required with login.oidc.issuer")
			}
			switch oc.TokenType {
			case "", "id", "access":
			default:
				bad("login.oidc.token_type", "token type %q: want id or access", oc.TokenType)
			}
			switch oc.OnExpiry {
			case "", "end", "allow":
			default:
				bad("login.oidc.on_expiry", "on_expiry %q: want end or allow", oc.OnExpiry)
			}
			for i, p := range oc.Targets {
				if err := validTargets([]string{p}); err != nil {
					bad("login.oidc.targets."+strconv.Itoa(i), "%v", err)
				}
			}
			for i, r := range oc.Roles {
				if r.Group == "" || r.Role == "" {
					bad("login.oidc.roles."+strconv.Itoa(i), "a roles entry needs a group and a role")
				}
			}
		}
	}
	if !lc.Enabled && lc.OIDC.Issuer != "" {
		bad("login.oidc.issuer", "login.oidc needs login.enabled (--login)")
	}
	if r := &lc.Reuse; r.Enabled || r.MaxIdle != 0 || r.IdleTimeout != 0 || r.MaxLifetime != 0 {
		if !lc.Enabled {
			bad(firstSet(map[string]bool{"login.reuse.enabled": r.Enabled, "login.reuse.max_idle": r.MaxIdle != 0,
				"login.reuse.idle_timeout": r.IdleTimeout != 0, "login.reuse.max_lifetime": r.MaxLifetime != 0}),
				"login.reuse needs login.enabled (--login)")
		}
		if r.MaxIdle < 0 {
			bad("login.reuse.max_idle", "max_idle %d: want a positive number (0: the default, 10)", r.MaxIdle)
		}
		if r.IdleTimeout < 0 {
			bad("login.reuse.idle_timeout", "idle_timeout must not be negative")
		}
		if r.MaxLifetime < 0 {
			bad("login.reuse.max_lifetime", "max_lifetime must not be negative")
		}
	}
}

// validateTrail checks the audit trail, its stream to a SIEM and the admin public URL.
func (c *Config) validateTrail(bad badFunc) {
	switch c.Audit.Sync {
	case "", "always", "interval", "never":
	default:
		if c.Audit.Dir == "" {
			break // not read without an audit directory
		}
		bad("audit.sync", "audit sync policy %q: want always, interval or never", c.Audit.Sync)
	}

	st := &c.Stream
	if st.HTTP.URL != "" || st.Syslog.Addr != "" {
		key := "stream.http.url"
		if st.HTTP.URL == "" {
			key = "stream.syslog.addr"
		}
		if c.Audit.Dir == "" {
			bad(key, "streaming the audit trail needs the trail: set audit.dir (--audit-dir)")
		}
		if c.StateDir == "" && c.StateURL == "" {
			bad(key, "streaming the audit trail needs a place for its outbox and cursor: set state_dir (--state-dir) or state_url (--state-url)")
		}
	}
	switch st.HTTP.Format {
	case "", "splunk_hec", "elastic_bulk", "ndjson":
	default:
		bad("stream.http.format", "stream format %q: want splunk_hec, elastic_bulk or ndjson", st.HTTP.Format)
	}
	switch st.Syslog.Network {
	case "", "tcp", "tcp+tls":
	default:
		bad("stream.syslog.network", "stream syslog network %q: want tcp or tcp+tls (UDP could lose events unseen)", st.Syslog.Network)
	}
	if st.HTTP.URL != "" {
		if u, err := url.Parse(st.HTTP.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("stream.http.url", "stream URL: want http:// or https:// and a host")
		}
	}
	if pu := c.Admin.PublicURL; pu != "" {
		if u, err := url.Parse(pu); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad("admin.public_url", "the admin API's public URL %q: want http(s)://host[:port][/path]", pu)
		} else if c.Admin.Listen == "" {
			bad("admin.public_url", "the admin API's public URL needs the admin listener (admin.listen, --admin-listen)")
		}
	}
	if st.Queue < 0 || st.Batch < 0 {
		bad("stream", "stream.queue and stream.batch must not be negative")
	}
}

// validateRuntime checks the log and the clock.
func (c *Config) validateRuntime(bad badFunc) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(cmp.Or(c.Log.Level, "info")))); err != nil {
		bad("log.level", "log level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		bad("log.format", "log format %q: want text or json", c.Log.Format)
	}

	switch c.Clock {
	case "", "wall":
	case "virtual":
		if c.ClockStart != "" {
			if _, err := time.Parse(time.RFC3339, c.ClockStart); err != nil {
				bad("clock_start", "the virtual clock's start: %v", err)
			}
		}
		if c.Admin.Listen == "" {
			bad("clock", "a virtual clock needs the admin listener (admin.listen, --admin-listen) to move it")
		}
	default:
		bad("clock", "clock %q: want wall or virtual", c.Clock)
	}
}

// UpstreamURL is the upstream as a URL: postgres://host[:port][/db][?...]
// as given, or host[:port] (as PgBouncer and psql's host and port take it)
// made one.
func UpstreamURL(raw string) string {
	if raw == "" || strings.Contains(raw, "://") {
		return raw
	}
	return "postgres://" + raw
}

// checkUpstreamURL checks the form of postgres://host[:port][/db][?...].
func checkUpstreamURL(raw string) error {
	raw = UpstreamURL(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("upstream URL %q: want postgres://host:port or host:port", raw)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("upstream URL %q: want postgres://host:port", raw)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("upstream URL %q has no host", raw)
	}
	if port := u.Port(); port != "" {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("upstream URL %q: bad port", raw)
		}
	}
	return nil
}

// firstSet is the first in alphabetical order of the keys whose setting is
// at fault.
func firstSet(keys map[string]bool) string {
	var set []string
	for k, ok := range keys {
		if ok {
			set = append(set, k)
		}
	}
	slices.Sort(set)
	return set[0]
}
