package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// testTimeout bounds each test: the whole suite takes well under a minute.
const testTimeout = 90 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// build is the pgwarden binary, built once for the package.
var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// pgwardenBinary builds cmd/pgwarden into a temporary directory the first
// time it is called.
func pgwardenBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			build.err = fmt.Errorf("the go command is needed to build pgwarden: %w", err)
			return
		}
		if build.dir, build.err = os.MkdirTemp("", "pgwarden-tools-"); build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "pgwarden")
		out, err := exec.Command(goTool, "build", "-o", build.path, "github.com/pgwarden/pgwarden/cmd/pgwarden").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// toolPath finds a PostgreSQL client program: the newest
// /usr/lib/postgresql/N/bin first (Debian's pgbench lives there), then
// PATH. A missing tool skips the test, or fails it under
// PGWARDEN_REQUIRE_TOOLS=1.
func toolPath(t *testing.T, name string) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	missing(t, name+" is neither in /usr/lib/postgresql/*/bin nor on PATH (Debian: apt-get install postgresql-client postgresql)")
	return ""
}

// missing skips the test for want of a program or module, or fails it
// where CI promises everything is installed.
func missing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("PGWARDEN_REQUIRE_TOOLS") == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// endpoint is where a client connects: PostgreSQL itself or pgwarden.
type endpoint struct {
	name string // "direct" or "pgwarden", for messages
	host string
	port int
	// sslmode is disable unless set; sslrootcert goes with verify-full.
	sslmode, sslrootcert string
}

func (e endpoint) sslMode() string {
	if e.sslmode == "" {
		return "disable"
	}
	return e.sslmode
}

func (e endpoint) addr() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

// dsn is a URL connecting as the superuser to database.
func (e endpoint) dsn(database string) string {
	q := url.Values{"sslmode": {e.sslMode()}}
	if e.sslrootcert != "" {
		q.Set("sslrootcert", e.sslrootcert)
	}
	u := url.URL{Scheme: "postgres", User: url.User(pgtest.SuperUser), Host: e.addr(), Path: "/" + database, RawQuery: q.Encode()}
	return u.String()
}

// tlsFlags make pgwarden offer clients TLS with a certificate for
// 127.0.0.1 signed by the cluster's CA, and verify the cluster's.
func tlsFlags(t *testing.T) []string {
	t.Helper()
	c := pgtest.Shared(t)
	cert, key, err := c.IssueCert("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, false)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--tls-cert", cert, "--tls-key", key, "--upstream-tls-mode", "verify-full", "--upstream-ca-file", c.CAFile}
}

// direct is the cluster itself.
func direct(t *testing.T) endpoint {
	c := pgtest.Shared(t)
	return endpoint{name: "direct", host: c.Host, port: c.Port}
}

// toolResult is what a client program printed, and how it ended.
type toolResult struct {
	stdout, stderr string
	err            error
}

func (r toolResult) String() string {
	return fmt.Sprintf("err %v\nstderr:\n%s\nstdout (start):\n%.2000s", r.err, r.stderr, r.stdout)
}

// run runs a PostgreSQL client program against e as the superuser, with a
// clean PG* environment.
func run(t *testing.T, ctx context.Context, e endpoint, program string, args ...string) toolResult {
	t.Helper()
	cmd := exec.CommandContext(ctx, toolPath(t, program), args...)
	cmd.Env = toolEnv(e)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return toolResult{stdout: out.String(), stderr: errb.String(), err: err}
}

// mustRun is run, failing the test unless the program exits 0.
func mustRun(t *testing.T, ctx context.Context, e endpoint, program string, args ...string) toolResult {
	t.Helper()
	r := run(t, ctx, e, program, args...)
	if r.err != nil {
		t.Fatalf("%s %s via %s: %v", program, strings.Join(args, " "), e.name, r)
	}
	return r
}

// toolEnv is the environment of a client program connecting to e.
func toolEnv(e endpoint) []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	env = append(env, "PGHOST="+e.host, "PGPORT="+strconv.Itoa(e.port), "PGUSER="+pgtest.SuperUser,
		"PGSSLMODE="+e.sslMode(), "PGCONNECT_TIMEOUT=10", "PGTZ=UTC", "PGCLIENTENCODING=UTF8")
	if e.sslrootcert != "" {
		env = append(env, "PGSSLROOTCERT="+e.sslrootcert)
	}
	return env
}

// connect opens a pgx connection to database through e.
func connect(t *testing.T, ctx context.Context, e endpoint, database string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, e.dsn(database))
	if err != nil {
		t.Fatalf("connect to %s via %s: %v", database, e.name, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// warden is a `pgwarden serve` process in front of the shared cluster.
type warden struct {
	endpoint
	admin       string // admin listener, serving /metrics
	decisionLog string
	alerts      *alertSink
	stderr      *syncBuffer
}

const adminToken = "tools-admin-token-0123456789"

// wardenPolicy declares the customers' names and emails as PII, runs the
// content detectors, and has the built-in policy's rules.
const wardenPolicy = `version: 1
pii:
  columns:
    - match: public.customers.name
      category: name
    - match: public.customers.email
      category: email
  detectors:
    enabled: true
rules:
  - name: server-egress
    when:
      statements: [server_egress]
    action: block
  - name: statement-pii-alert
    when:
      pii_values: 1000
    action: alert
  - name: statement-pii-block
    when:
      pii_values: 10000
    action: block
  - name: session-pii-alert
    scope: session
    when:
      pii_values: 20000
    action: alert
  - name: daily-pii-block
    scope: 24h
    when:
      pii_values: 200000
    action: block
`

// startWarden runs the pgwarden binary with the guard on (wardenPolicy,
// the catalog connected), a decision log, alerts to a webhook and the
// admin listener, plus extra flags; it is stopped with SIGTERM when the
// test ends. With --tls-cert among them, clients verify pgwarden's
// certificate (verify-full).
func startWarden(t *testing.T, extra ...string) *warden {
	t.Helper()
	c := pgtest.Shared(t)
	bin := pgwardenBinary(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	secret := filepath.Join(dir, "webhook-secret")
	if err := os.WriteFile(pol, []byte(wardenPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte(webhookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := &alertSink{}
	hook := httptest.NewServer(sink)
	t.Cleanup(hook.Close)
	w := &warden{admin: freeAddr(t), decisionLog: filepath.Join(dir, "decisions.jsonl"), alerts: sink, stderr: &syncBuffer{}}
	listen := freeAddr(t)
	host, port, _ := net.SplitHostPort(listen)
	w.endpoint = endpoint{name: "pgwarden", host: host}
	w.port, _ = strconv.Atoi(port)
	args := append([]string{"serve", "--listen", listen, "--upstream", "postgres://" + c.Addr(),
		"--catalog-url", direct(t).dsn(c.Database), "--policy", pol, "--decision-log", w.decisionLog,
		"--webhook-url", hook.URL, "--webhook-secret-file", secret, "--admin-listen", w.admin,
		"--state-dir", filepath.Join(dir, "state"), "--log-format", "json"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PGWARDEN_ADMIN_TOKEN="+adminToken)
	cmd.Stderr = w.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("pgwarden exited with %v\n%s", err, w.stderr.String())
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("pgwarden did not stop within 15s of SIGTERM\n%s", w.stderr.String())
		}
		if t.Failed() {
			t.Logf("pgwarden log:\n%s", w.stderr.String())
		}
	})
	if slices.Contains(extra, "--tls-cert") {
		w.sslmode, w.sslrootcert = "verify-full", c.CAFile
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, w.dsn(c.Database))
		if err == nil {
			conn.Close(ctx)
			return w
		}
		select {
		case err := <-exited:
			t.Fatalf("pgwarden exited: %v\n%s", err, w.stderr.String())
		case <-ctx.Done():
			t.Fatalf("pgwarden did not accept a session: %v\n%s", err, w.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// decisions returns the decision log's lines so far.
func (w *warden) decisions(t *testing.T) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(w.decisionLog)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatalf("decision log line %q: %v", line, err)
		}
		out = append(out, d)
	}
	return out
}

// metrics returns the admin listener's /metrics page.
func (w *warden) metrics(t *testing.T) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+w.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s: %s", resp.Status, b)
	}
	return string(b)
}

const webhookSecret = "tools-hook-secret"

// alertSink is the webhook endpoint: it checks signatures and keeps alerts.
type alertSink struct {
	mu     sync.Mutex
	alerts []notify.Alert
	bad    int
}

func (s *alertSink) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := notify.VerifySignature([]byte(webhookSecret), []byte(req.Header.Get(notify.HeaderTimestamp)), body,
		req.Header.Get(notify.HeaderSignature), time.Now(), time.Minute); err != nil {
		s.bad++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var a notify.Alert
	if err := json.Unmarshal(body, &a); err != nil {
		s.bad++
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.alerts = append(s.alerts, a)
}

// find returns the first alert of rule received so far.
func (s *alertSink) find(rule string) (notify.Alert, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.alerts {
		if a.Rule == rule {
			return a, true
		}
	}
	return notify.Alert{}, false
}

// freeAddr is an address for a server the test starts (pgtest.FreeAddr:
// below the ports outgoing connections take).
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := pgtest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr.String()
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test
// reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
