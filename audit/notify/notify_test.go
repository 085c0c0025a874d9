package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

var testSecret = []byte("s3cret")

func openDB(t *testing.T, path string) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestNotifier(t *testing.T, db *bbolt.DB, cfg Config) *Notifier {
	t.Helper()
	cfg.DB = db
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

// run starts n.Run and returns a function that stops it and waits.
func run(t *testing.T, n *Notifier) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func flush(t *testing.T, n *Notifier, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := n.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v (stats %+v)", err, n.Stats())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func testAlert(id string) Alert {
	return Alert{
		ID:          id,
		Time:        time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC),
		Action:      "block",
		Employee:    "alice",
		Role:        "app_ro",
		Rule:        "email-bulk",
		Reason:      "alice received 1,200 emails in one statement; the limit is 1,000",
		Observed:    1200,
		Limit:       1000,
		Measure:     "pii_values.email",
		Scope:       "statement",
		SessionID:   "s-42",
		ClientAddr:  "10.1.2.3:51234",
		Application: "psql",
		Database:    "crm",
		Statement:   "SELECT email FROM customers WHERE id > $1",
		AuditSeqs:   []uint64{17, 18},
		Severity:    "high",
	}
}

// receiver is a webhook receiver that verifies signatures and records the
// alerts it acknowledged.
type receiver struct {
	t      *testing.T
	status func(n int) int // status for the n-th request (1-based)

	mu       sync.Mutex
	requests int
	acked    []Alert
	badSig   int
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if err := VerifySignature(testSecret, []byte(req.Header.Get(HeaderTimestamp)), body,
		req.Header.Get(HeaderSignature), time.Now(), time.Minute); err != nil {
		r.badSig++
		r.t.Errorf("receiver: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	status := http.StatusOK
	if r.status != nil {
		status = r.status(r.requests)
	}
	if status/100 == 2 {
		var p struct {
			Version int `json:"version"`
			Alert
		}
		if err := json.Unmarshal(body, &p); err != nil {
			r.t.Errorf("receiver: decoding body: %v", err)
		}
		if p.Version != 1 {
			r.t.Errorf("receiver: version = %d, want 1", p.Version)
		}
		if got := req.Header.Get(HeaderAlertID); got != p.ID {
			r.t.Errorf("receiver: %s = %q, body id %q", HeaderAlertID, got, p.ID)
		}
		r.acked = append(r.acked, p.Alert)
	}
	w.WriteHeader(status)
}

func (r *receiver) ackedIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, a := range r.acked {
		ids = append(ids, a.ID)
	}
	return ids
}

func (r *receiver) alerts() []Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Alert(nil), r.acked...)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

func newWebhook(t *testing.T, url string) *Webhook {
	t.Helper()
	w, err := NewWebhook(WebhookConfig{URL: url, Secret: testSecret, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWebhookRetriesUntilDelivered(t *testing.T) {
	rcv := &receiver{t: t, status: func(n int) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()

	db := openDB(t, filepath.Join(t.TempDir(), "n.db"))
	defer db.Close()
	n := newTestNotifier(t, db, Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	for i := range 3 {
		a := testAlert(fmt.Sprintf("a%d", i))
		a.Rule = fmt.Sprintf("rule%d", i) // distinct, so not deduplicated
		if err := n.Notify(a); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.Stats().Sinks["webhook"].Pending; got != 3 {
		t.Fatalf("pending = %d, want 3", got)
	}
	run(t, n)
	flush(t, n, 5*time.Second)

	if got, want := strings.Join(rcv.ackedIDs(), ","), "a0,a1,a2"; got != want {
		t.Errorf("acknowledged %s, want %s (once each, in order)", got, want)
	}
	got := rcv.alerts()[0]
	want := testAlert("a0")
	want.Rule = "rule0"
	if !got.Time.Equal(want.Time) {
		t.Errorf("time = %v, want %v", got.Time, want.Time)
	}
	got.Time = want.Time
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("received %+v\nwant %+v", got, want)
	}
	st := n.Stats().Sinks["webhook"]
	if st.Delivered != 3 || st.Failed != 3 || st.Pending != 0 || st.Dropped != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestWebhookReceiverDownThenUp(t *testing.T) {
	// Reserve a port, then close it: the receiver is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	db := openDB(t, filepath.Join(t.TempDir(), "n.db"))
	defer db.Close()
	n := newTestNotifier(t, db, Config{Sinks: []Sink{newWebhook(t, "http://"+addr+"/hook")}})
	if err := n.Notify(testAlert("down-1")); err != nil {
		t.Fatal(err)
	}
	run(t, n)
	waitFor(t, "failed attempts", func() bool { return n.Stats().Sinks["webhook"].Failed >= 3 })

	// The receiver comes back on the same address.
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

	flush(t, n, 5*time.Second)
	if got := strings.Join(rcv.ackedIDs(), ","); got != "down-1" {
		t.Errorf("acknowledged %q, want down-1", got)
	}
}

func TestRestartDeliversOutbox(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n.db")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + ln.Addr().String()
	ln.Close()

	// First process: the receiver is down.
	db := openDB(t, path)
	n := newTestNotifier(t, db, Config{Sinks: []Sink{newWebhook(t, downURL)}})
	var ids []string
	for i := range 3 {
		a := testAlert("")
		a.Rule = fmt.Sprintf("r%d", i)
		a.ID = fmt.Sprintf("restart-%d", i)
		ids = append(ids, a.ID)
		if err := n.Notify(a); err != nil {
			t.Fatal(err)
		}
	}
	stop := run(t, n)
	waitFor(t, "failed attempts", func() bool { return n.Stats().Sinks["webhook"].Failed >= 2 })
	stop()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Second process, same file, receiver up (the sink keeps its name).
	rcv := &receiver{t: t}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	db = openDB(t, path)
	defer db.Close()
	n = newTestNotifier(t, db, Config{Sinks: []Sink{newWebhook(t, srv.URL)}})
	if got := n.Stats().Sinks["webhook"].Pending; got != 3 {
		t.Fatalf("pending after restart = %d, want 3", got)
	}
	run(t, n)
	flush(t, n, 5*time.Second)
	if got, want := strings.Join(rcv.ackedIDs(), ","), strings.Join(ids, ","); got != want {
		t.Errorf("acknowledged %s, want %s", got, want)
	}
}

func TestPermanentFailureIsNotRetried(t *testing.T) {
	rcv := &receiver{t: t, status: func(int) int { return http.StatusBadRequest }}
	srv := httptest.NewServer(rcv)
	defer srv.Close()

	db := openDB(t, filepath.Join(t.TempDir(), "n.db"))
	defer db.Close()
	n := newTestNotifier(t, db, Config{Sinks: []Sink{newWebhook(t, srv.URL)}}) // MaxAttempts 0: retry forever
	if err := n.Notify(testAlert("bad")); err != nil {
		t.Fatal(err)
	}
	run(t, n)
	flush(t, n, 5*time.Second)
	time.Sleep(50 * time.Millisecond) // would be several retries
	if got := rcv.count(); got != 1 {
		t.Errorf("requests = %d, want 1", got)
	}
	st := n.Stats().Sinks["webhook"]
	if st.Dropped != 1 || st.Failed != 1 || st.Delivered != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRetryableStatusesAndMaxAttempts(t *testing.T) {
	for _, status := range []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusBadGateway} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			rcv := &receiver{t: t, status: func(int) int { return status }}
			srv := httptest.NewServer(rcv)
			defer srv.Close()
			db := openDB(t, filepath.Join(t.TempDir(), "n.db"))
			defer db.Close()
			n := newTestNotifier(t, db, Config{Sinks: []Sink{newWebhook(t, srv.URL)}, MaxAttempts: 3})
			if err := n.Notify(testAlert("x")); err != nil {
				t.Fatal(err)
			}
			run(t, n)
			flush(t, n, 5*time.Second)
			if got := rcv.count(); got != 3 {
				t.Errorf("requests = %d, want 3", got)
			}
			if st := n.Stats().Sinks["webhook"]; st.Dropped != 1 || st.Failed != 3 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

// blockingSink fails until released.
type blockingSink struct {
	name string
	ok   atomic.Bool
	got  chan Alert
}

func (s *blockingSink) Name() string { return s.name }
func (s *blockingSink) Deliver(ctx context.Context, a Alert) error {
	if !s.ok.Load() {
		return errors.New("down")
	}
	s.got <- a
	return nil
}

func TestSinksAreIndependent(t *testing.T) {
	rcv := &receiver{t: t}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	down := &blockingSink{name: "down", got: make(chan Alert, 10)}

	db := openDB(t, filepath.Join(t.TempDir(), "n.db"))
	defer db.Close()
	n := newTestNotifier(t, db, Config{Sinks: []Sink{down, newWebhook(t, srv.URL)}})
	if err := n.Notify(testAlert("both")); err != nil {
		t.Fatal(err)
	}
	run(t, n)
	waitFor(t, "webhook delivery", func() bool { return len(rcv.ackedIDs()) == 1 })
	if st := n.Stats().Sinks["down"]; st.Pending != 1 {
		t.Errorf("down sink stats = %+v, want 1 pending", st)
	}
	down.ok.Store(true)
	flush(t, n, 5*time.Second)
	if a := <-down.got; a.ID != "both" {
		t.Errorf("down sink got %q", a.ID)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without DB: no error")
	}
	db := openDB(t, filepath.Join(t.TempDir(), "n.db"))
	defer db.Close()
	a, b := &blockingSink{name: "x"}, &blockingSink{name: "x"}
	if _, err := New(Config{DB: db, Sinks: []Sink{a, b}}); err == nil {
		t.Error("duplicate sink names: no error")
	}
	if _, err := New(Config{DB: db, Sinks: []Sink{nil}}); err == nil {
		t.Error("nil sink: no error")
	}
}

func TestNotifyFillsIDAndTime(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "n.db"))
	defer db.Close()
	s := &blockingSink{name: "s", got: make(chan Alert, 1)}
	s.ok.Store(true)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	n := newTestNotifier(t, db, Config{Sinks: []Sink{s}, Now: func() time.Time { return now }})
	if err := n.Notify(Alert{Action: "alert", Employee: "bob"}); err != nil {
		t.Fatal(err)
	}
	run(t, n)
	a := <-s.got
	if len(a.ID) != 32 || !a.Time.Equal(now) {
		t.Errorf("got ID %q time %v", a.ID, a.Time)
	}
}

func TestNotifyFailsWhenOutboxUnwritable(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "n.db"))
	n := newTestNotifier(t, db, Config{Sinks: []Sink{&blockingSink{name: "s"}}})
	db.Close()
	if err := n.Notify(testAlert("x")); err == nil {
		t.Fatal("Notify on a closed DB: no error")
	}
	if st := n.Stats(); st.Accepted != 0 {
		t.Errorf("stats = %+v", st)
	}
}
