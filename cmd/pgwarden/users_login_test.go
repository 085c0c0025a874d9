package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/identity/userstore"
	"github.com/pgwarden/pgwarden/internal/scram"
)

// runWithStdin runs the test binary as pgwarden with stdin and env.
func runWithStdin(t *testing.T, stdin string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "PGWARDEN_TEST_RUN_MAIN=1", "PGWARDEN_USERS_FILE=", "PGWARDEN_STATE_DIR="), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func TestUsersLogins(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "users.json")
	run := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		return runWithStdin(t, stdin, nil, append(args, "--users-file", file)...)
	}

	if code, out, errOut := run("", "users", "logins"); code != 0 || !strings.Contains(out, "no login") {
		t.Fatalf("logins of an empty store: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := run("s3cret pass\n", "users", "add", "alice@example.com", "--role", "app_ro"); code != 0 || !strings.Contains(out, "added login alice@example.com") {
		t.Fatalf("add: %d %q %q", code, out, errOut)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "s3cret") {
		t.Error("the users file holds the password")
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("users file mode %v", fi.Mode().Perm())
	}
	store, err := userstore.Open(file, userstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	check := func(password string) bool {
		t.Helper()
		u, err := store.Get("alice@example.com")
		if err != nil {
			t.Fatal(err)
		}
		v, err := scram.ParseVerifier(u.Verifier)
		if err != nil {
			t.Fatal(err)
		}
		return v.Check(password)
	}
	if !check("s3cret pass") {
		t.Error("the stored verifier does not check the password read from stdin")
	}

	for _, tc := range []struct {
		name, stdin string
		args        []string
		code        int
		errWant     string
	}{
		{"add twice", "x\n", []string{"users", "add", "alice@example.com", "--role", "r"}, 1, "already exists"},
		{"add without role", "x\n", []string{"users", "add", "bob"}, 2, "--role is required"},
		{"add without password", "", []string{"users", "add", "bob", "--role", "r"}, 1, "no password"},
		{"add empty password", "\n", []string{"users", "add", "bob", "--role", "r"}, 1, "empty password"},
		{"passwd unknown", "x\n", []string{"users", "passwd", "nobody"}, 1, "no such login"},
		{"remove unknown", "", []string{"users", "remove", "nobody"}, 1, "no such login"},
		{"unlock without name", "", []string{"users", "unlock"}, 2, "exactly one NAME"},
		{"unknown subcommand", "", []string{"users", "frobnicate"}, 2, "unknown subcommand"},
	} {
		code, _, errOut := run(tc.stdin, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.errWant) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, errOut, tc.code, tc.errWant)
		}
	}

	if code, out, errOut := run("new pass\r\n", "users", "passwd", "alice@example.com"); code != 0 || !strings.Contains(out, "password of alice@example.com changed") {
		t.Fatalf("passwd: %d %q %q", code, out, errOut)
	}
	if !check("new pass") || check("s3cret pass") {
		t.Error("passwd did not replace the verifier")
	}
	if code, out, _ := run("", "users", "disable", "alice@example.com"); code != 0 || !strings.Contains(out, "disabled alice@example.com") {
		t.Errorf("disable: %d %q", code, out)
	}
	if code, out, _ := run("", "users", "logins"); code != 0 || !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "app_ro") || !strings.Contains(out, "disabled") {
		t.Errorf("logins: %q", out)
	}
	if code, _, _ := run("", "users", "enable", "alice@example.com"); code != 0 {
		t.Error("enable failed")
	}
	if code, out, _ := run("", "users", "role", "alice@example.com", "app_rw"); code != 0 || !strings.Contains(out, "app_rw") {
		t.Errorf("role: %d %q", code, out)
	}

	// A lockout, as a serving pgwarden writes it, shows and is lifted.
	serving, err := userstore.Open(file, userstore.Options{Recheck: -1, Throttle: userstore.Throttle{MaxFailures: 2, BaseDelay: -1}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := serving.Admit("alice@example.com", "10.1.1.1"); err != nil {
			t.Fatal(err)
		}
		serving.Failed("alice@example.com", "10.1.1.1")
	}
	if code, out, _ := run("", "users", "logins"); code != 0 || !strings.Contains(out, "locked out until") {
		t.Errorf("logins while locked out: %q", out)
	}
	if code, out, _ := run("", "users", "unlock", "alice@example.com"); code != 0 || !strings.Contains(out, "unlocked alice@example.com") {
		t.Errorf("unlock: %d %q", code, out)
	}
	if err := serving.Admit("alice@example.com", "10.1.1.2"); err != nil {
		t.Errorf("still locked out after unlock: %v", err)
	}
	serving.Abandoned("alice@example.com", "10.1.1.2")
	if code, out, _ := run("", "users", "unlock", "alice@example.com"); code != 0 || !strings.Contains(out, "was not locked out") {
		t.Errorf("second unlock: %d %q", code, out)
	}

	if code, out, _ := run("", "users", "remove", "alice@example.com"); code != 0 || !strings.Contains(out, "removed login alice@example.com") {
		t.Errorf("remove: %d %q", code, out)
	}
	if _, err := store.Get("alice@example.com"); !errors.Is(err, userstore.ErrNotFound) {
		t.Errorf("after remove: %v", err)
	}
}

// TestUsersFileLocation: --users-file, then --state-dir, then
// PGWARDEN_USERS_FILE, then PGWARDEN_STATE_DIR.
func TestUsersFileLocation(t *testing.T) {
	dir := t.TempDir()
	add := func(name string, env []string, args ...string) {
		t.Helper()
		code, _, errOut := runWithStdin(t, "pw\n", env, append([]string{"users", "add", name, "--role", "r"}, args...)...)
		if code != 0 {
			t.Fatalf("add %s: %d %q", name, code, errOut)
		}
	}
	has := func(path, name string) bool {
		s, err := userstore.Open(path, userstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Get(name)
		return err == nil
	}
	env := []string{"PGWARDEN_USERS_FILE=" + filepath.Join(dir, "env.json"), "PGWARDEN_STATE_DIR=" + filepath.Join(dir, "envstate")}
	add("a", env, "--users-file", filepath.Join(dir, "flag.json"))
	add("b", env, "--state-dir", filepath.Join(dir, "flagstate"))
	add("c", env)
	add("d", env[1:])
	for path, name := range map[string]string{
		filepath.Join(dir, "flag.json"):               "a",
		filepath.Join(dir, "flagstate", "users.json"): "b",
		filepath.Join(dir, "env.json"):                "c",
		filepath.Join(dir, "envstate", "users.json"):  "d",
	} {
		if !has(path, name) {
			t.Errorf("%s is not in %s", name, path)
		}
	}
	if code, _, errOut := runWithStdin(t, "", nil, "users", "logins"); code != 2 || !strings.Contains(errOut, "--users-file") {
		t.Errorf("no file given: %d %q", code, errOut)
	}
}

func TestUsersHelp(t *testing.T) {
	for _, args := range [][]string{{"users", "--help"}, {"help", "users"}, {"users", "add", "--help"}, {"users", "logins", "-h"}} {
		code, out, errOut := runCLI(args...)
		if code != 0 || !strings.Contains(out+errOut, "pgwarden users add NAME --role ROLE") || !strings.Contains(out+errOut, "pgwarden users release NAME") {
			t.Errorf("%v: exit %d, output %q", args, code, out+errOut)
		}
	}
	// The quarantine commands are unchanged.
	if code, _, errOut := runCLI("users", "list"); code != 2 || !strings.Contains(errOut, "--state-dir") {
		t.Errorf("users list without a state dir: %d %q", code, errOut)
	}
}

// TestUsersAddPromptsOnTerminal: on a terminal, the password is asked
// twice without echo; script(1) provides the terminal.
func TestUsersAddPromptsOnTerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) not installed")
	}
	file := filepath.Join(t.TempDir(), "users.json")
	for _, tc := range []struct {
		name, typed string
		ok          bool
	}{
		{"match", "tty-pass\ntty-pass\n", true},
		{"mismatch", "tty-pass\nother\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			login := "tty-" + tc.name
			cmd := exec.Command(script, "-qec", strings.Join([]string{os.Args[0], "users", "add", login, "--role", "r", "--users-file", file}, " "), "/dev/null")
			cmd.Env = append(os.Environ(), "PGWARDEN_TEST_RUN_MAIN=1")
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			out := &syncBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Type each line once its prompt is up.
			for i, line := range strings.SplitAfter(strings.TrimSuffix(tc.typed, "\n"), "\n") {
				want := []string{"New password for", "Enter it again"}[i]
				deadline := time.Now().Add(10 * time.Second)
				for !strings.Contains(out.String(), want) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				stdin.Write([]byte(strings.TrimSuffix(line, "\n") + "\n"))
			}
			stdin.Close()
			err = cmd.Wait()
			if tc.ok != (err == nil) {
				t.Fatalf("exit %v, output %q", err, out.String())
			}
			if strings.Contains(out.String(), "tty-pass") {
				t.Errorf("the password was echoed: %q", out.String())
			}
			s, err := userstore.Open(file, userstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Get(login)
			if tc.ok != (err == nil) {
				t.Errorf("login stored: %v, want %v", err == nil, tc.ok)
			}
			if !tc.ok && !strings.Contains(out.String(), "do not match") {
				t.Errorf("mismatch not explained: %q", out.String())
			}
		})
	}
}

// syncBuffer is a bytes.Buffer written by one goroutine and read by another.
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
