package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// hecReceiver is a Splunk HEC endpoint: it checks the token and keeps the
// events it accepted. It can answer 503, hang, or be down.
type hecReceiver struct {
	t    *testing.T
	addr string

	mu     sync.Mutex
	srv    *http.Server
	mode   string        // ok, 503, hang
	unhang chan struct{} // closed when mode leaves hang
	hung   int           // requests left hanging
	events []json.RawMessage
	auth   map[string]bool
	outage int // requests refused with 503
}

func newHECReceiver(t *testing.T) *hecReceiver {
	r := &hecReceiver{t: t, mode: "ok", auth: map[string]bool{}, unhang: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(r.down)
	return r
}

func (r *hecReceiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: r}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go srv.Serve(ln)
}

func (r *hecReceiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (r *hecReceiver) up() {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.serve(ln)
}

func (r *hecReceiver) setMode(m string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mode == "hang" && m != "hang" {
		close(r.unhang)
		r.unhang = make(chan struct{})
	}
	r.mode = m
}

func (r *hecReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	mode, unhang := r.mode, r.unhang
	r.auth[req.Header.Get("Authorization")] = true
	switch mode {
	case "503":
		r.outage++
	case "hang":
		r.hung++
	}
	r.mu.Unlock()
	switch mode {
	case "503":
		http.Error(w, `{"text":"Server is busy","code":9}`, http.StatusServiceUnavailable)
		return
	case "hang":
		select {
		case <-req.Context().Done():
		case <-unhang:
			http.Error(w, "", http.StatusServiceUnavailable)
		}
		return
	}
	var evs []json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	for dec.More() {
		var e struct {
			Event      json.RawMessage `json:"event"`
			Sourcetype string          `json:"sourcetype"`
		}
		if err := dec.Decode(&e); err != nil || e.Sourcetype != "pgwarden:audit" {
			http.Error(w, `{"text":"Invalid data format","code":6}`, http.StatusBadRequest)
			r.t.Errorf("HEC body %q: %v", body, err)
			return
		}
		evs = append(evs, e.Event)
	}
	r.mu.Lock()
	r.events = append(r.events, evs...)
	r.mu.Unlock()
	io.WriteString(w, `{"text":"Success","code":0}`)
}

// seqs are the seqs of the events received.
func (r *hecReceiver) seqs() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]uint64, len(r.events))
	for i, e := range r.events {
		var v struct{ Seq uint64 }
		json.Unmarshal(e, &v)
		out[i] = v.Seq
	}
	return out
}

// syslogReceiver is an RFC 5424 receiver over TCP with octet counting; it
// keeps each message's MSG.
type syslogReceiver struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
}

func newSyslogReceiver(t *testing.T, ln net.Listener) *syslogReceiver {
	r := &syslogReceiver{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				go func() { <-t.Context().Done(); c.Close() }()
				br := bufio.NewReader(c)
				for {
					n, err := br.ReadString(' ')
					if err != nil {
						return
					}
					size, _ := strconv.Atoi(strings.TrimSpace(n))
					buf := make([]byte, size)
					if _, err := io.ReadFull(br, buf); err != nil {
						return
					}
					_, msg, _ := strings.Cut(string(buf), "] ")
					r.mu.Lock()
					r.msgs = append(r.msgs, msg)
					r.mu.Unlock()
				}
			})
		}
	})
	return r
}

func (r *syslogReceiver) seqs() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]uint64, len(r.msgs))
	for i, m := range r.msgs {
		var v struct{ Seq uint64 }
		json.Unmarshal([]byte(m), &v)
		out[i] = v.Seq
	}
	return out
}

// inOrder checks that seqs, once the repeats of at-least-once delivery
// are left out, are exactly 1..last in order, and says how many repeats
// there were.
func inOrder(t *testing.T, who string, seqs []uint64, last uint64) (repeats int) {
	t.Helper()
	var next uint64 = 1
	for i, s := range seqs {
		switch {
		case s == next:
			next++
		case s < next:
			repeats++
		default:
			t.Fatalf("%s: seq %d at position %d; want %d: an event was lost or reordered", who, s, i, next)
		}
	}
	if next != last+1 {
		t.Fatalf("%s: received up to seq %d; want %d", who, next-1, last)
	}
	return repeats
}

// streamServer starts pgwarden with an audit directory, a state directory
// and the stream configured by cfg; stop ends Run and closes it.
func streamServer(t *testing.T, cfg config.Config) (srv *Server, stop func()) {
	t.Helper()
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := New(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, end := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(runCtx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			end()
			if err := <-ran; err != nil {
				t.Errorf("Run: %v", err)
			}
			srv.Close()
		})
	}
	t.Cleanup(stop)
	return srv, stop
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func streamConfig(t *testing.T, c *pgtest.Cluster, auditDir, stateDir string) config.Config {
	t.Helper()
	t.Setenv(AuditKeyEnv, "00112233445566778899aabbccddeeff")
	var cfg config.Config
	cfg.Listen = "127.0.0.1:0"
	cfg.Upstream.URL = "postgres://" + c.Addr()
	cfg.Audit.Dir, cfg.StateDir = auditDir, stateDir
	cfg.Limits.ShutdownTimeout = config.Duration(5 * time.Second)
	return cfg
}

func connectVia(t *testing.T, srv *Server, c *pgtest.Cluster) *pgx.Conn {
	t.Helper()
	dsn := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pgtest.TrustUser, srv.Addr(), c.Database)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func runStatements(t *testing.T, conn *pgx.Conn, n int) {
	t.Helper()
	for i := range n {
		var got int
		if err := conn.QueryRow(t.Context(), "SELECT $1::int + 1", i).Scan(&got); err != nil || got != i+1 {
			t.Fatalf("statement %d: %d, %v", i, got, err)
		}
	}
}

// TestStreamWholeTrail: every line of the trail of a session reaches a
// Splunk HEC receiver and a syslog receiver, byte for byte and in seq
// order, across a receiver outage (503s, then connection refused) and a
// restart of pgwarden on the same directories while the receiver is down.
func TestStreamWholeTrail(t *testing.T) {
	c := pgtest.Shared(t)
	auditDir, stateDir := t.TempDir(), t.TempDir()
	hec := newHECReceiver(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := newSyslogReceiver(t, ln)
	t.Setenv(StreamTokenEnv, "hec-secret")
	cfg := streamConfig(t, c, auditDir, stateDir)
	cfg.Stream.HTTP.URL = "http://" + hec.addr + "/services/collector/event"
	cfg.Stream.HTTP.Format = "splunk_hec"
	cfg.Stream.Syslog.Addr = sl.ln.Addr().String()

	srv, stop := streamServer(t, cfg)
	conn := connectVia(t, srv, c)
	runStatements(t, conn, 5)
	st := srv.stream.Load()
	waitFor(t, 10*time.Second, "the first statements", func() bool { return st.Stats().Lag == 0 })
	last := srv.audit.LastSeq()
	inOrder(t, "hec", hec.seqs(), last)
	inOrder(t, "syslog", sl.seqs(), last)
	trail, err := audit.ReadLines(auditDir, 1, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for i, l := range trail[:last] {
		if !bytes.Equal(l.Bytes, hec.events[i]) {
			t.Fatalf("seq %d: received %s; the trail has %s", l.Seq, hec.events[i], l.Bytes)
		}
		var ev audit.Event
		json.Unmarshal(l.Bytes, &ev)
		types = append(types, ev.Type)
	}
	if got := strings.Join(types, " "); !strings.Contains(got, "session_start") || strings.Count(got, "statement") < 5 {
		t.Errorf("event types streamed: %s; want the session and its statements", got)
	}
	if !hec.auth["Splunk hec-secret"] {
		t.Errorf("Authorization headers %v; want Splunk hec-secret from %s", hec.auth, StreamTokenEnv)
	}

	// An outage: 503s, then connection refused; statements carry on.
	hec.setMode("503")
	runStatements(t, conn, 20)
	waitFor(t, 10*time.Second, "503s", func() bool { hec.mu.Lock(); defer hec.mu.Unlock(); return hec.outage > 0 })
	hec.down()
	runStatements(t, conn, 20)
	waitFor(t, 10*time.Second, "a refused connection", func() bool {
		return strings.Contains(st.Stats().LastError, "connection refused")
	})
	hec.setMode("ok")
	hec.up()
	waitFor(t, 60*time.Second, "the stream after the outage", func() bool { return st.Stats().Lag == 0 })
	last = srv.audit.LastSeq()
	inOrder(t, "hec after the outage", hec.seqs(), last)
	inOrder(t, "syslog", sl.seqs(), last)

	// pgwarden restarts while the receiver is down: what it had not
	// delivered, and what it writes at shutdown, arrives after the
	// restart.
	hec.down()
	runStatements(t, conn, 10)
	conn.Close(t.Context())
	stop()
	hec.up()
	srv2, _ := streamServer(t, cfg)
	conn2 := connectVia(t, srv2, c)
	runStatements(t, conn2, 10)
	st2 := srv2.stream.Load()
	waitFor(t, 60*time.Second, "the stream after the restart", func() bool { return st2.Stats().Lag == 0 })
	last = srv2.audit.LastSeq()
	repeats := inOrder(t, "hec after the restart", hec.seqs(), last)
	inOrder(t, "syslog after the restart", sl.seqs(), last)
	t.Logf("%d events streamed to each receiver, %d repeated at the restart", last, repeats)
	if _, err := os.Stat(filepath.Join(stateDir, OutboxFile)); err != nil {
		t.Errorf("the stream's outbox: %v", err)
	}
}

// TestStreamSlowReceiverDoesNotSlowRelay: statements keep running at
// their pace while the receiver hangs every request.
func TestStreamSlowReceiverDoesNotSlowRelay(t *testing.T) {
	c := pgtest.Shared(t)
	hec := newHECReceiver(t)
	cfg := streamConfig(t, c, t.TempDir(), t.TempDir())
	cfg.Stream.HTTP.URL = "http://" + hec.addr + "/services/collector/event"
	cfg.Stream.HTTP.Format = "splunk_hec"
	t.Setenv(StreamTokenEnv, "hec-secret")
	cfg.Stream.Queue = 50
	srv, _ := streamServer(t, cfg)
	conn := connectVia(t, srv, c)

	start := time.Now()
	runStatements(t, conn, 300)
	base := time.Since(start)
	waitFor(t, 10*time.Second, "the stream", func() bool { return srv.stream.Load().Stats().Lag == 0 })

	hec.setMode("hang")
	runStatements(t, conn, 1)
	waitFor(t, 10*time.Second, "a hung request", func() bool { hec.mu.Lock(); defer hec.mu.Unlock(); return hec.hung > 0 })
	hec.mu.Lock()
	before := len(hec.events)
	hec.mu.Unlock()
	start = time.Now()
	runStatements(t, conn, 300)
	took := time.Since(start)
	hec.mu.Lock()
	hung, got := hec.hung, len(hec.events)
	hec.mu.Unlock()
	t.Logf("300 statements in %v while the receiver hung (%d requests hung), %v while it answered", took, hung, base)
	if got != before {
		t.Fatalf("the receiver took %d events while hanging", got-before)
	}
	// One hung request lasts the stream's HTTP timeout (10s): a relay
	// waiting for the stream would take at least that.
	if took > 8*time.Second {
		t.Errorf("300 statements took %v while the receiver hung", took)
	}
	st := srv.stream.Load()
	if s := st.Stats(); s.Spilled == 0 && s.Overflow == 0 {
		t.Errorf("stats %+v: nothing spilled past a memory of 50 events", s)
	}
	hec.setMode("ok")
	waitFor(t, 60*time.Second, "the stream once the receiver answers", func() bool { return st.Stats().Lag == 0 })
	inOrder(t, "hec", hec.seqs(), srv.audit.LastSeq())
}

// TestStreamStateDatabase: with --state-url and no state directory the
// stream keeps its spill and cursor in the state database, and a restart
// resumes from the cursor stored there.
func TestStreamStateDatabase(t *testing.T) {
	c := pgtest.Shared(t)
	c.Exec(t, "DROP TABLE IF EXISTS pgwarden_stream_outbox, pgwarden_stream_cursor")
	hec := newHECReceiver(t)
	t.Setenv(StreamTokenEnv, "hec-secret")
	cfg := streamConfig(t, c, t.TempDir(), "")
	cfg.StateURL = c.DSN(pgtest.SuperUser)
	cfg.Instance = "pgw-test"
	cfg.Stream.HTTP.URL = "http://" + hec.addr + "/services/collector/event"
	cfg.Stream.HTTP.Format = "splunk_hec"

	srv, stop := streamServer(t, cfg)
	conn := connectVia(t, srv, c)
	runStatements(t, conn, 5)
	waitFor(t, 10*time.Second, "the first statements", func() bool { return srv.stream.Load().Stats().Lag == 0 })
	hec.down()
	runStatements(t, conn, 5)
	conn.Close(t.Context())
	stop()

	hec.up()
	srv2, _ := streamServer(t, cfg)
	runStatements(t, connectVia(t, srv2, c), 5)
	waitFor(t, 60*time.Second, "the stream after the restart", func() bool { return srv2.stream.Load().Stats().Lag == 0 })
	last := srv2.audit.LastSeq()
	inOrder(t, "hec", hec.seqs(), last)
	var cursor int64
	admin, err := pgx.Connect(t.Context(), c.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	q := "SELECT seq FROM pgwarden_stream_cursor WHERE queue = 'stream_http@pgw-test'"
	if err := admin.QueryRow(t.Context(), q).Scan(&cursor); err != nil || uint64(cursor) != last {
		t.Errorf("cursor in the state database: %d, %v; want %d", cursor, err, last)
	}
}

// TestStreamSyslogTLS: the syslog receiver over TLS, its certificate
// verified against --stream-ca-file, gets every event in order.
func TestStreamSyslogTLS(t *testing.T) {
	c := pgtest.Shared(t)
	certFile, keyFile, err := c.IssueCert("siem", nil, []net.IP{net.IPv4(127, 0, 0, 1)}, false)
	if err != nil {
		t.Skip(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	sl := newSyslogReceiver(t, ln)
	cfg := streamConfig(t, c, t.TempDir(), t.TempDir())
	cfg.Stream.Syslog.Addr, cfg.Stream.Syslog.Network = ln.Addr().String(), "tcp+tls"
	cfg.Stream.CAFile = c.CAFile
	srv, _ := streamServer(t, cfg)
	runStatements(t, connectVia(t, srv, c), 20)
	waitFor(t, 20*time.Second, "the stream", func() bool { return srv.stream.Load().Stats().Lag == 0 })
	inOrder(t, "syslog over TLS", sl.seqs(), srv.audit.LastSeq())
}
