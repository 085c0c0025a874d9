package deploy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// unit is a systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, src string) unit {
	t.Helper()
	u := unit{}
	section := ""
	for i, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		case section == "":
			t.Fatalf("line %d: %q outside a section", i+1, line)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("line %d: %q is not key=value", i+1, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unit) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// TestSystemdUnit checks the unit's hardening and has systemd-analyze
// verify it and score its exposure, when systemd-analyze is installed.
func TestSystemdUnit(t *testing.T) {
	src := readFile(t, "pgwarden.service")
	u := parseUnit(t, src)
	svc := u["Service"]
	if svc == nil || u["Install"] == nil || u["Unit"] == nil {
		t.Fatalf("sections %v", u)
	}
	for key, want := range map[string]string{
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"CapabilityBoundingSet": "",
		"AmbientCapabilities":   "",
		"PrivateTmp":            "yes",
		"ProtectHome":           "yes",
		"ExecReload":            "/bin/kill -HUP $MAINPID",
		"User":                  "pgwarden",
	} {
		if _, ok := svc[key]; !ok || u.get("Service", key) != want {
			t.Errorf("%s=%q, want %q", key, u.get("Service", key), want)
		}
	}
	if n, err := strconv.Atoi(u.get("Service", "LimitNOFILE")); err != nil || n < 4096 {
		t.Errorf("LimitNOFILE=%s: want a number of at least 4096 (one per client and per upstream connection)", u.get("Service", "LimitNOFILE"))
	}
	if !strings.Contains(u.get("Service", "ReadWritePaths"), "/var/lib/pgwarden") {
		t.Errorf("ReadWritePaths=%s: want /var/lib/pgwarden", u.get("Service", "ReadWritePaths"))
	}
	creds := map[string]bool{}
	for _, c := range svc["LoadCredential"] {
		name, _, _ := strings.Cut(c, ":")
		creds[name] = true
	}
	execStart := u.get("Service", "ExecStart")
	for _, m := range regexp.MustCompile(`%d/([a-z-]+)`).FindAllStringSubmatch(execStart, -1) {
		if !creds[m[1]] {
			t.Errorf("ExecStart reads credential %s, which no LoadCredential= loads", m[1])
		}
	}
	if !strings.HasPrefix(u.get("Service", "EnvironmentFile"), "-/etc/pgwarden/") {
		t.Errorf("EnvironmentFile=%s: want an optional file in /etc/pgwarden", u.get("Service", "EnvironmentFile"))
	}
	if d, err := time.ParseDuration(u.get("Service", "TimeoutStopSec")); err != nil || d <= 30*time.Second {
		t.Errorf("TimeoutStopSec=%s: want more than the 30s sessions get to finish", u.get("Service", "TimeoutStopSec"))
	}
	sysusers := readFile(t, "pgwarden.sysusers")
	if !strings.HasPrefix(strings.TrimSpace(sysusers[strings.LastIndex(sysusers, "\nu ")+1:]), "u pgwarden ") {
		t.Errorf("pgwarden.sysusers does not create the user pgwarden")
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: unit not verified")
	}
	// verify checks that ExecStart's program exists: point it at the
	// binary built from this tree.
	dir := t.TempDir()
	unitFile := filepath.Join(dir, "pgwarden.service")
	os.WriteFile(unitFile, []byte(strings.ReplaceAll(src, "/usr/bin/pgwarden", pgwardenBinary(t))), 0o644)
	if out, err := exec.Command(analyze, "verify", unitFile).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// An exposure of at most 2.0 of 10 ("OK"): a change that loosens the
	// sandbox fails here.
	if out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=20", unitFile).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out[max(0, len(out)-300):])
	} else if i := strings.LastIndex(string(out), "Overall exposure level"); i >= 0 {
		t.Log(strings.TrimSpace(string(out[i:])))
	}
}

// TestSystemdExecStart runs the unit's ExecStart line, with the unit's
// environment file, the configuration and the policy installed as the
// unit's comments say, against a throwaway PostgreSQL: what systemd would
// start, with the host's paths moved to a temporary root, db.internal
// mapped to the test server and the listen addresses to free ports. It
// proves that the command line, the credentials, the configuration file
// and the policy work together: pgwarden becomes ready, clients connect
// over TLS, a bulk read is blocked, ExecReload reloads, SIGTERM stops it.
func TestSystemdExecStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts pgwarden")
	}
	c := pgtest.Shared(t)
	u := parseUnit(t, readFile(t, "pgwarden.service"))
	root := t.TempDir()
	etc, varlib, creds := filepath.Join(root, "etc/pgwarden"), filepath.Join(root, "var/lib/pgwarden"), filepath.Join(root, "credentials")
	listen, admin := freeAddr(t), freeAddr(t)
	mapPaths := strings.NewReplacer("/etc/pgwarden", etc, "/var/lib/pgwarden", varlib, "/usr/bin/pgwarden", pgwardenBinary(t),
		"db.internal:5432", c.Addr(), "db.internal", "127.0.0.1", "0.0.0.0:6432", listen, "127.0.0.1:7070", admin, "%d", creds).Replace

	// What the unit's installation comments and StateDirectory= do.
	for _, d := range []string{etc + "/tls", creds} {
		must(t, os.MkdirAll(d, 0o700))
	}
	for _, d := range strings.Fields(u.get("Service", "StateDirectory")) {
		must(t, os.MkdirAll(filepath.Join(root, "var/lib", d), 0o700))
	}
	must(t, os.WriteFile(filepath.Join(etc, "pgwarden.yaml"), []byte(mapPaths(readFile(t, "pgwarden.yaml"))), 0o644))
	must(t, os.WriteFile(filepath.Join(etc, "policy.yaml"), []byte(readFile(t, "policy.yaml")), 0o644))
	must(t, os.WriteFile(filepath.Join(etc, "pgwarden.env"), []byte(readFile(t, "pgwarden.env")), 0o600))
	must(t, os.WriteFile(filepath.Join(etc, "tls/db-ca.pem"), []byte(readFile(t, c.CAFile)), 0o644))
	must(t, os.WriteFile(filepath.Join(etc, "tls/pgwarden.crt"), []byte(readFile(t, c.ServerCertFile)), 0o644))
	must(t, os.WriteFile(filepath.Join(etc, "tls/pgwarden.key"), []byte(readFile(t, c.ServerKeyFile)), 0o600))
	const auditKey, adminToken = "9f3c2a7d5e1b4c8a6f0d2e4b7a9c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1a3b5c", "admin-token-for-the-unit-test"
	for _, lc := range u["Service"]["LoadCredential"] {
		name, path, _ := strings.Cut(lc, ":")
		must(t, os.WriteFile(mapPaths(path), []byte(map[string]string{"audit-key": auditKey, "admin-token": adminToken}[name]+"\n"), 0o600))
		must(t, os.Symlink(mapPaths(path), filepath.Join(creds, name)))
	}

	// The catalog role of the configuration, as the README's checklist
	// creates it, with the environment file's password.
	env := environmentFile(t, mapPaths(strings.TrimPrefix(u.get("Service", "EnvironmentFile"), "-")))
	for _, sql := range []string{
		"DROP TABLE IF EXISTS customers",
		"CREATE TABLE customers (id int PRIMARY KEY, name text, email text)",
		"INSERT INTO customers SELECT i, 'Customer ' || i, 'c' || i || '@example.com' FROM generate_series(1, 600) i",
		"GRANT SELECT ON customers TO " + pgtest.TrustUser,
		"DROP DATABASE IF EXISTS app",
		"CREATE DATABASE app",
		"DROP ROLE IF EXISTS pgwarden_catalog",
		fmt.Sprintf("CREATE ROLE pgwarden_catalog LOGIN PASSWORD '%s'", envValue(env, "PGWARDEN_CATALOG_PASSWORD")),
		"GRANT CONNECT ON DATABASE app TO pgwarden_catalog",
	} {
		c.Exec(t, sql)
	}

	argv := strings.Fields(mapPaths(u.get("Service", "ExecStart")))
	if strings.ContainsAny(strings.Join(argv, " "), "%$") {
		t.Fatalf("ExecStart %q holds a specifier or variable this test does not map", argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = "/"
	stderr, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	logs := &lineLog{c: make(chan string, 1000)}
	go logs.read(stderr)
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	client := &http.Client{Timeout: 5 * time.Second}
	var body string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get("http://" + admin + "/v1/ready")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgwarden never became ready (%v %s)\n%s", err, body, logs.all())
		}
	}
	for _, dep := range []string{"upstream", "audit", "catalog"} {
		if !strings.Contains(body, `"name":"`+dep+`"`) {
			t.Errorf("/v1/ready does not check %s: %s", dep, body)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(readFile(t, c.CAFile)))
	cc, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s@%s/%s", pgtest.TrustUser, listen, c.Database))
	must(t, err)
	cc.TLSConfig = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		t.Fatalf("connect over TLS through pgwarden: %v\n%s", err, logs.all())
	}
	defer conn.Close(ctx)
	if !conn.PgConn().Conn().(interface{ ConnectionState() tls.ConnectionState }).ConnectionState().HandshakeComplete {
		t.Error("the client connection is not TLS")
	}
	var n int
	must(t, conn.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n))
	_, err = conn.Exec(ctx, "SELECT email, name FROM customers")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, "customer-bulk-read") {
		t.Errorf("a bulk read of deploy/policy.yaml's customers: %v, want blocked by customer-bulk-read", err)
	}

	// ExecReload, with $MAINPID.
	reload := strings.Fields(strings.ReplaceAll(u.get("Service", "ExecReload"), "$MAINPID", strconv.Itoa(cmd.Process.Pid)))
	if out, err := exec.Command(reload[0], reload[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("ExecReload: %v %s", err, out)
	}
	logs.waitFor(t, `"msg":"policy_reloaded","trigger":"SIGHUP"`)

	conn.Close(ctx)
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	if err := cmd.Wait(); err != nil {
		t.Errorf("pgwarden after SIGTERM: %v\n%s", err, logs.all())
	}
	out := runPgwarden(t, []string{"PGWARDEN_AUDIT_KEY=" + auditKey}, "audit", "verify", filepath.Join(varlib, "audit"))
	if !strings.Contains(out, "intact") {
		t.Errorf("audit verify: %s", out)
	}
}

// environmentFile reads KEY=VALUE lines as systemd's EnvironmentFile= does
// (comments and blank lines skipped; no quoting is used in ours).
func environmentFile(t *testing.T, path string) []string {
	t.Helper()
	var env []string
	for _, line := range strings.Split(readFile(t, path), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if !strings.Contains(line, "=") || strings.ContainsAny(line, `"'`) {
			t.Fatalf("%s: %q", path, line)
		}
		env = append(env, line)
	}
	return env
}

func envValue(env []string, key string) string {
	for _, kv := range slices.Backward(env) {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := pgtest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

// lineLog collects a process's log lines.
type lineLog struct {
	c     chan string
	lines []string
}

func (l *lineLog) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l.c <- sc.Text()
	}
	close(l.c)
}

func (l *lineLog) drain() {
	for {
		select {
		case s, ok := <-l.c:
			if !ok {
				return
			}
			l.lines = append(l.lines, s)
		default:
			return
		}
	}
}

func (l *lineLog) all() string {
	l.drain()
	return strings.Join(l.lines, "\n")
}

// waitFor waits for a line containing want, which may have come already.
func (l *lineLog) waitFor(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(l.all(), want) {
			return
		}
	}
	t.Fatalf("no log line %q:\n%s", want, l.all())
}
