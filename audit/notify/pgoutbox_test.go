package notify

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// pgOutboxTest starts from empty outbox tables on the shared cluster.
func pgOutboxTest(t *testing.T) *pgtest.Cluster {
	t.Helper()
	db := pgtest.Shared(t)
	db.Exec(t, "DROP TABLE IF EXISTS pgwarden_outbox, pgwarden_leases")
	return db
}

// newPool opens a pool, closed when the test ends (after the Notifiers using
// it stopped: cleanups run last in, first out).
func newPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// newPGNotifier returns a Notifier on a shared outbox with test timings and
// no dedupe or rate limit.
func newPGNotifier(t *testing.T, pool *pgxpool.Pool, instance string, cfg Config) *Notifier {
	t.Helper()
	cfg.Pool = pool
	cfg.Instance = instance
	if cfg.Lease == 0 {
		cfg.Lease = 2 * time.Second
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.DBTimeout == 0 {
		cfg.DBTimeout = time.Second
	}
	if cfg.DedupeWindow == 0 {
		cfg.DedupeWindow = -1
	}
	if cfg.RatePerEmployee == 0 {
		cfg.RatePerEmployee = -1
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 5 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 20 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// leaseHolder returns the instance holding sink's lease, or "".
func leaseHolder(t *testing.T, pool *pgxpool.Pool, sink string) string {
	t.Helper()
	var holder string
	err := pool.QueryRow(context.Background(),
		`SELECT coalesce(max(holder), '') FROM pgwarden_leases WHERE name = 'outbox:' || $1 AND until > clock_timestamp()`,
		sink).Scan(&holder)
	if err != nil {
		t.Fatal(err)
	}
	instance, _, _ := strings.Cut(holder, "/")
	return instance
}

// notifyAll notifies alerts id0, id1, ... through the Notifiers in turn and
// returns their IDs in the order Notify returned.
func notifyAll(t *testing.T, prefix string, count int, ns ...*Notifier) []string {
	t.Helper()
	var ids []string
	for i := range count {
		a := testAlert(fmt.Sprintf("%s%02d", prefix, i))
		a.Rule = fmt.Sprintf("rule%d", i)
		if err := ns[i%len(ns)].Notify(a); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	return ids
}

// withoutRepeats removes immediate repeats: an alert delivered again after an
// interrupted attempt.
func withoutRepeats(ids []string) []string {
	return slices.Compact(slices.Clone(ids))
}

func TestPGOutboxSharedDeliversOnceInOrder(t *testing.T) {
	db := pgOutboxTest(t)
	rcv := &receiver{t: t}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	a := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "a", Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	b := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "b", Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	run(t, a)
	run(t, b)

	want := notifyAll(t, "once", 40, a, b)
	flush(t, a, 10*time.Second)
	flush(t, b, 10*time.Second)

	if got := rcv.ackedIDs(); !slices.Equal(got, want) {
		t.Errorf("acknowledged %d alerts:\n%v\nwant each of %d once, in order:\n%v", len(got), got, len(want), want)
	}
	if got := rcv.alerts(); len(got) > 0 {
		first := testAlert("once00")
		first.Rule = "rule0"
		if !got[0].Time.Equal(first.Time) {
			t.Errorf("time = %v, want %v", got[0].Time, first.Time)
		}
		got[0].Time = first.Time
		if fmt.Sprint(got[0]) != fmt.Sprint(first) {
			t.Errorf("received %+v\nwant %+v", got[0], first)
		}
	}
	sa, sb := a.Stats(), b.Stats()
	if d := sa.Sinks["webhook"].Delivered + sb.Sinks["webhook"].Delivered; d != 40 {
		t.Errorf("delivered %d + %d, want 40 in all", sa.Sinks["webhook"].Delivered, sb.Sinks["webhook"].Delivered)
	}
	if sa.Accepted != 20 || sb.Accepted != 20 || sa.Sinks["webhook"].Pending != 0 || sb.Sinks["webhook"].Pending != 0 {
		t.Errorf("stats a %+v, b %+v", sa, sb)
	}
}

// slowSink records the alerts it acknowledged, after taking delay over each.
type slowSink struct {
	delay time.Duration

	mu  sync.Mutex
	got []string
}

func (s *slowSink) Name() string { return "slow" }
func (s *slowSink) Deliver(ctx context.Context, a Alert) error {
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, a.ID)
	return nil
}

func (s *slowSink) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func TestPGOutboxLeaseRenewedDuringSlowDelivery(t *testing.T) {
	db := pgOutboxTest(t)
	const lease = 300 * time.Millisecond
	sink := &slowSink{delay: 3 * lease} // one sink behind both instances, like one receiver
	a := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "a", Config{Sinks: []Sink{sink}, Lease: lease})
	b := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "b", Config{Sinks: []Sink{sink}, Lease: lease})
	run(t, a)
	run(t, b)
	want := notifyAll(t, "slow", 3, a, b)
	flush(t, a, 10*time.Second)
	if got := sink.ids(); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v once each: the holder must keep its lease while it delivers", got, want)
	}
}

func TestPGOutboxConcurrentNotify(t *testing.T) {
	db := pgOutboxTest(t)
	rcv := &receiver{t: t}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	a := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "a", Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	b := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "b", Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	run(t, a)
	run(t, b)

	// Four callers at once, two per instance; each caller's alerts must
	// arrive in the order its Notify calls returned.
	const callers, each = 4, 25
	var wg sync.WaitGroup
	for c := range callers {
		n := []*Notifier{a, b}[c%2]
		wg.Go(func() {
			for i := range each {
				al := testAlert(fmt.Sprintf("c%d-%02d", c, i))
				al.Rule = al.ID
				if err := n.Notify(al); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	flush(t, a, 10*time.Second)

	got := rcv.ackedIDs()
	if len(got) != callers*each {
		t.Errorf("acknowledged %d alerts, want %d", len(got), callers*each)
	}
	next := make(map[string]int) // caller -> index of its next alert
	seen := make(map[string]bool)
	for _, id := range got {
		if seen[id] {
			t.Errorf("%s delivered twice", id)
		}
		seen[id] = true
		caller, i, _ := strings.Cut(id, "-")
		if want := fmt.Sprintf("%02d", next[caller]); i != want {
			t.Errorf("%s delivered when %s-%s was next", id, caller, want)
		}
		next[caller]++
	}
}

func TestPGOutboxTakeoverWhenHolderStops(t *testing.T) {
	db := pgOutboxTest(t)
	rcv := &receiver{t: t, status: func(int) int {
		time.Sleep(5 * time.Millisecond) // pace the deliveries so that the holder stops mid-way
		return 200
	}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	check := newPool(t, db.DSN(pgtest.SuperUser))
	a := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "a", Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	b := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "b", Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	stopA := run(t, a)
	waitFor(t, "a to take the lease", func() bool { return leaseHolder(t, check, "webhook") == "a" })
	run(t, b)

	want := notifyAll(t, "stop", 30, a, b)
	waitFor(t, "a to deliver some", func() bool { return len(rcv.ackedIDs()) >= 10 })
	stopA()
	flush(t, b, 10*time.Second)

	got := rcv.ackedIDs()
	if !slices.Equal(withoutRepeats(got), want) || len(got) > len(want)+1 {
		t.Errorf("acknowledged %v\nwant each of %v in order, at most the one interrupted alert twice", got, want)
	}
	byA, byB := a.Stats().Sinks["webhook"].Delivered, b.Stats().Sinks["webhook"].Delivered
	if byA == 0 || byB == 0 || byA+byB != 30 {
		t.Errorf("a delivered %d, b %d; want a some and b the rest", byA, byB)
	}
	if h := leaseHolder(t, check, "webhook"); h != "b" {
		t.Errorf("lease holder %q, want b", h)
	}
}

func TestPGOutboxTakeoverAfterHolderDies(t *testing.T) {
	db := pgOutboxTest(t)
	rcv := &receiver{t: t}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	const lease = 600 * time.Millisecond
	check := newPool(t, db.DSN(pgtest.SuperUser))
	poolA := newPool(t, db.DSN(pgtest.SuperUser))
	a := newPGNotifier(t, poolA, "a", Config{Sinks: []Sink{newWebhook(t, srv.URL)}, Lease: lease})
	b := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "b", Config{Sinks: []Sink{newWebhook(t, srv.URL)}, Lease: lease})
	run(t, a)
	waitFor(t, "a to take the lease", func() bool { return leaseHolder(t, check, "webhook") == "a" })
	run(t, b)

	// a loses its database: it can neither renew nor release its lease.
	poolA.Close()
	died := time.Now()
	if err := a.Notify(testAlert("lost")); err == nil {
		t.Error("Notify on a closed pool: no error")
	}
	want := notifyAll(t, "dies", 5, b)
	flush(t, b, 10*time.Second)
	took := time.Since(died)

	if got := rcv.ackedIDs(); !slices.Equal(got, want) {
		t.Errorf("acknowledged %v, want %v", got, want)
	}
	if d := b.Stats().Sinks["webhook"].Delivered; d != 5 {
		t.Errorf("b delivered %d, want 5", d)
	}
	// b waited for a's lease to expire (a renewed it at most a poll interval
	// before it died).
	if took < lease/2 || took > 5*lease {
		t.Errorf("b took over after %v; the lease is %v", took, lease)
	}
	t.Logf("b took over %v after a died (lease %v)", took.Round(time.Millisecond), lease)
}

func TestPGOutboxReceiverDownThenUp(t *testing.T) {
	db := pgOutboxTest(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	check := newPool(t, db.DSN(pgtest.SuperUser))
	a := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "a", Config{Sinks: []Sink{newWebhook(t, "http://"+addr)}})
	b := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "b", Config{Sinks: []Sink{newWebhook(t, "http://"+addr)}})
	run(t, a)
	run(t, b)
	want := notifyAll(t, "down", 6, a, b)
	waitFor(t, "failed attempts", func() bool {
		return a.Stats().Sinks["webhook"].Failed+b.Stats().Sinks["webhook"].Failed >= 3
	})
	var attempts int
	if err := check.QueryRow(context.Background(), `SELECT max(attempts) FROM pgwarden_outbox`).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts == 0 {
		t.Error("no attempts recorded in the outbox")
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	rcv := &receiver{t: t}
	srv := httptest.NewUnstartedServer(rcv)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()

	flush(t, a, 10*time.Second)
	if got := rcv.ackedIDs(); !slices.Equal(got, want) {
		t.Errorf("acknowledged %v, want %v", got, want)
	}
}

func TestPGOutboxPendingIsShared(t *testing.T) {
	db := pgOutboxTest(t)
	rcv := &receiver{t: t}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	a := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "a", Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	want := notifyAll(t, "pend", 3, a)
	b := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "b", Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	if p := b.Stats().Sinks["webhook"].Pending; p != 3 {
		t.Errorf("b's pending after New = %d, want 3 (from the table)", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := b.Flush(ctx); err == nil {
		t.Error("Flush with nothing running: no error")
	}

	// Only a runs; b's Flush sees the shared queue empty.
	run(t, a)
	flush(t, b, 10*time.Second)
	if got := rcv.ackedIDs(); !slices.Equal(got, want) {
		t.Errorf("acknowledged %v, want %v", got, want)
	}
	if st := b.Stats().Sinks["webhook"]; st.Pending != 0 || st.Delivered != 0 {
		t.Errorf("b's stats %+v, want nothing pending and nothing delivered by b", st)
	}
}

func TestPGOutboxDatabaseUnreachable(t *testing.T) {
	db := pgOutboxTest(t)
	rcv := &receiver{t: t}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	proxy := newTCPProxy(t, db.Addr())
	u, err := url.Parse(db.DSN(pgtest.SuperUser, "connect_timeout=1"))
	if err != nil {
		t.Fatal(err)
	}
	u.Host = proxy.addr
	a := newPGNotifier(t, newPool(t, u.String()), "a", Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	b := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser)), "b", Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	run(t, a) // only a delivers
	want := notifyAll(t, "before", 1, a)
	waitFor(t, "delivery", func() bool { return a.Stats().Sinks["webhook"].Delivered == 1 })

	proxy.down()
	start := time.Now()
	if err := a.Notify(testAlert("while-down")); err == nil {
		t.Error("Notify while the database is unreachable: no error")
	}
	t.Logf("Notify failed after %v", time.Since(start).Round(time.Millisecond))
	if st := a.Stats(); st.Accepted != 1 {
		t.Errorf("accepted %d, want 1", st.Accepted)
	}
	want = append(want, notifyAll(t, "other", 3, b)...) // b reaches the database
	time.Sleep(100 * time.Millisecond)                  // a's worker fails and backs off
	if got := len(rcv.ackedIDs()); got != 1 {
		t.Errorf("%d alerts delivered while a was cut off, want 1", got)
	}

	proxy.up()
	want = append(want, notifyAll(t, "after", 2, a)...)
	flush(t, a, 10*time.Second)
	if got := rcv.ackedIDs(); !slices.Equal(got, want) {
		t.Errorf("acknowledged %v, want %v", got, want)
	}
}

func TestPGOutboxConnectionsTerminated(t *testing.T) {
	db := pgOutboxTest(t)
	rcv := &receiver{t: t}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	check := newPool(t, db.DSN(pgtest.SuperUser))
	a := newPGNotifier(t, newPool(t, db.DSN(pgtest.SuperUser, "application_name=notify_restart")), "a",
		Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	run(t, a)
	want := notifyAll(t, "pre", 2, a)
	flush(t, a, 10*time.Second)

	// What a restarting server does to its clients: every connection ends.
	if _, err := check.Exec(context.Background(),
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'notify_restart'`); err != nil {
		t.Fatal(err)
	}
	failures := 0
	for i := range 3 {
		al := testAlert(fmt.Sprintf("post%d", i))
		al.Rule = al.ID
		for {
			err := a.Notify(al)
			if err == nil {
				break
			}
			if failures++; failures > 10 {
				t.Fatalf("Notify keeps failing: %v", err)
			}
		}
		want = append(want, al.ID)
	}
	flush(t, a, 10*time.Second)
	if got := rcv.ackedIDs(); !slices.Equal(got, want) {
		t.Errorf("acknowledged %v, want %v", got, want)
	}
	t.Logf("%d Notify calls failed after the connections ended", failures)
}

func TestPGOutboxNewValidates(t *testing.T) {
	db := pgOutboxTest(t)
	pool := newPool(t, db.DSN(pgtest.SuperUser))
	bolt := openDB(t, t.TempDir()+"/n.db")
	defer bolt.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"both DB and Pool", Config{DB: bolt, Pool: pool, Instance: "a"}},
		{"Pool without Instance", Config{Pool: pool}},
	} {
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	down := newPool(t, "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if _, err := New(Config{Pool: down, Instance: "a", DBTimeout: time.Second}); err == nil {
		t.Error("unreachable database: no error")
	}
}

// tcpProxy forwards connections to target until down, which also cuts the
// connections it carries; up listens on the same address again.
type tcpProxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	p := &tcpProxy{t: t, target: target, addr: "127.0.0.1:0", conns: make(map[net.Conn]bool)}
	p.up()
	p.addr = p.ln.Addr().String()
	t.Cleanup(func() {
		p.down()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) up() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, s) {
				return
			}
			for _, dir := range [][2]net.Conn{{c, s}, {s, c}} {
				p.wg.Go(func() {
					_, _ = io.Copy(dir[1], dir[0])
					dir[0].Close()
					dir[1].Close()
				})
			}
		}
	})
}

// track records the pair unless the proxy went down meanwhile.
func (p *tcpProxy) track(c, s net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		c.Close()
		s.Close()
		return false
	}
	p.conns[c], p.conns[s] = true, true
	return true
}

func (p *tcpProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// BenchmarkPGOutboxNotify measures Notify on a shared outbox with two sinks:
// one round trip that locks and inserts a row per sink.
func BenchmarkPGOutboxNotify(b *testing.B) {
	db := pgtest.Shared(b)
	db.Exec(b, "DROP TABLE IF EXISTS pgwarden_outbox, pgwarden_leases")
	pool, err := pgxpool.New(context.Background(), db.DSN(pgtest.SuperUser))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	n, err := New(Config{Pool: pool, Instance: "bench", Sinks: []Sink{&slowSink{}, &blockingSink{name: "other"}},
		DedupeWindow: -1, RatePerEmployee: -1, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	a := testAlert("")
	for b.Loop() {
		a.ID = ""
		if err := n.Notify(a); err != nil {
			b.Fatal(err)
		}
	}
}
