package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/state/schema"
)

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("upstream:\n  url: postgres://db:5432/app\nlog:\n  level: warn\n"), 0o600)
	if code, stdout, stderr := runCLI("config", "check", "--config", good); code != 0 || stdout != "OK\n" {
		t.Errorf("check of a good file: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("upstream:\n  url: mysql://db\nlog:\n  level: loud\n  format: xml\n"), 0o600)
	code, stdout, stderr := runCLI("config", "check", "--config", broken)
	want := broken + `:2:3: upstream.url: upstream URL "mysql://db": want postgres://host:port
` + broken + `:4:3: log.level: log level "loud": want debug, info, warn or error
` + broken + `:5:3: log.format: log format "xml": want text or json
`
	if code != 1 || stdout != want || !strings.Contains(stderr, "3 errors") {
		t.Errorf("check of a broken file: exit %d, stdout:\n%s\nstderr %q; want exit 1 and:\n%s", code, stdout, stderr, want)
	}

	// A flag fixes the file's mistake, as it would for pgwarden serve.
	code, stdout, _ = runCLI("config", "check", "--config", broken, "--upstream", "postgres://db", "--log-level", "info", "--log-format", "json")
	if code != 0 || stdout != "OK\n" {
		t.Errorf("check with flags over the file: exit %d, stdout %q", code, stdout)
	}

	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("upstream:\n  url: postgres://db\n  sslmode: require\n"), 0o600)
	code, stdout, _ = runCLI("config", "check", "--config", unknown)
	if code != 1 || stdout != unknown+":3:3: upstream.sslmode: unknown key \"sslmode\"\n" {
		t.Errorf("check of an unknown key: exit %d, stdout %q", code, stdout)
	}

	if code, _, stderr := runCLI("config", "check", "--help"); code != 0 || !strings.Contains(stderr, "Usage: pgwarden config check") || !strings.Contains(stderr, "-upstream") {
		t.Errorf("config check --help: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runCLI("config"); code != 2 || !strings.Contains(stderr, "pgwarden config check") {
		t.Errorf("config alone: exit %d, stderr %q", code, stderr)
	}
}

func TestConfigPrint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pgwarden.yaml")
	os.WriteFile(path, []byte(`upstream:
  url: postgres://app:s3cret@db:5432/app
notify:
  slack:
    url: https://hooks.example/T0/B0/XXXX
limits:
  startup_timeout: 10s
`), 0o600)
	code, stdout, stderr := runCLI("config", "print", "--config", path, "--listen", "127.0.0.1:7000")
	if code != 0 {
		t.Fatalf("config print: exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"listen: 127.0.0.1:7000\n",                   // the flag over the file
		"url: postgres://app:REDACTED@db:5432/app\n", // the password hidden
		"url: REDACTED\n",                            // the Slack URL is a secret
		"startup_timeout: 10s\n",                     // from the file
		"shutdown_timeout: 30s\n",                    // the default
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("config print lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "s3cret") || strings.Contains(stdout, "XXXX") {
		t.Errorf("config print shows a secret:\n%s", stdout)
	}
	if code, _, stderr := runCLI("config", "print", "--help"); code != 0 || !strings.Contains(stderr, "Usage: pgwarden config print") {
		t.Errorf("config print --help: exit %d, stderr %q", code, stderr)
	}
}

// TestConfigSchema: config schema prints the whole of schema.sql.
func TestConfigSchema(t *testing.T) {
	code, stdout, stderr := runCLI("config", "schema")
	if code != 0 || stdout != schema.SQL || !strings.Contains(stdout, "CREATE TABLE IF NOT EXISTS pgwarden_state (") {
		t.Errorf("config schema: exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	if code, _, stderr := runCLI("config", "schema", "x"); code != 2 || !strings.Contains(stderr, `unexpected argument "x"`) {
		t.Errorf("config schema x: exit %d, stderr %q", code, stderr)
	}
}
