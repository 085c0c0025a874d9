package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/state/adminlog"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// receiver is a webhook endpoint that checks signatures and keeps alerts.
type receiver struct {
	mu     sync.Mutex
	alerts []notify.Alert
	bad    int
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	err := notify.VerifySignature([]byte("hook-secret"), []byte(req.Header.Get(notify.HeaderTimestamp)), body,
		req.Header.Get(notify.HeaderSignature), time.Now(), time.Minute)
	if err != nil {
		r.bad++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var a notify.Alert
	json.Unmarshal(body, &a)
	r.alerts = append(r.alerts, a)
}

// waitFor returns the first alert of rule, waiting for it.
func (r *receiver) waitFor(t *testing.T, rule string) notify.Alert {
	t.Helper()
	var got notify.Alert
	proxytest.Eventually(t, 10*time.Second, "an alert of rule "+rule, func() (bool, string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, a := range r.alerts {
			if a.Rule == rule {
				got = a
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d other alerts", len(r.alerts))
	})
	return got
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

const servePolicy = `version: 1
rules:
  - name: email-block
    when:
      pii_values: {email: %d}
    action: block
  - name: no-copy-to-file
    when:
      statements: [copy_to_file, copy_to_program]
    action: block
  - name: quarantine-dump
    when:
      pii_values: 1000
    action: quarantine
`

// TestServeEnforcesAndReloads runs the binary with a policy, a state
// directory and a webhook: a block reaches the client and security (signed),
// a broken policy file is refused and alerted while the old one stays, a
// good one applies to the running session, and a quarantine outlives a
// restart until released with the CLI.
func TestServeEnforcesAndReloads(t *testing.T) {
	c := pgtest.Shared(t)
	rcv := &receiver{}
	hook := httptest.NewServer(rcv)
	defer hook.Close()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(fmt.Sprintf(servePolicy, 10)), 0o600)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("hook-secret\n"), 0o600)
	state := filepath.Join(dir, "state")
	listen := freeAddr(t)
	args := []string{"serve", "--listen", listen, "--upstream", "postgres://" + c.Addr(), "--policy", pol,
		"--state-dir", state, "--webhook-url", hook.URL, "--webhook-secret-file", secret, "--log-format", "json"}
	cmd, stderr := startBinary(t, nil, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := connectThrough(t, ctx, c, listen, stderr)
	const q = "SELECT 'person' || i || '@example.com' FROM generate_series(1, 100) i"
	count := func(conn *pgx.Conn) (int, error) {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			return 0, err
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		return n, rows.Err()
	}
	n, err := count(conn)
	if err == nil || !strings.Contains(err.Error(), "rule email-block") || n != 10 {
		t.Fatalf("got %d rows, %v; want 10 and a block", n, err)
	}
	a := rcv.waitFor(t, "email-block")
	if a.Action != "block" || a.Limit != 10 || a.Employee != pgtest.TrustUser {
		t.Errorf("alert %+v", a)
	}
	if _, err := conn.Exec(ctx, "COPY (SELECT 1) TO '/tmp/pgwarden-never'"); err == nil || !strings.Contains(err.Error(), "no-copy-to-file") {
		t.Errorf("COPY TO file: %v", err)
	}

	// A broken file is refused; the limit of 10 stays.
	os.WriteFile(pol, []byte("version: 1\nrules:\n  - name: x\n    action: nope\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	rcv.waitFor(t, "policy-reload")
	if n, err := count(conn); err == nil || n != 10 {
		t.Fatalf("after a broken reload: %d rows, %v", n, err)
	}
	// A good file applies to the same session, found by the watcher.
	os.WriteFile(pol, []byte(fmt.Sprintf(servePolicy, 50)), 0o600)
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, err := count(conn)
		if n == 50 {
			if err == nil {
				t.Fatal("no block at 50")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new policy not applied: %d rows, %v", n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Quarantine, kept across a restart.
	_, err = conn.Exec(ctx, "SELECT string_agg('p' || i || '@example.com', ',') FROM generate_series(1, 2000) i")
	if err == nil || !strings.Contains(err.Error(), "quarantined") {
		t.Fatalf("dump: %v", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	code, out, errOut := runCLI("users", "list", "--state-dir", state)
	if code != 0 || !strings.Contains(out, pgtest.TrustUser) || !strings.Contains(out, "quarantine-dump") {
		t.Fatalf("users list: %d %q %q", code, out, errOut)
	}
	cmd, stderr = startBinary(t, nil, args...)
	dsn := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pgtest.TrustUser, listen, c.Database)
	var refused error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		c2, err := pgx.Connect(ctx, dsn)
		if err == nil {
			c2.Close(ctx)
			t.Fatal("quarantined employee connected after a restart")
		}
		if strings.Contains(err.Error(), "quarantined") {
			refused = err
			break
		}
	}
	if refused == nil {
		t.Fatalf("no quarantine refusal after restart\n%s", stderr.String())
	}
	if code, _, errOut := runCLI("users", "release", pgtest.TrustUser, "--state-dir", state); code != 2 || !strings.Contains(errOut, "--reason is required") {
		t.Fatalf("users release without a reason: %d %q", code, errOut)
	}
	if code, out, _ := runCLI("users", "release", pgtest.TrustUser, "--state-dir", state, "--reason", "cleared by ticket 7"); code != 0 || !strings.Contains(out, "released") {
		t.Fatalf("users release: %d %q", code, out)
	}
	conn2 := connectThrough(t, ctx, c, listen, stderr)
	conn2.Close(ctx)
	if code, _, errOut := runCLI("users", "release", pgtest.TrustUser, "--state-dir", state, "--reason", "again"); code != 1 || !strings.Contains(errOut, "not quarantined") {
		t.Errorf("second release: %d %q", code, errOut)
	}
	rcv.mu.Lock()
	if rcv.bad != 0 {
		t.Errorf("%d webhook requests with a bad signature", rcv.bad)
	}
	rcv.mu.Unlock()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

func TestPolicyCommands(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nrules:\n  - name: x\n    when: {rows: lots}\n    action: block\n"), 0o600)
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(fmt.Sprintf(servePolicy, 10)), 0o600)
	if code, out, _ := runCLI("policy", "check", good); code != 0 || !strings.Contains(out, "ok (3 rules)") ||
		!strings.Contains(out, "warning: no norms section: norms are off") || !strings.Contains(out, "  detectors: on") {
		t.Errorf("check good: %d %q", code, out)
	}
	def := filepath.Join(dir, "default.yaml")
	os.WriteFile(def, []byte(policy.DefaultYAML), 0o600)
	if code, out, _ := runCLI("policy", "check", def); code != 0 || !strings.Contains(out, "norms: on, 7 learning days") || strings.Contains(out, "warning") {
		t.Errorf("check of the built-in policy: %d %q", code, out)
	}
	if code, out, _ := runCLI("policy", "check", bad, good); code != 1 || !strings.Contains(out, "bad.yaml:4:") {
		t.Errorf("check bad: %d %q", code, out)
	}
	code, out, errOut := runCLI("policy", "explain", "--policy", good, "--user", "alice", "--sql", "COPY customers TO PROGRAM 'curl x'")
	if code != 0 || !strings.Contains(out, "copy_to_program") || !strings.Contains(out, "+  no-copy-to-file") || !strings.Contains(out, "block before the statement runs") {
		t.Errorf("explain: %d %q %q", code, out, errOut)
	}
	masked := filepath.Join(dir, "masked.yaml")
	os.WriteFile(masked, []byte(`version: 1
pii:
  columns:
    - {match: public.customers.email, category: email}
    - {match: public.customers.full_name, category: name}
masking:
  email: keep_domain
rules:
  - name: mask-support
    subjects: [bob]
    when: {tables: [public.customers]}
    action: redact
`), 0o600)
	code, out, errOut = runCLI("policy", "explain", "--policy", masked, "--user", "bob", "--sql", "SELECT c.id, c.email, upper(c.full_name), c.phone FROM customers c")
	if code != 0 || !strings.Contains(out, "masked by mask-support (from the first row)") ||
		!strings.Contains(out, "column 2: public.customers.email: email, keep_domain") ||
		!strings.Contains(out, "column 3: public.customers.full_name: name, by shape") || strings.Contains(out, "column 1:") {
		t.Errorf("explain of a masked statement: %d %q %q", code, out, errOut)
	}
	if code, out, _ := runCLI("policy", "default"); code != 0 || !strings.Contains(out, "server-egress") {
		t.Errorf("default: %d %q", code, out)
	}
	if code, _, errOut := runCLI("users", "list"); code != 2 || !strings.Contains(errOut, "--state-dir") {
		t.Errorf("users without a state dir: %d %q", code, errOut)
	}
	if code, out, _ := runCLI("holds", "list", "--state-dir", dir); code != 0 || !strings.Contains(out, "no result is held") {
		t.Errorf("holds list: %d %q", code, out)
	}
	if code, _, errOut := runCLI("holds", "approve", "nope", "--state-dir", dir); code != 2 || !strings.Contains(errOut, "--reason is required") {
		t.Errorf("holds approve without a reason: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("holds", "approve", "nope", "--state-dir", dir, "--reason", "ok"); code != 1 || !strings.Contains(errOut, "no pending hold") {
		t.Errorf("holds approve: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("serve", "--upstream", "postgres://127.0.0.1:1", "--webhook-url", "http://127.0.0.1:1/x"); code != 1 || !strings.Contains(errOut, "state") {
		t.Errorf("webhook without state dir: %d %q", code, errOut)
	}
}

// TestAlertsOutliveRestart: alerts raised while the receiver is down are
// kept in the outbox across a restart of pgwarden and delivered, once,
// when the receiver comes up.
func TestAlertsOutliveRestart(t *testing.T) {
	c := pgtest.Shared(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(fmt.Sprintf(servePolicy, 10)), 0o600)
	hookAddr := freeAddr(t) // nothing listens there yet
	listen := freeAddr(t)
	args := []string{"serve", "--listen", listen, "--upstream", "postgres://" + c.Addr(), "--policy", pol,
		"--state-dir", filepath.Join(dir, "state"), "--webhook-url", "http://" + hookAddr + "/hook"}
	env := []string{"PGWARDEN_WEBHOOK_SECRET=hook-secret"}
	cmd, stderr := startBinary(t, env, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := connectThrough(t, ctx, c, listen, stderr)
	if _, err := conn.Exec(ctx, "SELECT 'a' || i || '@example.com' FROM generate_series(1, 50) i"); err == nil {
		t.Fatal("no block")
	}
	conn.Close(ctx)
	time.Sleep(500 * time.Millisecond) // a delivery attempt or two fail
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	rcv := &receiver{}
	ln, err := net.Listen("tcp", hookAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rcv}
	go srv.Serve(ln)
	defer srv.Close()
	cmd, _ = startBinary(t, env, args...)
	a := rcv.waitFor(t, "email-block")
	if a.Employee != pgtest.TrustUser || a.ID == "" {
		t.Errorf("alert %+v", a)
	}
	time.Sleep(500 * time.Millisecond)
	rcv.mu.Lock()
	ids := map[string]int{}
	for _, x := range rcv.alerts {
		ids[x.ID]++
	}
	rcv.mu.Unlock()
	for id, n := range ids {
		if n > 1 {
			t.Errorf("alert %s delivered %d times", id, n)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// TestVirtualClockAndDecisionLog: with --clock virtual, time moves only
// through the admin API; windows follow it, and the decision log carries
// the virtual time.
func TestVirtualClockAndDecisionLog(t *testing.T) {
	c := pgtest.Shared(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(`version: 1
rules:
  - name: hourly-emails
    scope: 1h
    when:
      pii_values: {email: 15}
    action: block
`), 0o600)
	decisions := filepath.Join(dir, "decisions.jsonl")
	listen, adminAddr := freeAddr(t), freeAddr(t)
	const token = "test-admin-token-0123456789"
	cmd, stderr := startBinary(t, []string{"PGWARDEN_ADMIN_TOKEN=" + token}, "serve", "--listen", listen,
		"--upstream", "postgres://"+c.Addr(), "--policy", pol, "--clock", "virtual",
		"--clock-start", "2026-03-02T09:00:00Z", "--admin-listen", adminAddr, "--decision-log", decisions)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := connectThrough(t, ctx, c, listen, stderr)
	read := func() (int, error) {
		rows, err := conn.Query(ctx, "SELECT 'x' || i || '@example.com' FROM generate_series(1, 10) i")
		if err != nil {
			return 0, err
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		return n, rows.Err()
	}
	setClock := func(body string, wantCode int) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+adminAddr+"/v1/clock", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != wantCode {
			t.Fatalf("POST /v1/clock %s: %d, want %d", body, resp.StatusCode, wantCode)
		}
	}
	if n, err := read(); err != nil || n != 10 {
		t.Fatalf("first read: %d %v", n, err)
	}
	if n, err := read(); err == nil || n != 5 {
		t.Fatalf("second read in the same hour: %d %v", n, err)
	}
	setClock(`{"advance": "2h"}`, 200)
	if n, err := read(); err != nil || n != 10 {
		t.Fatalf("two virtual hours later: %d %v", n, err)
	}
	setClock(`{"time": "2026-03-01T00:00:00Z"}`, 409)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	b, err := os.ReadFile(decisions)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"time":"2026-03-02T09:00:00Z"`) || !strings.Contains(lines[0], `"rule":"hourly-emails"`) {
		t.Errorf("decision log: %q", lines)
	}
}

// TestReplayCommand records real traffic with no rules in force, then
// replays the trail against a stricter policy.
func TestReplayCommand(t *testing.T) {
	c := pgtest.Shared(t)
	dir := t.TempDir()
	auditDir := filepath.Join(dir, "audit")
	listen := freeAddr(t)
	lax := filepath.Join(dir, "lax.yaml")
	os.WriteFile(lax, []byte("version: 1\n"), 0o600)
	env := []string{"PGWARDEN_AUDIT_KEY=" + strings.Repeat("ab", 32)}
	cmd, stderr := startBinary(t, env, "serve", "--listen", listen, "--upstream", "postgres://"+c.Addr(),
		"--policy", lax, "--audit-dir", auditDir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := connectThrough(t, ctx, c, listen, stderr)
	for range 3 {
		if _, err := conn.Exec(ctx, "SELECT 'r' || i || '@example.com' FROM generate_series(1, 50) i"); err != nil {
			t.Fatal(err)
		}
	}
	conn.Exec(ctx, "COPY (SELECT 1) TO '/tmp/pgwarden-replay-never'") // refused by the server: no privilege
	conn.Close(ctx)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	strict := filepath.Join(dir, "strict.yaml")
	os.WriteFile(strict, []byte(`version: 1
rules:
  - {name: big, when: {pii_values: 40}, action: block}
  - {name: hourly, scope: 1h, when: {pii_values: 120}, action: alert}
  - {name: egress, when: {statements: [server_egress]}, action: block}
`), 0o600)
	code, out, errOut := runCLI("replay", "--audit", auditDir, "--policy", strict, "--decisions")
	if code != 0 {
		t.Fatalf("replay: %d %s", code, errOut)
	}
	for _, want := range []string{pgtest.TrustUser, "big x3", "hourly x1", "egress x1", "1 alerts, 4 blocks"} {
		if !strings.Contains(out, want) {
			t.Errorf("replay output lacks %q:\n%s", want, out)
		}
	}
	saved := filepath.Join(dir, "norms.json")
	if code, _, errOut := runCLI("replay", "--audit", auditDir, "--policy", strict, "--save-norms", saved); code != 0 {
		t.Fatalf("replay --save-norms: %d %s", code, errOut)
	}
	b, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := norm.New(norm.Config{})
	if err := m.Restore(bytes.NewReader(b)); err != nil || m.Norm(pgtest.TrustUser, time.Now()).FirstSeen.IsZero() {
		t.Errorf("the saved norms do not restore with the employee: %v", err)
	}
	code, out, _ = runCLI("replay", "--audit", auditDir, "--policy", strict, "--json")
	if code != 0 || strings.Count(out, "\n") != 5 || !strings.Contains(out, `"rule":"egress"`) {
		t.Errorf("replay --json: %d\n%s", code, out)
	}
}

// TestNormsPersist: what the norm model learned is saved in the state
// directory at exit and restored at start.
func TestNormsPersist(t *testing.T) {
	c := pgtest.Shared(t)
	c.Exec(t, "DROP TABLE IF EXISTS pgwarden_state")
	t.Run("state-dir", func(t *testing.T) { testNormsPersist(t, c, "--state-dir") })
	t.Run("state-url", func(t *testing.T) { testNormsPersist(t, c, "--state-url") })
}

func testNormsPersist(t *testing.T, c *pgtest.Cluster, where string) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte("version: 1\nnorms:\n  learning_days: 1\n"), 0o600)
	state := filepath.Join(dir, "state")
	if where == "--state-url" {
		state = c.DSN(pgtest.SuperUser)
	}
	listen, adminAddr := freeAddr(t), freeAddr(t)
	const token = "test-admin-token-0123456789"
	args := []string{"serve", "--listen", listen, "--upstream", "postgres://" + c.Addr(), "--policy", pol,
		"--clock", "virtual", "--clock-start", "2026-03-02T09:00:00Z", "--admin-listen", adminAddr, where, state}
	env := []string{"PGWARDEN_ADMIN_TOKEN=" + token}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	get := func(path string) map[string]any {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	post := func(body string) {
		req, _ := http.NewRequest("POST", "http://"+adminAddr+"/v1/clock", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	cmd, stderr := startBinary(t, env, args...)
	conn := connectThrough(t, ctx, c, listen, stderr)
	for day := range 3 {
		for range 3 {
			if _, err := conn.Exec(ctx, "SELECT 'n' || i || '@example.com' FROM generate_series(1, 5) i"); err != nil {
				t.Fatal(err)
			}
			post(`{"advance": "1h"}`)
		}
		_ = day
		post(`{"advance": "21h"}`)
	}
	conn.Close(ctx)
	before := get("/v1/employees/" + pgtest.TrustUser + "/norm")
	// The snapshot through the admin API restores into a fresh model.
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/v1/norms/snapshot", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fresh, _ := norm.New(norm.Config{})
	if err := fresh.Restore(bytes.NewReader(snap)); err != nil || fresh.Norm(pgtest.TrustUser, time.Now()).FirstSeen.IsZero() {
		t.Errorf("GET /v1/norms/snapshot: %v (%d bytes)", err, len(snap))
	}
	req, _ = http.NewRequest("PUT", "http://"+adminAddr+"/v1/norms/snapshot", bytes.NewReader(snap))
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("PUT /v1/norms/snapshot: %v", err)
	}
	req, _ = http.NewRequest("PUT", "http://"+adminAddr+"/v1/norms/snapshot", strings.NewReader("{garbage"))
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Errorf("PUT of garbage: %v %v", resp.StatusCode, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if where == "--state-dir" {
		if _, err := os.Stat(filepath.Join(state, "norms.json")); err != nil {
			t.Fatalf("no norms saved: %v", err)
		}
	} else {
		pool, err := pgxpool.New(ctx, state)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM pgwarden_state WHERE name = 'norms'").Scan(&n); err != nil || n != 1 {
			t.Fatalf("norms in pgwarden_state: %d %v", n, err)
		}
		pool.Close()
	}
	args[slices.Index(args, "--clock-start")+1] = "2026-03-06T09:00:00Z" // restart later on
	cmd, stderr = startBinary(t, env, args...)
	connectThrough(t, ctx, c, listen, stderr).Close(ctx)
	after := get("/v1/employees/" + pgtest.TrustUser + "/norm")
	// Days still open before the restart were closed at exit.
	b, _ := before["active_days"].(float64)
	a, _ := after["active_days"].(float64)
	if b < 2 || a < b || after["first_seen"] != "2026-03-02T09:00:00Z" {
		t.Errorf("norm before %v, after restart %v", before["active_days"], after)
	}
	// An employee the model never saw has no norm, not an empty one.
	req, _ = http.NewRequest("GET", "http://"+adminAddr+"/v1/employees/nobody/norm", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("norm of an employee never seen: %v %v, want 404", resp, err)
	} else {
		resp.Body.Close()
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// TestMetrics scrapes /metrics after a known workload.
func TestMetrics(t *testing.T) {
	c := pgtest.Shared(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(fmt.Sprintf(servePolicy, 10)), 0o600)
	listen, adminAddr := freeAddr(t), freeAddr(t)
	const token = "test-admin-token-0123456789"
	cmd, stderr := startBinary(t, []string{"PGWARDEN_ADMIN_TOKEN=" + token}, "serve", "--listen", listen,
		"--upstream", "postgres://"+c.Addr(), "--policy", pol, "--admin-listen", adminAddr)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := connectThrough(t, ctx, c, listen, stderr)
	defer conn.Close(ctx)
	for _, n := range []int{3, 4} {
		if _, err := conn.Exec(ctx, fmt.Sprintf("SELECT 'm' || i || '@example.com' FROM generate_series(1, %d) i", n)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT 'b' || i || '@example.com' FROM generate_series(1, 50) i"); err == nil {
		t.Fatal("no block")
	}
	scrape := func(tok string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/metrics", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := scrape(""); code != 401 {
		t.Errorf("/metrics without a token: %d", code)
	}
	if code, _ := scrape("wrong-token-0123456789"); code != 401 {
		t.Errorf("/metrics with a wrong token: %d", code)
	}
	code, body := scrape(token)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		"pgwarden_sessions_open 1",
		"pgwarden_sessions_started_total 1",
		"pgwarden_connections_total 1",
		// 3 + 4 + the 10 received before the block, plus connect-time statements of pgx (none with PII).
		`pgwarden_pii_values_total{category="email"} 17`,
		`pgwarden_decisions_total{action="block",rule="email-block",source="rule"} 1`,
		"pgwarden_statement_duration_seconds_count",
		"pgwarden_inspect_describe_seconds_count",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, pgtest.TrustUser) {
		t.Error("/metrics names an employee")
	}
	// A broken policy file refused on SIGHUP is counted; the upstream
	// answers; nothing is held or quarantined.
	os.WriteFile(pol, []byte("version: 1\nrules: [oops"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	want := []string{"pgwarden_policy_reload_failures_total 1", "pgwarden_policy_reloads_total 0", "pgwarden_upstream_up 1",
		"pgwarden_holds_pending 0", "pgwarden_employees_quarantined 0"}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, body = scrape(token)
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return strings.Contains(body, w) })
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q", missing)
		}
	}
}

// TestAdminAPI: sessions listed and killed, a quarantine released and a
// policy reloaded through the admin API by named administrators (tokens
// from pgwarden token), each action in the audit trail with who did it
// and why; a read-only token may not act, and an action that needs a
// reason is refused without one.
func TestAdminAPI(t *testing.T) {
	c := pgtest.Shared(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(fmt.Sprintf(servePolicy, 10)), 0o600)
	auditDir := filepath.Join(dir, "audit")
	listen, adminAddr := freeAddr(t), freeAddr(t)
	const token = "test-admin-token-0123456789"
	cmd, stderr := startBinary(t, []string{"PGWARDEN_ADMIN_TOKEN=" + token, "PGWARDEN_AUDIT_KEY=" + strings.Repeat("cd", 32)},
		"serve", "--listen", listen, "--upstream", "postgres://"+c.Addr(), "--policy", pol, "--admin-listen", adminAddr,
		"--state-dir", filepath.Join(dir, "state"), "--audit-dir", auditDir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	callAs := func(tok, method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	issue := func(name, scope string) string {
		t.Helper()
		code, out, errOut := runCLI("token", "--name", name, "--scope", scope, "--ttl", "1h")
		if code != 0 {
			t.Fatalf("token --name %s: %d %s", name, code, errOut)
		}
		return strings.TrimSpace(out)
	}
	t.Setenv("PGWARDEN_ADMIN_TOKEN", token)
	carol, rita := issue("carol", "act"), issue("rita", "read")
	call := func(method, path, body string) (int, string) { t.Helper(); return callAs(carol, method, path, body) }
	conn := connectThrough(t, ctx, c, listen, stderr)
	if code, body := callAs(rita, "GET", "/v1/whoami", ""); code != 200 || !strings.Contains(body, `"name":"rita"`) || !strings.Contains(body, `"scope":"read"`) {
		t.Errorf("whoami of a read token: %d %s", code, body)
	}
	code, body := call("GET", "/v1/sessions", "")
	var sessions []struct {
		ID   string `json:"id"`
		User string `json:"user"`
	}
	json.Unmarshal([]byte(body), &sessions)
	if code != 200 || len(sessions) != 1 || sessions[0].User != pgtest.TrustUser {
		t.Fatalf("GET /v1/sessions: %d %s", code, body)
	}
	// A read token sees but may not act; a kill needs a reason.
	if code, body := callAs(rita, "DELETE", "/v1/sessions/"+sessions[0].ID+"?reason=x", ""); code != 403 || !strings.Contains(body, "scope") {
		t.Errorf("kill with a read token: %d %s", code, body)
	}
	if code, body := call("DELETE", "/v1/sessions/"+sessions[0].ID, ""); code != 400 || !strings.Contains(body, "reason is required") {
		t.Errorf("kill without a reason: %d %s", code, body)
	}
	// The CLI lists and kills through the API, as carol.
	t.Setenv("PGWARDEN_ADMIN_TOKEN", carol)
	if code, out, errOut := runCLI("sessions", "list", "--admin", "http://"+adminAddr); code != 0 || !strings.Contains(out, sessions[0].ID) {
		t.Errorf("sessions list: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runCLI("sessions", "kill", sessions[0].ID, "--admin", "http://"+adminAddr); code != 2 || !strings.Contains(errOut, "--reason is required") {
		t.Errorf("sessions kill without --reason: %d %q", code, errOut)
	}
	if code, out, errOut := runCLI("sessions", "kill", sessions[0].ID, "--reason", "investigation", "--admin", "http://"+adminAddr); code != 0 {
		t.Errorf("sessions kill: %d %q %q", code, out, errOut)
	}
	_, err := conn.Exec(ctx, "SELECT 1")
	if err == nil || !strings.Contains(err.Error(), "ended by an administrator: investigation") {
		t.Errorf("killed session: %v", err)
	}
	if code, _, errOut := runCLI("sessions", "kill", "nope", "--reason", "x", "--admin", "http://"+adminAddr); code != 1 || !strings.Contains(errOut, "no session nope") {
		t.Errorf("kill of an unknown session: %d %q", code, errOut)
	}

	// Quarantine through a rule, released through the API.
	conn = connectThrough(t, ctx, c, listen, stderr)
	conn.Exec(ctx, "SELECT string_agg('q' || i || '@example.com', ',') FROM generate_series(1, 2000) i")
	if code, body := call("GET", "/v1/quarantine", ""); code != 200 || !strings.Contains(body, pgtest.TrustUser) {
		t.Fatalf("GET /v1/quarantine: %d %s", code, body)
	}
	// The quarantine is in security's alert queue; acknowledging it
	// takes it out of the unacknowledged view.
	code, body = call("GET", "/v1/alerts?unacked=1", "")
	var queue []struct {
		ID   string `json:"id"`
		Rule string `json:"rule"`
	}
	json.Unmarshal([]byte(body), &queue)
	if code != 200 || len(queue) == 0 || queue[0].Rule != "quarantine-dump" {
		t.Fatalf("GET /v1/alerts: %d %s", code, body)
	}
	if code, out, errOut := runCLI("alerts", "list", "--admin", "http://"+adminAddr); code != 0 || !strings.Contains(out, queue[0].ID) {
		t.Errorf("alerts list: %d %q %q", code, out, errOut)
	}
	if code, _ := callAs(rita, "POST", "/v1/alerts/"+queue[0].ID+"/ack", ""); code != 403 {
		t.Errorf("ack with a read token: %d", code)
	}
	if code, out, errOut := runCLI("alerts", "ack", queue[0].ID, "--note", "seen, talking to them", "--admin", "http://"+adminAddr); code != 0 {
		t.Errorf("alerts ack: %d %q %q", code, out, errOut)
	}
	if _, body := call("GET", "/v1/alerts?rule=quarantine-dump", ""); !strings.Contains(body, `"acked_by":"carol"`) || !strings.Contains(body, `"ack_note":"seen, talking to them"`) {
		t.Errorf("the acknowledgement does not name carol: %s", body)
	}
	if _, body := call("GET", "/v1/alerts?unacked=1", ""); strings.Contains(body, queue[0].ID) {
		t.Errorf("acknowledged alert still unacknowledged: %s", body)
	}
	if code, body := call("GET", "/v1/employees", ""); code != 200 || !strings.Contains(body, `"employee":"`+pgtest.TrustUser+`"`) {
		t.Errorf("GET /v1/employees: %d %s", code, body)
	}
	for _, tc := range []struct {
		tok, body string
		want      int
	}{{rita, `{"reason":"x"}`, 403}, {carol, "", 400}, {carol, `{"reason":"  "}`, 400}} {
		if code, body := callAs(tc.tok, "DELETE", "/v1/quarantine/"+pgtest.TrustUser, tc.body); code != tc.want {
			t.Errorf("release with body %q: %d %s, want %d", tc.body, code, body, tc.want)
		}
	}
	code, body = call("DELETE", "/v1/quarantine/"+pgtest.TrustUser, `{"reason":"false positive: a test export"}`)
	if code != 200 || !strings.Contains(body, `"by":"carol"`) || !strings.Contains(body, `"via":"token"`) ||
		!strings.Contains(body, `"reason":"false positive: a test export"`) || !strings.Contains(body, `"at":"`) {
		t.Errorf("release: %d %s", code, body)
	}
	connectThrough(t, ctx, c, listen, stderr).Close(ctx)
	if code, _ := call("DELETE", "/v1/quarantine/"+pgtest.TrustUser, `{"reason":"again"}`); code != 404 {
		t.Errorf("second release: %d", code)
	}
	if code, body := call("GET", "/v1/holds", ""); code != 200 || strings.TrimSpace(body) != "null" && strings.TrimSpace(body) != "[]" {
		t.Errorf("GET /v1/holds: %d %s", code, body)
	}
	if code, _ := callAs(rita, "POST", "/v1/holds/nope/approve?reason=x", ""); code != 403 {
		t.Errorf("approve with a read token: %d", code)
	}
	if code, _ := call("POST", "/v1/holds/nope/deny", ""); code != 400 {
		t.Errorf("deny without a reason: %d", code)
	}
	if code, _ := call("POST", "/v1/holds/nope/approve?reason=x", ""); code != 404 {
		t.Errorf("approve of an unknown hold: %d", code)
	}

	// Reload: a broken file is refused, a good one applied.
	os.WriteFile(pol, []byte("version: 1\nrules: [oops]\n"), 0o600)
	if code, _ := call("POST", "/v1/policy/reload", ""); code != 403 {
		t.Errorf("reload with an act token: %d", code)
	}
	call = func(method, path, body string) (int, string) { t.Helper(); return callAs(token, method, path, body) }
	if code, body := call("POST", "/v1/policy/reload", ""); code != 422 || !strings.Contains(body, "policy.yaml") {
		t.Errorf("reload of a broken file: %d %s", code, body)
	}
	os.WriteFile(pol, []byte("version: 1\nrules:\n  - {name: only-one, when: {rows: 1000000}, action: alert}\n"), 0o600)
	if code, body := call("POST", "/v1/policy/reload", ""); code != 200 || !strings.Contains(body, "only-one") {
		t.Errorf("reload: %d %s", code, body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	_, out, _ := runCLI("audit", "query", auditDir, "--type", "admin", "--json")
	for _, want := range []string{
		`"action":"session_killed","by":"carol","killed":"` + sessions[0].ID + `","reason":"investigation"`,
		`"action":"quarantine_released","by":"carol","reason":"false positive: a test export"`,
		`"action":"policy_reloaded","by":"admin"`,
		`"action":"alert_acknowledged","alert_id":"` + queue[0].ID + `","by":"carol"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit trail lacks %s:\n%s", want, out)
		}
	}
	if !strings.Contains(out, `"employee":"`+pgtest.TrustUser+`"`) {
		t.Errorf("the release is not in the employee's trail:\n%s", out)
	}
}

// TestThreeInstancesActAsOne: an employee who splits a leak across three
// pgwarden instances (and sessions) is caught as on one: the hour's window
// counts what every instance relayed.
//
// The norms are learned from every instance's traffic too: a table read
// through the first instance is in the employee's norm on the third.
func TestThreeInstancesActAsOne(t *testing.T) {
	c := pgtest.Shared(t)
	c.Exec(t, "DROP TABLE IF EXISTS pgwarden_window_deltas, pgwarden_norm_observations, pgwarden_leases, norm_probe")
	c.Exec(t, "CREATE TABLE norm_probe (email text); INSERT INTO norm_probe VALUES ('probe@example.com'); GRANT SELECT ON norm_probe TO PUBLIC")
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(`version: 1
rules:
  - name: hourly-emails
    scope: 1h
    when:
      pii_values: {email: 100}
    action: block
norms:
  enabled: true
`), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const token = "three-instances-admin-token-0123"
	admin := freeAddr(t)
	var conns []*pgx.Conn
	for i := range 3 {
		listen := freeAddr(t)
		args := []string{"serve", "--listen", listen, "--upstream", "postgres://" + c.Addr(), "--policy", pol,
			"--state-url", c.DSN(pgtest.SuperUser), "--share-windows", "--instance", fmt.Sprintf("pgw-%d", i)}
		if i == 2 {
			args = append(args, "--admin-listen", admin)
		}
		cmd, stderr := startBinary(t, []string{"PGWARDEN_ADMIN_TOKEN=" + token}, args...)
		defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
		conn := connectThrough(t, ctx, c, listen, stderr)
		defer conn.Close(ctx)
		conns = append(conns, conn)
	}
	read := func(conn *pgx.Conn, tag string) (int, error) {
		rows, err := conn.Query(ctx, fmt.Sprintf("SELECT '%s' || i || '@example.com' FROM generate_series(1, 40) i", tag))
		if err != nil {
			return 0, err
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		return n, rows.Err()
	}
	// 40 through each of the first two, then the third has 20 left. The
	// instances exchange figures every half second: wait out the bound.
	for i, conn := range conns[:2] {
		if n, err := read(conn, fmt.Sprint("i", i)); err != nil || n != 40 {
			t.Fatalf("instance %d: %d %v", i, n, err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	n, err := read(conns[2], "i2")
	if err == nil || !strings.Contains(err.Error(), "hourly-emails") || n != 20 {
		t.Fatalf("third instance: %d rows, %v; want a block after the 20 left in the hour", n, err)
	}

	// A table read only through the first instance reaches the third's
	// norm model (with PII: a first table without PII is not learned
	// once the employee's learning period is over).
	if _, err := conns[0].Exec(ctx, "SELECT * FROM norm_probe"); err != nil {
		t.Fatal(err)
	}
	var norm struct {
		Tables []string `json:"tables"`
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest("GET", "http://"+admin+"/v1/employees/"+pgtest.TrustUser+"/norm", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&norm)
			resp.Body.Close()
		}
		if slices.Contains(norm.Tables, "public.norm_probe") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the third instance's norm of %s lists tables %q; want public.norm_probe, read through the first", pgtest.TrustUser, norm.Tables)
		}
	}
}

// TestSharedOutbox: two instances with --share-state and no state
// directory share one outbox in the state database: blocks through either
// reach the webhook once each, and alerts raised while the receiver is
// down are delivered by the instance still running after the other
// stopped.
func TestSharedOutbox(t *testing.T) {
	c := pgtest.Shared(t)
	c.Exec(t, "DROP TABLE IF EXISTS pgwarden_outbox, pgwarden_window_deltas, pgwarden_norm_observations, pgwarden_leases")
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(fmt.Sprintf(servePolicy, 10)), 0o600)
	// Every block is sent: no folding of repeats.
	cfg := filepath.Join(dir, "pgwarden.yaml")
	os.WriteFile(cfg, []byte("notify:\n  dedupe_window: -1s\n"), 0o600)
	hookAddr := freeAddr(t) // nothing listens there yet
	env := []string{"PGWARDEN_WEBHOOK_SECRET=hook-secret"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cmds []*exec.Cmd
	var conns []*pgx.Conn
	for i := range 2 {
		listen := freeAddr(t)
		cmd, stderr := startBinary(t, env, "serve", "--config", cfg, "--listen", listen, "--upstream", "postgres://"+c.Addr(), "--policy", pol,
			"--state-url", c.DSN(pgtest.SuperUser), "--share-state", "--instance", fmt.Sprintf("pgw-%d", i),
			"--webhook-url", "http://"+hookAddr+"/hook")
		defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
		cmds = append(cmds, cmd)
		conns = append(conns, connectThrough(t, ctx, c, listen, stderr))
	}
	for round := range 3 {
		for i, conn := range conns {
			q := fmt.Sprintf("SELECT 'r%d-i%d-' || n || '@example.com' FROM generate_series(1, 50) n", round, i)
			if _, err := conn.Exec(ctx, q); err == nil || !strings.Contains(err.Error(), "email-block") {
				t.Fatalf("instance %d: %v", i, err)
			}
		}
	}
	super, err := pgx.Connect(ctx, c.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close(ctx)
	var queued int
	if err := super.QueryRow(ctx, "SELECT count(*) FROM pgwarden_outbox").Scan(&queued); err != nil || queued != 6 {
		t.Fatalf("outbox holds %d alerts, %v; want the 6 blocks", queued, err)
	}
	// The first instance stops; the second delivers everything once the
	// receiver is up.
	cmds[0].Process.Signal(syscall.SIGTERM)
	cmds[0].Wait()
	rcv := &receiver{}
	ln, err := net.Listen("tcp", hookAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rcv}
	go srv.Serve(ln)
	defer srv.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		rcv.mu.Lock()
		n := len(rcv.alerts)
		rcv.mu.Unlock()
		if n >= 6 || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(700 * time.Millisecond)
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	ids := map[string]int{}
	for _, a := range rcv.alerts {
		ids[a.ID]++
		if a.Rule != "email-block" {
			t.Errorf("alert %+v", a)
		}
	}
	if len(ids) != 6 || len(rcv.alerts) != 6 || rcv.bad != 0 {
		t.Errorf("received %d alerts (%d distinct, %d badly signed); want the 6 blocks once each", len(rcv.alerts), len(ids), rcv.bad)
	}
}

// TestAdminAuth: over TLS, no token, a wrong one and an expired one are
// refused; a named token works until it expires; a client certificate
// from the configured CA works without a token (mTLS), names the person
// in the audit trail, and has the scope admin.client_scopes gives it (a
// certificate it does not name gets 403).
func TestAdminAuth(t *testing.T) {
	c := pgtest.Shared(t)
	if c.CAFile == "" {
		t.Skip("the cluster has no CA")
	}
	cert, key, err := c.IssueCert("127.0.0.1", nil, []net.IP{net.ParseIP("127.0.0.1")}, false)
	if err != nil {
		t.Fatal(err)
	}
	clientCert, clientKey, err := c.IssueCert("security-analyst", nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	strangerCert, strangerKey, err := c.IssueCert("stranger", nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pgwarden.yaml")
	os.WriteFile(cfg, []byte("admin:\n  client_scopes:\n    security-analyst: act\n"), 0o600)
	auditDir := filepath.Join(dir, "audit")
	listen, adminAddr := freeAddr(t), freeAddr(t)
	const secret = "test-admin-token-0123456789"
	cmd, stderr := startBinary(t, []string{"PGWARDEN_ADMIN_TOKEN=" + secret, "PGWARDEN_AUDIT_KEY=" + strings.Repeat("ab", 32)}, "serve", "--config", cfg, "--listen", listen,
		"--upstream", "postgres://"+c.Addr(), "--admin-listen", adminAddr, "--audit-dir", auditDir,
		"--admin-tls-cert", cert, "--admin-tls-key", key, "--admin-client-ca", c.CAFile)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	victim := connectThrough(t, ctx, c, listen, stderr)
	defer victim.Close(ctx)

	pem, _ := os.ReadFile(c.CAFile)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	do := func(cl *http.Client, tok, method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+adminAddr+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	get := func(cl *http.Client, tok string) (int, string) { t.Helper(); return do(cl, tok, "GET", "/v1/sessions") }
	t.Setenv("PGWARDEN_ADMIN_TOKEN", secret)
	_, derived, _ := runCLI("token", "--name", "dora", "--ttl", "1h")
	_, short, _ := runCLI("token", "--name", "dora", "--ttl", "1s")
	forged := strings.TrimSpace(derived)
	forged = forged[:len(forged)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", forged[len(forged)-1])+1)%16])
	time.Sleep(1100 * time.Millisecond)
	for _, tc := range []struct {
		name, tok string
		code      int
		body      string
	}{
		{"no token", "", 401, "missing or wrong"},
		{"wrong token", "not-the-token-0123456789", 401, "missing or wrong"},
		{"expired token", strings.TrimSpace(short), 401, "expired"},
		{"derived token", strings.TrimSpace(derived), 200, ""},
		{"forged token", forged, 401, "missing or wrong"},
		{"the secret", secret, 200, ""},
	} {
		if code, body := get(plain, tc.tok); code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %s", tc.name, code, body)
		}
	}
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	mtls := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}}}
	code, body := get(mtls, "")
	if code != 200 {
		t.Fatalf("client certificate, no token: %d %s", code, body)
	}
	var sessions []struct {
		ID string `json:"id"`
	}
	json.Unmarshal([]byte(body), &sessions)
	if len(sessions) != 1 {
		t.Fatalf("sessions: %s", body)
	}
	if code, body := do(mtls, "", "GET", "/v1/whoami"); code != 200 || !strings.Contains(body, `"name":"security-analyst"`) || !strings.Contains(body, `"via":"certificate"`) {
		t.Errorf("whoami by certificate: %d %s", code, body)
	}
	if code, body := do(mtls, "", "POST", "/v1/policy/reload"); code != 403 {
		t.Errorf("reload with scope act: %d %s", code, body)
	}
	if code, body := do(mtls, "", "DELETE", "/v1/sessions/"+sessions[0].ID+"?reason=certificate+test"); code != 200 || !strings.Contains(body, `"by":"security-analyst"`) {
		t.Errorf("kill by certificate: %d %s", code, body)
	}
	spair, err := tls.LoadX509KeyPair(strangerCert, strangerKey)
	if err != nil {
		t.Fatal(err)
	}
	stranger := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{spair}}}}
	if code, body := get(stranger, ""); code != 403 || !strings.Contains(body, "stranger") {
		t.Errorf("a certificate without a scope: %d %s", code, body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	_, out, _ := runCLI("audit", "query", auditDir, "--type", "admin", "--json")
	if !strings.Contains(out, `"action":"session_killed","by":"security-analyst"`) || !strings.Contains(out, `"via":"certificate"`) {
		t.Errorf("the kill is not attributed to the certificate's holder:\n%s", out)
	}
}

// TestQuarantineSharedByInstances: with a state database, an employee
// quarantined through one instance is refused by the others, and released
// for all with pgwarden users release --state-url, which one of them
// writes to its audit trail with the OS user and the reason.
func TestQuarantineSharedByInstances(t *testing.T) {
	c := pgtest.Shared(t)
	c.Exec(t, "DROP TABLE IF EXISTS pgwarden_quarantine")
	c.Exec(t, "DROP TABLE IF EXISTS pgwarden_admin_actions")
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(fmt.Sprintf(servePolicy, 1000)), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var listens, audits []string
	for i := range 2 {
		listen := freeAddr(t)
		audits = append(audits, filepath.Join(dir, fmt.Sprintf("audit-%d", i)))
		cmd, stderr := startBinary(t, []string{"PGWARDEN_AUDIT_KEY=" + strings.Repeat("0d", 32)}, "serve", "--listen", listen, "--upstream", "postgres://"+c.Addr(), "--policy", pol,
			"--state-url", c.DSN(pgtest.SuperUser), "--instance", fmt.Sprintf("q-%d", i), "--audit-dir", audits[i])
		defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
		connectThrough(t, ctx, c, listen, stderr).Close(ctx)
		listens = append(listens, listen)
	}
	dsn := func(listen string) string {
		return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pgtest.TrustUser, listen, c.Database)
	}
	a, err := pgx.Connect(ctx, dsn(listens[0]))
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Exec(ctx, "SELECT string_agg('s' || i || '@example.com', ',') FROM generate_series(1, 2000) i")
	if err == nil || !strings.Contains(err.Error(), "quarantined") {
		t.Fatalf("dump through the first instance: %v", err)
	}
	refused := func() bool {
		conn, err := pgx.Connect(ctx, dsn(listens[1]))
		if err == nil {
			conn.Close(ctx)
			return false
		}
		return strings.Contains(err.Error(), "quarantined")
	}
	proxytest.Eventually(t, 5*time.Second, "the second instance refuses the quarantined employee", func() (bool, string) {
		return refused(), "let in"
	})
	if code, out, errOut := runCLI("users", "list", "--state-url", c.DSN(pgtest.SuperUser)); code != 0 || !strings.Contains(out, "quarantine-dump") {
		t.Errorf("users list --state-url: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := runCLI("users", "release", pgtest.TrustUser, "--state-url", c.DSN(pgtest.SuperUser), "--reason", "cleared, ticket 9"); code != 0 {
		t.Fatalf("users release --state-url: %d %q %q", code, out, errOut)
	}
	proxytest.Eventually(t, 5*time.Second, "the employee let in after release", func() (bool, string) {
		return !refused(), "still refused"
	})
	want := `"action":"quarantine_released","at":`
	by := `"by":"` + adminlog.OSUser() + `","reason":"cleared, ticket 9","rule":"quarantine-dump","via":"cli"`
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		found := 0
		var outs []string
		for _, a := range audits {
			_, out, _ := runCLI("audit", "query", a, "--type", "admin", "--json")
			found += strings.Count(out, want)
			if strings.Contains(out, want) && !strings.Contains(out, by) {
				t.Fatalf("the release is not attributed (want %s):\n%s", by, out)
			}
			outs = append(outs, out)
		}
		if found == 1 {
			break
		}
		if found > 1 || time.Now().After(deadline) {
			t.Fatalf("the release is in %d audit trails, want one:\n%s", found, strings.Join(outs, "\n"))
		}
	}
}
