package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/state/adminlog"
	"github.com/pgwarden/pgwarden/state/holds"
	"github.com/pgwarden/pgwarden/state/quarantine"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// TestCLIActionsNameTheOSUser: users release and holds deny work on the
// state directory itself; each needs a reason, and the running server
// writes the action to the audit trail with the OS user as who.
func TestCLIActionsNameTheOSUser(t *testing.T) {
	c := pgtest.Shared(t)
	dir := t.TempDir()
	state, auditDir := filepath.Join(dir, "state"), filepath.Join(dir, "audit")
	listen := freeAddr(t)
	cmd, stderr := startBinary(t, []string{"PGWARDEN_AUDIT_KEY=" + strings.Repeat("ce", 32)}, "serve", "--listen", listen,
		"--upstream", "postgres://"+c.Addr(), "--state-dir", state, "--audit-dir", auditDir)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connectThrough(t, ctx, c, listen, stderr).Close(ctx)

	q, err := quarantine.Open(filepath.Join(state, "quarantine.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(quarantine.Entry{Employee: "mallory", Since: time.Now(), Rule: "dump"}); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI("users", "release", "mallory", "--state-dir", state, "--reason", "ticket SEC-12"); code != 0 {
		t.Fatalf("users release: %d %q %q", code, out, errOut)
	}
	reg, err := holds.Open(filepath.Join(state, "holds"))
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan bool)
	go func() {
		h, _ := reg.Request(ctx, holds.Hold{ID: "h-cli-1", Employee: "erin", Rule: "big-export", Since: time.Now()})
		waited <- h.Status == holds.Approved
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l, _ := reg.List(); len(l) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hold was never pending")
		}
	}
	if code, out, errOut := runCLI("holds", "deny", "h-cli-1", "--state-dir", state, "--reason", "no ticket"); code != 0 {
		t.Fatalf("holds deny: %d %q %q", code, out, errOut)
	}
	if <-waited {
		t.Error("a denied hold was approved")
	}

	who := adminlog.OSUser()
	want := map[string]bool{"quarantine_released": false, "hold_denied": false}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, out, _ := runCLI("audit", "query", auditDir, "--type", "admin", "--json")
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var ev struct {
				Employee string `json:"employee"`
				Data     struct {
					Action, By, Via, Reason string
				} `json:"data"`
			}
			if json.Unmarshal([]byte(line), &ev) != nil {
				continue
			}
			d := ev.Data
			switch {
			case d.Action == "quarantine_released" && ev.Employee == "mallory" && d.By == who && d.Via == "cli" && d.Reason == "ticket SEC-12",
				d.Action == "hold_denied" && ev.Employee == "erin" && d.By == who && d.Via == "cli" && d.Reason == "no ticket":
				want[d.Action] = true
			}
		}
		if want["quarantine_released"] && want["hold_denied"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit trail lacks the command line's actions by %s: %v\n%s", who, want, out)
		}
	}
}
