package userstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Throttle limits guessing. The zero value of every field has a default.
type Throttle struct {
	// MaxFailures failed attempts for one login name within Window lock
	// it out (default 5).
	MaxFailures int
	// AddrMaxFailures failed attempts from one client address within
	// Window, whatever the names, refuse the address (default 50).
	AddrMaxFailures int
	// Window is how long a failure counts (default 15 minutes).
	Window time.Duration
	// Lockout is how long a lockout lasts (default 15 minutes).
	Lockout time.Duration
	// BaseDelay delays the answer to the first failure in the window;
	// each further failure of the name or address doubles it, up to
	// MaxDelay (defaults 250ms and 5s; negative: no delay).
	BaseDelay, MaxDelay time.Duration
}

func (t *Throttle) setDefaults() {
	if t.MaxFailures == 0 {
		t.MaxFailures = 5
	}
	if t.AddrMaxFailures == 0 {
		t.AddrMaxFailures = 50
	}
	if t.Window == 0 {
		t.Window = 15 * time.Minute
	}
	if t.Lockout == 0 {
		t.Lockout = 15 * time.Minute
	}
	if t.BaseDelay == 0 {
		t.BaseDelay = 250 * time.Millisecond
	}
	if t.MaxDelay == 0 {
		t.MaxDelay = 5 * time.Second
	}
}

func (t *Throttle) check() error {
	if t.MaxFailures < 1 || t.AddrMaxFailures < 1 || t.Window < 0 || t.Lockout < 0 {
		return errors.New("userstore: throttle limits must be positive")
	}
	return nil
}

// maxTallies bounds the names and the addresses a Store counts failures
// of. Past it, entries with nothing to remember are dropped; if that is
// not enough, new names go uncounted (the address is still counted).
const maxTallies = 100_000

// LockedError refuses an attempt for a locked-out login name or client
// address. Its text is meant for the client.
type LockedError struct {
	Name  string // the login name, or empty for an address
	Addr  string // the client address, for an address lockout
	Until time.Time
}

func (e *LockedError) Error() string {
	until := e.Until.UTC().Format("2006-01-02 15:04:05 MST")
	if e.Name == "" {
		return fmt.Sprintf("too many failed login attempts from %s: refused until %s", e.Addr, until)
	}
	return fmt.Sprintf("too many failed login attempts for user %q: locked out until %s, or until an administrator runs \"pgwarden users unlock %s\"",
		e.Name, until, e.Name)
}

// errBusy refuses an attempt while as many are in progress as may still fail.
var errBusy = errors.New("too many login attempts in progress for this user or address; try again shortly")

// tally is the failures of one login name or client address.
type tally struct {
	failures    []time.Time // within the window, oldest first
	inflight    int         // admitted attempts not yet ended
	lockedUntil time.Time
	unlocks     uint64 // the login's Unlocks when failures were counted
}

func (t *tally) prune(now time.Time, window time.Duration) {
	i := 0
	for i < len(t.failures) && !t.failures[i].After(now.Add(-window)) {
		i++
	}
	t.failures = t.failures[i:]
}

func (t *tally) idle(now time.Time, window time.Duration) bool {
	t.prune(now, window)
	return t.inflight == 0 && len(t.failures) == 0 && !t.lockedUntil.After(now)
}

// tallyFor returns the tally of key in m, creating it; s.mu held. A nil
// result means the map is full.
func (s *Store) tallyFor(m map[string]*tally, key string, now time.Time) *tally {
	if t, ok := m[key]; ok {
		return t
	}
	if len(m) >= maxTallies {
		for k, t := range m {
			if t.idle(now, s.opts.Throttle.Window) {
				delete(m, k)
			}
		}
		if len(m) >= maxTallies {
			return nil
		}
	}
	t := &tally{}
	m[key] = t
	return t
}

// tallyKey bounds what a tally is kept under: a startup message may carry
// a user name of kilobytes, and a name that long is no login anyway.
func tallyKey(name string) string {
	if len(name) <= maxTallyKey {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// maxTallyKey is the longest name kept as it is.
const maxTallyKey = 128

// addrKey is what failures of a client address count under: an IPv6
// address by its /64, which one client commonly holds whole.
func addrKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil || !ip.Is6() || ip.Is4In6() {
		return tallyKey(addr)
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return tallyKey(addr)
	}
	return p.String()
}

// nameTally is tallyFor for a login name, forgetting what was counted
// before an unlock by an administrator; s.mu held.
func (s *Store) nameTally(name string, now time.Time) *tally {
	t := s.tallyFor(s.names, tallyKey(name), now)
	if t == nil {
		return &tally{} // uncounted
	}
	if e, ok := s.users[name]; ok && e.Unlocks != t.unlocks {
		t.failures, t.lockedUntil, t.unlocks = nil, time.Time{}, e.Unlocks
	}
	return t
}

func (s *Store) addrTally(addr string, now time.Time) *tally {
	if t := s.tallyFor(s.addrs, addrKey(addr), now); t != nil {
		return t
	}
	return &tally{}
}

// Admit is asked before an attempt to log in as name from the client
// address addr (an IP address, without port). A *LockedError refuses a
// locked-out name or address; its text is for the client. After a nil
// error the caller ends the attempt with exactly one of Failed, Succeeded
// or Abandoned.
func (s *Store) Admit(name, addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	now := s.opts.Now()
	th := &s.opts.Throttle
	a := s.addrTally(addr, now)
	if a.lockedUntil.After(now) {
		return &LockedError{Addr: addr, Until: a.lockedUntil}
	}
	t := s.nameTally(name, now)
	if e, ok := s.users[name]; ok && e.Locked(now) {
		return &LockedError{Name: name, Until: e.LockedUntil}
	}
	if t.lockedUntil.After(now) {
		return &LockedError{Name: name, Until: t.lockedUntil}
	}
	t.prune(now, th.Window)
	a.prune(now, th.Window)
	if len(t.failures)+t.inflight >= th.MaxFailures || len(a.failures)+a.inflight >= th.AddrMaxFailures {
		return errBusy
	}
	t.inflight++
	a.inflight++
	return nil
}

// Failed ends an admitted attempt whose password was wrong (or whose
// login is unknown or disabled) and returns how long to wait before
// telling the client. The failure that reaches MaxFailures locks the name
// out, in the file too when the login exists.
func (s *Store) Failed(name, addr string) time.Duration {
	s.mu.Lock()
	now := s.opts.Now()
	th := &s.opts.Throttle
	t, a := s.end(name, addr, now)
	t.prune(now, th.Window)
	t.failures = append(t.failures, now)
	n := max(len(t.failures), s.addrFailed(a, addr, now))
	var lockUntil time.Time
	unlocks := t.unlocks
	if len(t.failures) >= th.MaxFailures {
		t.lockedUntil, t.failures = now.Add(th.Lockout), nil
		if _, ok := s.users[name]; ok {
			lockUntil = t.lockedUntil
		}
	}
	s.mu.Unlock()

	if !lockUntil.IsZero() {
		s.log.Warn("login_locked", "login", name, "until", lockUntil)
		err := s.change(name, func(u *User) {
			if u.Unlocks == unlocks {
				u.LockedUntil = lockUntil.UTC()
			}
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			// The lock holds in this process all the same.
			s.log.Error("login_lock_not_saved", "login", name, "error", err)
		}
	}
	return th.delay(n)
}

// delay is the wait after the n-th failure in the window.
func (th *Throttle) delay(n int) time.Duration {
	if th.BaseDelay <= 0 || n < 1 {
		return 0
	}
	d := th.BaseDelay
	for i := 1; i < n && d < th.MaxDelay; i++ {
		d *= 2
	}
	return min(d, max(th.MaxDelay, th.BaseDelay))
}

// Succeeded ends an admitted attempt with the right password: the name's
// failures are forgotten.
func (s *Store) Succeeded(name, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, _ := s.end(name, addr, s.opts.Now())
	t.failures = nil
}

// Abandoned ends an admitted attempt in which no password was checked:
// the client left, or broke the protocol, before proving anything. It
// counts as a failure of the address, not of the name: connections that
// hold an employee's attempts open and give up would otherwise lock them
// out at no cost (psql, which connects once to learn that a password is
// needed, costs one).
func (s *Store) Abandoned(name, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	_, a := s.end(name, addr, now)
	s.addrFailed(a, addr, now)
}

// end ends an admitted attempt of name from addr: it no longer holds a
// slot of either. s.mu held.
func (s *Store) end(name, addr string, now time.Time) (t, a *tally) {
	t, a = s.nameTally(name, now), s.addrTally(addr, now)
	t.inflight = max(t.inflight-1, 0)
	a.inflight = max(a.inflight-1, 0)
	return t, a
}

// addrFailed counts a failure of the address, whose tally is a, and locks
// it out at AddrMaxFailures in the window; it returns the failures in the
// window, this one included. s.mu held.
func (s *Store) addrFailed(a *tally, addr string, now time.Time) int {
	th := &s.opts.Throttle
	a.prune(now, th.Window)
	a.failures = append(a.failures, now)
	n := len(a.failures)
	if n >= th.AddrMaxFailures {
		a.lockedUntil, a.failures = now.Add(th.Lockout), nil
		s.log.Warn("login_address_locked", "client_addr", addr, "until", a.lockedUntil)
	}
	return n
}
