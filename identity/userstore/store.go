package userstore

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pgwarden/pgwarden/internal/atomicfile"
	"github.com/pgwarden/pgwarden/internal/scram"
)

// Errors of the Store's changes.
var (
	ErrNotFound = errors.New("no such login")
	ErrExists   = errors.New("login already exists")
)

// User is one login as stored.
type User struct {
	Name string `json:"name"`
	// Role is the database role pgwarden connects upstream as.
	Role string `json:"role"`
	// Verifier is SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>,
	// as PostgreSQL stores it in pg_authid.rolpassword.
	Verifier string `json:"verifier"`
	// Disabled refuses every login until enabled again.
	Disabled bool `json:"disabled,omitempty"`
	// LockedUntil is set when failed attempts lock the login out.
	LockedUntil time.Time `json:"locked_until,omitzero"`
	// Unlocks counts the unlocks by an administrator: a serving Store
	// forgets the failures it counted before the latest one.
	Unlocks uint64 `json:"unlocks,omitempty"`
	// Created and PasswordChanged are when the login was added and its
	// password last set.
	Created         time.Time `json:"created"`
	PasswordChanged time.Time `json:"password_changed"`
}

// Locked reports whether u is locked out at now.
func (u *User) Locked(now time.Time) bool { return u.LockedUntil.After(now) }

// Status says whether u may sign in at now: "active", or why not
// ("disabled", "locked out until ...", or both).
func (u *User) Status(now time.Time) string {
	var status []string
	if u.Disabled {
		status = append(status, "disabled")
	}
	if u.Locked(now) {
		status = append(status, "locked out until "+u.LockedUntil.UTC().Format(time.RFC3339))
	}
	if len(status) == 0 {
		return "active"
	}
	return strings.Join(status, ", ")
}

// file is the JSON document.
type file struct {
	Version int `json:"version"`
	// MockKey (base64) seeds the stand-in verifiers of unknown names.
	MockKey string `json:"mock_key,omitempty"`
	Users   []User `json:"users"`
}

const fileVersion = 1

// Options tune a Store. The zero value of every field has a default.
type Options struct {
	Throttle Throttle
	// Iterations is the PBKDF2 iteration count of new verifiers (default
	// scram.DefaultIterations, 4096, as PostgreSQL).
	Iterations int
	// Recheck is how often a serving Store looks whether the file changed
	// (default 1s; negative: on every lookup).
	Recheck time.Duration
	// Now is the clock of throttling and lockouts (default time.Now).
	Now func() time.Time
	// Logger receives the store's own problems (default slog.Default()).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	o.Throttle.setDefaults()
	if o.Iterations == 0 {
		o.Iterations = scram.DefaultIterations
	}
	if o.Recheck == 0 {
		o.Recheck = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// entry is a loaded user with its parsed verifier.
type entry struct {
	User
	v      *scram.Verifier
	badVer error // why Verifier did not parse
}

// Store is the login store at one path. Safe for concurrent use, and by
// several processes (see the package documentation).
type Store struct {
	path string
	opts Options
	log  *slog.Logger

	writeMu sync.Mutex // serializes this process's changes

	mu      sync.Mutex // guards the fields below
	users   map[string]*entry
	mockKey []byte
	stamp   fileStamp
	checked time.Time // when the file was last looked at (wall clock)
	names   map[string]*tally
	addrs   map[string]*tally
}

type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(fi os.FileInfo) fileStamp {
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st
}

// Open reads the store at path; a missing file is an empty store, created
// by the first change.
func Open(path string, opts Options) (*Store, error) {
	opts.setDefaults()
	if err := opts.Throttle.check(); err != nil {
		return nil, err
	}
	s := &Store{
		path:  path,
		opts:  opts,
		log:   opts.Logger.With("users_file", path),
		names: make(map[string]*tally),
		addrs: make(map[string]*tally),
	}
	s.mockKey = make([]byte, 32)
	if _, err := rand.Read(s.mockKey); err != nil {
		return nil, err
	}
	f, stamp, err := read(path)
	if err != nil {
		return nil, err
	}
	s.install(f, stamp)
	s.checked = time.Now()
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		s.log.Warn("users_file_permissions", "mode", fi.Mode().Perm().String(),
			"hint", "the file holds password verifiers: chmod 600 it")
	}
	return s, nil
}

// Path is where the store is kept.
func (s *Store) Path() string { return s.path }

// read parses the file at path; a missing file is an empty one.
func read(path string) (*file, fileStamp, error) {
	// One handle for the content and its stamp: a rename in between
	// would pair old content with the new file's stamp, and the change
	// would never be read.
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &file{Version: fileVersion}, fileStamp{}, nil
	}
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("users file: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("users file: %w", err)
	}
	data, err := io.ReadAll(fh)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("users file: %w", err)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fileStamp{}, fmt.Errorf("users file %s: %w", path, err)
	}
	if f.Version != fileVersion {
		return nil, fileStamp{}, fmt.Errorf("users file %s: version %d, want %d", path, f.Version, fileVersion)
	}
	seen := make(map[string]bool, len(f.Users))
	for _, u := range f.Users {
		if seen[u.Name] {
			return nil, fileStamp{}, fmt.Errorf("users file %s: login %q appears twice", path, u.Name)
		}
		seen[u.Name] = true
	}
	return &f, stampOf(fi), nil
}

// install makes f the store's view; s.mu held or s not shared yet.
func (s *Store) install(f *file, stamp fileStamp) {
	users := make(map[string]*entry, len(f.Users))
	for _, u := range f.Users {
		e := &entry{User: u}
		e.v, e.badVer = scram.ParseVerifier(u.Verifier)
		if e.badVer != nil {
			s.log.Error("users_file_bad_verifier", "login", u.Name, "error", e.badVer)
		}
		users[u.Name] = e
	}
	if key, err := base64.StdEncoding.DecodeString(f.MockKey); err == nil && len(key) >= 16 {
		s.mockKey = key
	}
	s.users, s.stamp = users, stamp
}

// refresh rereads the file if it may have changed; s.mu held.
func (s *Store) refresh() {
	if s.opts.Recheck > 0 && time.Since(s.checked) < s.opts.Recheck {
		return
	}
	s.checked = time.Now()
	fi, err := os.Stat(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if s.stamp == (fileStamp{}) {
			return
		}
	case err != nil:
		s.log.Error("users_file_unreadable", "error", err)
		return
	case stampOf(fi) == s.stamp:
		return
	}
	f, stamp, err := read(s.path)
	if err != nil {
		// The last good view stands.
		s.log.Error("users_file_unreadable", "error", err)
		return
	}
	s.install(f, stamp)
}

// Users returns every login as stored now, by name.
func (s *Store) Users() ([]User, error) {
	f, _, err := read(s.path)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(f.Users)
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Get returns the login name as stored now.
func (s *Store) Get(name string) (User, error) {
	f, _, err := read(s.path)
	if err != nil {
		return User{}, err
	}
	for _, u := range f.Users {
		if u.Name == name {
			return u, nil
		}
	}
	return User{}, fmt.Errorf("%w: %q", ErrNotFound, name)
}

// Add creates the login name, mapped to role, with a verifier of password.
func (s *Store) Add(name, role, password string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := checkRole(role); err != nil {
		return err
	}
	ver, err := s.verifier(password)
	if err != nil {
		return err
	}
	now := s.opts.Now().UTC()
	return s.update(func(f *file) error {
		if i := find(f, name); i >= 0 {
			return fmt.Errorf("%w: %q", ErrExists, name)
		}
		f.Users = append(f.Users, User{Name: name, Role: role, Verifier: ver, Created: now, PasswordChanged: now})
		return nil
	})
}

// SetPassword replaces name's verifier with one of password.
func (s *Store) SetPassword(name, password string) error {
	ver, err := s.verifier(password)
	if err != nil {
		return err
	}
	now := s.opts.Now().UTC()
	return s.change(name, func(u *User) {
		u.Verifier, u.PasswordChanged = ver, now
	})
}

// SetRole maps name to another database role.
func (s *Store) SetRole(name, role string) error {
	if err := checkRole(role); err != nil {
		return err
	}
	return s.change(name, func(u *User) { u.Role = role })
}

// SetDisabled disables or enables name.
func (s *Store) SetDisabled(name string, disabled bool) error {
	return s.change(name, func(u *User) { u.Disabled = disabled })
}

// Unlock lifts name's lockout and makes serving Stores forget its failed
// attempts; it reports whether the login was locked out.
func (s *Store) Unlock(name string) (bool, error) {
	var was bool
	now := s.opts.Now()
	err := s.change(name, func(u *User) {
		was = u.Locked(now)
		u.LockedUntil = time.Time{}
		u.Unlocks++
	})
	return was, err
}

// Remove deletes the login name.
func (s *Store) Remove(name string) error {
	return s.update(func(f *file) error {
		i := find(f, name)
		if i < 0 {
			return fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		f.Users = slices.Delete(f.Users, i, i+1)
		return nil
	})
}

func (s *Store) change(name string, f func(*User)) error {
	return s.update(func(file *file) error {
		i := find(file, name)
		if i < 0 {
			return fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		f(&file.Users[i])
		return nil
	})
}

func find(f *file, name string) int {
	return slices.IndexFunc(f.Users, func(u User) bool { return u.Name == name })
}

func (s *Store) verifier(password string) (string, error) {
	if password == "" {
		return "", errors.New("empty password")
	}
	v, err := scram.NewVerifier(password, s.opts.Iterations)
	if err != nil {
		return "", err
	}
	return v.String(), nil
}

// checkName accepts what a startup message can carry as a user name.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty login name")
	case len(name) > 256:
		return errors.New("login name longer than 256 bytes")
	case !utf8.ValidString(name):
		return errors.New("login name is not valid UTF-8")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return errors.New("login name has a control character")
	}
	return nil
}

// checkRole accepts a PostgreSQL role name (at most NAMEDATALEN-1 bytes).
func checkRole(role string) error {
	switch {
	case role == "":
		return errors.New("empty role name")
	case len(role) > 63:
		return errors.New("role name longer than 63 bytes")
	case strings.IndexFunc(role, unicode.IsControl) >= 0:
		return errors.New("role name has a control character")
	}
	return nil
}

// update applies f to the stored file under the lock file and writes it
// back durably, then installs it.
func (s *Store) update(f func(*file) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	// Errors of the lock itself name the lock file.
	return atomicfile.Locked(s.path, func() error { return s.updateLocked(f) })
}

// updateLocked is update under the lock file.
func (s *Store) updateLocked(f func(*file) error) error {

	cur, _, err := read(s.path)
	if err != nil {
		return err
	}
	if err := f(cur); err != nil {
		return err
	}
	if cur.MockKey == "" {
		s.mu.Lock()
		cur.MockKey = base64.StdEncoding.EncodeToString(s.mockKey)
		s.mu.Unlock()
	}
	cur.Version = fileVersion
	slices.SortFunc(cur.Users, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	if err := write(s.path, cur); err != nil {
		return err
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	s.mu.Lock()
	s.install(cur, stampOf(fi))
	s.checked = time.Now()
	s.mu.Unlock()
	return nil
}

// write replaces the file at path with f: a temporary file in the same
// directory, fsynced, renamed over it, and the directory fsynced.
func write(path string, f *file) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n')); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	return nil
}

// Lookup returns the verifier of the login name and the role it maps to.
// When there is no usable login (no such name, disabled, a verifier that
// does not parse), err says why, for the log, and the verifier is a
// stand-in that is the same for the name every time and no password
// matches; the caller runs the exchange with it all the same, so that a
// client cannot tell an unknown name from a wrong password.
func (s *Store) Lookup(name string) (*scram.Verifier, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	e, ok := s.users[name]
	switch {
	case !ok:
		return s.mock(name), "", ErrNotFound
	case e.badVer != nil:
		return s.mock(name), "", fmt.Errorf("the stored verifier is invalid: %w", e.badVer)
	case e.Disabled:
		return e.v, "", errors.New("the login is disabled")
	}
	return e.v, e.Role, nil
}

func (s *Store) mock(name string) *scram.Verifier {
	return scram.MockVerifier(s.mockKey, name, s.opts.Iterations)
}
