package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

func TestMain(m *testing.M) {
	// Re-executed by the tests as the pgwarden binary.
	if os.Getenv("PGWARDEN_TEST_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(pgtest.Main(m))
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// startBinary runs the test binary as pgwarden with args; it is killed when
// the test ends if it is still running.
func startBinary(t *testing.T, env []string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "PGWARDEN_TEST_RUN_MAIN=1"), env...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, stderr
}

// connectThrough connects to pgwarden at listen as the trust user, waiting
// for it to start listening and to let the user in.
func connectThrough(t *testing.T, ctx context.Context, c *pgtest.Cluster, listen string, stderr *syncBuffer) *pgx.Conn {
	t.Helper()
	dsn := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pgtest.TrustUser, listen, c.Database)
	var conn *pgx.Conn
	proxytest.Eventually(t, 10*time.Second, "connect through pgwarden", func() (bool, string) {
		var err error
		conn, err = pgx.Connect(ctx, dsn)
		if err != nil {
			return false, fmt.Sprintf("%v\n%s", err, stderr.String())
		}
		return true, ""
	})
	return conn
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"no command", nil, 2, "", "Usage:"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"help", []string{"help"}, 0, "pgwarden serve", ""},
		{"serve help", []string{"serve", "--help"}, 0, "", "Usage: pgwarden serve"},
		{"help serve", []string{"help", "serve"}, 0, "", "Usage: pgwarden serve"},
		{"version", []string{"version"}, 0, "pgwarden", ""},
		{"serve without upstream", []string{"serve"}, 2, "", "--upstream"},
		{"serve bad flag", []string{"serve", "--nope"}, 2, "", "unknown flag: --nope"},
		{"serve stray argument", []string{"serve", "--upstream", "postgres://h", "extra"}, 2, "", `unexpected argument "extra"`},
		{"serve bad upstream scheme", []string{"serve", "--upstream", "mysql://h:1"}, 1, "", "want postgres://host:port"},
		{"serve bad tls mode", []string{"serve", "--upstream", "postgres://h", "--upstream-tls-mode", "prefer"}, 1, "", "want disable, require or verify-full"},
		{"serve missing CA", []string{"serve", "--upstream", "postgres://h?sslmode=verify-full&sslrootcert=/nonexistent"}, 1, "", "upstream CA file"},
		{"serve half TLS", []string{"serve", "--upstream", "postgres://h", "--tls-cert", "x.pem"}, 1, "", "both a certificate and a key"},
		{"serve bad log level", []string{"serve", "--upstream", "postgres://h", "--log-level", "loud"}, 1, "", "log level"},
		{"serve missing config", []string{"serve", "--config", "/nonexistent.yaml"}, 1, "", "no such file"},
	}
	for _, group := range []struct{ name, sub string }{
		{"policy", "explain"}, {"audit", "query"}, {"users", "release"},
		{"holds", "approve"}, {"sessions", "kill"}, {"alerts", "ack"},
	} {
		tests = append(tests, []struct {
			name     string
			args     []string
			code     int
			inStdout string
			inStderr string
		}{
			{group.name + " alone", []string{group.name}, 2, "", "pgwarden " + group.name + " " + group.sub},
			{group.name + " help", []string{group.name, "--help"}, 0, "", "pgwarden " + group.name + " " + group.sub},
			{group.name + " unknown", []string{group.name, "frob"}, 2, "", "pgwarden " + group.name + `: unknown subcommand "frob"`},
		}...)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(tt.args...)
			if code != tt.code || !strings.Contains(stdout, tt.inStdout) || !strings.Contains(stderr, tt.inStderr) {
				t.Errorf("pgwarden %q: exit %d, stdout %q, stderr %q; want exit %d with %q / %q",
					tt.args, code, stdout, stderr, tt.code, tt.inStdout, tt.inStderr)
			}
		})
	}
}

func TestConfigFileErrorsNameTheLine(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown key":  {"listen: 127.0.0.1:1\nupstream:\n  urll: postgres://h\n", ".yaml:3:3: upstream.urll: unknown key"},
		"bad duration": {"limits:\n  startup_timeout: soon\n", ".yaml:2:3: limits.startup_timeout: invalid duration"},
		"not yaml":     {"listen: [\n", ".yaml:1: "},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
			os.WriteFile(path, []byte(tc.yaml), 0o600)
			code, _, stderr := runCLI("serve", "--config", path)
			if code != 1 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, path) {
				t.Errorf("exit %d, stderr %q; want exit 1 naming %s and %q", code, stderr, path, tc.want)
			}
		})
	}
}

// TestServeAndSIGTERM runs the binary with a config file in front of the
// test server, relays a query, and stops it with SIGTERM: a busy session may
// finish its statement, then the process exits 0.
func TestServeAndSIGTERM(t *testing.T) {
	c := pgtest.Shared(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(t.TempDir(), "pgwarden.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen: %s
upstream:
  url: postgres://%s
limits:
  shutdown_timeout: 10s
  max_rows_per_statement: 5
log:
  format: json
`, listen, c.Addr())), 0o600)

	cmd, stderr := startBinary(t, nil, "serve", "--config", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := connectThrough(t, ctx, c, listen, stderr)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM generate_series(1, 100)").Scan(&n); err != nil || n != 100 {
		t.Fatalf("query: %d, %v", n, err)
	}
	if _, err := conn.Exec(ctx, "SELECT generate_series(1, 6)"); err == nil || !strings.Contains(err.Error(), "pgwarden:") {
		t.Fatalf("6 rows with a limit of 5 from the config file: err = %v", err)
	}

	// A statement running when SIGTERM arrives is allowed to finish.
	marker := proxytest.UniqueName(t)
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(0.5) /* "+marker+" */")
		done <- err
	}()
	proxytest.WaitRunning(t, ctx, proxytest.Connect(t, ctx, c.DSN(pgtest.SuperUser)), marker, 1)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Errorf("statement running at SIGTERM: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("pgwarden exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("pgwarden did not exit after SIGTERM\n%s", stderr.String())
	}
	for _, want := range []string{`"msg":"listening"`, `"msg":"statement_blocked"`, `"msg":"shutting_down"`, `"msg":"stopped"`, `"session_id"`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, stderr.String())
		}
	}
}

// TestServeCountsIntoAuditLog runs the binary with a policy, a catalog
// connection, an audit log and a central audit table: a query's PII is
// counted, the statement is in both after SIGTERM, and both verify.
func TestServeCountsIntoAuditLog(t *testing.T) {
	c := pgtest.Shared(t)
	c.Exec(t, `DROP TABLE IF EXISTS serve_people;
CREATE TABLE serve_people (id int, email text);
INSERT INTO serve_people SELECT i, 'p' || i || '@example.com' FROM generate_series(1, 25) i;
GRANT SELECT ON serve_people TO `+pgtest.TrustUser)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte("version: 1\npii:\n  columns:\n    - match: public.serve_people.email\n      category: email\n  detectors:\n    enabled: false\n"), 0o600)
	auditDir := filepath.Join(dir, "audit")
	const key = "00112233445566778899aabbccddeeff"

	c.Exec(t, "DROP TABLE IF EXISTS pgwarden_audit")
	cmd, stderr := startBinary(t, []string{"PGWARDEN_AUDIT_KEY=" + key}, "serve", "--listen", listen,
		"--upstream", "postgres://"+c.Addr(), "--policy", pol, "--catalog-url", c.DSN(pgtest.SuperUser),
		"--audit-dir", auditDir, "--audit-url", c.DSN(pgtest.SuperUser), "--log-format", "json")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := connectThrough(t, ctx, c, listen, stderr)
	rows, _ := conn.Query(ctx, "SELECT id, email FROM serve_people")
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pgwarden exited with %v\n%s", err, stderr.String())
	}

	t.Setenv("PGWARDEN_AUDIT_KEY", key)
	if code, stdout, errOut := runCLI("audit", "verify", auditDir); code != 0 {
		t.Fatalf("audit verify: exit %d\n%s%s", code, stdout, errOut)
	}
	code, stdout, errOut := runCLI("audit", "query", auditDir, "--type", "statement", "--json")
	if code != 0 || !strings.Contains(stdout, `"pii_values":{"email":25}`) || !strings.Contains(stdout, `"public.serve_people"`) {
		t.Fatalf("audit query: exit %d, want a statement with 25 emails from public.serve_people:\n%s%s", code, stdout, errOut)
	}
	if code, stdout, _ := runCLI("audit", "query", auditDir, "--table", "public.serve_people"); code != 0 || strings.Count(stdout, "\tstatement\t") != 1 {
		t.Errorf("audit query --table public.serve_people: exit %d, want the one statement:\n%s", code, stdout)
	}
	if code, stdout, _ := runCLI("audit", "query", auditDir, "--table", "public.other"); code != 0 || stdout != "" {
		t.Errorf("audit query --table public.other: exit %d, want nothing:\n%s", code, stdout)
	}

	pool := c.Pool(t, pgtest.SuperUser)
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pgwarden_audit WHERE type = 'statement' AND (data->'pii_values'->>'email')::int = 25`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("central audit table: %d matching statements, %v; want 1", n, err)
	}
	if _, err := audit.VerifyPG(ctx, pool, "pgwarden_audit"); err != nil {
		t.Fatalf("central audit table does not verify: %v", err)
	}
}

// TestKill9KeepsAcknowledgedStatements kills pgwarden with SIGKILL while it
// streams a large result: every statement the client saw complete is in the
// audit log, which still verifies, and a restarted pgwarden continues it.
func TestKill9KeepsAcknowledgedStatements(t *testing.T) {
	c := pgtest.Shared(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	auditDir := filepath.Join(t.TempDir(), "audit")
	const key = "00112233445566778899aabbccddeeff"
	env := []string{"PGWARDEN_AUDIT_KEY=" + key}
	args := []string{"serve", "--listen", listen, "--upstream", "postgres://" + c.Addr(), "--audit-dir", auditDir}
	cmd, stderr := startBinary(t, env, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := connectThrough(t, ctx, c, listen, stderr)
	const acknowledged = 5
	for i := 0; i < acknowledged; i++ {
		if _, err := conn.Exec(ctx, "SELECT 'someone@example.com'", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := conn.Query(ctx, "SELECT i, 'person' || i || '@example.com' FROM generate_series(1, 5000000) i", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; rows.Next(); n++ {
		if n == 1000 {
			cmd.Process.Kill()
		}
	}
	rows.Close()
	cmd.Wait()

	t.Setenv("PGWARDEN_AUDIT_KEY", key)
	if code, stdout, errOut := runCLI("audit", "verify", auditDir); code != 0 {
		t.Fatalf("audit verify after kill -9: exit %d\n%s%s", code, stdout, errOut)
	}
	_, stdout, _ := runCLI("audit", "query", auditDir, "--type", "statement", "--json")
	if n := strings.Count(stdout, `"sql":"SELECT $1"`); n != acknowledged {
		t.Fatalf("%d acknowledged statements in the log, want %d:\n%s", n, acknowledged, stdout)
	}
	if strings.Contains(stdout, "someone@example.com") {
		t.Error("a literal of the statement text reached the audit log")
	}

	// A restart continues the same chain.
	cmd, stderr = startBinary(t, env, args...)
	conn2 := connectThrough(t, ctx, c, listen, stderr)
	if _, err := conn2.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	conn2.Close(ctx)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if code, stdout, errOut := runCLI("audit", "verify", auditDir); code != 0 {
		t.Fatalf("audit verify after restart: exit %d\n%s%s", code, stdout, errOut)
	}
}

// TestHelpOfEveryCommand walks the command tree: pgwarden help lists
// every command, and every command's --help exits 0 with its synopsis.
func TestHelpOfEveryCommand(t *testing.T) {
	_, top, _ := runCLI("help")
	var visit func(c *cobra.Command)
	visit = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if !sub.IsAvailableCommand() {
				continue
			}
			path := strings.Fields(sub.CommandPath())
			if len(path) == 2 && !strings.Contains(top, sub.CommandPath()+" ") {
				t.Errorf("pgwarden help does not list %q:\n%s", sub.CommandPath(), top)
			}
			code, stdout, stderr := runCLI(append(path[1:], "--help")...)
			if code != 0 || !strings.Contains(stdout+stderr, "Usage: "+sub.CommandPath()) {
				t.Errorf("%s --help: exit %d, output %q", sub.CommandPath(), code, stdout+stderr)
			}
			visit(sub)
		}
	}
	visit(rootCommand(io.Discard, io.Discard))
	if code, stdout, _ := runCLI("completion", "bash"); code != 0 || !strings.Contains(stdout, "__pgwarden") {
		t.Errorf("completion bash: exit %d", code)
	}
}
