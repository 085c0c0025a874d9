package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// startupPacket builds a startup-phase packet: length, code, then body.
func startupPacket(code uint32, body []byte) []byte {
	b := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(b, uint32(8+len(body)))
	binary.BigEndian.PutUint32(b[4:], code)
	return append(b, body...)
}

// frame builds a message after startup with the given length field.
func frame(typ byte, length uint32, body []byte) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], length)
	return append(b, body...)
}

// wantSessions waits until the proxy counts n open client connections: a
// bad connection must not linger.
func wantSessions(t *testing.T, p *proxytest.Proxy, n int) {
	t.Helper()
	proxytest.Eventually(t, 5*time.Second, "sessions closed", func() (bool, string) {
		got := p.Server.Sessions()
		return got == n, fmt.Sprintf("%d sessions open, want %d", got, n)
	})
}

// TestBadStartup sends malformed startup packets: each gets an
// ErrorResponse with the expected SQLSTATE (or, for a truncated packet, a
// plain close), and a session opened before goes on working.
func TestBadStartup(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	bystander := proxytest.Connect(t, ctx, p.DSN(pgtest.ScramUser))

	user := []byte("user\x00" + pgtest.TrustUser + "\x00\x00")
	cases := []struct {
		name     string
		data     []byte
		halfOpen bool   // close our write side after sending
		wantCode string // "" when the proxy just closes
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), false, "08P01"},
		{"huge length", []byte{0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0}, false, "08P01"},
		{"length below 8", []byte{0, 0, 0, 4, 0, 3, 0, 0}, false, "08P01"},
		{"length just over the limit", append([]byte{0, 0, 0x27, 0x11}, make([]byte, 16)...), false, "08P01"},
		{"protocol 2.0", startupPacket(2<<16, user), false, "0A000"},
		{"protocol 4.0", startupPacket(4<<16, user), false, "0A000"},
		{"no user", startupPacket(3<<16, []byte("database\x00x\x00\x00")), false, "28000"},
		{"missing terminator", startupPacket(3<<16, []byte("user\x00"+pgtest.TrustUser)), false, "08P01"},
		{"data after terminator", startupPacket(3<<16, append(user, 'x')), false, "08P01"},
		{"SSLRequest too long", startupPacket(80877103, []byte{0, 0, 0, 0}), false, "08P01"},
		{"truncated packet", []byte{0, 0, 0, 100, 0, 3, 0, 0, 'u'}, true, ""},
		{"nothing then close", nil, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := proxytest.DialRaw(t, ctx, p.Addr)
			if _, err := rc.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			if tc.halfOpen {
				rc.Conn.(*net.TCPConn).CloseWrite()
			}
			if tc.wantCode != "" {
				e := rc.ReadError()
				if e.Code != tc.wantCode || e.Severity != "FATAL" || !strings.HasPrefix(e.Message, "pgwarden:") {
					t.Errorf("got %s %s %q, want FATAL %s from pgwarden", e.Severity, e.Code, e.Message, tc.wantCode)
				}
			}
			rc.WaitClosed(5 * time.Second)
		})
	}
	proxytest.CheckUsable(t, ctx, bystander)
	wantSessions(t, p, 1)
}

// TestBadFrames sends malformed frames after a successful startup: the
// session ends with FATAL 08P01 (a length below 4) or 54000 (over
// MaxMessageSize), and a bystander session is unaffected.
func TestBadFrames(t *testing.T) {
	t.Parallel()
	const maxSize = 1 << 20
	for _, inspected := range []bool{false, true} {
		t.Run(fmt.Sprintf("inspected=%v", inspected), func(t *testing.T) {
			t.Parallel()
			opts := []proxytest.Option{proxytest.WithConfig(func(c *proxy.Config) { c.MaxMessageSize = maxSize })}
			if inspected {
				opts = append(opts, proxytest.WithRowLimit(1000))
			}
			p := proxytest.Start(t, opts...)
			ctx := proxytest.Ctx(t, 0)
			bystander := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
			cases := []struct {
				name string
				data []byte
				code string
			}{
				{"length 3", frame('Q', 3, nil), "08P01"},
				{"length 0", frame('Q', 0, nil), "08P01"},
				{"over MaxMessageSize", frame('Q', maxSize+4+1, bytes.Repeat([]byte("x"), 64<<10)), "54000"},
				{"negative length", frame('P', 0x80000000, nil), "08P01"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					rc := proxytest.RawStartup(t, ctx, p.Addr, nil)
					if _, err := rc.Write(tc.data); err != nil {
						t.Fatal(err)
					}
					e := rc.ReadError()
					if e.Code != tc.code || e.Severity != "FATAL" || !strings.HasPrefix(e.Message, "pgwarden:") {
						t.Errorf("got %s %s %q, want FATAL %s from pgwarden", e.Severity, e.Code, e.Message, tc.code)
					}
					if tc.code == "54000" && !strings.Contains(e.Message, fmt.Sprintf("exceeds pgwarden's limit of %d bytes (max_message_size)", maxSize)) {
						t.Errorf("message %q does not name the limit", e.Message)
					}
					rc.WaitClosed(5 * time.Second)
					proxytest.CheckUsable(t, ctx, bystander)
				})
			}
			// A message just under the limit passes.
			var n int
			if err := bystander.QueryRow(ctx, "SELECT length($1::text)", strings.Repeat("y", maxSize-1000)).Scan(&n); err != nil || n != maxSize-1000 {
				t.Errorf("query just under MaxMessageSize: %d, %v", n, err)
			}
			wantSessions(t, p, 1)
		})
	}
}

// TestLargeServerMessage: MaxMessageSize caps the client's messages only;
// the server's keep PostgreSQL's own limit, so a row larger than
// MaxMessageSize reaches the client.
func TestLargeServerMessage(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithConfig(func(c *proxy.Config) { c.MaxMessageSize = 1 << 20 }))
	ctx := proxytest.Ctx(t, 0)
	conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
	var s string
	if err := conn.QueryRow(ctx, "SELECT repeat('x', 2 << 20)").Scan(&s); err != nil || len(s) != 2<<20 {
		t.Fatalf("a 2 MiB row: %d bytes, %v", len(s), err)
	}
	proxytest.CheckUsable(t, ctx, conn)
}

// TestUnknownMessageType sends a message type PostgreSQL does not know: the
// server answers FATAL 08P01 and the client receives it.
func TestUnknownMessageType(t *testing.T) {
	t.Parallel()
	c := pgtest.Shared(t)
	p := proxytest.Start(t)
	pi := proxytest.Start(t, proxytest.WithRowLimit(1000))
	for _, ep := range []struct{ name, addr string }{{"direct", c.Addr()}, {"proxied", p.Addr}, {"inspected", pi.Addr}} {
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			rc := proxytest.RawStartup(t, ctx, ep.addr, nil)
			rc.Write(frame('z', 4, nil))
			e := rc.ReadError()
			if e.Code != "08P01" || e.Severity != "FATAL" || !strings.Contains(e.Message, "invalid frontend message type 122") {
				t.Errorf("got %s %s %q, want PostgreSQL's FATAL 08P01", e.Severity, e.Code, e.Message)
			}
			rc.WaitClosed(5 * time.Second)
		})
	}
}

// TestMalformedMessages sends messages with a valid frame but a broken
// body. Relayed, PostgreSQL judges them as direct; inspected, the proxy
// refuses what it cannot parse.
func TestMalformedMessages(t *testing.T) {
	t.Parallel()
	c := pgtest.Shared(t)
	p := proxytest.Start(t)
	pi := proxytest.Start(t, proxytest.WithRowLimit(1000))
	msgs := map[string][]byte{
		"bind without names":       frame('B', 5, []byte{0}),
		"query without terminator": frame('Q', 7, []byte("sel")),
		"execute too short":        frame('E', 6, []byte{0, 0}),
		"describe bad kind":        frame('D', 7, []byte{'X', 'a', 0}),
	}
	for name, data := range msgs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			readAll := func(addr string) []string {
				rc := proxytest.RawStartup(t, ctx, addr, nil)
				rc.Write(data)
				rc.Write(frame('S', 4, nil))
				var out []string
				for {
					m, err := rc.FE.Receive()
					if err != nil {
						return out
					}
					out = append(out, proxytest.Render(m))
					if _, ok := m.(*pgproto3.ReadyForQuery); ok {
						return out
					}
				}
			}
			want := readAll(c.Addr())
			got := readAll(p.Addr)
			proxytest.WantEqual(t, "relayed", want, got)

			rc := proxytest.RawStartup(t, ctx, pi.Addr, nil)
			rc.Write(data)
			rc.Write(frame('S', 4, nil))
			e := rc.ReadError()
			if e.Code != "08P01" {
				t.Errorf("inspected: got %s %s %q, want 08P01", e.Severity, e.Code, e.Message)
			}
		})
	}
	ctx := proxytest.Ctx(t, 0)
	proxytest.CheckUsable(t, ctx, proxytest.Connect(t, ctx, pi.DSN(pgtest.TrustUser)))
}

// TestClientGoneMidCopy drops the client connection in the middle of COPY
// FROM STDIN: the upstream backend goes away too.
func TestClientGoneMidCopy(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	super := proxytest.SuperConn(t, ctx)
	app := proxytest.UniqueName(t)
	rc := proxytest.RawStartup(t, ctx, p.Addr, map[string]string{"application_name": app})
	rc.Transcript(&pgproto3.Query{String: "CREATE TEMP TABLE gone (x int)"})
	rc.Send(&pgproto3.Query{String: "COPY gone FROM STDIN"})
	if _, ok := rc.Receive().(*pgproto3.CopyInResponse); !ok {
		t.Fatal("no CopyInResponse")
	}
	for i := range 100 {
		rc.Send(&pgproto3.CopyData{Data: []byte(fmt.Sprintf("%d\n", i))})
	}
	if n, _ := proxytest.BackendsOf(ctx, super, app); n != 1 {
		t.Fatalf("%d backends for the session before the drop", n)
	}
	rc.Close()
	proxytest.Eventually(t, 5*time.Second, "upstream backend gone", func() (bool, string) {
		n, err := proxytest.BackendsOf(ctx, super, app)
		if err != nil {
			t.Fatal(err)
		}
		return n == 0, fmt.Sprintf("%d backends for application %s", n, app)
	})
	wantSessions(t, p, 0)
}

// TestUpstreamTerminatesBackend terminates proxied backends with
// pg_terminate_backend, busy and idle: their clients get an error, and other
// sessions go on.
func TestUpstreamTerminatesBackend(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	super := proxytest.SuperConn(t, ctx)
	bystander := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
	busy := proxytest.Connect(t, ctx, p.DSN(pgtest.ScramUser))
	idle := proxytest.Connect(t, ctx, p.DSN(pgtest.MD5User))
	var busyPID, idlePID int
	if err := busy.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&busyPID); err != nil {
		t.Fatal(err)
	}
	if err := idle.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&idlePID); err != nil {
		t.Fatal(err)
	}

	marker := proxytest.UniqueName(t)
	done := make(chan error, 1)
	go func() {
		_, err := busy.Exec(ctx, "SELECT pg_sleep(20) /* "+marker+" */")
		done <- err
	}()
	proxytest.WaitRunning(t, ctx, super, marker, 1)
	proxytest.MustExec(t, ctx, super, "SELECT pg_terminate_backend($1)", busyPID)
	select {
	case err := <-done:
		pgErr := proxytest.WantCode(t, err, "57P01")
		if pgErr.Severity != "FATAL" {
			t.Errorf("severity %q, want FATAL", pgErr.Severity)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the busy client got no error within 5s")
	}

	proxytest.MustExec(t, ctx, super, "SELECT pg_terminate_backend($1)", idlePID)
	proxytest.Eventually(t, 5*time.Second, "the idle backend gone", func() (bool, string) {
		var n int
		err := super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", idlePID).Scan(&n)
		return err == nil && n == 0, fmt.Sprintf("%d backends, %v", n, err)
	})
	if _, err := idle.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the idle client's session still works after its backend was terminated")
	} else {
		t.Logf("idle client: %v", err)
	}
	proxytest.CheckUsable(t, ctx, bystander)
	proxytest.CheckUsable(t, ctx, proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser)))
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestUpstreamUnreachable points the proxy at a closed port: the client
// gets FATAL 08006 from pgwarden.
func TestUpstreamUnreachable(t *testing.T) {
	t.Parallel()
	addr := closedPort(t)
	p := proxytest.Start(t, proxytest.WithConfig(func(c *proxy.Config) { c.UpstreamAddr = addr }))
	ctx := proxytest.Ctx(t, 0)
	start := time.Now()
	conn, err := proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser))
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a closed port")
	}
	pgErr := proxytest.WantCode(t, err, "08006")
	if pgErr.Severity != "FATAL" || !strings.Contains(pgErr.Message, "pgwarden") {
		t.Errorf("got %s %q, want FATAL mentioning pgwarden", pgErr.Severity, pgErr.Message)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
	wantSessions(t, p, 0)
}

// forwarder is a TCP relay to the cluster that can be stopped and started
// on the same port, to play an upstream that goes down and comes back.
type forwarder struct {
	t      *testing.T
	addr   string
	target string
	ln     net.Listener
	done   chan struct{}
}

func (f *forwarder) start() {
	f.t.Helper()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatalf("relisten on %s: %v", f.addr, err)
	}
	f.ln, f.done = ln, make(chan struct{})
	go func() {
		defer close(f.done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", f.target)
			if err != nil {
				c.Close()
				continue
			}
			conns = append(conns, c, u)
			go pipe(c, u)
			go pipe(u, c)
		}
	}()
}

func (f *forwarder) stop() {
	f.ln.Close()
	<-f.done
}

func pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

// TestUpstreamComesBack takes the upstream away and brings it back: clients
// get a clear error meanwhile, and pgwarden serves again afterwards.
func TestUpstreamComesBack(t *testing.T) {
	t.Parallel()
	c := pgtest.Shared(t)
	f := &forwarder{t: t, addr: closedPort(t), target: c.Addr()}
	f.start()
	p := proxytest.Start(t, proxytest.WithConfig(func(cfg *proxy.Config) { cfg.UpstreamAddr = f.addr }))
	ctx := proxytest.Ctx(t, 0)

	before := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
	proxytest.CheckUsable(t, ctx, before)

	f.stop() // closes the listener and every relayed connection
	if _, err := before.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("query succeeded with the upstream gone")
	}
	_, err := proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser))
	proxytest.WantCode(t, err, "08006")

	f.start()
	defer f.stop()
	after := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
	proxytest.CheckUsable(t, ctx, after)
}

// TestReplicationRefused refuses replication connections, which would
// bypass statement inspection.
func TestReplicationRefused(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	for _, mode := range []string{"database", "true"} {
		_, err := proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser), func(cfg *pgx.ConnConfig) {
			cfg.RuntimeParams["replication"] = mode
		})
		pgErr := proxytest.WantCode(t, err, "42501")
		if pgErr.Severity != "FATAL" || !strings.HasPrefix(pgErr.Message, "pgwarden:") {
			t.Errorf("replication=%s: %s %q", mode, pgErr.Severity, pgErr.Message)
		}
	}
	conn, err := proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser), func(cfg *pgx.ConnConfig) {
		cfg.RuntimeParams["replication"] = "false"
	})
	if err != nil {
		t.Fatalf("replication=false refused: %v", err)
	}
	conn.Close(ctx)
}

// TestBadTLSHandshake accepts the SSLRequest and then gets garbage instead
// of a ClientHello: the connection is closed and the proxy goes on.
func TestBadTLSHandshake(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithClientTLS(t))
	ctx := proxytest.Ctx(t, 0)
	rc := proxytest.DialRaw(t, ctx, p.Addr)
	rc.Write(startupPacket(80877103, nil))
	var b [1]byte
	if _, err := rc.Read(b[:]); err != nil || b[0] != 'S' {
		t.Fatalf("SSLRequest: %q %v", b[0], err)
	}
	rc.Write([]byte("this is not a TLS ClientHello, not at all\r\n"))
	rc.WaitClosed(5 * time.Second)
	proxytest.CheckUsable(t, ctx, proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "sslmode=require")))
	wantSessions(t, p, 1)
}
