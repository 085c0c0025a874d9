package audit

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// instance is one pgwarden instance of a test: a sink with its own pool and
// instance name.
type instance struct {
	name string
	pool *pgxpool.Pool
	sink *PGSink
	// keepGoing keeps the instance's writers appending after a failed
	// Append; by default they stop at the first one.
	keepGoing bool
}

// openInstances opens one sink per config on table, all at once, as
// instances started together do. Instance names must be distinct and free
// of "/".
func openInstances(t testing.TB, table string, cfgs ...PGSinkConfig) []*instance {
	t.Helper()
	insts := make([]*instance, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		cfg.Table, cfg.Logger = table, quietLogger
		if cfg.Timeout == 0 {
			cfg.Timeout = 5 * time.Second
		}
		insts[i] = &instance{name: cfg.Instance, pool: cfg.Pool}
		wg.Go(func() { insts[i].sink, errs[i] = NewPGSink(context.Background(), cfg) })
	}
	wg.Wait()
	for i, inst := range insts {
		if errs[i] != nil {
			t.Fatalf("NewPGSink %s: %v", inst.name, errs[i])
		}
		t.Cleanup(func() { inst.sink.Close() })
	}
	return insts
}

// ack is an event as Append acknowledged it.
type ack struct {
	instance, session string
	i                 int
}

// load is what appendLoad saw.
type load struct {
	acked    map[uint64]ack
	failed   map[string]int           // failed Appends per instance
	firstErr map[string]error         // per instance
	maxWait  map[string]time.Duration // longest Append per instance
}

// appendLoad appends each events from each of writers goroutines per
// instance, all at once. The session of an event is "instance/writer" and
// its data's "i" its index.
func appendLoad(t *testing.T, insts []*instance, writers, each int) load {
	t.Helper()
	res := load{acked: map[uint64]ack{}, failed: map[string]int{}, firstErr: map[string]error{}, maxWait: map[string]time.Duration{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, inst := range insts {
		var stop atomic.Bool
		for g := range writers {
			session := fmt.Sprintf("%s/%d", inst.name, g)
			wg.Go(func() {
				for i := 0; i < each && !stop.Load(); i++ {
					start := time.Now()
					seq, err := inst.sink.Append(context.Background(), stmt(session, i))
					wait := time.Since(start)
					mu.Lock()
					res.maxWait[inst.name] = max(res.maxWait[inst.name], wait)
					if err != nil {
						res.failed[inst.name]++
						if res.firstErr[inst.name] == nil {
							res.firstErr[inst.name] = err
						}
						stop.Store(!inst.keepGoing)
					} else if prev, dup := res.acked[seq]; dup {
						t.Errorf("seq %d acknowledged for %v and %s/%d", seq, prev, session, i)
					} else {
						res.acked[seq] = ack{inst.name, session, i}
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return res
}

// ackedBy counts the acknowledged events of an instance.
func (l load) ackedBy(name string) int {
	n := 0
	for _, a := range l.acked {
		if a.instance == name {
			n++
		}
	}
	return n
}

// checkInstances checks that the table is one chain that VerifyPG accepts,
// that each acknowledged seq holds the event acknowledged with it, and that
// each row's instance column names the instance whose session wrote it. If
// exact, the table holds nothing else.
func checkInstances(t *testing.T, pool *pgxpool.Pool, table string, res load, exact bool) {
	t.Helper()
	rep, err := VerifyPG(context.Background(), pool, table)
	if err != nil {
		t.Fatalf("VerifyPG: %v", err)
	}
	rows, err := pool.Query(context.Background(), `SELECT seq, instance, session_id, (data->>'i')::int FROM `+tableIdent(table)+` ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n, found := uint64(0), 0
	for rows.Next() {
		var seq int64
		var got ack
		if err := rows.Scan(&seq, &got.instance, &got.session, &got.i); err != nil {
			t.Fatal(err)
		}
		n++
		if uint64(seq) != n {
			t.Fatalf("row %d has seq %d", n, seq)
		}
		if owner, _, _ := strings.Cut(got.session, "/"); got.instance != owner {
			t.Errorf("seq %d: instance %q wrote session %s", seq, got.instance, got.session)
		}
		want, ok := res.acked[uint64(seq)]
		if !ok {
			if exact {
				t.Errorf("seq %d holds %v, which no Append acknowledged", seq, got)
			}
			continue
		}
		found++
		if got != want {
			t.Errorf("seq %d holds %v, Append acknowledged it for %v", seq, got, want)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != rep.Events {
		t.Fatalf("%d rows, VerifyPG saw %d", n, rep.Events)
	}
	if found != len(res.acked) {
		t.Fatalf("%d of %d acknowledged events in the table", found, len(res.acked))
	}
	t.Logf("%d rows, %d acknowledged", n, len(res.acked))
}

// mustNotFail fails the test if an instance other than except had a failed
// Append.
func mustNotFail(t *testing.T, res load, except string) {
	t.Helper()
	for name, n := range res.failed {
		if name != except && n > 0 {
			t.Fatalf("instance %s: %d Appends failed, the first with %v", name, n, res.firstErr[name])
		}
	}
}

func TestPGSinkSeveralInstances(t *testing.T) {
	c := pgtest.Shared(t)
	table := sinkTable(t)
	var cfgs []PGSinkConfig
	for _, name := range []string{"a", "b", "c"} {
		cfgs = append(cfgs, PGSinkConfig{Pool: newPool(t, c.DSN(pgtest.TrustUser)), Instance: name})
	}
	insts := openInstances(t, table, cfgs...)

	const writers, each = 8, 200
	res := appendLoad(t, insts, writers, each)
	mustNotFail(t, res, "")
	for _, inst := range insts {
		inst.sink.Close()
		st := inst.sink.Stats()
		t.Logf("instance %s: %d events in %d batches, longest Append %v", inst.name, st.Events, st.Batches, res.maxWait[inst.name])
		if st.Events != writers*each || st.Failures != 0 {
			t.Errorf("instance %s: stats %+v, want %d events", inst.name, st, writers*each)
		}
	}
	if len(res.acked) != len(insts)*writers*each {
		t.Fatalf("%d acknowledged, want %d", len(res.acked), len(insts)*writers*each)
	}
	checkInstances(t, insts[0].pool, table, res, true)
}

// TestPGSinkInstancePoolClosed closes one instance's pool under load: its
// Appends fail, the others' do not, and a new sink continues the chain.
func TestPGSinkInstancePoolClosed(t *testing.T) {
	c := pgtest.Shared(t)
	table := sinkTable(t)
	var cfgs []PGSinkConfig
	for _, name := range []string{"a", "b", "c"} {
		cfgs = append(cfgs, PGSinkConfig{Pool: newPool(t, c.DSN(pgtest.TrustUser)), Instance: name})
	}
	insts := openInstances(t, table, cfgs...)
	victim := insts[2]

	loaded, closed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(closed)
		for victim.sink.Stats().Events < 100 {
			select {
			case <-loaded:
				return
			case <-time.After(time.Millisecond):
			}
		}
		victim.pool.Close()
	}()
	res := appendLoad(t, insts, 8, 200)
	close(loaded)
	<-closed
	mustNotFail(t, res, victim.name)
	if res.failed[victim.name] == 0 {
		t.Fatal("no Append failed on the closed pool")
	}
	t.Logf("instance %s: %d acknowledged, %d failed with %v", victim.name, res.ackedBy(victim.name), res.failed[victim.name], res.firstErr[victim.name])
	checkInstances(t, insts[0].pool, table, res, true)

	restarted := openInstances(t, table, PGSinkConfig{Pool: newPool(t, c.DSN(pgtest.TrustUser)), Instance: victim.name})
	more := appendLoad(t, append(insts[:2:2], restarted...), 2, 20)
	mustNotFail(t, more, "")
	for seq, a := range more.acked {
		res.acked[seq] = a
	}
	checkInstances(t, insts[0].pool, table, res, true)
}

// TestPGSinkInstanceConnectionsCut cuts one instance's connections to the
// database again and again under load, in the middle of its batches: the
// others' Appends do not fail and the chain stays whole.
func TestPGSinkInstanceConnectionsCut(t *testing.T) {
	c := pgtest.Shared(t)
	table := sinkTable(t)
	proxy := newFlakyProxy(t, c.Addr())
	cfgs := []PGSinkConfig{
		{Pool: newPool(t, c.DSN(pgtest.TrustUser)), Instance: "a"},
		{Pool: newPool(t, c.DSN(pgtest.TrustUser)), Instance: "b"},
		{Pool: newPool(t, strings.Replace(c.DSN(pgtest.TrustUser), c.Addr(), proxy.addr, 1)), Instance: "c", Timeout: time.Second},
	}
	insts := openInstances(t, table, cfgs...)
	insts[2].keepGoing = true

	stop := make(chan struct{})
	toggled := make(chan struct{})
	go func() {
		defer close(toggled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(40 * time.Millisecond):
			}
			proxy.down()
			time.Sleep(10 * time.Millisecond)
			proxy.up()
		}
	}()
	res := appendLoad(t, insts, 8, 200)
	close(stop)
	<-toggled
	mustNotFail(t, res, "c")
	t.Logf("instance c: %d acknowledged, %d failed", res.ackedBy("c"), res.failed["c"])
	if res.failed["c"] == 0 || res.ackedBy("c") == 0 {
		t.Fatalf("instance c: %d acknowledged, %d failed: the cuts did not bite", res.ackedBy("c"), res.failed["c"])
	}
	// A batch whose COMMIT's reply was cut may be in the table unacknowledged.
	checkInstances(t, insts[0].pool, table, res, false)
}

// TestPGSinkInstanceStalled freezes the network between one instance and the
// database while that instance holds the table's lock, as a hung host or a
// partition would: the server ends its transaction after its Timeout, and
// the others' Appends wait for about that long but do not fail.
func TestPGSinkInstanceStalled(t *testing.T) {
	c := pgtest.Shared(t)
	table := sinkTable(t)
	proxy := newStallProxy(t, c.Addr())
	cfg, err := pgxpool.ParseConfig(strings.Replace(c.DSN(pgtest.TrustUser), c.Addr(), proxy.addr(), 1))
	if err != nil {
		t.Fatal(err)
	}
	// Stall after the first round trip of the third batch, which took the lock.
	cfg.ConnConfig.Tracer = &stallTracer{after: 3, stall: proxy.stall}
	stalled, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stalled.Close)
	// Before the pool's Close, which waits for the connections being made.
	t.Cleanup(proxy.close)
	const victimTimeout = 300 * time.Millisecond
	insts := openInstances(t, table,
		PGSinkConfig{Pool: newPool(t, c.DSN(pgtest.TrustUser)), Instance: "a"},
		PGSinkConfig{Pool: newPool(t, c.DSN(pgtest.TrustUser)), Instance: "b"},
		PGSinkConfig{Pool: stalled, Instance: "c", Timeout: victimTimeout})

	res := appendLoad(t, insts, 8, 200)
	mustNotFail(t, res, "c")
	if res.failed["c"] == 0 {
		t.Fatal("instance c did not fail: it never stalled")
	}
	wait := max(res.maxWait["a"], res.maxWait["b"])
	t.Logf("instance c: %d acknowledged, failed with %v; longest Append of a and b %v", res.ackedBy("c"), res.firstErr["c"], wait)
	if wait < victimTimeout/2 {
		t.Fatalf("the longest Append of a and b took %v: the stalled instance did not hold the lock", wait)
	}
	checkInstances(t, insts[0].pool, table, res, true)
}

// stallTracer calls stall after the after'th successful batch of
// statements, the first round trip of a PGSink batch.
type stallTracer struct {
	after int64
	stall func()
	n     atomic.Int64
}

func (*stallTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (*stallTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (*stallTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (*stallTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (tr *stallTracer) TraceBatchEnd(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	if data.Err == nil && tr.n.Add(1) == tr.after {
		tr.stall()
	}
}

// stallProxy forwards TCP connections to a server until stall is called.
// From then on it forwards nothing and closes nothing, as a network that
// drops every packet, until close.
type stallProxy struct {
	ln      net.Listener
	target  string
	stalled chan struct{}
	once    sync.Once
	done    chan struct{} // the test ended

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newStallProxy(t testing.TB, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, stalled: make(chan struct{}), done: make(chan struct{})}
	p.wg.Go(p.accept)
	return p
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

func (p *stallProxy) stall() { p.once.Do(func() { close(p.stalled) }) }

func (p *stallProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		p.wg.Go(func() { p.pump(server, client) }) // client -> server
		p.wg.Go(func() { p.pump(client, server) }) // server -> client
	}
}

// pump copies src to dst until either fails or the proxy stalls; stalled,
// it waits for the end of the test to close them.
func (p *stallProxy) pump(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.stalled:
			<-p.done
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			dst.Close()
			src.Close()
			return
		}
	}
}

// close closes the proxy's connections and waits for its goroutines. The
// test must call it.
func (p *stallProxy) close() {
	close(p.done)
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// BenchmarkPGSinkInstances appends to one table from one sink and from three
// (each with its own pool, as separate instances), each from 8 goroutines.
// b.N is the number of events of all sinks together.
func BenchmarkPGSinkInstances(b *testing.B) {
	c := pgtest.Shared(b)
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("%d_sinks", n), func(b *testing.B) {
			table := sinkTable(b)
			var cfgs []PGSinkConfig
			for i := range n {
				cfgs = append(cfgs, PGSinkConfig{Pool: newPool(b, c.DSN(pgtest.TrustUser)), Instance: fmt.Sprintf("i%d", i)})
			}
			insts := openInstances(b, table, cfgs...)
			const goroutines = 8
			b.ResetTimer()
			var wg sync.WaitGroup
			var next atomic.Int64
			for _, inst := range insts {
				for range goroutines {
					wg.Go(func() {
						for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
							if _, err := inst.sink.Append(context.Background(), stmt("s", int(i))); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
			}
			wg.Wait()
			b.StopTimer()
			var events, batches uint64
			for _, inst := range insts {
				st := inst.sink.Stats()
				events, batches = events+st.Events, batches+st.Batches
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(events)/float64(max(batches, 1)), "events/batch")
		})
	}
}
