package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// testTimeout bounds every test's context: nothing in this suite should take
// more than a few seconds, and a hang must fail rather than wait for -timeout.
const testTimeout = 30 * time.Second

// testCtx returns a context that ends with the test or after d (testTimeout
// when d is 0).
func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	if d == 0 {
		d = testTimeout
	}
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// testProxy is a pgwarden serving on a loopback port for one test.
type testProxy struct {
	Addr   string
	Server *proxy.Server
	Logs   *logCapture
	c      *pgtest.Cluster
}

// DSN returns a URL like c.DSN that connects through the proxy instead.
func (p *testProxy) DSN(user string, params ...string) string {
	return viaAddr(p.c.DSN(user, params...), p.Addr)
}

// viaAddr replaces the host:port of a postgres:// URL.
func viaAddr(dsn, addr string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic(err)
	}
	u.Host = addr
	return u.String()
}

// proxyOption changes the configuration startProxy passes to proxy.NewServer.
type proxyOption func(*proxy.Config)

func withInspector(i proxy.Inspector) proxyOption {
	return func(c *proxy.Config) { c.Inspector = i }
}

func withRowLimit(max int64) proxyOption {
	return withInspector(&proxy.RowLimit{Max: max})
}

func withConfig(f func(*proxy.Config)) proxyOption { return proxyOption(f) }

// withClientTLS offers clients TLS with a certificate for localhost and
// 127.0.0.1 signed by the cluster's CA.
func withClientTLS(t testing.TB) proxyOption {
	t.Helper()
	cfg := serverTLS(t)
	return func(c *proxy.Config) { c.ClientTLS = cfg }
}

// withUpstreamTLS connects upstream with TLS in mode, trusting the cluster's CA.
func withUpstreamTLS(t testing.TB, mode proxy.TLSMode, serverName string) proxyOption {
	t.Helper()
	pool := caPool(t)
	return func(c *proxy.Config) {
		c.UpstreamTLSMode = mode
		c.UpstreamTLS = &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	}
}

// startProxy starts a pgwarden in front of the shared cluster and stops it
// when the test ends. Its logs go to the test log and to p.Logs.
func startProxy(t testing.TB, opts ...proxyOption) *testProxy {
	t.Helper()
	c := pgtest.Shared(t)
	logs := &logCapture{t: t}
	cfg := proxy.Config{
		UpstreamAddr:   c.Addr(),
		DialTimeout:    5 * time.Second,
		CancelTimeout:  5 * time.Second,
		StartupTimeout: 10 * time.Second,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := proxy.NewServer(cfg)
	if err != nil {
		t.Fatalf("proxy.NewServer: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		// Every connection the test opened is closed by now (cleanups run
		// last-in first-out), so the sessions end by themselves.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("proxy shutdown: %v: %d sessions still open at the end of the test", err, srv.Sessions())
		}
		if err := <-served; !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		logs.stop()
	})
	return &testProxy{Addr: ln.Addr().String(), Server: srv, Logs: logs, c: c}
}

// logCapture receives the proxy's slog output: it keeps the lines for
// assertions and copies them to the test log until the test ends.
type logCapture struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
	done  bool
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	line := strings.TrimRight(string(p), "\n")
	l.lines = append(l.lines, line)
	if !l.done {
		l.t.Log("pgwarden: " + line)
	}
	return len(p), nil
}

// stop ends copying to the test log: logging into a finished test panics.
func (l *logCapture) stop() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

// Contains reports whether some log line contains every one of subs.
func (l *logCapture) Contains(subs ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		return true
	}
	return false
}

// WaitFor fails the test unless a log line containing every one of subs
// appears within d: the proxy logs a session's end after closing it.
func (l *logCapture) WaitFor(t testing.TB, d time.Duration, subs ...string) {
	t.Helper()
	eventually(t, d, "log line "+strings.Join(subs, " "), func() (bool, string) {
		return l.Contains(subs...), "not logged"
	})
}

// serverTLS returns a TLS server config with a certificate for localhost and
// 127.0.0.1 signed by the cluster's CA.
func serverTLS(t testing.TB) *tls.Config {
	t.Helper()
	c := pgtest.Shared(t)
	certFile, keyFile, err := c.IssueCert("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, false)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// caPool returns a pool holding the cluster's CA.
func caPool(t testing.TB) *x509.CertPool {
	t.Helper()
	c := pgtest.Shared(t)
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in CAFile")
	}
	return pool
}

// connect opens a pgx connection that is closed when the test ends.
func connect(t testing.TB, ctx context.Context, dsn string, opts ...func(*pgx.ConnConfig)) *pgx.Conn {
	t.Helper()
	conn, err := tryConnect(ctx, dsn, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", redact(dsn), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

// tryConnect opens a pgx connection; the caller closes it.
func tryConnect(ctx context.Context, dsn string, opts ...func(*pgx.ConnConfig)) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = 5 * time.Second
	for _, o := range opts {
		o(cfg)
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// connectPg opens a pgconn connection that is closed when the test ends.
func connectPg(t testing.TB, ctx context.Context, dsn string, opts ...func(*pgconn.Config)) *pgconn.PgConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnectTimeout = 5 * time.Second
	for _, o := range opts {
		o(cfg)
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect %s: %v", redact(dsn), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

// cancelOnContext makes a context cancellation send a CancelRequest, as
// libpq-based clients do, instead of pgx's default of closing the socket.
func cancelOnContext(cfg *pgconn.Config) {
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 5 * time.Second}
	}
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}

// superConn opens a direct superuser connection, for looking at the server
// from outside the proxy.
func superConn(t testing.TB, ctx context.Context) *pgx.Conn {
	t.Helper()
	return connect(t, ctx, pgtest.Shared(t).DSN(pgtest.SuperUser))
}

// mustExec runs sql and fails the test on error.
func mustExec(t testing.TB, ctx context.Context, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// checkUsable fails the test unless SELECT 1 works on conn.
func checkUsable(t testing.TB, ctx context.Context, conn *pgx.Conn) {
	t.Helper()
	var n int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("session not usable: SELECT 1 = %d, %v", n, err)
	}
}

// pgError returns err's *pgconn.PgError, failing the test when there is none.
func pgError(t testing.TB, err error) *pgconn.PgError {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("err = %v (%T), want a *pgconn.PgError", err, err)
	}
	return pgErr
}

// wantCode fails the test unless err is a *pgconn.PgError with code.
func wantCode(t testing.TB, err error, code string) *pgconn.PgError {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want SQLSTATE %s", code)
	}
	pgErr := pgError(t, err)
	if pgErr.Code != code {
		t.Fatalf("err = %v (SQLSTATE %s), want SQLSTATE %s", err, pgErr.Code, code)
	}
	return pgErr
}

// wantEqual fails the test unless direct and proxied are deeply equal.
func wantEqual(t testing.TB, what string, direct, proxied any) {
	t.Helper()
	if !reflect.DeepEqual(direct, proxied) {
		t.Errorf("%s differs\n direct:  %s\n proxied: %s", what, show(direct), show(proxied))
	}
}

func show(v any) string {
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprintf("%#v", v)
}

// eventually polls cond every 50ms until it returns true or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v: %s", what, d, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// activeQueries counts the backends other than conn's own that are running
// a query containing marker.
func activeQueries(ctx context.Context, conn *pgx.Conn, marker string) (int, error) {
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%' || $1 || '%'`, marker).Scan(&n)
	return n, err
}

// backendsOf counts the backends whose application_name is app.
func backendsOf(ctx context.Context, conn *pgx.Conn, app string) (int, error) {
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n)
	return n, err
}

// uniqueName returns a name no other test uses, for markers, tables and
// application names.
func uniqueName(t testing.TB) string {
	t.Helper()
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, t.Name())
	return fmt.Sprintf("e2e_%s_%d", name, time.Now().UnixNano()%1e6)
}

// rawConn is a client that speaks the protocol message by message, for
// transcripts and for input no driver would send.
type rawConn struct {
	net.Conn
	fe *pgproto3.Frontend
	t  testing.TB
}

// dialRaw connects to addr without sending anything; the connection ends
// with the test or at ctx's deadline.
func dialRaw(t testing.TB, ctx context.Context, addr string) *rawConn {
	t.Helper()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawConn{Conn: conn, fe: pgproto3.NewFrontend(conn, conn), t: t}
}

// rawStartup connects to addr as a trust user and reads up to the first
// ReadyForQuery.
func rawStartup(t testing.TB, ctx context.Context, addr string, params map[string]string) *rawConn {
	t.Helper()
	rc := dialRaw(t, ctx, addr)
	p := map[string]string{"user": pgtest.TrustUser, "database": pgtest.Shared(t).Database}
	for k, v := range params {
		p[k] = v
	}
	rc.send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: p})
	for {
		switch m := rc.receive().(type) {
		case *pgproto3.ReadyForQuery:
			return rc
		case *pgproto3.ErrorResponse:
			t.Fatalf("startup: %s %s", m.Code, m.Message)
		}
	}
}

func (rc *rawConn) send(msgs ...pgproto3.FrontendMessage) {
	rc.t.Helper()
	for _, m := range msgs {
		rc.fe.Send(m)
	}
	if err := rc.fe.Flush(); err != nil {
		rc.t.Fatalf("send: %v", err)
	}
}

func (rc *rawConn) receive() pgproto3.BackendMessage {
	rc.t.Helper()
	m, err := rc.fe.Receive()
	if err != nil {
		rc.t.Fatalf("receive: %v", err)
	}
	return m
}

// transcript sends msgs and renders every message received up to and
// including the next ReadyForQuery.
func (rc *rawConn) transcript(msgs ...pgproto3.FrontendMessage) []string {
	rc.t.Helper()
	rc.send(msgs...)
	var out []string
	for {
		m := rc.receive()
		out = append(out, render(m))
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			return out
		}
	}
}

// render is a message as a transcript line.
func render(m pgproto3.BackendMessage) string {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprintf("%T", m)
	}
	return string(b)
}

// readError reads messages until an ErrorResponse, skipping others, and
// returns it; it fails the test if the connection ends first.
func (rc *rawConn) readError() *pgproto3.ErrorResponse {
	rc.t.Helper()
	for {
		m, err := rc.fe.Receive()
		if err != nil {
			rc.t.Fatalf("connection ended without an ErrorResponse: %v", err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			// Copy: the message is valid only until the next Receive.
			cp := *e
			return &cp
		}
	}
}

// waitClosed fails the test unless the peer closes the connection within d;
// anything it sends first is discarded.
func (rc *rawConn) waitClosed(d time.Duration) {
	rc.t.Helper()
	rc.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := rc.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			rc.t.Fatalf("connection still open after %v", d)
		}
		return
	}
}
