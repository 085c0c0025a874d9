package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// TestServeLogin: with --login, an employee added with pgwarden users add
// logs in to pgwarden with their own password and works upstream as the
// mapped role, whose password comes from the environment; a wrong password
// is refused; a relayed role still authenticates to PostgreSQL itself.
func TestServeLogin(t *testing.T) {
	c := pgtest.Shared(t)
	users := filepath.Join(t.TempDir(), "users.json")
	if code, _, errOut := runWithStdin(t, "erin-pw-7\n", nil, "users", "add", "erin", "--role", pgtest.ScramUser, "--users-file", users); code != 0 {
		t.Fatalf("users add: %d %s", code, errOut)
	}
	// Refused before listening: login without its file, a bad method.
	if code, _, errOut := runCLI("serve", "--upstream", "postgres://"+c.Addr(), "--login", "--users-file", users+".missing"); code != 1 || !strings.Contains(errOut, "users add") {
		t.Errorf("--login without the file: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("serve", "--upstream", "postgres://"+c.Addr(), "--login", "--users-file", users, "--login-method", "md5"); code != 1 || !strings.Contains(errOut, "scram or password") {
		t.Errorf("--login-method md5: %d %q", code, errOut)
	}
	listen := freeAddr(t)
	cmd, stderr := startBinary(t, []string{"PGWARDEN_ROLE_PASSWORD_PGW_SCRAM=" + pgtest.Password}, "serve", "--listen", listen,
		"--upstream", "postgres://"+c.Addr(), "--login", "--users-file", users, "--login-relay", "*/"+pgtest.TrustUser)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := func(user, pw string) string {
		return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, pw, listen, c.Database)
	}
	proxytest.WaitListening(t, listen, 10*time.Second)
	conn, err := pgx.Connect(ctx, dsn("erin", "erin-pw-7"))
	if err != nil {
		t.Fatalf("erin with her password: %v\n%s", err, stderr)
	}
	defer conn.Close(ctx)
	var role string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&role); err != nil || role != pgtest.ScramUser {
		t.Errorf("current_user %q, %v; want %s", role, err, pgtest.ScramUser)
	}
	_, err = pgx.Connect(ctx, dsn("erin", "wrong"))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Errorf("a wrong password: %v", err)
	}
	// The upstream role's own password does not log in through pgwarden.
	if _, err := pgx.Connect(ctx, dsn(pgtest.ScramUser, pgtest.Password)); !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Errorf("the role's own password: %v", err)
	}
	relayed, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pgtest.TrustUser, listen, c.Database))
	if err != nil {
		t.Fatalf("a relayed role: %v", err)
	}
	relayed.Close(ctx)
	if strings.Contains(stderr.String(), pgtest.Password) || strings.Contains(stderr.String(), "erin-pw-7") {
		t.Error("a password in pgwarden's log")
	}
}

// TestServeLoginReuse: with --login-reuse, two sessions of a login one
// after the other run on one server backend, and the metrics count it.
func TestServeLoginReuse(t *testing.T) {
	c := pgtest.Shared(t)
	users := filepath.Join(t.TempDir(), "users.json")
	if code, _, errOut := runWithStdin(t, "fay-pw-3\n", nil, "users", "add", "fay", "--role", pgtest.ScramUser, "--users-file", users); code != 0 {
		t.Fatalf("users add: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI("serve", "--upstream", "postgres://"+c.Addr(), "--login-reuse"); code != 1 || !strings.Contains(errOut, "login.reuse needs login.enabled") {
		t.Errorf("--login-reuse without --login: %d %q", code, errOut)
	}
	listen, adminAddr := freeAddr(t), freeAddr(t)
	const token = "test-admin-token-0123456789"
	cmd, stderr := startBinary(t, []string{"PGWARDEN_ROLE_PASSWORD_PGW_SCRAM=" + pgtest.Password, "PGWARDEN_ADMIN_TOKEN=" + token}, "serve", "--listen", listen,
		"--upstream", "postgres://"+c.Addr(), "--login", "--users-file", users, "--login-reuse", "--admin-listen", adminAddr)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	proxytest.WaitListening(t, listen, 10*time.Second)
	dsn := fmt.Sprintf("postgres://fay:fay-pw-3@%s/%s?sslmode=disable", listen, c.Database)
	metrics := func() string {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	var pids []int32
	for i := range 2 {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("session %d: %v\n%s", i+1, err, stderr)
		}
		var pid int32
		if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
		conn.Close(ctx)
		proxytest.Eventually(t, 10*time.Second, "connection parked", func() (bool, string) {
			m := metrics()
			return strings.Contains(m, "pgwarden_upstream_parked 1"), m
		})
	}
	if pids[0] != pids[1] {
		t.Errorf("two sessions on backends %d and %d", pids[0], pids[1])
	}
	m := metrics()
	for _, want := range []string{"pgwarden_upstream_opened_total 1", "pgwarden_upstream_reused_total 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
