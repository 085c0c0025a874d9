package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"math/big"
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

var allUsers = []string{pgtest.TrustUser, pgtest.PlainUser, pgtest.MD5User, pgtest.ScramUser}

// withWrongPassword replaces the test password in a DSN.
func withWrongPassword(dsn string) string {
	return strings.Replace(dsn, ":"+pgtest.Password+"@", ":not-the-password@", 1)
}

// sessionTLS reports whether conn's client side and its upstream backend use TLS.
func sessionTLS(t *testing.T, conn *pgx.Conn) (clientTLS, upstreamTLS bool) {
	t.Helper()
	_, clientTLS = conn.PgConn().Conn().(*tls.Conn)
	err := conn.QueryRow(t.Context(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&upstreamTLS)
	if err != nil {
		t.Fatal(err)
	}
	return clientTLS, upstreamTLS
}

// TestAuthMethods connects as each user (trust, cleartext password, md5,
// SCRAM) with the right and a wrong password, in every combination of TLS
// between client and proxy and between proxy and PostgreSQL. A wrong
// password gets PostgreSQL's own 28P01, the same as direct.
func TestAuthMethods(t *testing.T) {
	t.Parallel()
	c := pgtest.Shared(t)
	for _, clientTLS := range []bool{false, true} {
		for _, upstreamTLS := range []bool{false, true} {
			var opts []proxytest.Option
			sslmode := "sslmode=disable"
			if clientTLS {
				opts = append(opts, proxytest.WithClientTLS(t))
				sslmode = "sslmode=verify-full"
			}
			if upstreamTLS {
				opts = append(opts, proxytest.WithUpstreamTLS(t, proxy.TLSVerifyFull, "localhost"))
			}
			p := proxytest.Start(t, opts...)
			for _, user := range allUsers {
				name := fmt.Sprintf("client_tls=%v/upstream_tls=%v/%s", clientTLS, upstreamTLS, user)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					ctx := proxytest.Ctx(t, 0)
					conn := proxytest.Connect(t, ctx, p.DSN(user, sslmode))
					var current string
					if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&current); err != nil {
						t.Fatal(err)
					}
					if current != user {
						t.Errorf("current_user = %q, want %q", current, user)
					}
					gotClient, gotUpstream := sessionTLS(t, conn)
					if gotClient != clientTLS || gotUpstream != upstreamTLS {
						t.Errorf("TLS client=%v upstream=%v, want %v %v", gotClient, gotUpstream, clientTLS, upstreamTLS)
					}
				})
				if user == pgtest.TrustUser {
					continue
				}
				t.Run(name+"/wrong_password", func(t *testing.T) {
					t.Parallel()
					ctx := proxytest.Ctx(t, 0)
					_, directErr := proxytest.TryConnect(ctx, withWrongPassword(c.DSN(user)))
					conn, err := proxytest.TryConnect(ctx, withWrongPassword(p.DSN(user, sslmode)))
					if err == nil {
						conn.Close(ctx)
						t.Fatal("connected with a wrong password")
					}
					got := proxytest.WantCode(t, err, "28P01")
					want := proxytest.PgError(t, directErr)
					proxytest.WantEqual(t, "error", [3]string{want.Severity, want.Code, want.Message}, [3]string{got.Severity, got.Code, got.Message})
				})
			}
		}
	}
}

// selfSignedPool returns a pool with a CA that signed nothing the cluster
// uses.
func selfSignedPool(t *testing.T) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "some other CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestUpstreamTLSModes connects upstream in each TLS mode, and checks that
// verification failures refuse the session with a clear error.
func TestUpstreamTLSModes(t *testing.T) {
	t.Parallel()
	wrongCA := selfSignedPool(t)
	cases := []struct {
		name    string
		cfg     func(*proxy.Config)
		wantTLS bool
		failLog string // when set, the session fails and the log names this
	}{
		{"disable", func(c *proxy.Config) { c.UpstreamTLSMode = proxy.TLSDisable }, false, ""},
		{"require", func(c *proxy.Config) { c.UpstreamTLSMode = proxy.TLSRequire }, true, ""},
		{"require ignores the CA", func(c *proxy.Config) {
			c.UpstreamTLSMode = proxy.TLSRequire
			c.UpstreamTLS = &tls.Config{RootCAs: wrongCA}
		}, true, ""},
		{"verify-full localhost", proxytest.WithUpstreamTLS(t, proxy.TLSVerifyFull, "localhost"), true, ""},
		{"verify-full by address", proxytest.WithUpstreamTLS(t, proxy.TLSVerifyFull, ""), true, ""},
		{"verify-full defaults with UpstreamTLS set", func(c *proxy.Config) {
			c.UpstreamTLS = &tls.Config{RootCAs: proxytest.CAPool(t)}
		}, true, ""},
		{"verify-full wrong CA", func(c *proxy.Config) {
			c.UpstreamTLSMode = proxy.TLSVerifyFull
			c.UpstreamTLS = &tls.Config{RootCAs: wrongCA, ServerName: "localhost"}
		}, false, "certificate signed by unknown authority"},
		{"verify-full wrong host name", proxytest.WithUpstreamTLS(t, proxy.TLSVerifyFull, "db.example.com"), false, "db.example.com"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			p := proxytest.Start(t, proxytest.WithConfig(tc.cfg))
			conn, err := proxytest.TryConnect(ctx, p.DSN(pgtest.ScramUser))
			if tc.failLog != "" {
				if err == nil {
					conn.Close(ctx)
					t.Fatal("connected through an upstream that fails verification")
				}
				pgErr := proxytest.WantCode(t, err, "08006")
				if pgErr.Severity != "FATAL" || !strings.HasPrefix(pgErr.Message, "pgwarden:") {
					t.Errorf("error %s %q, want FATAL from pgwarden", pgErr.Severity, pgErr.Message)
				}
				p.Logs.WaitFor(t, 3*time.Second, tc.failLog)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, upstream := sessionTLS(t, conn); upstream != tc.wantTLS {
				t.Errorf("upstream TLS = %v, want %v", upstream, tc.wantTLS)
			}
		})
	}
}

// TestClientSSLModes checks libpq's sslmode semantics against a proxy with
// and without TLS for clients.
func TestClientSSLModes(t *testing.T) {
	t.Parallel()
	noTLS := proxytest.Start(t)
	withTLS := proxytest.Start(t, proxytest.WithClientTLS(t))
	cases := []struct {
		name    string
		p       *proxytest.Proxy
		sslmode string
		wantTLS bool
		wantErr string
	}{
		{"no TLS/require fails", noTLS, "require", false, "refused TLS"},
		{"no TLS/verify-full fails", noTLS, "verify-full", false, "refused TLS"},
		{"no TLS/prefer falls back", noTLS, "prefer", false, ""},
		{"no TLS/allow", noTLS, "allow", false, ""},
		{"no TLS/disable", noTLS, "disable", false, ""},
		{"TLS/prefer", withTLS, "prefer", true, ""},
		{"TLS/require", withTLS, "require", true, ""},
		{"TLS/verify-ca", withTLS, "verify-ca", true, ""},
		{"TLS/verify-full", withTLS, "verify-full", true, ""},
		{"TLS/disable", withTLS, "disable", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			conn, err := proxytest.TryConnect(ctx, tc.p.DSN(pgtest.MD5User, "sslmode="+tc.sslmode))
			if tc.wantErr != "" {
				if err == nil {
					conn.Close(ctx)
					t.Fatal("connected")
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				// The refused client did not disturb the proxy.
				proxytest.CheckUsable(t, ctx, proxytest.Connect(t, ctx, tc.p.DSN(pgtest.MD5User)))
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if client, _ := sessionTLS(t, conn); client != tc.wantTLS {
				t.Errorf("client TLS = %v, want %v", client, tc.wantTLS)
			}
		})
	}
}

// TestSSLNegotiation walks the startup negotiation by hand: GSSENCRequest
// refused, SSLRequest accepted, a TLS handshake, and a startup message over
// TLS; and a second SSLRequest inside TLS refused as a protocol violation.
func TestSSLNegotiation(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithClientTLS(t))
	c := pgtest.Shared(t)
	ctx := proxytest.Ctx(t, 0)
	rc := proxytest.DialRaw(t, ctx, p.Addr)
	answer := func(conn net.Conn, code uint32) byte {
		t.Helper()
		req := make([]byte, 8)
		binary.BigEndian.PutUint32(req, 8)
		binary.BigEndian.PutUint32(req[4:], code)
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := conn.Read(b[:]); err != nil {
			t.Fatal(err)
		}
		return b[0]
	}
	if b := answer(rc, 80877104); b != 'N' {
		t.Fatalf("GSSENCRequest answered %q, want 'N'", b)
	}
	if b := answer(rc, 80877103); b != 'S' {
		t.Fatalf("SSLRequest answered %q, want 'S'", b)
	}
	tc := tls.Client(rc, &tls.Config{RootCAs: proxytest.CAPool(t), ServerName: "localhost"})
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(tc, tc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": pgtest.TrustUser, "database": c.Database}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}

	// An SSLRequest on a TLS connection is a protocol violation.
	rc2 := proxytest.DialRaw(t, ctx, p.Addr)
	if b := answer(rc2, 80877103); b != 'S' {
		t.Fatalf("SSLRequest answered %q", b)
	}
	tc2 := tls.Client(rc2, &tls.Config{RootCAs: proxytest.CAPool(t), ServerName: "localhost"})
	if err := tc2.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	req := make([]byte, 8)
	binary.BigEndian.PutUint32(req, 8)
	binary.BigEndian.PutUint32(req[4:], 80877103)
	tc2.Write(req)
	fe2 := pgproto3.NewFrontend(tc2, tc2)
	m, err := fe2.Receive()
	if err != nil {
		t.Fatalf("no answer to a second SSLRequest: %v", err)
	}
	e, ok := m.(*pgproto3.ErrorResponse)
	if !ok || e.Code != "08P01" {
		t.Fatalf("second SSLRequest answered %#v, want ErrorResponse 08P01", m)
	}
}
