package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/identity/oidc"
	"github.com/pgwarden/pgwarden/identity/oidc/oidctest"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// signIn runs pgwarden login with args against idp, approving the device
// code it prints as the employee would in the browser.
func signIn(t *testing.T, idp *oidctest.IdP, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	pr, pw := io.Pipe()
	var out bytes.Buffer
	done := make(chan int, 1)
	go func() {
		defer pw.Close()
		done <- run(append([]string{"login", "--issuer", idp.Issuer(), "--client-id", oidctest.ClientID, "--timeout", "20s"}, args...), &out, pw)
	}()
	var prompt strings.Builder
	codeRE := regexp.MustCompile(`open (\S+) and enter the code (\S+)`)
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		prompt.WriteString(sc.Text() + "\n")
		if m := codeRE.FindStringSubmatch(sc.Text()); m != nil {
			if m[1] != idp.Issuer()+"/activate" || !idp.Approve(m[2]) {
				t.Errorf("prompt %q: not the IdP's verification URL and user code", sc.Text())
			}
		}
	}
	return <-done, out.String(), prompt.String()
}

// TestLoginDeviceFlow: pgwarden login completes the device authorization
// flow and prints an export line with an ID token that pgwarden's login
// accepts, or writes it to the password file for pgwarden's host.
func TestLoginDeviceFlow(t *testing.T) {
	idp := oidctest.New(t)
	idp.DeviceClaims(idp.Claims("jo@example.com", "support"))
	v, err := oidc.New(oidc.Config{Issuer: idp.Issuer(), Audience: oidctest.ClientID, DefaultRole: "app"})
	if err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := signIn(t, idp)
	if code != 0 || !strings.Contains(stderr, "Signed in as jo@example.com") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	m := regexp.MustCompile(`^export PGPASSWORD='([^']+)'\n$`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("stdout %q: no export line", stdout)
	}
	id, err := v.Verify(context.Background(), m[1])
	if err != nil || id.Employee != "jo@example.com" {
		t.Fatalf("the token: %+v, %v", id, err)
	}

	path := filepath.Join(t.TempDir(), "pgpass")
	const other = "db.internal:5432:*:*:other-password\n"
	if err := os.WriteFile(path, []byte(other+"pgwarden.internal:6432:*:*:old-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = signIn(t, idp, "--pgpass", "pgwarden.internal:6432", "--pgpass-file", path)
	if code != 0 || stdout != "" {
		t.Fatalf("--pgpass: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0]+"\n" != other || !strings.HasPrefix(lines[1], "pgwarden.internal:6432:*:*:ey") {
		t.Fatalf("password file:\n%s", b)
	}
	if _, err := v.Verify(context.Background(), strings.TrimPrefix(lines[1], "pgwarden.internal:6432:*:*:")); err != nil {
		t.Fatalf("the token in the password file: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %v, want 0600 (libpq ignores a file others can read)", fi.Mode().Perm())
	}

	// The employee never approves: the command gives up at its timeout.
	start := time.Now()
	code, _, stderr = runCLI("login", "--issuer", idp.Issuer(), "--client-id", oidctest.ClientID, "--timeout", "1500ms")
	if code != 1 || !strings.Contains(stderr, "sign-in") || time.Since(start) > 10*time.Second {
		t.Errorf("not approved: exit %d after %v, stderr %q", code, time.Since(start), stderr)
	}
	code, _, stderr = runCLI("login", "--issuer", idp.Issuer())
	if code == 0 || !strings.Contains(stderr, "--client-id") {
		t.Errorf("without --client-id: exit %d, stderr %q", code, stderr)
	}
}

// TestServeOIDC: serve with login.oidc in its config file signs an
// employee in with the token pgwarden login got, as the role their group
// maps to, with no logins file; a token of no mapped group is refused.
func TestServeOIDC(t *testing.T) {
	c := pgtest.Shared(t)
	idp := oidctest.New(t)
	idp.DeviceClaims(idp.Claims("kim@example.com", "Customer Support"))
	certFile, keyFile, err := c.IssueCert("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, false)
	if err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	cfgFile := filepath.Join(t.TempDir(), "pgwarden.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`listen: %s
upstream: {url: "postgres://%s"}
client_tls: {cert_file: %s, key_file: %s}
login:
  enabled: true
  oidc:
    issuer: %s
    audience: %s
    group_map: {"Customer Support": support}
    roles:
      - {group: support, role: %s}
`, listen, c.Addr(), certFile, keyFile, idp.Issuer(), oidctest.ClientID, pgtest.ScramUser)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, stderr := startBinary(t, []string{"PGWARDEN_ROLE_PASSWORD_PGW_SCRAM=" + pgtest.Password, "PGWARDEN_USERS_FILE=", "PGWARDEN_STATE_DIR="},
		"serve", "--config", cfgFile)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()

	code, stdout, errOut := signIn(t, idp)
	m := regexp.MustCompile(`^export PGPASSWORD='([^']+)'\n$`).FindStringSubmatch(stdout)
	if code != 0 || m == nil {
		t.Fatalf("pgwarden login: exit %d, stdout %q, stderr %q", code, stdout, errOut)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := func(token string) string {
		u := url.URL{Scheme: "postgres", User: url.UserPassword("kim@example.com", token), Host: listen, Path: c.Database, RawQuery: "sslmode=require"}
		return u.String()
	}
	var conn *pgx.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if conn, err = pgx.Connect(ctx, dsn(m[1])); err == nil || time.Now().After(deadline) || !strings.Contains(err.Error(), "refused") {
			break
		}
	}
	if err != nil {
		t.Fatalf("kim with her token: %v\n%s", err, stderr)
	}
	defer conn.Close(ctx)
	var role string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&role); err != nil || role != pgtest.ScramUser {
		t.Errorf("current_user %q, %v; want %s", role, err, pgtest.ScramUser)
	}
	_, err = pgx.Connect(ctx, dsn(idp.Token(t, "lee@example.com", "marketing")))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Errorf("a token of no mapped group: %v", err)
	}
	if strings.Contains(stderr.String(), m[1]) {
		t.Error("the token is in pgwarden's log")
	}
}
