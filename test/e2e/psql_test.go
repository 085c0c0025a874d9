package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// psqlResult is what a psql run printed and how it exited.
type psqlResult struct {
	Stdout, Stderr string
	Exit           int
}

// runPsql runs psql against dsn with the -c commands, without reading
// ~/.psqlrc, unaligned and tuples-only, stopping at the first error.
func runPsql(t *testing.T, ctx context.Context, dsn, stdin string, commands ...string) psqlResult {
	t.Helper()
	args := []string{dsn, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"}
	for _, c := range commands {
		args = append(args, "-c", c)
	}
	return psql(t, ctx, stdin, args...)
}

// runPsqlScript runs psql with a script on standard input, going on after
// errors.
func runPsqlScript(t *testing.T, ctx context.Context, dsn, script string) psqlResult {
	t.Helper()
	return psql(t, ctx, script, dsn, "-X", "-A", "-t", "-q", "-f", "-")
}

// psql runs the psql binary in the C locale with no PG* variables from the
// environment.
func psql(t *testing.T, ctx context.Context, stdin string, args ...string) psqlResult {
	t.Helper()
	path, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql not installed")
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	env := []string{"PGCONNECT_TIMEOUT=5", "LC_ALL=C"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "LC_") && !strings.HasPrefix(kv, "LANG") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	err = cmd.Run()
	res := psqlResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.Exit = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("psql: %v", err)
	}
	return res
}

// TestPsql runs psql direct and through the proxy and compares output,
// errors and exit codes.
func TestPsql(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	c := pgtest.Shared(t)
	cases := []struct {
		name     string
		stdin    string
		commands []string
		wantExit int
	}{
		{"simple query", "", []string{"SELECT 1, 'a', NULL, '2024-01-02'::date, ARRAY[1,2]"}, 0},
		{"several results", "", []string{"SELECT 1; SELECT generate_series(1, 3)", "SELECT 'second command'"}, 0},
		{"copy to stdout", "", []string{`\copy (SELECT i, md5(i::text) FROM generate_series(1, 5000) i) to stdout`}, 0},
		{"copy from stdin", "1\tone\n2\ttwo\n3\tthree\n", []string{
			"CREATE TEMP TABLE pc (x int, y text)",
			`\copy pc from stdin`,
			"SELECT sum(x), string_agg(y, ',' ORDER BY x) FROM pc",
		}, 0},
		{"error", "", []string{"SELECT 1/0"}, 1},
		{"error with position", "", []string{"SELECT nosuch FROM pg_class"}, 1},
		{"notice", "", []string{`DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; END $$`, "SELECT 'after'"}, 0},
		{"error in transaction", "", []string{"BEGIN; SELECT 1/0; COMMIT"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			want := runPsql(t, ctx, c.DSN(pgtest.MD5User), tc.stdin, tc.commands...)
			if want.Exit != tc.wantExit {
				t.Fatalf("direct psql exited %d, want %d: %s", want.Exit, tc.wantExit, want.Stderr)
			}
			got := runPsql(t, ctx, p.DSN(pgtest.MD5User), tc.stdin, tc.commands...)
			proxytest.WantEqual(t, "psql", want, got)
		})
	}
}

// TestPsqlTLSScram connects psql with sslmode=verify-full as the SCRAM user
// to a proxy with TLS on both sides, where pgwarden runs SCRAM itself.
func TestPsqlTLSScram(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithClientTLS(t), proxytest.WithUpstreamTLS(t, proxy.TLSVerifyFull, "localhost"))
	ctx := proxytest.Ctx(t, 0)
	got := runPsql(t, ctx, p.DSN(pgtest.ScramUser, "sslmode=verify-full"), "",
		"SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
	if got.Exit != 0 || strings.TrimSpace(got.Stdout) != pgtest.ScramUser+"|t" {
		t.Fatalf("psql: %+v", got)
	}
	bad := runPsql(t, ctx, withWrongPassword(p.DSN(pgtest.ScramUser, "sslmode=verify-full")), "", "SELECT 1")
	if bad.Exit == 0 || !strings.Contains(bad.Stderr, "password authentication failed") {
		t.Fatalf("psql with a wrong password: %+v", bad)
	}
}

// TestPsqlBlocked runs blocked statements through psql: a query and a
// \copy, each failing with pgwarden's message, and the session going on.
func TestPsqlBlocked(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(blockLimit))
	for _, tc := range []struct{ name, sql, line string }{
		{"query", "SELECT generate_series(1, 100000000)", "SELECT generate_series(1, 100000000);"},
		{"copy", `\copy (SELECT generate_series(1, 100000000)) to stdout`, `\copy (SELECT generate_series(1, 100000000)) to stdout`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			got := runPsql(t, ctx, p.DSN(pgtest.TrustUser), "", tc.sql)
			if got.Exit != 1 || !strings.Contains(got.Stderr, "ERROR:  pgwarden:") {
				t.Fatalf("psql: exit %d, stderr %q; want exit 1 and the pgwarden error", got.Exit, got.Stderr)
			}
			if n := strings.Count(got.Stdout, "\n"); n > blockLimit {
				t.Errorf("%d rows printed, limit %d", n, blockLimit)
			}
			// Without ON_ERROR_STOP psql goes on in the same session.
			more := runPsqlScript(t, ctx, p.DSN(pgtest.TrustUser), tc.line+"\nSELECT 'still here';\n")
			if !strings.Contains(more.Stdout, "still here") || !strings.Contains(more.Stderr, "pgwarden:") {
				t.Errorf("session after the block: %+v", more)
			}
		})
	}
}
