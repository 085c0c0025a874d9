package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pgwarden.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// errorList is err's Errors as their messages, or fails the test.
func errorList(t *testing.T, err error) []string {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Error())
	}
	return out
}

func sameList(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadReportsEveryDecodeError(t *testing.T) {
	path := writeFile(t, `listen: 127.0.0.1:1
upstream:
  urll: postgres://h
limits:
  startup_timeout: soon
  idle_timeout: later
  max_connections: many
`)
	_, err := Load(path)
	sameList(t, errorList(t, err), []string{
		path + `:3:3: upstream.urll: unknown key "urll"`,
		path + `:5:3: limits.startup_timeout: invalid duration "soon" (want e.g. 30s, 5m)`,
		path + `:6:3: limits.idle_timeout: invalid duration "later" (want e.g. 30s, 5m)`,
		path + ":7:3: limits.max_connections: cannot unmarshal !!str `many` into int",
	})
}

func TestLoadSyntaxError(t *testing.T) {
	path := writeFile(t, "listen: [\n")
	_, err := Load(path)
	got := errorList(t, err)
	if len(got) != 1 || !strings.HasPrefix(got[0], path+":1: ") {
		t.Errorf("errors %q; want one at %s:1", got, path)
	}
}

func TestValidateReportsEveryErrorWhereItIsWritten(t *testing.T) {
	path := writeFile(t, `upstream:
  url: mysql://db
  tls_mode: prefer
client_tls:
  cert_file: server.pem
login:
  method: ldap
log:
  level: loud
clock: virtual
clock_start: yesterday
client_certs:
  rules:
    - target: prod/*
    - target: "a/b/c"
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	flags := RegisterFlags(fs)
	if err := fs.Parse([]string{"--log-format", "xml"}); err != nil {
		t.Fatal(err)
	}
	flags.Apply(c)
	c.SetDefaults()
	got := errorList(t, c.Validate())
	sameList(t, got, []string{
		path + `:2:3: upstream.url: upstream URL "mysql://db": want postgres://host:port`,
		path + `:3:3: upstream.tls_mode: upstream TLS mode "prefer": want disable, require or verify-full`,
		path + `:5:3: client_tls.cert_file: client TLS needs both a certificate and a key file`,
		path + `:7:3: login.method: login.users_file, login.method and login.relay (--users-file, --login-method, --login-relay) need login.enabled (--login)`,
		path + `:9:3: log.level: log level "loud": want debug, info, warn or error`,
		path + `:10:1: clock: a virtual clock needs the admin listener (admin.listen, --admin-listen) to move it`,
		got[6], // time.Parse's wording
		path + `:14:7: client_certs.rules.0: client certificates: crl_files and rules (--client-crl, --require-client-cert) need ca_files (--client-ca)`,
		got[8], // identity.ParseTargets' wording
		`--log-format: log format "xml": want text or json`,
	})
	if !strings.HasPrefix(got[6], path+":11:1: clock_start: ") || !strings.HasPrefix(got[8], path+":15:7: client_certs.rules.1.target: ") {
		t.Errorf("clock_start or rule target misplaced: %q, %q", got[6], got[8])
	}
}

func TestValidateNeedsUpstream(t *testing.T) {
	c := &Config{}
	c.SetDefaults()
	sameList(t, errorList(t, c.Validate()), []string{"upstream.url: the upstream server is required: upstream.url or --upstream"})
	c.Upstream.URL = "postgres://db:5432/app?sslmode=require"
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}

func TestFlagsOverrideTheFile(t *testing.T) {
	path := writeFile(t, `listen: 0.0.0.0:6432
upstream:
  url: postgres://file-db
log:
  level: debug
login:
  relay: [a/b]
limits:
  max_startup_per_address: 10
  startup_timeout: 10s
audit:
  fail_open: true
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	flags := RegisterFlags(fs)
	err = fs.Parse([]string{"--upstream", "postgres://flag-db", "--login-relay", "x/y, z/*", "--max-startup-per-address", "-1",
		"--require-client-cert", "prod/*", "--share-windows", "--idle-timeout", "1m"})
	if err != nil {
		t.Fatal(err)
	}
	flags.Apply(c)
	c.SetDefaults()
	switch {
	case c.Listen != "0.0.0.0:6432", c.Log.Level != "debug", !c.Audit.FailOpen, c.Limits.StartupTimeout != Duration(10*time.Second):
		t.Errorf("a flag not given changed the file's value: %+v", c)
	case c.Upstream.URL != "postgres://flag-db", strings.Join(c.Login.Relay, " ") != "x/y z/*", c.Limits.MaxStartupPerAddress != -1,
		len(c.ClientCerts.Rules) != 1 || !c.ClientCerts.Rules[0].Require, !c.ShareWindows, c.Limits.IdleTimeout != Duration(time.Minute):
		t.Errorf("a flag did not override the file: %+v", c)
	case c.Limits.ShutdownTimeout != Duration(DefaultShutdownTimeout):
		t.Errorf("shutdown timeout %v; want the default", c.Limits.ShutdownTimeout)
	}
	if e := c.errorAt("upstream.url", "x"); e.Flag != "upstream" {
		t.Errorf("an error on upstream.url is placed at %q; want the flag", e)
	}
	if e := c.errorAt("log.level", "x"); e.Line != 5 || e.Column != 3 {
		t.Errorf("an error on log.level is placed at %q; want line 5, column 3", e)
	}
}

func TestRedacted(t *testing.T) {
	c := &Config{}
	c.Upstream.URL = "postgres://app:s3cret@db/app?sslmode=require"
	c.StateURL = "postgres://db/state?password=hunter2&sslmode=disable"
	c.Notify.Slack.URL = "https://hooks.example/T000/B000/XXXX"
	c.Catalog.URL = "postgres://pgwarden@db/app"
	r := c.Redacted()
	for _, s := range []string{r.Upstream.URL, r.StateURL, r.Notify.Slack.URL} {
		if strings.Contains(s, "s3cret") || strings.Contains(s, "hunter2") || strings.Contains(s, "XXXX") || !strings.Contains(s, "REDACTED") {
			t.Errorf("not redacted: %q", s)
		}
	}
	if r.Catalog.URL != c.Catalog.URL || c.Upstream.URL != "postgres://app:s3cret@db/app?sslmode=require" {
		t.Errorf("Redacted changed what it should not: %q, original %q", r.Catalog.URL, c.Upstream.URL)
	}
}

func TestValidateOIDC(t *testing.T) {
	path := writeFile(t, `upstream: {url: "postgres://db"}
login:
  enabled: true
  oidc:
    issuer: https://idp.example.com
    token_type: saml
    on_expiry: never
    targets: ["a/b/c"]
    roles:
      - {group: support}
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	got := errorList(t, c.Validate())
	sameList(t, got, []string{
		path + `:4:3: login.oidc.audience: login.oidc.audience (the client id) is required with login.oidc.issuer`,
		path + `:6:5: login.oidc.token_type: token type "saml": want id or access`,
		path + `:7:5: login.oidc.on_expiry: on_expiry "never": want end or allow`,
		got[3], // identity.ParseTargets' wording
		path + `:10:9: login.oidc.roles.0: a roles entry needs a group and a role`,
	})
	if !strings.HasPrefix(got[3], path+":8:15: login.oidc.targets.0: ") {
		t.Errorf("target misplaced: %q", got[3])
	}

	path = writeFile(t, `upstream: {url: "postgres://db"}
login:
  oidc: {issuer: https://idp.example.com, audience: pgwarden}
`)
	if c, err = Load(path); err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	sameList(t, errorList(t, c.Validate()), []string{path + `:3:10: login.oidc.issuer: login.oidc needs login.enabled (--login)`})
}

func TestValidateLoginReuse(t *testing.T) {
	path := writeFile(t, `upstream: {url: "postgres://db"}
login:
  reuse: {enabled: true, max_idle: -1, idle_timeout: 30s}
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	sameList(t, errorList(t, c.Validate()), []string{
		path + `:3:11: login.reuse.enabled: login.reuse needs login.enabled (--login)`,
		path + `:3:26: login.reuse.max_idle: max_idle -1: want a positive number (0: the default, 10)`,
	})

	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	flags := RegisterFlags(fs)
	if err := fs.Parse([]string{"--login", "--users-file", "u.json", "--login-reuse", "--login-reuse-max-idle", "3", "--login-reuse-idle-timeout", "5s", "--login-reuse-max-lifetime", "10m"}); err != nil {
		t.Fatal(err)
	}
	c = &Config{}
	c.Upstream.URL = "postgres://db"
	flags.Apply(c)
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := c.Login.Reuse; !r.Enabled || r.MaxIdle != 3 || r.IdleTimeout != Duration(5*time.Second) || r.MaxLifetime != Duration(10*time.Minute) {
		t.Errorf("flags gave %+v", r)
	}
}

func TestValidateStream(t *testing.T) {
	path := writeFile(t, `upstream:
  url: postgres://db
stream:
  http:
    url: ftp://siem
    format: gelf
  syslog:
    addr: siem:514
    network: udp
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	sameList(t, errorList(t, c.Validate()), []string{
		path + `:5:5: stream.http.url: streaming the audit trail needs the trail: set audit.dir (--audit-dir)`,
		path + `:5:5: stream.http.url: streaming the audit trail needs a place for its outbox and cursor: set state_dir (--state-dir) or state_url (--state-url)`,
		path + `:5:5: stream.http.url: stream URL: want http:// or https:// and a host`,
		path + `:6:5: stream.http.format: stream format "gelf": want splunk_hec, elastic_bulk or ndjson`,
		path + `:9:5: stream.syslog.network: stream syslog network "udp": want tcp or tcp+tls (UDP could lose events unseen)`,
	})

	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	flags := RegisterFlags(fs)
	err = fs.Parse([]string{"--audit-dir", "/a", "--state-url", "postgres://state", "--stream-url", "https://es:9200/_bulk",
		"--stream-format", "elastic_bulk", "--stream-syslog-network", "tcp+tls", "--stream-queue", "100"})
	if err != nil {
		t.Fatal(err)
	}
	flags.Apply(c)
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	if c.Stream.HTTP.URL != "https://es:9200/_bulk" || c.Stream.Queue != 100 || c.Stream.HTTP.Format != "elastic_bulk" {
		t.Errorf("stream flags not applied: %+v", c.Stream)
	}
	c.Stream.HTTP.URL = "https://elastic:pw@es:9200/_bulk"
	if r := c.Redacted(); strings.Contains(r.Stream.HTTP.URL, "pw") {
		t.Errorf("stream URL not redacted: %s", r.Stream.HTTP.URL)
	}
}

func TestValidateAdminPublicURL(t *testing.T) {
	path := writeFile(t, `upstream:
  url: postgres://db
admin:
  public_url: pgwarden.example.com:7070
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	sameList(t, errorList(t, c.Validate()), []string{
		path + `:4:3: admin.public_url: the admin API's public URL "pgwarden.example.com:7070": want http(s)://host[:port][/path]`,
	})
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	flags := RegisterFlags(fs)
	if err := fs.Parse([]string{"--admin-public-url", "https://pgwarden.example.com/admin"}); err != nil {
		t.Fatal(err)
	}
	flags.Apply(c)
	sameList(t, errorList(t, c.Validate()), []string{
		`--admin-public-url: the admin API's public URL needs the admin listener (admin.listen, --admin-listen)`,
	})
	c.Admin.Listen = "127.0.0.1:7070"
	if err := c.Validate(); err != nil || c.Admin.PublicURL != "https://pgwarden.example.com/admin" {
		t.Errorf("Validate() = %v, public URL %q", err, c.Admin.PublicURL)
	}
}
