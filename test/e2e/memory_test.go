package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/identity/userstore"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// The tests in this file measure the heap of the test binary, which holds
// the proxy: they do not run in parallel with other tests, and each proxy
// they start has closed its sessions before the next test starts.

// heapInUse is the heap in use after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// wantHeapGrowth fails the test if the heap grew by more than limit since
// before.
func wantHeapGrowth(t *testing.T, what string, before, limit int64) {
	t.Helper()
	grew := heapInUse() - before
	t.Logf("%s: heap in use grew by %.1f MiB", what, float64(grew)/(1<<20))
	if grew > limit {
		t.Errorf("%s: heap in use grew by %d MiB, want at most %d MiB", what, grew>>20, limit>>20)
	}
}

// claimGiB sends the header of a message of type typ claiming a body of
// almost 1 GiB (PostgreSQL's own limit), then n bytes of it. The proxy may
// close the connection while it sends: write errors are not failures.
func claimGiB(rc *proxytest.RawConn, typ byte, n int) {
	b := make([]byte, 5+n)
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], 1<<30-1+4)
	rc.Write(b)
}

// errorOrTimeout reads up to an ErrorResponse for at most d; nil when none
// came.
func errorOrTimeout(rc *proxytest.RawConn, d time.Duration) *pgproto3.ErrorResponse {
	rc.SetReadDeadline(time.Now().Add(d))
	defer rc.SetReadDeadline(time.Time{})
	for {
		m, err := rc.FE.Receive()
		if err != nil {
			return nil
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			cp := *e
			return &cp
		}
	}
}

// TestPasswordMessageBounded streams a password message claiming 1 GiB
// before authentication, with authentication relayed to PostgreSQL and
// with pgwarden's own login: the proxy refuses it at its header, as
// PostgreSQL caps password and SASL messages at 65,535 bytes, and holds no
// more memory for it than that.
func TestPasswordMessageBounded(t *testing.T) {
	cases := []struct {
		name  string
		start func(t *testing.T) (addr, user string)
		auth  func(m pgproto3.BackendMessage) bool // the request to answer with the message
	}{
		{"relayed cleartext", func(t *testing.T) (string, string) {
			return proxytest.Start(t).Addr, pgtest.PlainUser
		}, func(m pgproto3.BackendMessage) bool {
			_, ok := m.(*pgproto3.AuthenticationCleartextPassword)
			return ok
		}},
		{"relayed SCRAM", func(t *testing.T) (string, string) {
			return proxytest.Start(t).Addr, pgtest.ScramUser
		}, func(m pgproto3.BackendMessage) bool {
			_, ok := m.(*pgproto3.AuthenticationSASL)
			return ok
		}},
		{"login", func(t *testing.T) (string, string) {
			ls := startLoginProxy(t, userstore.Throttle{}, nil)
			ls.addLogin(t, "mallory", ls.role)
			return ls.p.Addr, "mallory"
		}, func(m pgproto3.BackendMessage) bool {
			_, ok := m.(*pgproto3.AuthenticationSASL)
			return ok
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, user := tc.start(t)
			ctx := proxytest.Ctx(t, 0)
			before := heapInUse()
			rc := proxytest.DialRaw(t, ctx, addr)
			rc.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
				Parameters: map[string]string{"user": user, "database": pgtest.Shared(t).Database}})
			if m := rc.Receive(); !tc.auth(m) {
				t.Fatalf("got %T, want an authentication request", m)
			}
			claimGiB(rc, 'p', 4<<20)
			e := errorOrTimeout(rc, 2*time.Second)
			wantHeapGrowth(t, "1 GiB password message", before, 32<<20)
			if e == nil || e.Severity != "FATAL" || e.Code != "08P01" || !strings.Contains(e.Message, "invalid message length") ||
				!strings.Contains(e.Message, "limit of 65535 bytes") {
				t.Fatalf("got %+v, want FATAL 08P01 invalid message length, limit of 65535 bytes", e)
			}
			rc.WaitClosed(5 * time.Second)
		})
	}
}

// TestStartupMessageBounded: the startup packet keeps PostgreSQL's own
// limit of 10,000 bytes.
func TestStartupMessageBounded(t *testing.T) {
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	before := heapInUse()
	rc := proxytest.DialRaw(t, ctx, p.Addr)
	b := make([]byte, 8+4<<20)
	binary.BigEndian.PutUint32(b, 1<<30)
	binary.BigEndian.PutUint32(b[4:], 3<<16)
	rc.Write(b)
	e := errorOrTimeout(rc, 2*time.Second)
	wantHeapGrowth(t, "1 GiB startup packet", before, 32<<20)
	if e == nil || e.Code != "08P01" {
		t.Fatalf("got %+v, want FATAL 08P01", e)
	}
}

// TestClientMessageBounded sends an authenticated Query claiming 1 GiB: it
// gets FATAL 54000 naming MaxMessageSize at its header, whose default is
// well under PostgreSQL's 1 GiB, and the session ends.
func TestClientMessageBounded(t *testing.T) {
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	bystander := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
	before := heapInUse()
	rc := proxytest.RawStartup(t, ctx, p.Addr, nil)
	claimGiB(rc, 'Q', 4<<20)
	e := errorOrTimeout(rc, 2*time.Second)
	wantHeapGrowth(t, "1 GiB query", before, 32<<20)
	want := fmt.Sprintf("message of %d bytes exceeds pgwarden's limit of %d bytes (max_message_size)", 1<<30-1, proxy.DefaultMaxMessageSize)
	if e == nil || e.Severity != "FATAL" || e.Code != "54000" || !strings.Contains(e.Message, want) {
		t.Fatalf("got %+v, want FATAL 54000 %q", e, want)
	}
	rc.WaitClosed(5 * time.Second)
	proxytest.CheckUsable(t, ctx, bystander)

	// A driver still writing the message when the proxy refuses it reads
	// the error too, not a reset.
	conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
	_, err := conn.Exec(ctx, "SELECT length($1::text)", strings.Repeat("x", proxy.DefaultMaxMessageSize+1))
	if pgErr := proxytest.WantCode(t, err, "54000"); pgErr.Severity != "FATAL" {
		t.Errorf("got %s %s, want FATAL", pgErr.Severity, pgErr.Message)
	}
}

// syncFlood sends Syncs on rc without reading the answers until d has
// passed, and returns how many it sent. A Sync cut short by the write
// deadline is completed by a write that goes on in the background, until
// the answers are read or rc is closed; wg waits for it.
func syncFlood(rc *proxytest.RawConn, d time.Duration, wg *sync.WaitGroup) int {
	buf := make([]byte, 5*4096)
	for i := 0; i < len(buf); i += 5 {
		copy(buf[i:], []byte{'S', 0, 0, 0, 4})
	}
	total := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		rc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		n, _ := rc.Write(buf[total%5 : len(buf)-5+total%5])
		total += n
	}
	rc.SetWriteDeadline(time.Time{})
	if cut := total % 5; cut != 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc.Write(buf[cut:5])
		}()
	}
	return (total + 4) / 5
}

// TestPipelinedSyncsBounded pipelines Syncs without reading the answers on
// several sessions: each session stops reading its client while too many
// requests are in flight, so the proxy's memory stays bounded; once the
// client reads, every answer arrives and the session goes on. (The Sync
// path is the same in inspected sessions: Syncs are never held.)
func TestPipelinedSyncsBounded(t *testing.T) {
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	const sessions = 4
	before := heapInUse()
	conns := make([]*proxytest.RawConn, sessions)
	sent := make([]int, sessions)
	var wg, tails sync.WaitGroup
	// After the connections close (cleanups run last-in first-out).
	t.Cleanup(tails.Wait)
	for i := range conns {
		conns[i] = proxytest.RawStartup(t, ctx, p.Addr, nil)
	}
	for i, rc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent[i] = syncFlood(rc, time.Second, &tails)
		}()
	}
	wg.Wait()
	t.Logf("Syncs sent per session: %v", sent)
	// At the bound each session holds 65,536 pending entries (about 72
	// bytes each with their slot, the slot array up to twice that by
	// append's growth): about 10 MiB a session, 38 MiB for four, and what
	// other tests' goroutines still allocate on top. Without the bound
	// the ~1.3 million Syncs a session sends in a second would hold
	// hundreds of MiB.
	wantHeapGrowth(t, fmt.Sprintf("%d sessions of pipelined Syncs", sessions), before, 64<<20)

	// Reading the answers drains the pipeline: one ReadyForQuery per Sync.
	rc := conns[0]
	rc.SetReadDeadline(time.Now().Add(20 * time.Second))
	ready := []byte{'Z', 0, 0, 0, 5, 'I'}
	buf := make([]byte, len(ready)*4096)
	for n := 0; n < sent[0]; {
		chunk := buf[:len(ready)*min(4096, sent[0]-n)]
		if _, err := io.ReadFull(rc, chunk); err != nil {
			t.Fatalf("after %d of %d answers: %v", n, sent[0], err)
		}
		for i := 0; i < len(chunk); i += len(ready) {
			if !bytes.Equal(chunk[i:i+len(ready)], ready) {
				t.Fatalf("answer %d: %q, want ReadyForQuery", n+i/len(ready), chunk[i:i+len(ready)])
			}
		}
		n += len(chunk) / len(ready)
	}
	rc.SetReadDeadline(time.Time{})
	if got := rc.Transcript(&pgproto3.Query{String: "SELECT 1"}); len(got) != 4 {
		t.Errorf("query after the flood: %v", got)
	}
	for _, rc := range conns {
		rc.Close()
	}
	wantSessions(t, p, 0)
}

// dialFrom connects to addr from the loopback address local (any of
// 127/8 on Linux).
func dialFrom(t *testing.T, ctx context.Context, local, addr string) *proxytest.RawConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return proxytest.NewRawConn(t, conn)
}

// startupFrom runs a startup as the trust user from local. It returns the
// connection once the session is ready, or the error the proxy answered.
func startupFrom(t *testing.T, ctx context.Context, local, addr string) (*proxytest.RawConn, *pgproto3.ErrorResponse) {
	t.Helper()
	rc := dialFrom(t, ctx, local, addr)
	rc.FE.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": pgtest.TrustUser, "database": pgtest.Shared(t).Database}})
	rc.FE.Flush()
	for {
		m, err := rc.FE.Receive()
		if err != nil {
			rc.Close()
			return nil, &pgproto3.ErrorResponse{Message: err.Error()}
		}
		switch m := m.(type) {
		case *pgproto3.ReadyForQuery:
			return rc, nil
		case *pgproto3.ErrorResponse:
			cp := *m
			rc.Close()
			return nil, &cp
		}
	}
}

// openSilent opens n connections from 127.0.0.1 that send nothing, and
// returns those the proxy keeps open; it fails the test unless every other
// one was refused at once with 53300.
func openSilent(t *testing.T, ctx context.Context, addr string, n int) []*proxytest.RawConn {
	t.Helper()
	conns := make([]*proxytest.RawConn, n)
	for i := range conns {
		conns[i] = dialFrom(t, ctx, "127.0.0.1", addr)
	}
	answers := make([]*pgproto3.ErrorResponse, n)
	var wg sync.WaitGroup
	for i, rc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = errorOrTimeout(rc, 500*time.Millisecond)
		}()
	}
	wg.Wait()
	var open []*proxytest.RawConn
	for i, e := range answers {
		switch {
		case e == nil:
			open = append(open, conns[i])
		case e.Code == "53300" && e.Severity == "FATAL" && strings.Contains(e.Message, "too many connections from this address in startup"):
			conns[i].WaitClosed(time.Second)
		default:
			t.Fatalf("silent connection %d: got %s %s %q", i, e.Severity, e.Code, e.Message)
		}
	}
	return open
}

// TestSilentConnectionsPerAddress opens many connections from one address
// that never send anything: past MaxStartupPerAddress each is refused at
// once with 53300, so that they cannot take every slot, and clients from
// other addresses connect. The slots come back as connections
// authenticate, close or time out.
func TestSilentConnectionsPerAddress(t *testing.T) {
	const perAddr = 8
	p := proxytest.Start(t, proxytest.WithConfig(func(c *proxy.Config) {
		c.MaxConnections = 100
		c.MaxStartupPerAddress = perAddr
		c.StartupTimeout = 2 * time.Second
	}))
	ctx := proxytest.Ctx(t, 0)

	// Sessions from the address that have authenticated do not count.
	for range perAddr + 2 {
		if _, e := startupFrom(t, ctx, "127.0.0.1", p.Addr); e != nil {
			t.Fatalf("authenticated session: %s %s", e.Code, e.Message)
		}
	}

	before := heapInUse()
	silent := openSilent(t, ctx, p.Addr, 1000)
	if len(silent) != perAddr {
		t.Fatalf("%d silent connections kept open, want %d", len(silent), perAddr)
	}
	wantHeapGrowth(t, "1000 silent connections", before, 16<<20)

	// Other addresses are not affected; the full one is refused.
	for _, local := range []string{"127.0.0.2", "127.0.0.3"} {
		if _, e := startupFrom(t, ctx, local, p.Addr); e != nil {
			t.Errorf("client from %s: %s %s", local, e.Code, e.Message)
		}
	}
	if _, e := startupFrom(t, ctx, "127.0.0.1", p.Addr); e == nil || e.Code != "53300" {
		t.Errorf("one more from the full address: %+v, want 53300", e)
	}

	// Closing a silent connection gives its slot back.
	silent[0].Close()
	proxytest.Eventually(t, 5*time.Second, "slot given back after a close", func() (bool, string) {
		rc, e := startupFrom(t, ctx, "127.0.0.1", p.Addr)
		if e != nil {
			return false, e.Message
		}
		rc.Close()
		return true, ""
	})
	// The startup timeout closes the others and gives their slots back.
	for _, rc := range silent[1:] {
		rc.WaitClosed(5 * time.Second)
	}
	proxytest.Eventually(t, 5*time.Second, "every slot given back", func() (bool, string) {
		n := p.Server.Sessions()
		return n == perAddr+2+2, fmt.Sprintf("%d connections open", n)
	})
	if again := openSilent(t, ctx, p.Addr, perAddr+1); len(again) != perAddr {
		t.Fatalf("after the startup timeout: %d silent connections kept open, want %d", len(again), perAddr)
	}
}

// TestMaxStartupPerAddressUnlimited: a negative MaxStartupPerAddress
// counts nothing.
func TestMaxStartupPerAddressUnlimited(t *testing.T) {
	p := proxytest.Start(t, proxytest.WithConfig(func(c *proxy.Config) { c.MaxStartupPerAddress = -1 }))
	ctx := proxytest.Ctx(t, 0)
	const n = proxy.DefaultMaxStartupPerAddress + 1
	if open := openSilent(t, ctx, p.Addr, n); len(open) != n {
		t.Fatalf("%d of %d silent connections kept open", len(open), n)
	}
	if _, e := startupFrom(t, ctx, "127.0.0.1", p.Addr); e != nil {
		t.Fatalf("%s %s", e.Code, e.Message)
	}
}
