// Package config is pgwarden serve's configuration: one Config read from a
// YAML file (Load), with the flags of pgwarden serve written over it
// (RegisterFlags, Flags.Apply), defaults (SetDefaults) and a check of every
// setting that can be judged without opening a file or a connection
// (Validate). Each mistake is an Error that says where it was written: the
// file's line and column, or the flag.
//
// Secrets are not part of a Config: it names the files or environment
// variables that hold them, and Redacted hides the passwords a URL may
// carry, for printing.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pgwarden/pgwarden/identity"
)

// Defaults SetDefaults fills in.
const (
	DefaultListen          = "127.0.0.1:6432"
	DefaultShutdownTimeout = 30 * time.Second
)

// Config is pgwarden serve's configuration: the YAML file, with the flags
// of pgwarden serve written over it (Flags). Secrets are not in it: they
// come from files it names or from the environment.
type Config struct {
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
		Roles map[string]RoleSecret `yaml:"roles"`
		// OIDC accepts tokens of the company's identity provider as
		// the password.
		OIDC OIDC `yaml:"oidc"`
		// Reuse has the upstream connections of logged-in sessions
		// serve later sessions of the same role, database and startup
		// parameters.
		Reuse Reuse `yaml:"reuse"`
	} `yaml:"login"`
	Limits struct {
		MaxConnections       int      `yaml:"max_connections"`
		MaxMessageSize       int      `yaml:"max_message_size"`
		MaxStartupPerAddress int      `yaml:"max_startup_per_address"`
		StartupTimeout       Duration `yaml:"startup_timeout"`
		IdleTimeout          Duration `yaml:"idle_timeout"`
		ShutdownTimeout      Duration `yaml:"shutdown_timeout"`
		MaxRowsPerStatement  int64    `yaml:"max_rows_per_statement"`
	} `yaml:"limits"`
	Catalog struct {
		URL string   `yaml:"url"`
		TTL Duration `yaml:"ttl"`
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
		// ClientScopes maps a client certificate's email address or common
		// name (or "*", any other) to its scope: read, act or admin. Empty:
		// every verified certificate has scope admin.
		ClientScopes map[string]string `yaml:"client_scopes"`
		// Pprof serves Go's profiles at /debug/pprof/ (token required).
		Pprof bool `yaml:"pprof"`
		// PublicURL is the admin API's address as security's browsers
		// reach it (https://pgwarden.example.com:7070, or behind a
		// reverse proxy, its path): with the Slack sink, a hold's message
		// carries signed links to approve or deny it there.
		PublicURL string `yaml:"public_url"`
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
		DedupeWindow    Duration `yaml:"dedupe_window"`
		RatePerEmployee int      `yaml:"rate_per_employee"`
	} `yaml:"notify"`
	// Stream sends every line of the audit trail (not only alerts) to a
	// SIEM, at least once and in order: over syslog (TCP or TLS) and/or
	// HTTPS in batches. It needs audit.dir, and state_dir or state_url
	// for its outbox and cursor.
	Stream struct {
		Syslog struct {
			Addr    string `yaml:"addr"`
			Network string `yaml:"network"` // tcp (default) or tcp+tls
		} `yaml:"syslog"`
		HTTP struct {
			URL    string `yaml:"url"`
			Format string `yaml:"format"` // splunk_hec, elastic_bulk or ndjson (default)
			// TokenFile holds the HEC token, the Elasticsearch API key or
			// the bearer token (else PGWARDEN_STREAM_TOKEN).
			TokenFile string `yaml:"token_file"`
			// Username for basic authentication (password:
			// PGWARDEN_STREAM_PASSWORD).
			Username string `yaml:"username"`
			Index    string `yaml:"index"`
		} `yaml:"http"`
		// CAFile is a PEM file of the CAs trusted for the receivers'
		// certificates (default: the system roots).
		CAFile string `yaml:"ca_file"`
		// Queue bounds each receiver's queue in memory, in events; Batch
		// is the most events one request carries.
		Queue int `yaml:"queue"`
		Batch int `yaml:"batch"`
	} `yaml:"stream"`

	// file is the path Load read; pos the position of each key in it and
	// flag the flag that overrode a key, for Validate's messages.
	file string
	pos  map[string]position
	flag map[string]string
}

// OIDC has employees sign in with a token of the company's identity
// provider as their password (see package identity/oidc).
type OIDC struct {
	Issuer        string `yaml:"issuer"`
	Audience      string `yaml:"audience"`
	TokenType     string `yaml:"token_type"`
	UsernameClaim string `yaml:"username_claim"`
	GroupsClaim   string `yaml:"groups_claim"`
	// GroupMap renames the provider's groups to policy groups.
	GroupMap map[string]string `yaml:"group_map"`
	// Roles pick the upstream role by group, in order.
	Roles       []OIDCRole `yaml:"roles"`
	DefaultRole string     `yaml:"default_role"`
	// Targets are the database/role patterns whose clients sign in with a
	// token; the others use the logins file. Default: every one.
	Targets            []string `yaml:"targets"`
	Algorithms         []string `yaml:"algorithms"`
	Skew               Duration `yaml:"skew"`
	MinRefreshInterval Duration `yaml:"min_refresh_interval"`
	KeysMaxAge         Duration `yaml:"keys_max_age"`
	OnExpiry           string   `yaml:"on_expiry"`
	MaxSession         Duration `yaml:"max_session"`
}

// OIDCRole maps a policy group to the role its members log in upstream as.
type OIDCRole struct {
	Group string `yaml:"group"`
	Role  string `yaml:"role"`
}

// RoleSecret says where the upstream password of a mapped role is.
type RoleSecret struct {
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
}

// Reuse is the reuse of upstream connections by sessions under
// pgwarden's own login (login.reuse). Zero values take the defaults of
// proxy.Reuse.
type Reuse struct {
	Enabled     bool     `yaml:"enabled"`
	MaxIdle     int      `yaml:"max_idle"`
	IdleTimeout Duration `yaml:"idle_timeout"`
	MaxLifetime Duration `yaml:"max_lifetime"`
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a duration such as 30s or 5m.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		// A TypeError lets the decoder go on and report the other mistakes.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: invalid duration %q (want e.g. 30s, 5m)", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as Go prints it (30s, 1m0s).
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// position is where a key is written in the file, 1-based.
type position struct{ line, col int }

// Load reads the YAML file at path strictly: an unknown key, like a value
// of the wrong type, is an error. The errors of a file that decodes are
// Errors, each with its line and column.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := &Config{file: path}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, syntaxError(path, err)
	}
	c.pos = positions(&root)
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // io.EOF: empty file
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		var es Errors
		for _, msg := range te.Errors {
			es = append(es, c.decodeError(msg))
		}
		return nil, es
	}
	c.ShareWindows = c.ShareWindows || c.ShareLegacy
	return c, nil
}

var (
	yamlLine     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`^field (\S+) not found in type `)
)

// syntaxError turns a YAML syntax error into an Error at its line.
func syntaxError(path string, err error) error {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	line, _ := strconv.Atoi(m[1])
	return Errors{{File: path, Line: line, Msg: m[2]}}
}

// decodeError turns one of a yaml.TypeError's messages ("line 3: field x
// not found in type config.Config") into an Error at the key on that line.
func (c *Config) decodeError(msg string) *Error {
	e := &Error{File: c.file, Msg: msg}
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return e
	}
	e.Line, _ = strconv.Atoi(m[1])
	e.Msg = m[2]
	if f := unknownField.FindStringSubmatch(e.Msg); f != nil {
		e.Msg = fmt.Sprintf("unknown key %q", f[1])
	}
	for key, p := range c.pos {
		if p.line == e.Line && (e.Column == 0 || p.col < e.Column || p.col == e.Column && len(key) > len(e.Key)) {
			e.Key, e.Column = key, p.col
		}
	}
	return e
}

// positions maps each key of the document, dotted (upstream.url, list
// items by index: login.relay.0), to where it is written.
func positions(root *yaml.Node) map[string]position {
	pos := map[string]position{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				key := prefix + k.Value
				pos[key] = position{k.Line, k.Column}
				walk(v, key+".")
			}
		case yaml.SequenceNode:
			for i, v := range n.Content {
				key := prefix + strconv.Itoa(i)
				pos[key] = position{v.Line, v.Column}
				walk(v, key+".")
			}
		}
	}
	walk(root, "")
	return pos
}

// SetDefaults fills in the settings pgwarden serve cannot run without.
// The others keep their zero value, which each component reads as its own
// default (documented in docs/configuration.md).
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Limits.ShutdownTimeout <= 0 {
		c.Limits.ShutdownTimeout = Duration(DefaultShutdownTimeout)
	}
}

// Redacted is a copy of c fit to print: passwords in URLs and the Slack
// webhook URL (itself a secret) are replaced.
func (c *Config) Redacted() *Config {
	r := *c
	r.Upstream.URL = redactURL(r.Upstream.URL)
	r.Catalog.URL = redactURL(r.Catalog.URL)
	r.Audit.URL = redactURL(r.Audit.URL)
	r.StateURL = redactURL(r.StateURL)
	r.Notify.Webhook.URL = redactURL(r.Notify.Webhook.URL)
	r.Stream.HTTP.URL = redactURL(r.Stream.HTTP.URL)
	if r.Notify.Slack.URL != "" {
		r.Notify.Slack.URL = redacted
	}
	return &r
}

const redacted = "REDACTED"

// redactURL hides the password of a URL's user and of a password query
// parameter (postgres://h/db?password=...).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if s == "" {
			return s
		}
		return redacted
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), redacted)
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", redacted)
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// An Error is one mistake in a configuration and where it was written.
type Error struct {
	File         string // the configuration file, when the mistake is in it
	Line, Column int    // 1-based; zero when unknown
	Flag         string // the flag that set the value, without dashes
	Key          string // the dotted key, e.g. upstream.url
	Msg          string
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Flag != "":
		fmt.Fprintf(&b, "--%s: ", e.Flag)
	case e.File != "" && e.Line > 0 && e.Column > 0:
		fmt.Fprintf(&b, "%s:%d:%d: ", e.File, e.Line, e.Column)
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	}
	if e.Key != "" && e.Flag == "" {
		fmt.Fprintf(&b, "%s: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are every mistake found in a configuration, in file order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// errorAt is an Error about key, placed where its value came from: the
// flag that set it or its line in the file, else the nearest enclosing
// key that has one.
func (c *Config) errorAt(key, msg string) *Error {
	e := &Error{File: c.file, Key: key, Msg: msg}
	for k := key; k != ""; {
		if f, ok := c.flag[k]; ok {
			e.Flag = f
			return e
		}
		if p, ok := c.pos[k]; ok {
			e.Line, e.Column = p.line, p.col
			return e
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return e
}

// validTargets reports the first bad database/role pattern.
func validTargets(patterns []string) error {
	_, err := identity.ParseTargets(patterns)
	return err
}
