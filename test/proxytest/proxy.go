package proxytest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// Timeout bounds every test's context: no test through the proxy should take
// more than a few seconds, and a hang must fail rather than wait for -timeout.
const Timeout = 30 * time.Second

// Ctx returns a context that ends with the test or after d (Timeout
// when d is 0).
func Ctx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	if d == 0 {
		d = Timeout
	}
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// Proxy is a pgwarden serving on a loopback port for one test.
type Proxy struct {
	Addr    string
	Server  *proxy.Server
	Logs    *LogCapture
	Cluster *pgtest.Cluster
}

// DSN returns a URL like c.DSN that connects through the proxy instead.
func (p *Proxy) DSN(user string, params ...string) string {
	return ViaAddr(p.Cluster.DSN(user, params...), p.Addr)
}

// ViaAddr replaces the host:port of a postgres:// URL.
func ViaAddr(dsn, addr string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic(err)
	}
	u.Host = addr
	return u.String()
}

// Option changes the configuration Start passes to proxy.NewServer.
type Option func(*proxy.Config)

// WithInspector has the proxy consult i.
func WithInspector(i proxy.Inspector) Option {
	return func(c *proxy.Config) { c.Inspector = i }
}

// WithRowLimit blocks every statement whose result passes max rows.
func WithRowLimit(max int64) Option {
	return WithInspector(&RowLimit{Max: max})
}

// WithConfig changes the proxy configuration with f.
func WithConfig(f func(*proxy.Config)) Option { return Option(f) }

// WithClientTLS offers clients TLS with a certificate for localhost and
// 127.0.0.1 signed by the cluster's CA.
func WithClientTLS(t testing.TB) Option {
	t.Helper()
	cfg := ServerTLS(t)
	return func(c *proxy.Config) { c.ClientTLS = cfg }
}

// WithUpstreamTLS connects upstream with TLS in mode, trusting the cluster's CA.
func WithUpstreamTLS(t testing.TB, mode proxy.TLSMode, serverName string) Option {
	t.Helper()
	pool := CAPool(t)
	return func(c *proxy.Config) {
		c.UpstreamTLSMode = mode
		c.UpstreamTLS = &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	}
}

// Start starts a pgwarden in front of the shared cluster and stops it
// when the test ends. Its logs go to the test log and to p.Logs.
func Start(t testing.TB, opts ...Option) *Proxy {
	t.Helper()
	c := pgtest.Shared(t)
	logs := &LogCapture{t: t}
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
	return &Proxy{Addr: ln.Addr().String(), Server: srv, Logs: logs, Cluster: c}
}

// NewLogCapture returns a LogCapture that copies to t's log until t ends.
func NewLogCapture(t testing.TB) *LogCapture {
	l := &LogCapture{t: t}
	t.Cleanup(l.stop)
	return l
}

// LogCapture receives the proxy's slog output: it keeps the lines for
// assertions and copies them to the test log until the test ends.
type LogCapture struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
	done  bool
}

func (l *LogCapture) Write(p []byte) (int, error) {
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
func (l *LogCapture) stop() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

// Contains reports whether some log line contains every one of subs.
func (l *LogCapture) Contains(subs ...string) bool {
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
func (l *LogCapture) WaitFor(t testing.TB, d time.Duration, subs ...string) {
	t.Helper()
	Eventually(t, d, "log line "+strings.Join(subs, " "), func() (bool, string) {
		return l.Contains(subs...), "not logged"
	})
}

// ServerTLS returns a TLS server config with a certificate for localhost and
// 127.0.0.1 signed by the cluster's CA.
func ServerTLS(t testing.TB) *tls.Config {
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

// CAPool returns a pool holding the cluster's CA.
func CAPool(t testing.TB) *x509.CertPool {
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
