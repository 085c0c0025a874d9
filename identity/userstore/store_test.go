package userstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/internal/clock"
	"github.com/pgwarden/pgwarden/internal/scram"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func newClock() *clock.Virtual { return clock.NewVirtual(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)) }

// openStore opens a store in a fresh directory that rereads the file on
// every lookup.
func openStore(t *testing.T, opts Options) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "users.json"), opts)
}

func openAt(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	if opts.Recheck == 0 {
		opts.Recheck = -1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testWriter sends a store's logs to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestFileHoldsVerifiersOnly(t *testing.T) {
	s := openStore(t, Options{})
	if err := s.Add("alice@example.com", "app_ro", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("bob", "app_rw", "hunter2"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"correct horse battery", "hunter2"} {
		if strings.Contains(string(data), pw) {
			t.Errorf("the file holds the password %q", pw)
		}
	}
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Users) != 2 || f.MockKey == "" || f.Version != fileVersion {
		t.Fatalf("file = %+v", f)
	}
	for _, u := range f.Users {
		if !strings.HasPrefix(u.Verifier, "SCRAM-SHA-256$4096:") {
			t.Errorf("%s: verifier %q", u.Name, u.Verifier)
		}
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	v, role, err := s.Lookup("alice@example.com")
	if err != nil || role != "app_ro" || !v.Check("correct horse battery") || v.Check("correct horse") {
		t.Errorf("Lookup: role %q, err %v", role, err)
	}
}

func TestChanges(t *testing.T) {
	s := openStore(t, Options{})
	if err := s.Add("alice", "app_ro", "one"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("alice", "app_rw", "two"); !errors.Is(err, ErrExists) {
		t.Errorf("second Add: %v, want ErrExists", err)
	}
	for _, bad := range [][2]string{{"", "r"}, {"a\nb", "r"}, {"a", ""}, {"a", strings.Repeat("r", 64)}} {
		if err := s.Add(bad[0], bad[1], "pw"); err == nil {
			t.Errorf("Add(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if err := s.Add("carol", "r", ""); err == nil {
		t.Error("an empty password was accepted")
	}
	if err := s.SetPassword("alice", "three"); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := s.Lookup("alice"); !v.Check("three") || v.Check("one") {
		t.Error("SetPassword did not replace the verifier")
	}
	if err := s.SetRole("alice", "app_rw"); err != nil {
		t.Fatal(err)
	}
	if _, role, _ := s.Lookup("alice"); role != "app_rw" {
		t.Errorf("role %q after SetRole", role)
	}
	if err := s.SetDisabled("alice", true); err != nil {
		t.Fatal(err)
	}
	if v, role, err := s.Lookup("alice"); err == nil || role != "" || v == nil {
		t.Errorf("disabled: Lookup = %v, %q, %v", v, role, err)
	}
	if err := s.SetDisabled("alice", false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Lookup("alice"); err != nil {
		t.Errorf("enabled again: %v", err)
	}
	if err := s.Remove("alice"); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{s.Remove("alice"), s.SetPassword("alice", "x"), s.SetDisabled("alice", true)} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("change of a removed login: %v, want ErrNotFound", err)
		}
	}
	if _, err := s.Unlock("alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Unlock of a removed login: %v", err)
	}
}

// TestWriteIsAtomic: a reader never sees half a file while another process
// rewrites it, and changes from two stores on one file are all kept.
func TestWriteIsAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	a, b := openAt(t, path, Options{Iterations: 1}), openAt(t, path, Options{Iterations: 1})
	stop := make(chan struct{})
	var readErr error
	var reader, writers sync.WaitGroup
	reader.Add(1)
	go func() {
		defer reader.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := read(path); err != nil {
				readErr = err
				return
			}
		}
	}()
	var writeErrs [2]error
	for i, s := range []*Store{a, b} {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for j := range 40 {
				if err := s.Add(fmt.Sprintf("user-%d-%d", i, j), "r", "pw"); err != nil {
					writeErrs[i] = err
					return
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	reader.Wait()
	if readErr != nil {
		t.Fatalf("a reader saw a broken file: %v", readErr)
	}
	for _, err := range writeErrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	users, err := b.Users()
	if err != nil || len(users) != 80 {
		t.Fatalf("%d logins after 80 adds from two stores: %v", len(users), err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "users.json" && e.Name() != "users.json.lock" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestFailedChangeKeepsFile: a change that fails leaves the file as it was.
func TestFailedChangeKeepsFile(t *testing.T) {
	s := openStore(t, Options{})
	if err := s.Add("alice", "r", "pw"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(s.Path())
	err := s.update(func(f *file) error {
		f.Users = nil
		return errors.New("no")
	})
	after, _ := os.ReadFile(s.Path())
	if err == nil || string(before) != string(after) {
		t.Errorf("update error %v; file changed: %v", err, string(before) != string(after))
	}
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	serving := openAt(t, path, Options{})
	cli := openAt(t, path, Options{})
	if _, _, err := serving.Lookup("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("before add: %v", err)
	}
	if err := cli.Add("alice", "app_ro", "one"); err != nil {
		t.Fatal(err)
	}
	if v, role, err := serving.Lookup("alice"); err != nil || role != "app_ro" || !v.Check("one") {
		t.Fatalf("after add by another store: %q %v", role, err)
	}
	if err := cli.SetPassword("alice", "two"); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := serving.Lookup("alice"); !v.Check("two") {
		t.Error("the new password is not seen")
	}
	// A broken file leaves the last good view in place.
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, _, err := serving.Lookup("alice"); err != nil || !v.Check("two") {
		t.Errorf("after the file broke: %v", err)
	}
	if _, err := Open(path, Options{Logger: serving.opts.Logger}); err == nil {
		t.Error("Open of a broken file succeeded")
	}
}

// TestRecheckInterval: a serving store looks at the file at most once a
// Recheck.
func TestRecheckInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	serving := openAt(t, path, Options{Recheck: time.Hour})
	cli := openAt(t, path, Options{})
	if err := cli.Add("alice", "r", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := serving.Lookup("alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("seen before the recheck interval: %v", err)
	}
	serving.mu.Lock()
	serving.checked = time.Time{}
	serving.mu.Unlock()
	if _, _, err := serving.Lookup("alice"); err != nil {
		t.Errorf("not seen after the recheck interval: %v", err)
	}
}

// TestMockVerifier: unknown names get a stand-in that has a real one's
// shape, stays the same across stores of one file, and matches nothing.
func TestMockVerifier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	a := openAt(t, path, Options{})
	if err := a.Add("alice", "r", "pw"); err != nil {
		t.Fatal(err)
	}
	real, _, _ := a.Lookup("alice")
	ghost, role, err := a.Lookup("ghost")
	if !errors.Is(err, ErrNotFound) || role != "" || ghost == nil {
		t.Fatalf("Lookup(ghost) = %v, %q, %v", ghost, role, err)
	}
	if ghost.Iterations != real.Iterations || len(ghost.Salt) != len(real.Salt) {
		t.Errorf("stand-in %q differs in shape from %q", ghost, real)
	}
	b := openAt(t, path, Options{})
	if again, _, _ := b.Lookup("ghost"); again.String() != ghost.String() {
		t.Error("the stand-in changes between stores of one file")
	}
	if other, _, _ := a.Lookup("ghost2"); other.String() == ghost.String() {
		t.Error("two names share a stand-in")
	}
	if ghost.Check("") || ghost.Check("pw") {
		t.Error("a password matches the stand-in")
	}
}

// TestPostgreSQLVerifiers: a verifier PostgreSQL made checks here, and one
// made here logs in to PostgreSQL.
func TestPostgreSQLVerifiers(t *testing.T) {
	c := pgtest.Shared(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, c.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const role = "pgw_userstore_verifier"
	const password = "Pa55 w\u00f6rd \ufb01"
	if _, err := conn.Exec(ctx, fmt.Sprintf(`SET password_encryption = 'scram-sha-256';
		DROP ROLE IF EXISTS %[1]s; CREATE ROLE %[1]s LOGIN PASSWORD '%[2]s'`, role, password)); err != nil {
		t.Fatal(err)
	}
	var stored string
	if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&stored); err != nil {
		t.Fatal(err)
	}

	// PostgreSQL's verifier, put in a users file as it is.
	path := filepath.Join(t.TempDir(), "users.json")
	f := &file{Version: fileVersion, Users: []User{{Name: "pg", Role: role, Verifier: stored}}}
	if err := write(path, f); err != nil {
		t.Fatal(err)
	}
	s := openAt(t, path, Options{})
	v, _, err := s.Lookup("pg")
	if err != nil {
		t.Fatal(err)
	}
	if v.String() != stored || !v.Check(password) || v.Check("Pa55 w\u00f6rd") {
		t.Errorf("PostgreSQL's verifier %q does not check here", stored)
	}
	if err := exchange(v, password); err != nil {
		t.Errorf("SCRAM against PostgreSQL's verifier: %v", err)
	}

	// A verifier made here, given to PostgreSQL as the role's password.
	// pgx prepares passwords with NFC, not SASLprep's NFKC: the ligature,
	// which tells the two apart, stays out of the password it logs in with.
	const pgxPassword = "Pa55 w\u00f6rd"
	if err := s.Add("mine", role, pgxPassword); err != nil {
		t.Fatal(err)
	}
	u, err := s.Get("mine")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", role, u.Verifier)); err != nil {
		t.Fatal(err)
	}
	var now string
	if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&now); err != nil || now != u.Verifier {
		t.Fatalf("PostgreSQL stored %q, want our verifier %q (%v)", now, u.Verifier, err)
	}
	cfg, err := pgx.ParseConfig(c.DSN(pgtest.TrustUser))
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = role, pgxPassword
	direct, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("PostgreSQL refused the password of our verifier: %v", err)
	}
	direct.Close(ctx)
	cfg.Password = "wrong"
	if direct, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		direct.Close(ctx)
		t.Fatal("PostgreSQL accepted a wrong password")
	}
}

// exchange runs SCRAM between the client the proxy uses upstream and the
// server side, against v.
func exchange(v *scram.Verifier, password string) error {
	c, err := scram.NewClient([]string{scram.SHA256}, password, nil)
	if err != nil {
		return err
	}
	s := scram.NewServer(v)
	first, err := s.ClientFirst(c.ClientFirst())
	if err != nil {
		return err
	}
	final, err := c.ServerFirst(first)
	if err != nil {
		return err
	}
	serverFinal, err := s.ClientFinal(final)
	if err != nil {
		return err
	}
	return c.ServerFinal(serverFinal)
}

func TestUserStatus(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	until := now.Add(time.Minute)
	for _, tc := range []struct {
		u    User
		want string
	}{
		{User{}, "active"},
		{User{Disabled: true}, "disabled"},
		{User{LockedUntil: now.Add(-time.Second)}, "active"},
		{User{Disabled: true, LockedUntil: until}, "disabled, locked out until 2026-03-02T09:01:00Z"},
	} {
		if got := tc.u.Status(now); got != tc.want {
			t.Errorf("Status(%+v) = %q, want %q", tc.u, got, tc.want)
		}
	}
}
