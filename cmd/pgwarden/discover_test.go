package main

import (
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// TestDiscoverEmptySchema runs the command end to end: the proposal goes to
// stdout, the package's warnings and the summary to stderr.
func TestDiscoverEmptySchema(t *testing.T) {
	c := pgtest.Shared(t)
	code, stdout, stderr := runCLI("discover", "--dsn", c.DSN(pgtest.SuperUser), "--schema", "disc_missing")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if _, err := policy.Parse("discover", []byte(stdout)); err != nil {
		t.Errorf("policy.Parse of an empty proposal: %v\n%s", err, stdout)
	}
	if !strings.Contains(stdout, "  columns: []\n") {
		t.Errorf("stdout lacks an empty column list:\n%s", stdout)
	}
	for _, w := range []string{
		"pgwarden discover: warning: no tables or views in schema \"disc_missing\"\n",
		"pgwarden discover: scanned 0 relations (0 skipped), 0 columns, 0 rows sampled; proposed 0 columns in ",
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}

func TestDiscoverCommandLine(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		inStderr string
	}{
		{"help", []string{"--help"}, 0, "Usage: pgwarden discover"},
		{"no dsn", nil, 2, "--dsn is required"},
		{"bad sample", []string{"--dsn", "postgres://h", "--sample", "0"}, 2, "--sample"},
		{"bad share", []string{"--dsn", "postgres://h", "--min-share", "1.5"}, 2, "--min-share"},
		{"stray argument", []string{"--dsn", "postgres://h", "extra"}, 2, `unexpected argument "extra"`},
		{"malformed dsn", []string{"--dsn", "postgres://u:hunter2@h:notaport/db"}, 1, "bad --dsn"},
		{"unreachable", []string{"--dsn", "postgres://u:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=5"}, 1, "cannot connect: failed to connect"},
		{"timeout", []string{"--dsn", "postgres://u:hunter2@127.0.0.1:1/db?sslmode=disable", "--timeout", "1ns"}, 1, "timed out after 1ns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(append([]string{"discover"}, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.inStderr) || strings.Contains(stderr, "hunter2") {
				t.Errorf("exit %d, stderr %q; want exit %d with %q and no password", code, stderr, tt.code, tt.inStderr)
			}
			if tt.code != 0 && stdout != "" {
				t.Errorf("stdout %q on failure", stdout)
			}
		})
	}
}
