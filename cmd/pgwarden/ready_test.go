package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// forwarder relays TCP connections to a target until it is cut: a
// dependency that can go away and come back on the same address.
type forwarder struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
}

func newForwarder(t *testing.T, target string) *forwarder {
	f := &forwarder{t: t, addr: freeAddr(t), target: target}
	f.restore()
	t.Cleanup(f.cut)
	return f
}

// restore listens again.
func (f *forwarder) restore() {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", f.target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, u)
			f.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

// cut stops listening and drops every relayed connection.
func (f *forwarder) cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

type readyAnswer struct {
	Ready    bool     `json:"ready"`
	NotReady []string `json:"not_ready"`
	Checks   []struct {
		Name  string `json:"name"`
		Ready bool   `json:"ready"`
		Error string `json:"error"`
	} `json:"checks"`
}

func getReady(t *testing.T, adminAddr, token string) (int, readyAnswer, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/v1/ready", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, readyAnswer{}, err
	}
	defer resp.Body.Close()
	var a readyAnswer
	err = json.NewDecoder(resp.Body).Decode(&a)
	return resp.StatusCode, a, err
}

// waitReady polls /v1/ready until its status is code and the checks not
// ready are notReady; logs is the process's output, for the failure.
func waitReady(t *testing.T, adminAddr, token string, logs fmt.Stringer, code int, notReady ...string) readyAnswer {
	t.Helper()
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		got, a, err := getReady(t, adminAddr, token)
		if err == nil && got == code && slices.Equal(a.NotReady, notReady) {
			return a
		}
		last = ""
		if err != nil {
			last = err.Error()
		} else {
			b, _ := json.Marshal(a)
			last = string(b)
		}
		_ = got
	}
	t.Fatalf("/v1/ready never answered %d with not_ready %q; last: %s\n%s", code, notReady, last, logs)
	return readyAnswer{}
}

// TestServeReadiness: /v1/ready answers 200 while every dependency serve
// was given answers, and 503 naming the one that went away (the upstream
// server, the audit directory, the catalog connection, the state
// database), until it comes back. /v1/health stays 200 throughout.
func TestServeReadiness(t *testing.T) {
	c := pgtest.Shared(t)
	upstream, catalogDB, stateDB := newForwarder(t, c.Addr()), newForwarder(t, c.Addr()), newForwarder(t, c.Addr())
	// As the superuser, like the other tests that share this cluster's
	// state tables.
	dsnVia := func(f *forwarder) string {
		return strings.Replace(c.DSN(pgtest.SuperUser), c.Addr(), f.addr, 1)
	}
	auditDir := filepath.Join(t.TempDir(), "audit")
	listen, adminAddr := freeAddr(t), freeAddr(t)
	const token = "test-admin-token-0123456789"
	cmd, stderr := startBinary(t, []string{"PGWARDEN_ADMIN_TOKEN=" + token, "PGWARDEN_AUDIT_KEY=" + strings.Repeat("ab", 32)},
		"serve", "--listen", listen, "--upstream", "postgres://"+upstream.addr, "--admin-listen", adminAddr,
		"--audit-dir", auditDir, "--catalog-url", dsnVia(catalogDB), "--state-url", dsnVia(stateDB))
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()

	a := waitReady(t, adminAddr, "", stderr, 200)
	if code, stdout, stderr := runCLI("health", "--ready", "--admin", "http://"+adminAddr); code != 0 || !strings.Contains(stdout, `"ready":true`) {
		t.Errorf("pgwarden health --ready: exit %d, %q %q", code, stdout, stderr)
	}
	var names []string
	for _, ch := range a.Checks {
		names = append(names, ch.Name)
	}
	if want := []string{"upstream", "audit", "catalog", "state"}; !slices.Equal(names, want) {
		t.Fatalf("checks %q, want %q\n%s", names, want, stderr)
	}

	for _, dep := range []struct {
		name         string
		fail, repair func()
		errText      string
	}{
		{"upstream", upstream.cut, upstream.restore, "connection refused"},
		{"catalog", catalogDB.cut, catalogDB.restore, ""},
		{"state", stateDB.cut, stateDB.restore, ""},
		{"audit", func() {
			if err := os.Rename(auditDir, auditDir+".moved"); err != nil {
				t.Fatal(err)
			}
		}, func() {
			if err := os.Rename(auditDir+".moved", auditDir); err != nil {
				t.Fatal(err)
			}
		}, "audit directory"},
	} {
		t.Run(dep.name, func(t *testing.T) {
			dep.fail()
			a := waitReady(t, adminAddr, token, stderr, 503, dep.name)
			for _, ch := range a.Checks {
				if ch.Name == dep.name && (ch.Ready || !strings.Contains(ch.Error, dep.errText)) {
					t.Errorf("%s: %+v", dep.name, ch)
				}
			}
			if _, a, _ := getReady(t, adminAddr, ""); strings.Contains(a.Checks[0].Error+a.Checks[1].Error+a.Checks[2].Error+a.Checks[3].Error, "127.0.0.1") {
				t.Errorf("the errors' text is shown without a token: %+v", a.Checks)
			}
			resp, err := http.Get("http://" + adminAddr + "/v1/health")
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("health while %s is down: %v %v", dep.name, resp, err)
			} else {
				resp.Body.Close()
			}
			if code, _, stderr := runCLI("health", "--ready", "--admin", "http://"+adminAddr); code != 1 || !strings.Contains(stderr, "503") {
				t.Errorf("pgwarden health --ready while %s is down: exit %d, %q", dep.name, code, stderr)
			}
			if code, _, stderr := runCLI("health", "--admin", "http://"+adminAddr); code != 0 {
				t.Errorf("pgwarden health while %s is down: exit %d, %q", dep.name, code, stderr)
			}
			dep.repair()
			waitReady(t, adminAddr, "", stderr, 200)
		})
	}
	if !strings.Contains(stderr.String(), "msg=not_ready dependency=catalog") {
		t.Errorf("the catalog going away is not logged:\n%s", stderr)
	}
}
