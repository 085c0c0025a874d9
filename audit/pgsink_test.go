package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// newPool returns a pool on dsn that is closed when the test ends.
func newPool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// sinkTable returns a table name of its own for the test.
func sinkTable(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))
	pgtest.Shared(t).Exec(t, "DROP TABLE IF EXISTS "+name)
	return name
}

func newSink(t testing.TB, pool *pgxpool.Pool, table string) *PGSink {
	t.Helper()
	s, err := NewPGSink(context.Background(), PGSinkConfig{Pool: pool, Table: table, Instance: "test", Timeout: 2 * time.Second, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// stmt is a statement event whose data exercises the jsonb normalisation:
// key order, an exponent, HTML characters.
func stmt(session string, i int) Event {
	return Event{Type: TypeStatement, SessionID: session, Employee: "alice",
		Data: json.RawMessage(fmt.Sprintf(`{"z": 1, "i":%d, "dur":1e-7, "sql":"select a < b & c"}`, i))}
}

func mustVerifyPG(t *testing.T, pool *pgxpool.Pool, table string, events uint64) {
	t.Helper()
	rep, err := VerifyPG(context.Background(), pool, table)
	if err != nil {
		t.Fatalf("VerifyPG: %v", err)
	}
	if rep.Events != events || rep.LastSeq != events {
		t.Fatalf("VerifyPG: %d events, last seq %d; want %d", rep.Events, rep.LastSeq, events)
	}
}

func TestPGSinkConcurrentRoundTrip(t *testing.T) {
	c := pgtest.Shared(t)
	pool := newPool(t, c.DSN(pgtest.TrustUser))
	table := sinkTable(t)
	s := newSink(t, pool, table)

	const writers, each = 10, 200
	type key struct {
		session string
		i       int
	}
	var mu sync.Mutex
	acked := map[uint64]key{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			session := fmt.Sprintf("s%d", g)
			for i := range each {
				seq, err := s.Append(context.Background(), stmt(session, i))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if _, dup := acked[seq]; dup {
					errs <- fmt.Errorf("seq %d acknowledged twice", seq)
				}
				acked[seq] = key{session, i}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	t.Logf("%d events in %d batches (%.1f per batch)", st.Events, st.Batches, float64(st.Events)/float64(st.Batches))
	if st.Events != writers*each || st.Batches*3 > st.Events {
		t.Errorf("stats %+v: want %d events in at most a third as many batches", st, writers*each)
	}

	n := 0
	err := QueryPG(context.Background(), pool, table, PGFilter{}, func(ev Event) error {
		n++
		var d struct{ I int }
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return err
		}
		if got, want := (key{ev.SessionID, d.I}), acked[ev.Seq]; got != want {
			return fmt.Errorf("seq %d holds %v, Append returned it for %v", ev.Seq, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != writers*each || len(acked) != writers*each {
		t.Fatalf("%d rows, %d acknowledged; want %d", n, len(acked), writers*each)
	}
	mustVerifyPG(t, pool, table, writers*each)
}

func TestPGSinkResume(t *testing.T) {
	c := pgtest.Shared(t)
	pool := newPool(t, c.DSN(pgtest.TrustUser))
	table := sinkTable(t)
	for round := range 3 {
		s := newSink(t, pool, table)
		for i := range 5 {
			seq, err := s.Append(context.Background(), stmt("s", i))
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64(round*5 + i + 1); seq != want {
				t.Fatalf("round %d: seq %d, want %d", round, seq, want)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(context.Background(), stmt("s", 0)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Append after Close: %v, want ErrClosed", err)
		}
	}
	mustVerifyPG(t, pool, table, 15)
}

func TestVerifyPGDetectsTampering(t *testing.T) {
	c := pgtest.Shared(t)
	pool := newPool(t, c.DSN(pgtest.TrustUser))
	for _, tc := range []struct {
		name   string
		tamper string // %s is the table
		kind   ProblemKind
		seq    uint64
		detail string
	}{
		{"edited data", `UPDATE %s SET data = jsonb_set(data, '{sql}', '"select 1"') WHERE seq = 4`, ProblemEdited, 5, "seq 4 was edited"},
		{"edited employee", `UPDATE %s SET employee = 'bob' WHERE seq = 7`, ProblemEdited, 8, "seq 7 was edited"},
		{"edited time", `UPDATE %s SET time = time - interval '1 hour' WHERE seq = 1`, ProblemEdited, 2, "seq 1 was edited"},
		{"deleted row", `DELETE FROM %s WHERE seq = 6`, ProblemRemoved, 7, "seq 6 to 6 are missing"},
		{"deleted first rows", `DELETE FROM %s WHERE seq <= 2`, ProblemRemoved, 3, "seq 1 to 2 are missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := sinkTable(t)
			s := newSink(t, pool, table)
			for i := range 10 {
				if _, err := s.Append(context.Background(), stmt("s", i)); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			mustVerifyPG(t, pool, table, 10)
			c.Exec(t, fmt.Sprintf(tc.tamper, table))
			rep, err := VerifyPG(context.Background(), pool, table)
			var p *Problem
			if !errors.As(err, &p) || rep.Problem != p {
				t.Fatalf("VerifyPG: %v, want a *Problem", err)
			}
			if p.Kind != tc.kind || p.Seq != tc.seq || !strings.Contains(p.Detail, tc.detail) {
				t.Fatalf("problem %v; want %s at seq %d, %q", p, tc.kind, tc.seq, tc.detail)
			}
		})
	}
}

// TestPGLineMatchesFileLog checks that the PG chain hashes the line the file
// Log writes for the same event.
func TestPGLineMatchesFileLog(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Config{Dir: dir, Key: testKey, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), Event{Type: TypeStatement, Employee: "alice", Data: json.RawMessage(`{"sql":"a < b"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		got, err := pgLine(&ev)
		if err != nil || string(got) != line {
			t.Fatalf("pgLine = %s, %v; the file log wrote %s", got, err, line)
		}
	}
}

func TestQueryPG(t *testing.T) {
	c := pgtest.Shared(t)
	pool := newPool(t, c.DSN(pgtest.TrustUser))
	table := sinkTable(t)
	clock := newClock()
	s, err := NewPGSink(context.Background(), PGSinkConfig{Pool: pool, Table: table, Now: clock.Now, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mid time.Time // between the second and third events
	for i, ev := range []Event{
		{Type: TypeSessionStart, Employee: "alice"},
		{Type: TypeStatement, Employee: "alice"},
		{Type: TypeStatement, Employee: "bob"},
		{Type: TypeStatement, Employee: "alice"},
	} {
		if i == 2 {
			clock.Advance(time.Hour)
			mid = clock.Now()
		}
		if _, err := s.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		filter PGFilter
		want   []uint64
	}{
		{"all", PGFilter{}, []uint64{1, 2, 3, 4}},
		{"employee", PGFilter{Employee: "alice"}, []uint64{1, 2, 4}},
		{"employee and type", PGFilter{Employee: "alice", Type: TypeStatement}, []uint64{2, 4}},
		{"since", PGFilter{Since: mid}, []uint64{3, 4}},
		{"until", PGFilter{Until: mid}, []uint64{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint64
			err := QueryPG(context.Background(), pool, table, tc.filter, func(ev Event) error {
				got = append(got, ev.Seq)
				return nil
			})
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// flakyProxy forwards TCP connections to a server and can go down (refusing
// connections and cutting the open ones) and come back on the same port.
type flakyProxy struct {
	t      testing.TB
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newFlakyProxy(t testing.TB, target string) *flakyProxy {
	t.Helper()
	p := &flakyProxy{t: t, addr: "127.0.0.1:0", target: target, conns: map[net.Conn]struct{}{}}
	p.up()
	t.Cleanup(p.down)
	return p
}

// up listens again on the same port. It may run on a goroutine of the test's,
// so it reports a failure with Errorf.
func (p *flakyProxy) up() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Errorf("proxy up: %v", err)
		return
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", p.target)
			if err != nil {
				client.Close()
				continue
			}
			p.mu.Lock()
			p.conns[client], p.conns[server] = struct{}{}, struct{}{}
			p.mu.Unlock()
			for _, pair := range [][2]net.Conn{{client, server}, {server, client}} {
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					io.Copy(pair[0], pair[1])
					pair[0].Close()
					pair[1].Close()
				}()
			}
		}
	}()
}

// down closes the listener and every forwarded connection.
func (p *flakyProxy) down() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func TestPGSinkUnreachableAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	pool := newPool(t, "postgres://nobody@"+addr+"/db?sslmode=disable&connect_timeout=2")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := NewPGSink(ctx, PGSinkConfig{Pool: pool, Logger: quietLogger}); err == nil {
		t.Fatal("NewPGSink on a closed port succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("NewPGSink took %v to fail", d)
	}
}

// TestPGSinkOutage makes the database unreachable under a running sink,
// then brings it back: Appends fail within Timeout meanwhile, succeed after,
// and the table holds exactly the acknowledged events in an intact chain.
func TestPGSinkOutage(t *testing.T) {
	c := pgtest.Shared(t)
	proxy := newFlakyProxy(t, c.Addr())
	dsn := strings.Replace(c.DSN(pgtest.TrustUser), c.Addr(), proxy.addr, 1)
	pool := newPool(t, dsn)
	table := sinkTable(t)
	s := newSink(t, pool, table)

	var acked []uint64
	appendN := func(n int) (failed int) {
		for i := range n {
			start := time.Now()
			seq, err := s.Append(context.Background(), stmt("s", i))
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("Append took %v", d)
			}
			if err != nil {
				failed++
				continue
			}
			acked = append(acked, seq)
		}
		return failed
	}
	if f := appendN(20); f != 0 {
		t.Fatalf("%d Appends failed with the database up", f)
	}
	proxy.down()
	if f := appendN(5); f != 5 {
		t.Fatalf("%d of 5 Appends failed with the database down", f)
	}
	proxy.up()
	appendN(3) // may meet connections the pool has not yet discarded
	if f := appendN(20); f != 0 {
		t.Fatalf("%d Appends failed after the database came back", f)
	}
	s.Close()
	checkAcked(t, pool, table, acked)
}

// checkAcked checks that the table holds exactly the acknowledged seqs, in
// a chain that verifies.
func checkAcked(t *testing.T, pool *pgxpool.Pool, table string, acked []uint64) {
	t.Helper()
	for i, seq := range acked {
		if seq != uint64(i+1) {
			t.Fatalf("acknowledged seqs %v are not contiguous from 1", acked)
		}
	}
	mustVerifyPG(t, pool, table, uint64(len(acked)))
}

// TestPGSinkTerminatedBackends kills the sink's connections from a superuser
// session: later Appends succeed.
func TestPGSinkTerminatedBackends(t *testing.T) {
	c := pgtest.Shared(t)
	const app = "pgwarden_sink_terminate_test"
	pool := newPool(t, c.DSN(pgtest.TrustUser, "application_name="+app))
	table := sinkTable(t)
	s := newSink(t, pool, table)
	var acked []uint64
	appendOne := func() error {
		seq, err := s.Append(context.Background(), stmt("s", len(acked)))
		if err == nil {
			acked = append(acked, seq)
		}
		return err
	}
	for round := range 3 {
		for range 10 {
			if err := appendOne(); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		c.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '"+app+"'")
		var err error
		for range 5 {
			if err = appendOne(); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("round %d: Appends still fail after the backends were terminated: %v", round, err)
		}
	}
	s.Close()
	checkAcked(t, pool, table, acked)
	if st := s.Stats(); st.Events != uint64(len(acked)) {
		t.Fatalf("stats %+v, %d acknowledged", st, len(acked))
	}
}

func TestPGSinkRejectsBadEvents(t *testing.T) {
	c := pgtest.Shared(t)
	pool := newPool(t, c.DSN(pgtest.TrustUser))
	table := sinkTable(t)
	s := newSink(t, pool, table)
	for _, ev := range []Event{
		{},
		{Type: TypeCheckpoint},
		{Type: TypeStatement, Data: json.RawMessage(`{"a":`)},
		{Type: TypeStatement, Employee: "a\x00b"},
		{Type: TypeStatement, Data: json.RawMessage(`{"a":"\u0000"}`)},
	} {
		if _, err := s.Append(context.Background(), ev); err == nil {
			t.Errorf("Append(%+v) succeeded", ev)
		}
	}
	if seq, err := s.Append(context.Background(), stmt("s", 1)); err != nil || seq != 1 {
		t.Fatalf("Append = %d, %v; want 1", seq, err)
	}
}

// TestPGSinkCopyEscapes appends fields that COPY's text format must escape
// and reads them back unchanged.
func TestPGSinkCopyEscapes(t *testing.T) {
	c := pgtest.Shared(t)
	pool := newPool(t, c.DSN(pgtest.TrustUser))
	table := sinkTable(t)
	const instance = "host\\1\t\\N"
	s, err := NewPGSink(context.Background(), PGSinkConfig{Pool: pool, Table: table, Instance: instance, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	events := []Event{
		{Type: "odd\r\ntype", SessionID: `\N`, Employee: "tab\there\\.", Data: json.RawMessage("{\n\t\"sql\": \"a\\\\b\\tc\\nd\", \"q\": \"\\\\N\", \"u\": \"ü中\"}")},
		{Type: TypeStatement, SessionID: "\\.", Employee: "\n", Data: json.RawMessage(`"\\."`)},
		{Type: TypeStatement, Employee: "é"},
	}
	for _, ev := range events {
		if _, err := s.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	var got []Event
	if err := QueryPG(context.Background(), pool, table, PGFilter{}, func(ev Event) error {
		got = append(got, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(events) {
		t.Fatalf("%d rows, want %d", len(got), len(events))
	}
	for i, want := range events {
		g := got[i]
		if g.Type != want.Type || g.SessionID != want.SessionID || g.Employee != want.Employee {
			t.Errorf("seq %d: %q %q %q, want %q %q %q", g.Seq, g.Type, g.SessionID, g.Employee, want.Type, want.SessionID, want.Employee)
		}
		var gd, wd any
		if len(want.Data) > 0 {
			if err := json.Unmarshal(g.Data, &gd); err != nil {
				t.Fatalf("seq %d: data %s: %v", g.Seq, g.Data, err)
			}
			json.Unmarshal(want.Data, &wd)
		}
		if !reflect.DeepEqual(gd, wd) || (len(want.Data) == 0) != (g.Data == nil) {
			t.Errorf("seq %d: data %s, want %s", g.Seq, g.Data, want.Data)
		}
	}
	var instances []string
	if err := pool.QueryRow(context.Background(), `SELECT array_agg(instance) FROM `+table).Scan(&instances); err != nil {
		t.Fatal(err)
	}
	for _, got := range instances {
		if got != instance {
			t.Fatalf("instance column %q, want %q", got, instance)
		}
	}
	mustVerifyPG(t, pool, table, uint64(len(events)))
}

// BenchmarkPGSinkAppend appends from 8 goroutines, as concurrent sessions do.
func BenchmarkPGSinkAppend(b *testing.B) {
	c := pgtest.Shared(b)
	pool := newPool(b, c.DSN(pgtest.TrustUser))
	table := sinkTable(b)
	s := newSink(b, pool, table)
	const goroutines = 8
	b.ResetTimer()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < b.N; i += goroutines {
				if _, err := s.Append(context.Background(), stmt("s", i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(st.Events)/float64(max(st.Batches, 1)), "events/batch")
}

// TestPGSinkOutageUnderLoad toggles the database's reachability while
// several goroutines append: every acknowledged event is in the table at its
// seq, and the chain verifies.
func TestPGSinkOutageUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a second")
	}
	c := pgtest.Shared(t)
	proxy := newFlakyProxy(t, c.Addr())
	dsn := strings.Replace(c.DSN(pgtest.TrustUser), c.Addr(), proxy.addr, 1)
	pool := newPool(t, dsn)
	table := sinkTable(t)
	s := newSink(t, pool, table)

	const writers, each = 8, 300
	var mu sync.Mutex
	acked := map[uint64]string{} // seq -> session/i
	failed := 0
	stop := make(chan struct{})
	toggled := make(chan struct{})
	go func() {
		defer close(toggled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			proxy.down()
			time.Sleep(20 * time.Millisecond)
			proxy.up()
		}
	}()
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			session := fmt.Sprintf("s%d", g)
			for i := range each {
				seq, err := s.Append(context.Background(), stmt(session, i))
				mu.Lock()
				if err != nil {
					failed++
				} else if prev, dup := acked[seq]; dup {
					t.Errorf("seq %d acknowledged for %s and %s/%d", seq, prev, session, i)
				} else {
					acked[seq] = fmt.Sprintf("%s/%d", session, i)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-toggled
	s.Close()
	t.Logf("%d acknowledged, %d failed, stats %+v", len(acked), failed, s.Stats())
	if failed == 0 || len(acked) == 0 {
		t.Fatalf("%d failed, %d acknowledged: the outages did not bite", failed, len(acked))
	}
	rep, err := VerifyPG(context.Background(), pool, table)
	if err != nil {
		t.Fatalf("VerifyPG: %v", err)
	}
	found := 0
	err = QueryPG(context.Background(), pool, table, PGFilter{}, func(ev Event) error {
		want, ok := acked[ev.Seq]
		if !ok {
			return nil // its Append failed, but the COPY committed
		}
		var d struct{ I int }
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return err
		}
		if got := fmt.Sprintf("%s/%d", ev.SessionID, d.I); got != want {
			return fmt.Errorf("seq %d holds %s, acknowledged for %s", ev.Seq, got, want)
		}
		found++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found != len(acked) {
		t.Fatalf("%d of %d acknowledged events in the table (%d rows)", found, len(acked), rep.Events)
	}
}
