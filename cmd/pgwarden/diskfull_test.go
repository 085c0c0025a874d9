package main

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory, unmounted
// when the test ends; it skips the test when it cannot (not root, no
// mount(8), a container without the capability).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file in dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return path
		}
	}
}

// TestAuditDiskFull runs pgwarden with its audit and state directories on
// a 1 MiB tmpfs and fills it: a statement is refused before it reaches the
// server (SQLSTATE 42501, not one row), new sessions are refused, and
// security is alerted; once space is freed, the log resumes by itself,
// new sessions are accepted, the running one carries on, and the trail
// verifies. Temporary files a crash left in the state directory are
// removed at start.
func TestAuditDiskFull(t *testing.T) {
	c := pgtest.Shared(t)
	c.Exec(t, `DROP TABLE IF EXISTS diskfull_t; CREATE TABLE diskfull_t (id int, n int);
INSERT INTO diskfull_t VALUES (1, 0);
GRANT SELECT, UPDATE ON diskfull_t TO `+pgtest.TrustUser)
	mnt := mountTmpfs(t, 1<<20)
	auditDir, stateDir := filepath.Join(mnt, "audit"), filepath.Join(mnt, "state")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(stateDir, ".alerts.json-424242") // left by a kill -9
	os.WriteFile(stale, []byte("[{"), 0o600)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)

	rcv := &receiver{}
	hook := httptest.NewServer(rcv)
	defer hook.Close()
	const key = "00112233445566778899aabbccddeeff"
	listen := freeAddr(t)
	cmd, stderr := startBinary(t, []string{"PGWARDEN_AUDIT_KEY=" + key, "PGWARDEN_WEBHOOK_SECRET=hook-secret"},
		"serve", "--listen", listen, "--upstream", "postgres://"+c.Addr(), "--audit-dir", auditDir,
		"--state-dir", stateDir, "--webhook-url", hook.URL, "--log-format", "json")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := connectThrough(t, ctx, c, listen, stderr)
	defer conn.Close(context.Background())
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file still there: %v", err)
	}

	// Each record of this statement is longer than a page, so that it
	// cannot fit in what is left of the log file's last one.
	var cols []string
	for i := range 80 {
		cols = append(cols, fmt.Sprintf("n AS column_%02d_%s", i, strings.Repeat("x", 50)))
	}
	wide := "SELECT " + strings.Join(cols, ", ") + " FROM diskfull_t, generate_series(1, 20)"
	count := func() (rows int, err error) {
		r, err := conn.Query(ctx, wide)
		if err != nil {
			return 0, err
		}
		for r.Next() {
			rows++
		}
		return rows, r.Err()
	}
	if n, err := count(); n != 20 || err != nil {
		t.Fatalf("before the disk is full: %d rows, %v", n, err)
	}
	super, err := pgx.Connect(ctx, c.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close(context.Background())
	n := func() int {
		var n int
		if err := super.QueryRow(ctx, "SELECT n FROM diskfull_t WHERE id = 1").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	filler := fill(t, mnt)
	if rows, err := count(); rows != 0 || proxytest.Code(err) != "42501" || !strings.Contains(err.Error(), "audit log cannot be written") {
		t.Fatalf("disk full: %d rows, %v; want none and SQLSTATE 42501", rows, err)
	}
	if _, err := conn.Exec(ctx, "UPDATE diskfull_t SET n = n + 1 WHERE id = 1"); proxytest.Code(err) != "42501" {
		t.Fatalf("update on a full disk: %v", err)
	}
	if got := n(); got != 0 {
		t.Fatalf("the refused update ran: n = %d", got)
	}
	dsn := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pgtest.TrustUser, listen, c.Database)
	if _, err := pgx.Connect(ctx, dsn); err == nil || !strings.Contains(err.Error(), "audit log cannot be written") {
		t.Fatalf("new session on a full disk: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	proxytest.Eventually(t, 10*time.Second, "a new session after space was freed", func() (bool, string) {
		conn2, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return false, fmt.Sprintf("%v\n%s", err, stderr)
		}
		conn2.Close(ctx)
		return true, ""
	})
	if _, err := conn.Exec(ctx, "UPDATE diskfull_t SET n = n + 1 WHERE id = 1"); err != nil {
		t.Fatalf("the running session after recovery: %v", err)
	}
	if rows, err := count(); rows != 20 || err != nil {
		t.Fatalf("after recovery: %d rows, %v", rows, err)
	}
	if got := n(); got != 1 {
		t.Fatalf("n = %d after one update, want 1", got)
	}
	down, up := rcv.waitFor(t, "audit:unavailable"), rcv.waitFor(t, "audit:resumed")
	if down.Severity != "critical" || !strings.Contains(down.Reason, "no space left on device") || up.ID == down.ID {
		t.Errorf("alerts %+v, %+v", down, up)
	}

	// A statement sent with Terminate reaches the server: it is in the
	// trail, with its text.
	pc, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	buf, _ := (&pgproto3.Query{String: "UPDATE diskfull_t SET n = n + 10 WHERE id = 1"}).Encode(nil)
	buf, _ = (&pgproto3.Terminate{}).Encode(buf)
	hc.Conn.Write(buf)
	hc.Conn.Close()

	conn.Close(ctx)
	proxytest.Eventually(t, 5*time.Second, "the update sent with Terminate applied", func() (bool, string) {
		got := n()
		return got == 11, fmt.Sprintf("n = %d", got)
	})
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pgwarden exited with %v\n%s", err, stderr)
	}
	logs := stderr.String()
	// The outbox on the full disk could not take the audit:unavailable
	// alert: it was held in memory, and delivered once space was freed.
	for msg, want := range map[string]int{`"msg":"audit_unavailable"`: 1, `"msg":"audit_resumed"`: 1, "alert_not_queued": 0,
		`"msg":"alerts_held"`: 1, `"msg":"alerts_released"`: 1} {
		if got := strings.Count(logs, msg); got != want {
			t.Errorf("%s logged %d times, want %d", msg, got, want)
		}
	}
	t.Setenv("PGWARDEN_AUDIT_KEY", key)
	if code, stdout, errOut := runCLI("audit", "verify", auditDir); code != 0 {
		t.Fatalf("audit verify: exit %d\n%s%s", code, stdout, errOut)
	}
	code, stdout, _ := runCLI("audit", "query", auditDir, "--type", "statement", "--json")
	if code != 0 || strings.Count(stdout, `SET n = n + $1`) != 2 {
		t.Fatalf("audit query: exit %d, want two updates recorded (the refused one is not):\n%s", code, stdout)
	}
}
