package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// TestMaxConnections refuses a third client with 53300 when two are
// connected, and admits one again once a slot is free.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithConfig(func(c *proxy.Config) { c.MaxConnections = 2 }))
	ctx := proxytest.Ctx(t, 0)
	first := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
	second := proxytest.Connect(t, ctx, p.DSN(pgtest.ScramUser))

	conn, err := proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser))
	if err == nil {
		conn.Close(ctx)
		t.Fatal("a third client connected")
	}
	pgErr := proxytest.WantCode(t, err, "53300")
	if pgErr.Severity != "FATAL" {
		t.Errorf("severity %q, want FATAL", pgErr.Severity)
	}
	proxytest.CheckUsable(t, ctx, first)
	proxytest.CheckUsable(t, ctx, second)

	first.Close(ctx)
	proxytest.Eventually(t, 5*time.Second, "a slot frees up", func() (bool, string) {
		conn, err := proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser))
		if err != nil {
			return false, err.Error()
		}
		conn.Close(ctx)
		return true, ""
	})
}

// TestStartupTimeout closes clients that do not finish startup in time: one
// that sends nothing, one that sends half a packet, and one that never
// answers the password request.
func TestStartupTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	p := proxytest.Start(t, proxytest.WithConfig(func(c *proxy.Config) { c.StartupTimeout = timeout }))
	c := pgtest.Shared(t)
	cases := []struct {
		name string
		send func(rc *proxytest.RawConn)
	}{
		{"silent", func(*proxytest.RawConn) {}},
		{"half a packet", func(rc *proxytest.RawConn) { rc.Write([]byte{0, 0, 0, 40, 0, 3}) }},
		{"no password", func(rc *proxytest.RawConn) {
			rc.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
				Parameters: map[string]string{"user": pgtest.MD5User, "database": c.Database}})
			if _, ok := rc.Receive().(*pgproto3.AuthenticationMD5Password); !ok {
				t.Error("no md5 password request")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			start := time.Now()
			rc := proxytest.DialRaw(t, ctx, p.Addr)
			tc.send(rc)
			rc.WaitClosed(5 * time.Second)
			if d := time.Since(start); d < timeout-50*time.Millisecond || d > 3*time.Second {
				t.Errorf("closed after %v, want about %v", d, timeout)
			}
		})
	}
	ctx := proxytest.Ctx(t, 0)
	proxytest.CheckUsable(t, ctx, proxytest.Connect(t, ctx, p.DSN(pgtest.ScramUser)))
}

// TestIdleTimeout ends an idle session with 57P05, but not one whose
// statement runs longer than the timeout.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	p := proxytest.Start(t, proxytest.WithConfig(func(c *proxy.Config) { c.IdleTimeout = timeout }))

	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		ctx := proxytest.Ctx(t, 0)
		rc := proxytest.RawStartup(t, ctx, p.Addr, nil)
		start := time.Now()
		e := rc.ReadError()
		if e.Code != "57P05" || e.Severity != "FATAL" || !strings.HasPrefix(e.Message, "pgwarden:") {
			t.Errorf("got %s %s %q, want FATAL 57P05 from pgwarden", e.Severity, e.Code, e.Message)
		}
		if d := time.Since(start); d < timeout-100*time.Millisecond || d > 3*time.Second {
			t.Errorf("ended after %v, want about %v", d, timeout)
		}
		rc.WaitClosed(5 * time.Second)
	})
	t.Run("idle pgx", func(t *testing.T) {
		t.Parallel()
		ctx := proxytest.Ctx(t, 0)
		conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
		time.Sleep(3 * timeout)
		_, err := conn.Exec(ctx, "SELECT 1")
		if err == nil {
			t.Fatal("session still usable after the idle timeout")
		}
		t.Logf("after the idle timeout: %v", err)
	})
	t.Run("busy", func(t *testing.T) {
		t.Parallel()
		ctx := proxytest.Ctx(t, 0)
		conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
		if _, err := conn.Exec(ctx, "SELECT pg_sleep(1)"); err != nil {
			t.Fatalf("statement longer than the idle timeout: %v", err)
		}
	})
	t.Run("active within the timeout", func(t *testing.T) {
		t.Parallel()
		ctx := proxytest.Ctx(t, 0)
		conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
		for range 6 {
			time.Sleep(timeout / 3)
			proxytest.CheckUsable(t, ctx, conn)
		}
	})
	t.Run("copy in progress", func(t *testing.T) {
		t.Parallel()
		ctx := proxytest.Ctx(t, 0)
		rc := proxytest.RawStartup(t, ctx, p.Addr, nil)
		rc.Transcript(&pgproto3.Query{String: "CREATE TEMP TABLE slow (x int)"})
		rc.Send(&pgproto3.Query{String: "COPY slow FROM STDIN"})
		if _, ok := rc.Receive().(*pgproto3.CopyInResponse); !ok {
			t.Fatal("no CopyInResponse")
		}
		// The server waits on the client here; the session is not idle.
		time.Sleep(2 * timeout)
		rc.Send(&pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{})
		out := rc.Transcript()
		if !strings.Contains(strings.Join(out, " "), "COPY 1") {
			t.Errorf("COPY after a pause: %q", out)
		}
	})
}

// TestShutdownGraceful lets a running query finish and returns before the
// deadline once the sessions have ended; new clients are refused meanwhile.
// (Whether a session is ended as soon as it is idle between transactions, or
// only when its client leaves, is the proxy's choice: both are graceful.)
func TestShutdownGraceful(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))

	marker := proxytest.UniqueName(t)
	queryDone := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(0.5) /* "+marker+" */")
		queryDone <- err
	}()
	proxytest.WaitRunning(t, ctx, proxytest.SuperConn(t, ctx), marker, 1)

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	shutdownDone := make(chan error, 1)
	start := time.Now()
	go func() { shutdownDone <- p.Server.Shutdown(sctx) }()

	if err := <-queryDone; err != nil {
		t.Fatalf("running query failed during a graceful shutdown: %v", err)
	}
	if c, err := proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser)); err == nil {
		c.Close(ctx)
		t.Error("a new client connected during shutdown")
	}
	// The session may already have been ended at its idle point; if not,
	// its client leaves now.
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		proxytest.WantCode(t, err, "57P01")
	}
	conn.Close(ctx)
	select {
	case err := <-shutdownDone:
		if err != nil {
			t.Errorf("Shutdown = %v, want nil once every session ended", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Shutdown took %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last session ended")
	}
}

// TestShutdownDeadline closes the sessions still open at the deadline,
// telling their clients why, and cancels their upstream queries.
func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	super := proxytest.SuperConn(t, ctx)
	marker := proxytest.UniqueName(t)
	busy := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
	idle := proxytest.Connect(t, ctx, p.DSN(pgtest.ScramUser))
	proxytest.CheckUsable(t, ctx, idle)

	queryDone := make(chan error, 1)
	go func() {
		_, err := busy.Exec(ctx, fmt.Sprintf("SELECT pg_sleep(20) /* %s */", marker))
		queryDone <- err
	}()
	proxytest.WaitRunning(t, ctx, super, marker, 1)

	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Server.Shutdown(sctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v with a 500ms deadline", d)
	}
	select {
	case err := <-queryDone:
		pgErr := proxytest.WantCode(t, err, "57P01")
		if !strings.HasPrefix(pgErr.Message, "pgwarden:") {
			t.Errorf("message %q, want pgwarden's", pgErr.Message)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the running query was not ended by the shutdown")
	}
	if _, err := idle.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("idle session still usable after shutdown")
	}
	wantCancelled(t, ctx, super, marker)
}

// TestShutdownWithConnectionInStartup: a client that connected but has not
// finished startup must not hold Shutdown past its deadline.
func TestShutdownWithConnectionInStartup(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithConfig(func(c *proxy.Config) { c.StartupTimeout = 20 * time.Second }))
	ctx := proxytest.Ctx(t, 0)
	silent := proxytest.DialRaw(t, ctx, p.Addr)
	waiting := proxytest.DialRaw(t, ctx, p.Addr) // asked for a password, never answers
	waiting.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": pgtest.MD5User, "database": pgtest.Shared(t).Database}})
	if _, ok := waiting.Receive().(*pgproto3.AuthenticationMD5Password); !ok {
		t.Fatal("no md5 password request")
	}
	proxytest.Eventually(t, 5*time.Second, "both connections accepted", func() (bool, string) {
		return p.Server.Sessions() == 2, fmt.Sprintf("%d", p.Server.Sessions())
	})

	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Server.Shutdown(sctx) }()
	select {
	case <-done:
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Shutdown took %v with a 500ms deadline", d)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("Shutdown with a 500ms deadline still waiting after 5s for connections in startup (StartupTimeout 20s)")
		silent.Close()
		waiting.Close()
		<-done
	}
}

// TestShutdownDeadlineMidResult ends a session at the shutdown deadline
// while the proxy is blocked writing a big result to a slow client. The
// byte stream the client receives must stay a sequence of whole messages: a
// half-written DataRow followed by the proxy's ErrorResponse would be read
// as one corrupt message. The proxy may tell the client why (a whole
// ErrorResponse 57P01) or just close, as the design says: "the client is
// told why if pgwarden ended the session and the wire is between messages".
func TestShutdownDeadlineMidResult(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	rc := proxytest.RawStartup(t, ctx, p.Addr, nil)
	rc.Send(&pgproto3.Query{String: "SELECT i, repeat('x', 997) FROM generate_series(1, 1000000) i"})

	var stream []byte
	buf := make([]byte, 1000)
	shutdownDone := make(chan error, 1)
	var shutdownErr error
	finished := false
	for reads := 0; ; reads++ {
		n, err := rc.Read(buf)
		stream = append(stream, buf[:n]...)
		if err != nil {
			break
		}
		if reads == 100 {
			// Let the proxy's buffers and the socket fill up, then shut down.
			time.Sleep(300 * time.Millisecond)
			sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			go func() { shutdownDone <- p.Server.Shutdown(sctx) }()
		}
		if reads > 100 && !finished {
			select {
			case shutdownErr = <-shutdownDone:
				// Read the rest at full speed.
				finished, buf = true, make([]byte, 64<<10)
			default:
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	if !finished {
		select {
		case shutdownErr = <-shutdownDone:
		case <-time.After(5 * time.Second):
			t.Fatal("Shutdown did not return")
		}
	}
	if !errors.Is(shutdownErr, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want context.DeadlineExceeded", shutdownErr)
	}

	// Walk the frames. The stream may end inside a frame (the proxy closed
	// mid-write) but no frame may start inside another.
	msg := []byte("terminating connection because pgwarden is shutting down")
	at := bytes.Index(stream, msg)
	off, frames := 0, 0
	var last byte
	for off+5 <= len(stream) {
		typ := stream[off]
		length := int(binary.BigEndian.Uint32(stream[off+1:]))
		if !strings.ContainsRune("TDCZE", rune(typ)) || length < 4 {
			t.Fatalf("garbage at byte %d of %d after %d messages: type %q, length %d", off, len(stream), frames, typ, length)
		}
		if at >= 0 && at > off && at < off+1+length && typ != 'E' {
			t.Fatalf("pgwarden's ErrorResponse is inside message %d (type %q, bytes %d..%d): the client reads it as a corrupt %q",
				frames, typ, off, off+1+length, typ)
		}
		off += 1 + length
		frames++
		last = typ
	}
	t.Logf("%d bytes, %d messages, last %q, error message present: %v", len(stream), frames, last, at >= 0)
}

// TestSessionEndReleasesBackend ends sessions with Terminate and by just
// closing the socket: either way the upstream backend goes away.
func TestSessionEndReleasesBackend(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	super := proxytest.SuperConn(t, ctx)
	for _, abrupt := range []bool{false, true} {
		app := proxytest.UniqueName(t)
		conn, err := proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser, "application_name="+app))
		if err != nil {
			t.Fatal(err)
		}
		proxytest.CheckUsable(t, ctx, conn)
		if abrupt {
			conn.PgConn().Conn().Close()
		} else {
			conn.Close(ctx)
		}
		proxytest.Eventually(t, 5*time.Second, "backend released", func() (bool, string) {
			n, err := proxytest.BackendsOf(ctx, super, app)
			if err != nil {
				t.Fatal(err)
			}
			return n == 0, fmt.Sprintf("abrupt=%v: %d backends left", abrupt, n)
		})
	}
	wantSessions(t, p, 0)
}

// TestUpstreamDownObserved: with the upstream server unreachable the client
// gets a clear 08006, and the proxy reports the failure for its metrics.
func TestUpstreamDownObserved(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var events []string
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	p := proxytest.Start(t, proxytest.WithConfig(func(c *proxy.Config) {
		c.UpstreamAddr = deadAddr
		c.Observe = func(e string) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}
	}))
	ctx := proxytest.Ctx(t, 0)
	_, err = proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser))
	proxytest.WantCode(t, err, "08006")
	proxytest.Eventually(t, 3*time.Second, "events observed", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		got := strings.Join(events, ",")
		return got == "connection,failed:08006,upstream_error", got
	})
}

// TestTerminateAfterPipelinedQuery: a client that writes a query and
// Terminate together still reads the query's answer before the connection
// closes, as from PostgreSQL: the server answers what came before the
// Terminate, then closes.
func TestTerminateAfterPipelinedQuery(t *testing.T) {
	ctx := proxytest.Ctx(t, 20*time.Second)
	for _, name := range []string{"direct", "proxy"} {
		addr := pgtest.Shared(t).Addr()
		if name == "proxy" {
			addr = proxytest.Start(t).Addr
		}
		rc := proxytest.RawStartup(t, ctx, addr, nil)
		rc.Send(&pgproto3.Query{String: "SELECT pg_sleep(0.2), 42 AS answer"}, &pgproto3.Terminate{})
		var got []string
		for {
			m, err := rc.FE.Receive()
			if err != nil {
				break
			}
			switch m := m.(type) {
			case *pgproto3.DataRow:
				got = append(got, "row "+string(m.Values[1]))
			case *pgproto3.CommandComplete:
				got = append(got, "complete "+string(m.CommandTag))
			case *pgproto3.ReadyForQuery:
				got = append(got, "ready")
			}
		}
		if want := "row 42,complete SELECT 1,ready"; strings.Join(got, ",") != want {
			t.Errorf("%s: received %q before the close, want %s", name, got, want)
		}
	}
}
