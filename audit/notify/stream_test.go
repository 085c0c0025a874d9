package notify

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// memTrail is a trail in memory that offers each line it writes to a
// Stream, as audit.Config.Tap does.
type memTrail struct {
	mu    sync.Mutex
	recs  []Record
	offer func(seq uint64, line []byte)
	// durable, when set, is the last seq on stable storage.
	durable *uint64
	// gone is the last seq removed from the trail.
	gone uint64
}

func (m *memTrail) write(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for range n {
		seq := uint64(len(m.recs) + 1)
		line := fmt.Appendf(nil, `{"seq":%d,"time":"2026-12-06T09:30:00.%06dZ","type":"statement","employee":"alice","data":{"rows":%d},"prev":"00"}`, seq, seq, seq)
		m.recs = append(m.recs, Record{Seq: seq, Line: line})
		if m.offer != nil {
			m.offer(seq, line)
		}
	}
}

func (m *memTrail) LastSeq() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.durable != nil {
		return *m.durable
	}
	return uint64(len(m.recs))
}

func (m *memTrail) setDurable(seq uint64) {
	m.mu.Lock()
	m.durable = &seq
	m.mu.Unlock()
}

func (m *memTrail) ReadFrom(from uint64, max int) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if from <= m.gone {
		from = m.gone + 1
	}
	if from > uint64(len(m.recs)) {
		return nil, nil
	}
	end := min(uint64(len(m.recs)), from-1+uint64(max))
	return append([]Record(nil), m.recs[from-1:end]...), nil
}

// siemReceiver is an HTTP SIEM endpoint that records the seqs of the events it
// accepted, and can answer 503, hang, or be down (connection refused).
type siemReceiver struct {
	t    *testing.T
	addr string

	mu       sync.Mutex
	srv      *http.Server
	mode     string // "ok", "503", "hang"
	seqs     []uint64
	requests []*http.Request
	bodies   [][]byte
	reply    func(body []byte) (int, string) // overrides the answer when set
}

func newSIEMReceiver(t *testing.T) *siemReceiver {
	r := &siemReceiver{t: t, mode: "ok"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(r.down)
	return r
}

func (r *siemReceiver) URL() string { return "http://" + r.addr + "/ingest" }

func (r *siemReceiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle)}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go srv.Serve(ln)
}

// down closes the listener and every connection: connection refused.
func (r *siemReceiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// up listens again on the same address.
func (r *siemReceiver) up() {
	r.t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.serve(ln)
}

func (r *siemReceiver) setMode(m string) {
	r.mu.Lock()
	r.mode = m
	r.mu.Unlock()
}

func (r *siemReceiver) handle(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	mode, reply := r.mode, r.reply
	r.mu.Unlock()
	switch mode {
	case "503":
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	case "hang":
		<-req.Context().Done()
		return
	}
	status, answer := http.StatusOK, `{"text":"Success","code":0}`
	if reply != nil {
		status, answer = reply(body)
	}
	if status < 300 {
		seqs := bodySeqs(r.t, body)
		r.mu.Lock()
		r.seqs = append(r.seqs, seqs...)
		r.requests = append(r.requests, req)
		r.bodies = append(r.bodies, body)
		r.mu.Unlock()
	}
	w.WriteHeader(status)
	io.WriteString(w, answer)
}

// bodySeqs reads the seqs of a body in any of the three formats.
func bodySeqs(t *testing.T, body []byte) []uint64 {
	var out []uint64
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v struct {
			Seq    *uint64               `json:"seq"`
			Event  *struct{ Seq uint64 } `json:"event"`
			Create json.RawMessage       `json:"create"`
		}
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Errorf("body line %q: %v", sc.Text(), err)
			continue
		}
		switch {
		case v.Seq != nil:
			out = append(out, *v.Seq)
		case v.Event != nil:
			out = append(out, v.Event.Seq)
		}
	}
	return out
}

func (r *siemReceiver) received() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seqs...)
}

// checkInOrder fails unless seqs, repeats of an earlier batch left out, are
// exactly 1..n.
func checkInOrder(t *testing.T, seqs []uint64, n int) {
	t.Helper()
	var next uint64 = 1
	for i, s := range seqs {
		switch {
		case s == next:
			next++
		case s < next:
			// a repeat: at-least-once
		default:
			t.Fatalf("seq %d at position %d; want %d (nothing lost, in order)", s, i, next)
		}
	}
	if next != uint64(n)+1 {
		t.Fatalf("received up to seq %d; want %d", next-1, n)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startStream runs a Stream until the test ends, or until stop is called.
func startStream(t *testing.T, cfg StreamConfig, trail *memTrail) (st *Stream, stop func()) {
	t.Helper()
	cfg.Trail = trail
	cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	st, err := NewStream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	trail.mu.Lock()
	trail.offer = st.Offer
	trail.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return st, stop
}

func httpSink(t *testing.T, url, format, token string) *HTTPStream {
	t.Helper()
	h, err := NewHTTPStream(HTTPStreamConfig{URL: url, Format: format, Token: token, Host: "pgw-1", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestStreamOutageLosesNothing: the siemReceiver answers 503, then refuses
// connections, while events keep coming, more than memory holds; once it
// is back every event arrives, in order, through memory, the outbox and
// the trail.
func TestStreamOutageLosesNothing(t *testing.T) {
	rcv := newSIEMReceiver(t)
	db := openDB(t, filepath.Join(t.TempDir(), "notify.db"))
	trail := &memTrail{}
	st, _ := startStream(t, StreamConfig{DB: db, Sinks: []BatchSink{httpSink(t, rcv.URL(), FormatNDJSON, "")}, Queue: 16, Batch: 8}, trail)

	trail.write(10)
	waitUntil(t, "the first events", func() bool { return len(rcv.received()) == 10 })
	rcv.setMode("503")
	// Events keep coming until some spilled (the delivery in flight takes
	// its batch out of memory, so how many it takes to pass the spill mark
	// depends on timing).
	waitUntil(t, "failures and a spill", func() bool {
		trail.write(10)
		s := st.Stats()
		return s.Failures > 0 && s.Spilled > 0
	})
	rcv.down()
	failed := st.Stats().Failures
	for range 20 {
		trail.write(10)
	}
	waitUntil(t, "refused connections", func() bool { return st.Stats().Failures > failed+1 })
	n := trail.LastSeq()
	if s := st.Stats(); s.Lag != n-10 || !strings.Contains(s.LastError, "refused") {
		t.Errorf("during the outage: lag %d, last error %q; want %d and connection refused", s.Lag, s.LastError, n-10)
	}
	rcv.setMode("ok")
	rcv.up()
	waitUntil(t, "every event", func() bool { return uint64(len(rcv.received())) >= n && st.Stats().Lag == 0 })
	checkInOrder(t, rcv.received(), int(n))
	s := st.Stats()
	t.Logf("stats: %+v", s)
	if s.Delivered != n || s.Queued != 0 || s.Dropped != 0 {
		t.Errorf("stats %+v; want %d delivered, none queued or dropped", s, n)
	}
	if s.Overflow == 0 {
		t.Errorf("no event overflowed memory: the trail path was not taken")
	}
}

// TestStreamResumesFromCursor: a Stream that stops (its memory lost, as in
// a crash) and a new one on the same outbox go on after the last
// acknowledged seq, reading from the trail what the first held in memory.
func TestStreamResumesFromCursor(t *testing.T) {
	rcv := newSIEMReceiver(t)
	path := filepath.Join(t.TempDir(), "notify.db")
	db := openDB(t, path)
	trail := &memTrail{}
	cfg := StreamConfig{DB: db, Sinks: []BatchSink{httpSink(t, rcv.URL(), FormatNDJSON, "")}}
	_, stop := startStream(t, cfg, trail)
	trail.write(50)
	waitUntil(t, "the first 50", func() bool { return len(rcv.received()) == 50 })
	rcv.down()
	trail.write(30) // held in memory, then lost
	stop()

	rcv.up()
	st2, _ := startStream(t, cfg, trail)
	trail.write(20)
	waitUntil(t, "every event", func() bool { return st2.Stats().Lag == 0 && len(rcv.received()) >= 100 })
	got := rcv.received()
	checkInOrder(t, got, 100)
	if got[50] != 51 {
		t.Errorf("after the restart the stream started at seq %d; want 51, after the cursor", got[50])
	}
}

// TestStreamSlowReceiverDoesNotBlockOffer: Offer returns at once while the
// siemReceiver hangs, however many events come.
func TestStreamSlowReceiverDoesNotBlockOffer(t *testing.T) {
	rcv := newSIEMReceiver(t)
	rcv.setMode("hang")
	db := openDB(t, filepath.Join(t.TempDir(), "notify.db"))
	trail := &memTrail{}
	st, _ := startStream(t, StreamConfig{DB: db, Sinks: []BatchSink{httpSink(t, rcv.URL(), FormatNDJSON, "")}, Queue: 100}, trail)
	start := time.Now()
	trail.write(20000)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("20,000 offers took %v while the siemReceiver hung", d)
	}
	if s := st.Stats(); s.Queued > 200 && s.Spilled == 0 {
		t.Errorf("stats %+v: memory went past its bound", s)
	}
	rcv.setMode("ok")
	waitUntil(t, "every event", func() bool { return st.Stats().Lag == 0 })
	checkInOrder(t, rcv.received(), 20000)
}

func TestHTTPStreamSplunkHEC(t *testing.T) {
	rcv := newSIEMReceiver(t)
	trail := &memTrail{}
	db := openDB(t, filepath.Join(t.TempDir(), "notify.db"))
	h, err := NewHTTPStream(HTTPStreamConfig{URL: rcv.URL(), Format: FormatSplunkHEC, Token: "hec-token", Index: "security", Host: "pgw-1"})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := startStream(t, StreamConfig{DB: db, Sinks: []BatchSink{h}}, trail)
	trail.write(3)
	waitUntil(t, "three events", func() bool { return st.Stats().Lag == 0 })
	checkInOrder(t, rcv.received(), 3)
	rcv.mu.Lock()
	req, body := rcv.requests[0], rcv.bodies[0]
	rcv.mu.Unlock()
	if got := req.Header.Get("Authorization"); got != "Splunk hec-token" {
		t.Errorf("Authorization %q; want Splunk hec-token", got)
	}
	if got := req.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	first := bytes.SplitN(body, []byte("\n"), 2)[0]
	var ev map[string]any
	if err := json.Unmarshal(first, &ev); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"time": 1796549400.000001, "host": "pgw-1", "source": "pgwarden", "sourcetype": "pgwarden:audit", "index": "security"}
	for k, v := range want {
		if ev[k] != v {
			t.Errorf("HEC %s = %v; want %v", k, ev[k], v)
		}
	}
	inner, _ := ev["event"].(map[string]any)
	if inner["type"] != "statement" || inner["seq"] != float64(1) || inner["prev"] != "00" {
		t.Errorf("HEC event %v; want the trail line", inner)
	}
}

func TestHTTPStreamElasticBulk(t *testing.T) {
	rcv := newSIEMReceiver(t)
	// The siemReceiver refuses seq 2 for good, says seq 3 exists already.
	rcv.reply = func(body []byte) (int, string) {
		n := len(bodySeqs(t, body))
		items := make([]string, n)
		for i := range items {
			items[i] = `{"create":{"status":201}}`
		}
		if n >= 3 && bytes.Contains(body, []byte(`"seq":2,`)) {
			items[1] = `{"create":{"status":400,"error":{"type":"mapper_parsing_exception"}}}`
			items[2] = `{"create":{"status":409}}`
		}
		return 200, `{"errors":true,"items":[` + strings.Join(items, ",") + `]}`
	}
	trail := &memTrail{}
	db := openDB(t, filepath.Join(t.TempDir(), "notify.db"))
	st, _ := startStream(t, StreamConfig{DB: db, Sinks: []BatchSink{httpSink(t, rcv.URL(), FormatElasticBulk, "id1:secret")}}, trail)
	trail.write(4)
	waitUntil(t, "four events", func() bool { return st.Stats().Lag == 0 })
	if s := st.Stats(); s.Delivered != 3 || s.Dropped != 1 {
		t.Errorf("stats %+v; want 3 delivered and 1 dropped", s)
	}
	rcv.mu.Lock()
	req, body := rcv.requests[0], rcv.bodies[0]
	rcv.mu.Unlock()
	if got, want := req.Header.Get("Authorization"), "ApiKey "+base64.StdEncoding.EncodeToString([]byte("id1:secret")); got != want {
		t.Errorf("Authorization %q; want %q", got, want)
	}
	if got := req.Header.Get("Content-Type"); got != "application/x-ndjson" {
		t.Errorf("Content-Type %q", got)
	}
	if !bytes.HasSuffix(body, []byte("\n")) {
		t.Error("bulk body does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) != 8 {
		t.Fatalf("bulk body of %d lines; want 4 actions and 4 documents", len(lines))
	}
	var action struct {
		Create struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		} `json:"create"`
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &action); err != nil || action.Create.Index != "pgwarden-audit" || len(action.Create.ID) != 32 {
		t.Errorf("action %s: %+v, %v", lines[0], action, err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &doc); err != nil || doc["@timestamp"] != "2026-12-06T09:30:00.000001Z" || doc["seq"] != float64(1) {
		t.Errorf("document %s: %v", lines[1], err)
	}
	// A batch sent again has the same ids: Elasticsearch creates nothing
	// twice.
	h := httpSink(t, rcv.URL(), FormatElasticBulk, "")
	recs, _ := trail.ReadFrom(1, 1)
	if a, b := h.Body(recs), h.Body(recs); !bytes.Equal(a, b) || !bytes.Contains(a, []byte(action.Create.ID)) {
		t.Error("the document id is not stable")
	}
}

func TestBulkErrorsRetry(t *testing.T) {
	recs := []Record{{Seq: 7}, {Seq: 8}}
	err := bulkErrors([]byte(`{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":429}}]}`), recs)
	var refused *RefusedError
	if err == nil || errors.As(err, &refused) || IsPermanent(err) {
		t.Errorf("429 item: %v; want an error to retry", err)
	}
	err = bulkErrors([]byte(`{"errors":true,"items":[{"index":{"status":400}},{"create":{"status":409}}]}`), recs)
	if !errors.As(err, &refused) || len(refused.Seqs) != 1 || refused.Seqs[0] != 7 {
		t.Errorf("400 item: %v; want seq 7 refused", err)
	}
}

// TestSyslogStreamTLS: every event arrives over TLS as an RFC 5424 message
// whose MSG is the trail line, in order, across a siemReceiver restart.
func TestSyslogStreamTLS(t *testing.T) {
	hs := httptest.NewTLSServer(http.NotFoundHandler())
	defer hs.Close()
	roots := hs.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: hs.TLS.Certificates})
	if err != nil {
		t.Fatal(err)
	}
	rcv := newTCPReceiver(t, ln)
	var mu sync.Mutex
	var seqs []uint64
	var first syslogMsg
	go func() {
		for m := range rcv.msgs {
			var ev struct{ Seq uint64 }
			p := parseRFC5424(t, m)
			if err := json.Unmarshal([]byte(p.msg), &ev); err != nil {
				t.Errorf("MSG %q is not the JSON line: %v", p.msg, err)
			}
			mu.Lock()
			if len(seqs) == 0 {
				first = p
			}
			seqs = append(seqs, ev.Seq)
			mu.Unlock()
		}
	}()
	sink, err := NewSyslogStream(SyslogConfig{Network: "tcp+tls", Addr: ln.Addr().String(), Hostname: "pgw-1", TLSConfig: &tls.Config{RootCAs: roots}})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	trail := &memTrail{}
	db := openDB(t, filepath.Join(t.TempDir(), "notify.db"))
	st, _ := startStream(t, StreamConfig{DB: db, Sinks: []BatchSink{sink}, Batch: 7}, trail)
	trail.write(100)
	waitUntil(t, "100 messages", func() bool { mu.Lock(); defer mu.Unlock(); return len(seqs) >= 100 })
	defer ln.Close()
	mu.Lock()
	checkInOrder(t, seqs, 100)
	p := first
	mu.Unlock()
	if p.msgID != "statement" || p.params["seq"] != "1" || p.sdID != sdID || p.timestamp != "2026-12-06T09:30:00.000001Z" || p.pri != 16*8+6 {
		t.Errorf("first message %+v", p)
	}
	if st.Stats().Delivered != 100 {
		t.Errorf("stats %+v", st.Stats())
	}
	if _, err := NewSyslogStream(SyslogConfig{Network: "udp", Addr: "127.0.0.1:514"}); err == nil {
		t.Error("a UDP stream was accepted")
	}
}

// TestStreamPGOutbox: with the state database as the outbox, an outage
// longer than memory spills to pgwarden_stream_outbox, a restart resumes
// from the cursor stored there, and two instances keep their own queues.
func TestStreamPGOutbox(t *testing.T) {
	db := pgtest.Shared(t)
	db.Exec(t, "DROP TABLE IF EXISTS pgwarden_stream_outbox, pgwarden_stream_cursor")
	pool := newPool(t, db.DSN(pgtest.SuperUser))
	rcv := newSIEMReceiver(t)
	trail := &memTrail{}
	cfg := StreamConfig{Pool: pool, Instance: "pgw-1", Sinks: []BatchSink{httpSink(t, rcv.URL(), FormatNDJSON, "")}, Queue: 16, Batch: 8}
	st, stop := startStream(t, cfg, trail)
	trail.write(5)
	waitUntil(t, "the first events", func() bool { return len(rcv.received()) == 5 })
	rcv.setMode("503")
	waitUntil(t, "a spill", func() bool { trail.write(10); return st.Stats().Spilled > 0 })
	var spilled int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM pgwarden_stream_outbox WHERE queue = 'stream_http@pgw-1'").Scan(&spilled); err != nil || spilled == 0 {
		t.Fatalf("rows in pgwarden_stream_outbox: %d, %v", spilled, err)
	}
	stop()

	rcv.setMode("ok")
	st2, _ := startStream(t, cfg, trail)
	trail.write(35)
	n := trail.LastSeq()
	waitUntil(t, "every event", func() bool { return st2.Stats().Lag == 0 && uint64(len(rcv.received())) >= n })
	checkInOrder(t, rcv.received(), int(n))
	var cursor int64
	if err := pool.QueryRow(context.Background(), "SELECT seq FROM pgwarden_stream_cursor WHERE queue = 'stream_http@pgw-1'").Scan(&cursor); err != nil || uint64(cursor) != n {
		t.Errorf("stored cursor %d, %v; want %d", cursor, err, n)
	}
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM pgwarden_stream_outbox").Scan(&spilled); err != nil || spilled != 0 {
		t.Errorf("rows left in pgwarden_stream_outbox: %d, %v", spilled, err)
	}

	// Another instance starts from its own cursor: the start of its trail.
	rcv2 := newSIEMReceiver(t)
	other := &memTrail{}
	other.write(3)
	st3, _ := startStream(t, StreamConfig{Pool: pool, Instance: "pgw-2", Sinks: []BatchSink{httpSink(t, rcv2.URL(), FormatNDJSON, "")}}, other)
	waitUntil(t, "the other instance's events", func() bool { return st3.Stats().Lag == 0 })
	checkInOrder(t, rcv2.received(), 3)
}

// TestStreamWaitsForDurability: a line offered but not yet on the trail's
// stable storage is not streamed (nor spilled) until it is: a machine
// crash could take it from the trail, and its seq would then name another
// event.
func TestStreamWaitsForDurability(t *testing.T) {
	rcv := newSIEMReceiver(t)
	db := openDB(t, filepath.Join(t.TempDir(), "notify.db"))
	trail := &memTrail{}
	trail.setDurable(0)
	st, _ := startStream(t, StreamConfig{DB: db, Sinks: []BatchSink{httpSink(t, rcv.URL(), FormatNDJSON, "")}, Queue: 8}, trail)
	trail.write(3)
	trail.setDurable(2)
	waitUntil(t, "the durable lines", func() bool { return len(rcv.received()) >= 2 })
	trail.write(20)
	time.Sleep(50 * time.Millisecond) // what must not happen has had time to
	if got := rcv.received(); len(got) != 2 {
		t.Fatalf("received %v; want only the 2 durable lines", got)
	}
	if s := st.Stats(); s.Spilled != 0 {
		t.Errorf("stats %+v: lines spilled before they were durable", s)
	}
	trail.setDurable(23)
	waitUntil(t, "every line", func() bool { return len(rcv.received()) >= 23 })
	checkInOrder(t, rcv.received(), 23)
}

// TestStreamGoesOnAfterTrailGap: lines the trail no longer holds (its
// files removed by hand) are skipped, with a warning, instead of holding
// the stream up forever.
func TestStreamGoesOnAfterTrailGap(t *testing.T) {
	rcv := newSIEMReceiver(t)
	db := openDB(t, filepath.Join(t.TempDir(), "notify.db"))
	trail := &memTrail{}
	trail.write(10) // before the stream: in the trail only
	trail.mu.Lock()
	trail.gone = 10
	trail.mu.Unlock()
	st, _ := startStream(t, StreamConfig{DB: db, Sinks: []BatchSink{httpSink(t, rcv.URL(), FormatNDJSON, "")}}, trail)
	trail.write(10)
	waitUntil(t, "the lines after the gap", func() bool { return st.Stats().Lag == 0 })
	got := rcv.received()
	if len(got) != 10 || got[0] != 11 || got[9] != 20 {
		t.Errorf("received %v; want 11..20", got)
	}
}
