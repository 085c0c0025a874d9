package config

import (
	"flag"
	"strconv"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/identity"
)

// Flags are pgwarden serve's flags that set a configuration key. A flag
// given on the command line overrides the file; one left out keeps the
// file's value. A boolean flag can only turn a setting on.
type Flags struct {
	apply []func(*Config)
}

// RegisterFlags defines the configuration flags on fs.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	f.str(fs, "listen", "listen", "client listen `address` (default 127.0.0.1:6432)", func(c *Config) *string { return &c.Listen })
	f.str(fs, "upstream", "upstream.url", "upstream PostgreSQL `URL`, postgres://host:port[/db][?sslmode=...&sslrootcert=...], or host:port", func(c *Config) *string { return &c.Upstream.URL })
	f.str(fs, "upstream-tls-mode", "upstream.tls_mode", "upstream TLS: disable, require or verify-full (default verify-full when a CA file is given, else disable)", func(c *Config) *string { return &c.Upstream.TLSMode })
	f.str(fs, "upstream-ca-file", "upstream.ca_file", "PEM `file` of CAs trusted for the upstream certificate (default: system roots)", func(c *Config) *string { return &c.Upstream.CAFile })
	f.str(fs, "upstream-server-name", "upstream.server_name", "TLS server `name` for SNI and verification (default: the upstream host)", func(c *Config) *string { return &c.Upstream.ServerName })
	f.str(fs, "tls-cert", "client_tls.cert_file", "certificate `file` presented to clients that ask for TLS", func(c *Config) *string { return &c.ClientTLS.CertFile })
	f.str(fs, "tls-key", "client_tls.key_file", "private key `file` for --tls-cert", func(c *Config) *string { return &c.ClientTLS.KeyFile })
	f.list(fs, "client-ca", "client_certs.ca_files", "comma-separated PEM `files` of the CAs of employees' client certificates: a certificate names the employee (needs --tls-cert)", func(c *Config) *[]string { return &c.ClientCerts.CAFiles })
	f.list(fs, "client-crl", "client_certs.crl_files", "comma-separated revocation list `files` (PEM or DER) of --client-ca, reloaded when they change", func(c *Config) *[]string { return &c.ClientCerts.CRLFiles })
	f.str(fs, "client-cert-map", "client_certs.map", "what in a client certificate names the employee: email (the first SAN email, default), cn, or email,cn", func(c *Config) *string { return &c.ClientCerts.Map })
	f.on(fs, "login", "login.enabled", "employees log in to pgwarden (pgwarden users add), which logs in upstream as their mapped role with the role's password from $PGWARDEN_ROLE_PASSWORD_<ROLE> or the config file", func(c *Config) *bool { return &c.Login.Enabled })
	f.str(fs, "users-file", "login.users_file", "pgwarden's logins `file` (default users.json in --state-dir, or $PGWARDEN_USERS_FILE)", func(c *Config) *string { return &c.Login.UsersFile })
	f.str(fs, "login-method", "login.method", "how employees prove their password: scram (default) or password (cleartext, over TLS only, for clients without SCRAM)", func(c *Config) *string { return &c.Login.Method })
	f.list(fs, "login-relay", "login.relay", "comma-separated `database/role` patterns whose clients authenticate to PostgreSQL itself, not to pgwarden (e.g. service accounts)", func(c *Config) *[]string { return &c.Login.Relay })
	f.on(fs, "login-reuse", "login.reuse.enabled", "a logged-in session's upstream connection, reset with DISCARD ALL, serves the next session of the same role, database and startup parameters (needs --login)", func(c *Config) *bool { return &c.Login.Reuse.Enabled })
	f.intPos(fs, "login-reuse-max-idle", "login.reuse.max_idle", "with --login-reuse, idle upstream connections kept per role, database and startup parameters (default 10)", func(c *Config) *int { return &c.Login.Reuse.MaxIdle })
	f.dur(fs, "login-reuse-idle-timeout", "login.reuse.idle_timeout", "with --login-reuse, close an upstream connection idle this long (default 60s)", func(c *Config) *Duration { return &c.Login.Reuse.IdleTimeout })
	f.dur(fs, "login-reuse-max-lifetime", "login.reuse.max_lifetime", "with --login-reuse, close an upstream connection this long after it was opened, once its session ends (default 1h)", func(c *Config) *Duration { return &c.Login.Reuse.MaxLifetime })
	f.intPos(fs, "max-connections", "limits.max_connections", "maximum concurrent client connections (default 1000)", func(c *Config) *int { return &c.Limits.MaxConnections })
	f.intPos(fs, "max-message-size", "limits.max_message_size", "maximum size in `bytes` of a client message once authenticated (default 64 MiB; before authentication: 65535)", func(c *Config) *int { return &c.Limits.MaxMessageSize })
	f.intAny(fs, "max-startup-per-address", "limits.max_startup_per_address", "maximum connections from one client IP address (IPv6: one /64) that have not authenticated yet (default 64; -1: no limit)", func(c *Config) *int { return &c.Limits.MaxStartupPerAddress })
	f.dur(fs, "startup-timeout", "limits.startup_timeout", "time allowed from connect to the first ReadyForQuery (default 30s)", func(c *Config) *Duration { return &c.Limits.StartupTimeout })
	f.dur(fs, "idle-timeout", "limits.idle_timeout", "end sessions idle this long outside a statement (default 0: never)", func(c *Config) *Duration { return &c.Limits.IdleTimeout })
	f.dur(fs, "shutdown-timeout", "limits.shutdown_timeout", "on SIGTERM, time sessions get to finish before they are closed (default 30s)", func(c *Config) *Duration { return &c.Limits.ShutdownTimeout })
	f.int64Pos(fs, "max-rows-per-statement", "limits.max_rows_per_statement", "block statements that return more rows than this, system catalogs excepted (default 0: no limit)", func(c *Config) *int64 { return &c.Limits.MaxRowsPerStatement })
	f.str(fs, "policy", "policy", "policy `file` (default: the built-in policy, content detectors only)", func(c *Config) *string { return &c.Policy })
	f.str(fs, "catalog-url", "catalog.url", "`URL` of pgwarden's own connection for resolving result columns (needed for declared columns); other databases are reached as the same role", func(c *Config) *string { return &c.Catalog.URL })
	f.str(fs, "audit-dir", "audit.dir", "`directory` of the hash-chained audit log (default: no audit log)", func(c *Config) *string { return &c.Audit.Dir })
	f.str(fs, "audit-key-file", "audit.key_file", "`file` holding the audit checkpoint key in hex (default: $PGWARDEN_AUDIT_KEY)", func(c *Config) *string { return &c.Audit.KeyFile })
	f.str(fs, "audit-sync", "audit.sync", "audit durability: always, interval or never (default always)", func(c *Config) *string { return &c.Audit.Sync })
	f.str(fs, "audit-url", "audit.url", "PostgreSQL `URL` of a central audit table (pgwarden_audit), in addition to or instead of --audit-dir", func(c *Config) *string { return &c.Audit.URL })
	f.on(fs, "audit-fail-open", "audit.fail_open", "let sessions continue when the audit log cannot be written (default: stop them)", func(c *Config) *bool { return &c.Audit.FailOpen })
	f.str(fs, "state-dir", "state_dir", "`directory` for state that survives restarts: quarantine list, held results, notification outbox", func(c *Config) *string { return &c.StateDir })
	f.on(fs, "share-state", "share_state", "several instances act as one guard: window figures, norms and the notification outbox shared through --state-url (at most about a second behind)", func(c *Config) *bool { return &c.ShareWindows })
	f.on(fs, "share-windows", "share_state", "the former name of --share-state", func(c *Config) *bool { return &c.ShareWindows })
	f.str(fs, "instance", "instance", "this instance's `name` among several (default hostname and listen address)", func(c *Config) *string { return &c.Instance })
	f.str(fs, "state-url", "state_url", "PostgreSQL `URL` of pgwarden's own database for learned norms (table pgwarden_state), instead of or beside --state-dir", func(c *Config) *string { return &c.StateURL })
	f.str(fs, "webhook-url", "notify.webhook.url", "`URL` that receives alerts and blocks as signed JSON (secret: --webhook-secret-file or $PGWARDEN_WEBHOOK_SECRET)", func(c *Config) *string { return &c.Notify.Webhook.URL })
	f.str(fs, "webhook-secret-file", "notify.webhook.secret_file", "`file` holding the webhook's HMAC-SHA256 signing secret", func(c *Config) *string { return &c.Notify.Webhook.SecretFile })
	f.str(fs, "syslog-addr", "notify.syslog.addr", "syslog receiver `host:port` for alerts (RFC 5424)", func(c *Config) *string { return &c.Notify.Syslog.Addr })
	f.str(fs, "syslog-network", "notify.syslog.network", "syslog transport: udp, tcp or tcp+tls (default udp)", func(c *Config) *string { return &c.Notify.Syslog.Network })
	f.str(fs, "syslog-format", "notify.syslog.format", "syslog message format: rfc5424 or cef (default rfc5424)", func(c *Config) *string { return &c.Notify.Syslog.Format })
	f.str(fs, "stream-url", "stream.http.url", "`URL` receiving every audit event in batches over HTTPS (Splunk HEC, Elasticsearch _bulk or NDJSON; see --stream-format)", func(c *Config) *string { return &c.Stream.HTTP.URL })
	f.str(fs, "stream-format", "stream.http.format", "body of --stream-url: splunk_hec, elastic_bulk or ndjson (default ndjson)", func(c *Config) *string { return &c.Stream.HTTP.Format })
	f.str(fs, "stream-token-file", "stream.http.token_file", "`file` holding the Splunk HEC token, Elasticsearch API key or bearer token of --stream-url (default: $PGWARDEN_STREAM_TOKEN)", func(c *Config) *string { return &c.Stream.HTTP.TokenFile })
	f.str(fs, "stream-username", "stream.http.username", "basic authentication `user` of --stream-url (password: $PGWARDEN_STREAM_PASSWORD)", func(c *Config) *string { return &c.Stream.HTTP.Username })
	f.str(fs, "stream-index", "stream.http.index", "Splunk index or Elasticsearch index/data stream (default: the token's; pgwarden-audit)", func(c *Config) *string { return &c.Stream.HTTP.Index })
	f.str(fs, "stream-syslog-addr", "stream.syslog.addr", "syslog receiver `host:port` of every audit event (RFC 5424, JSON message)", func(c *Config) *string { return &c.Stream.Syslog.Addr })
	f.str(fs, "stream-syslog-network", "stream.syslog.network", "stream syslog transport: tcp or tcp+tls (default tcp)", func(c *Config) *string { return &c.Stream.Syslog.Network })
	f.str(fs, "stream-ca-file", "stream.ca_file", "PEM `file` of the CAs trusted for the stream receivers' certificates (default: system roots)", func(c *Config) *string { return &c.Stream.CAFile })
	f.intPos(fs, "stream-queue", "stream.queue", "events held in memory per stream receiver before they spill to the outbox (default 10000)", func(c *Config) *int { return &c.Stream.Queue })
	f.intPos(fs, "stream-batch", "stream.batch", "most events in one stream request (default 500)", func(c *Config) *int { return &c.Stream.Batch })
	f.str(fs, "clock", "clock", "wall, or virtual: time moves only through POST /v1/clock on the admin listener (simulations, replays)", func(c *Config) *string { return &c.Clock })
	f.str(fs, "clock-start", "clock_start", "the virtual clock's start `time`, RFC 3339 (default now)", func(c *Config) *string { return &c.ClockStart })
	f.str(fs, "decision-log", "decision_log", "append every decision as a JSON line to `file`", func(c *Config) *string { return &c.DecisionLog })
	f.str(fs, "admin-listen", "admin.listen", "admin API listen `address` (off by default; loopback recommended), bearer token from --admin-token-file or $PGWARDEN_ADMIN_TOKEN", func(c *Config) *string { return &c.Admin.Listen })
	f.str(fs, "admin-token-file", "admin.token_file", "`file` holding the admin API bearer token", func(c *Config) *string { return &c.Admin.TokenFile })
	f.str(fs, "admin-tls-cert", "admin.cert_file", "certificate `file`: the admin API over TLS", func(c *Config) *string { return &c.Admin.CertFile })
	f.str(fs, "admin-tls-key", "admin.key_file", "private key `file` for --admin-tls-cert", func(c *Config) *string { return &c.Admin.KeyFile })
	f.str(fs, "admin-public-url", "admin.public_url", "the admin API's `URL` as security's browsers reach it: a hold's Slack message then carries signed links that approve or deny it", func(c *Config) *string { return &c.Admin.PublicURL })
	f.on(fs, "admin-pprof", "admin.pprof", "serve Go's CPU, heap and goroutine profiles at /debug/pprof/ on the admin listener (token required)", func(c *Config) *bool { return &c.Admin.Pprof })
	f.str(fs, "admin-client-ca", "admin.client_ca_file", "PEM `file` of CAs: admin clients presenting a certificate they verify need no token (mTLS)", func(c *Config) *string { return &c.Admin.ClientCAFile })
	f.str(fs, "log-level", "log.level", "debug, info, warn or error (default info)", func(c *Config) *string { return &c.Log.Level })
	f.str(fs, "log-format", "log.format", "text or json (default text)", func(c *Config) *string { return &c.Log.Format })
	requireCert := fs.String("require-client-cert", "", "comma-separated `database/role` patterns (* and ?) whose sessions must present a client certificate, e.g. 'prod/*'")
	f.apply = append(f.apply, func(c *Config) {
		for _, target := range splitList(*requireCert) {
			c.ClientCerts.Rules = append(c.ClientCerts.Rules, identity.CertRule{Target: target, Require: true})
			c.setBy("client_certs.rules."+strconv.Itoa(len(c.ClientCerts.Rules)-1), "require-client-cert")
		}
	})
	return f
}

// Apply writes the flags given on the command line over c.
func (f *Flags) Apply(c *Config) {
	for _, apply := range f.apply {
		apply(c)
	}
}

// setBy records that flag set key, for Validate's messages.
func (c *Config) setBy(key, flag string) {
	if c.flag == nil {
		c.flag = map[string]string{}
	}
	c.flag[key] = flag
}

// override adds the rule of one flag: when given(v) holds for the value
// on the command line, set(c, v) writes it over the file.
func override[V any](f *Flags, v *V, name, key string, given func(V) bool, set func(*Config, V)) {
	f.apply = append(f.apply, func(c *Config) {
		if given(*v) {
			set(c, *v)
			c.setBy(key, name)
		}
	})
}

func nonEmpty(s string) bool           { return s != "" }
func positive[N int | int64](n N) bool { return n > 0 }

func (f *Flags) str(fs *flag.FlagSet, name, key, usage string, field func(*Config) *string) {
	override(f, fs.String(name, "", usage), name, key, nonEmpty, func(c *Config, v string) { *field(c) = v })
}

// list is a comma-separated flag replacing the file's list.
func (f *Flags) list(fs *flag.FlagSet, name, key, usage string, field func(*Config) *[]string) {
	override(f, fs.String(name, "", usage), name, key, nonEmpty, func(c *Config, v string) { *field(c) = splitList(v) })
}

// on is a boolean flag: it can turn a setting on, not off.
func (f *Flags) on(fs *flag.FlagSet, name, key, usage string, field func(*Config) *bool) {
	override(f, fs.Bool(name, false, usage), name, key, func(v bool) bool { return v }, func(c *Config, _ bool) { *field(c) = true })
}

// intPos is an int flag that overrides the file when positive.
func (f *Flags) intPos(fs *flag.FlagSet, name, key, usage string, field func(*Config) *int) {
	override(f, fs.Int(name, 0, usage), name, key, positive[int], func(c *Config, v int) { *field(c) = v })
}

// intAny is an int flag that overrides the file when not zero (-1 means
// no limit).
func (f *Flags) intAny(fs *flag.FlagSet, name, key, usage string, field func(*Config) *int) {
	override(f, fs.Int(name, 0, usage), name, key, func(v int) bool { return v != 0 }, func(c *Config, v int) { *field(c) = v })
}

func (f *Flags) int64Pos(fs *flag.FlagSet, name, key, usage string, field func(*Config) *int64) {
	override(f, fs.Int64(name, 0, usage), name, key, positive[int64], func(c *Config, v int64) { *field(c) = v })
}

func (f *Flags) dur(fs *flag.FlagSet, name, key, usage string, field func(*Config) *Duration) {
	override(f, fs.Duration(name, 0, usage), name, key, func(v time.Duration) bool { return v > 0 }, func(c *Config, v time.Duration) { *field(c) = Duration(v) })
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
