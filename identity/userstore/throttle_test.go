package userstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testThrottle = Throttle{
	MaxFailures:     3,
	AddrMaxFailures: 10,
	Window:          10 * time.Minute,
	Lockout:         5 * time.Minute,
	BaseDelay:       100 * time.Millisecond,
	MaxDelay:        400 * time.Millisecond,
}

// fail runs one failed attempt and returns its delay.
func fail(t *testing.T, s *Store, name, addr string) time.Duration {
	t.Helper()
	if err := s.Admit(name, addr); err != nil {
		t.Fatalf("Admit(%s, %s): %v", name, addr, err)
	}
	return s.Failed(name, addr)
}

// wantLocked fails the test unless Admit refuses name with a LockedError
// until the given time.
func wantLocked(t *testing.T, s *Store, name, addr string, until time.Time) *LockedError {
	t.Helper()
	err := s.Admit(name, addr)
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("Admit(%s, %s) = %v, want a lockout", name, addr, err)
	}
	if !le.Until.Equal(until) {
		t.Errorf("locked until %v, want %v", le.Until, until)
	}
	return le
}

func TestLockoutAfterFailures(t *testing.T) {
	clock := newClock()
	s := openStore(t, Options{Throttle: testThrottle, Now: clock.Now})
	if err := s.Add("alice", "r", "pw"); err != nil {
		t.Fatal(err)
	}
	var delays []time.Duration
	for range 3 {
		delays = append(delays, fail(t, s, "alice", "10.0.0.1"))
		clock.Advance(time.Second)
	}
	if want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}; !equalDurations(delays, want) {
		t.Errorf("delays %v, want %v", delays, want)
	}
	until := clock.Now().Add(-time.Second).Add(5 * time.Minute)
	le := wantLocked(t, s, "alice", "10.0.0.2", until)
	msg := le.Error()
	for _, want := range []string{`too many failed login attempts for user "alice"`, "locked out until", `pgwarden users unlock alice`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	// The lock is in the file, where other instances and the CLI see it.
	u, err := s.Get("alice")
	if err != nil || !u.LockedUntil.Equal(until) {
		t.Errorf("stored lock %v, want %v (%v)", u.LockedUntil, until, err)
	}
	other := openAt(t, s.Path(), Options{Throttle: testThrottle, Now: clock.Now})
	wantLocked(t, other, "alice", "10.0.0.3", until)

	// The lockout times out.
	clock.Advance(5 * time.Minute)
	if err := s.Admit("alice", "10.0.0.1"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	s.Succeeded("alice", "10.0.0.1")
}

func TestUnlockByAnotherProcess(t *testing.T) {
	clock := newClock()
	s := openStore(t, Options{Throttle: testThrottle, Now: clock.Now})
	if err := s.Add("alice", "r", "pw"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		fail(t, s, "alice", "10.0.0.1")
	}
	wantLocked(t, s, "alice", "10.0.0.1", clock.Now().Add(5*time.Minute))

	cli := openAt(t, s.Path(), Options{Now: clock.Now})
	was, err := cli.Unlock("alice")
	if err != nil || !was {
		t.Fatalf("Unlock = %v, %v", was, err)
	}
	if err := s.Admit("alice", "10.0.0.1"); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	// The failures before the unlock are forgotten: one more does not lock.
	s.Failed("alice", "10.0.0.1")
	if err := s.Admit("alice", "10.0.0.1"); err != nil {
		t.Fatalf("one failure after unlock locked: %v", err)
	}
	s.Abandoned("alice", "10.0.0.1")
	if was, _ := cli.Unlock("alice"); was {
		t.Error("Unlock of a login that is not locked reported it was")
	}
}

func TestFailuresOutsideWindow(t *testing.T) {
	clock := newClock()
	s := openStore(t, Options{Throttle: testThrottle, Now: clock.Now})
	for range 2 {
		fail(t, s, "alice", "10.0.0.1")
	}
	clock.Advance(11 * time.Minute)
	if d := fail(t, s, "alice", "10.0.0.1"); d != 100*time.Millisecond {
		t.Errorf("first failure in a new window delayed %v, want the base delay", d)
	}
	if err := s.Admit("alice", "10.0.0.1"); err != nil {
		t.Fatalf("failures outside the window locked: %v", err)
	}
	s.Abandoned("alice", "10.0.0.1")
}

func TestSuccessForgetsFailures(t *testing.T) {
	clock := newClock()
	s := openStore(t, Options{Throttle: testThrottle, Now: clock.Now})
	if err := s.Add("alice", "r", "pw"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		fail(t, s, "alice", "10.0.0.1")
	}
	if err := s.Admit("alice", "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	s.Succeeded("alice", "10.0.0.1")
	for range 2 {
		fail(t, s, "alice", "10.0.0.1")
	}
	if err := s.Admit("alice", "10.0.0.1"); err != nil {
		t.Fatalf("locked after a success in between: %v", err)
	}
	s.Abandoned("alice", "10.0.0.1")
}

// TestUnknownNamesLockToo: a name with no login is throttled like one with,
// so that a lockout tells nothing about which names exist.
func TestUnknownNamesLockToo(t *testing.T) {
	clock := newClock()
	s := openStore(t, Options{Throttle: testThrottle, Now: clock.Now})
	for range 3 {
		fail(t, s, "ghost", "10.0.0.1")
	}
	le := wantLocked(t, s, "ghost", "10.0.0.1", clock.Now().Add(5*time.Minute))
	if !strings.Contains(le.Error(), `for user "ghost"`) {
		t.Errorf("message %q", le)
	}
	if _, err := s.Get("ghost"); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown name was written to the file: %v", err)
	}
}

func TestAddressLockout(t *testing.T) {
	clock := newClock()
	th := testThrottle
	th.AddrMaxFailures = 4
	s := openStore(t, Options{Throttle: th, Now: clock.Now})
	var delays []time.Duration
	for _, name := range []string{"a", "b", "c", "d"} {
		delays = append(delays, fail(t, s, name, "10.0.0.9"))
	}
	// Each name failed once, but the address four times: its delay grows.
	if want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond}; !equalDurations(delays, want) {
		t.Errorf("delays %v, want %v", delays, want)
	}
	le := wantLocked(t, s, "e", "10.0.0.9", clock.Now().Add(5*time.Minute))
	if le.Name != "" || !strings.Contains(le.Error(), "from 10.0.0.9") {
		t.Errorf("address lockout: %+v: %v", le, le)
	}
	if err := s.Admit("e", "10.0.0.10"); err != nil {
		t.Errorf("another address refused: %v", err)
	}
	s.Abandoned("e", "10.0.0.10")
}

// TestAttemptsInProgressCount: parallel attempts cannot test more passwords
// than the lockout allows.
func TestAttemptsInProgressCount(t *testing.T) {
	clock := newClock()
	s := openStore(t, Options{Throttle: testThrottle, Now: clock.Now})
	for range 3 {
		if err := s.Admit("alice", "10.0.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Admit("alice", "10.0.0.2"); err == nil {
		t.Fatal("a fourth parallel attempt was admitted")
	}
	s.Abandoned("alice", "10.0.0.1")
	if err := s.Admit("alice", "10.0.0.2"); err != nil {
		t.Fatalf("after one attempt ended: %v", err)
	}
	for range 3 {
		s.Failed("alice", "10.0.0.1")
	}
	wantLocked(t, s, "alice", "10.0.0.1", clock.Now().Add(5*time.Minute))
}

func TestThrottleDefaults(t *testing.T) {
	s := openStore(t, Options{})
	th := s.opts.Throttle
	if th.MaxFailures != 5 || th.Window != 15*time.Minute || th.Lockout != 15*time.Minute || th.BaseDelay <= 0 || th.MaxDelay < th.BaseDelay {
		t.Errorf("defaults %+v", th)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "users.json"), Options{Throttle: Throttle{MaxFailures: -1}}); err == nil {
		t.Error("a negative MaxFailures was accepted")
	}
	none := Throttle{BaseDelay: -1}
	none.setDefaults()
	if d := none.delay(3); d != 0 {
		t.Errorf("negative BaseDelay: delay %v", d)
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestAbandonedCostsTheAddress: attempts a client leaves open and gives up
// do not lock the employee out, whoever makes them; they count against
// the address they come from.
func TestAbandonedCostsTheAddress(t *testing.T) {
	clock := newClock()
	th := testThrottle
	th.AddrMaxFailures = 5
	s := openStore(t, Options{Throttle: th, Now: clock.Now})
	if err := s.Add("alice", "r", "pw"); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := s.Admit("alice", "10.0.0.66"); err != nil {
			t.Fatal(err)
		}
		s.Abandoned("alice", "10.0.0.66")
	}
	// Four times MaxFailures' worth of abandoned attempts: alice is not
	// locked out, from another address.
	if err := s.Admit("alice", "10.0.0.1"); err != nil {
		t.Fatalf("alice after another address's abandoned attempts: %v", err)
	}
	s.Succeeded("alice", "10.0.0.1")
	// The fifth locks the address.
	if err := s.Admit("alice", "10.0.0.66"); err != nil {
		t.Fatal(err)
	}
	s.Abandoned("alice", "10.0.0.66")
	wantLocked(t, s, "bob", "10.0.0.66", clock.Now().Add(5*time.Minute))
}

// TestTallyKeys: a name of kilobytes is kept by its digest, and an IPv6
// client by its /64, which one client commonly holds whole.
func TestTallyKeys(t *testing.T) {
	long := strings.Repeat("x", 9000)
	if k := tallyKey(long); len(k) > maxTallyKey || k == tallyKey(long+"y") {
		t.Errorf("tallyKey of a long name: %d bytes, distinct %v", len(k), k != tallyKey(long+"y"))
	}
	if tallyKey("alice") != "alice" {
		t.Error("a short name is not kept as it is")
	}
	if a, b := addrKey("2001:db8::1"), addrKey("2001:db8::ffff:1"); a != b || a != "2001:db8::/64" {
		t.Errorf("one /64: %q %q", a, b)
	}
	if addrKey("2001:db8:0:1::1") == addrKey("2001:db8::1") {
		t.Error("two /64s share a key")
	}
	if addrKey("10.0.0.1") != "10.0.0.1" || addrKey("::ffff:10.0.0.1") != "::ffff:10.0.0.1" {
		t.Errorf("IPv4: %q %q", addrKey("10.0.0.1"), addrKey("::ffff:10.0.0.1"))
	}

	// Failures from addresses of one /64 lock it as one.
	clock := newClock()
	th := testThrottle
	th.AddrMaxFailures = 3
	s := openStore(t, Options{Throttle: th, Now: clock.Now})
	for i, addr := range []string{"2001:db8::1", "2001:db8::2", "2001:db8::3"} {
		fail(t, s, fmt.Sprintf("u%d", i), addr)
	}
	wantLocked(t, s, "v", "2001:db8::4", clock.Now().Add(5*time.Minute))
}
