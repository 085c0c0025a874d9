package e2e

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/identity"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
	"github.com/pgwarden/pgwarden/test/testca"
)

// TestCertPgx: pgx connects with a client certificate, and the employee it
// names (its SAN email, else its common name) reaches the inspector.
func TestCertPgx(t *testing.T) {
	t.Parallel()
	ca := newClientCA(t)
	p, rec := startCertProxy(t, identity.CertConfig{CAFiles: []string{ca.File}, Map: "email,cn"})
	ctx := proxytest.Ctx(t, 0)
	for _, tc := range []struct {
		name, cn string
		emails   []string
		employee string
	}{
		{"SAN email", "Alice Example", []string{"Alice@Example.com"}, "alice@example.com"},
		{"common name", "bob", nil, "bob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := ca.issue(t, tc.cn, tc.emails...)
			app := proxytest.UniqueName(t)
			conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, cert.params("application_name="+app)...))
			proxytest.CheckUsable(t, ctx, conn)
			info := rec.session(t, app).info
			if info.Employee != tc.employee || info.IdentifiedBy != proxy.IdentifiedByCertificate || info.User != pgtest.TrustUser {
				t.Errorf("employee %q identified by %q as role %q; want %q by certificate as %q",
					info.Employee, info.IdentifiedBy, info.User, tc.employee, pgtest.TrustUser)
			}
			if len(info.ClientCertificates) == 0 || !info.ClientCertificates[0].Equal(cert.cert) {
				t.Errorf("the session's certificate is not the one the client presented")
			}
		})
	}
	t.Run("names no employee", func(t *testing.T) {
		cert := ca.issue(t, "")
		_, err := proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser, cert.params()...))
		pgErr := proxytest.WantCode(t, err, "28000")
		if pgErr.Severity != "FATAL" || !strings.Contains(pgErr.Message, "client certificate names no employee") {
			t.Errorf("refusal: %s %s", pgErr.Severity, pgErr.Message)
		}
	})
}

// TestCertPsql: psql (libpq, OpenSSL) connects with a client certificate;
// the session runs and is the employee's.
func TestCertPsql(t *testing.T) {
	t.Parallel()
	ca := newClientCA(t)
	p, rec := startCertProxy(t, identity.CertConfig{CAFiles: []string{ca.File}, Map: "email"})
	ctx := proxytest.Ctx(t, 0)
	cert := ca.issue(t, "carol", "carol@example.com")
	app := proxytest.UniqueName(t)
	got := runPsql(t, ctx, p.DSN(pgtest.TrustUser, cert.params("application_name="+app)...), "",
		"SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
	// pgwarden's upstream connection is plain here: ssl is false.
	if got.Exit != 0 || strings.TrimSpace(got.Stdout) != pgtest.TrustUser+"|f" {
		t.Fatalf("psql: %+v", got)
	}
	info := rec.session(t, app).info
	if info.Employee != "carol@example.com" || info.IdentifiedBy != proxy.IdentifiedByCertificate {
		t.Errorf("employee %q identified by %q, want carol@example.com by certificate", info.Employee, info.IdentifiedBy)
	}
}

// TestCertRevoked: a certificate the revocation list names fails the TLS
// handshake for pgx and psql, and never becomes a session; a list replaced
// while pgwarden runs applies to the next connection.
func TestCertRevoked(t *testing.T) {
	t.Parallel()
	ca := newClientCA(t)
	mallory := ca.issue(t, "mallory", "mallory@example.com")
	alice := ca.issue(t, "alice", "alice@example.com")
	crl := filepath.Join(t.TempDir(), "client.crl")
	ca.writeCRL(t, crl, mallory)
	p, rec := startCertProxy(t, identity.CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{crl}, ReloadInterval: time.Millisecond})
	ctx := proxytest.Ctx(t, 0)

	// The handshake fails with the bad_certificate alert, as Go's TLS sends
	// for any verification failure; the reason is in pgwarden's log.
	refused := func(t *testing.T, cert *clientCert) {
		t.Helper()
		app := proxytest.UniqueName(t)
		conn, err := proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser, cert.params("application_name="+app)...))
		switch {
		case err == nil:
			conn.Close(ctx)
			t.Errorf("pgx connected with a revoked certificate")
		case !strings.Contains(err.Error(), "tls: bad certificate"):
			t.Errorf("pgx: %v, want the TLS alert bad certificate", err)
		}
		got := runPsql(t, ctx, p.DSN(pgtest.TrustUser, cert.params("application_name="+app)...), "", "SELECT 1")
		if got.Exit != 2 || !strings.Contains(got.Stderr, "alert bad certificate") {
			t.Errorf("psql with a revoked certificate: %+v", got)
		}
		if hasSession(rec, app) {
			t.Errorf("a session with a revoked certificate reached the inspector")
		}
		p.Logs.WaitFor(t, 5*time.Second, "startup_failed", "client certificate revoked", "CN="+cert.cert.Subject.CommonName)
	}
	t.Run("revoked at start", func(t *testing.T) { refused(t, mallory) })

	app := proxytest.UniqueName(t)
	conn, err := proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser, alice.params("application_name="+app)...))
	if err != nil {
		t.Fatalf("a certificate the list does not name: %v", err)
	}
	conn.Close(ctx)
	if info := rec.session(t, app).info; info.Employee != "alice@example.com" {
		t.Errorf("employee %q, want alice@example.com", info.Employee)
	}

	t.Run("revoked while running", func(t *testing.T) {
		ca.writeCRL(t, crl, mallory, alice)
		time.Sleep(10 * time.Millisecond) // past ReloadInterval
		refused(t, alice)
		p.Logs.WaitFor(t, time.Second, "crl_reloaded", "revoked=2")
	})
}

// TestCertRequired: where a rule requires a certificate, a session without
// one is refused with FATAL 28000 naming the database and role, over TLS or
// not; where none is required it falls back to the role.
func TestCertRequired(t *testing.T) {
	t.Parallel()
	ca := newClientCA(t)
	c := pgtest.Shared(t)
	p, rec := startCertProxy(t, identity.CertConfig{CAFiles: []string{ca.File}, Rules: []identity.CertRule{
		{Target: "*/" + pgtest.TrustUser, Require: true},
	}})
	ctx := proxytest.Ctx(t, 0)
	wantRole := " as role \"" + pgtest.TrustUser + "\" needs a client certificate"
	wantDB := "database \"" + c.Database + "\""

	for _, tc := range []struct {
		name, sslmode, why string
	}{
		{"TLS without a certificate", "verify-full", "none was presented"},
		{"no TLS", "disable", "does not use TLS"},
	} {
		t.Run("pgx "+tc.name, func(t *testing.T) {
			_, err := proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser, "sslmode="+tc.sslmode))
			pgErr := proxytest.WantCode(t, err, "28000")
			for _, want := range []string{"client certificate required", wantDB, wantRole, tc.why} {
				if pgErr.Severity != "FATAL" || !strings.Contains(pgErr.Message, want) {
					t.Errorf("refusal: %s %q, want FATAL containing %q", pgErr.Severity, pgErr.Message, want)
				}
			}
		})
		t.Run("psql "+tc.name, func(t *testing.T) {
			got := runPsql(t, ctx, p.DSN(pgtest.TrustUser, "sslmode="+tc.sslmode), "", "SELECT 1")
			if got.Exit != 2 || !strings.Contains(got.Stderr, "FATAL:  pgwarden: client certificate required") || !strings.Contains(got.Stderr, tc.why) {
				t.Errorf("psql: %+v", got)
			}
		})
	}

	t.Run("certificate of another CA", func(t *testing.T) {
		// The cluster's CA signed the proxy's server certificate but is not
		// the client CA. libpq sends the certificate anyway and fails the
		// handshake; pgx sends none, as its CA is not one the server asked
		// for, and meets the rule.
		certFile, keyFile, err := c.IssueCert("dave@example.com", nil, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		params := []string{"sslmode=verify-full", "sslcert=" + certFile, "sslkey=" + keyFile}
		got := runPsql(t, ctx, p.DSN(pgtest.TrustUser, params...), "", "SELECT 1")
		if got.Exit != 2 || !strings.Contains(got.Stderr, "unknown ca") {
			t.Errorf("psql: %+v", got)
		}
		_, err = proxytest.TryConnect(ctx, p.DSN(pgtest.TrustUser, params...))
		proxytest.WantCode(t, err, "28000")
	})

	t.Run("with a certificate", func(t *testing.T) {
		cert := ca.issue(t, "erin", "erin@example.com")
		app := proxytest.UniqueName(t)
		got := runPsql(t, ctx, p.DSN(pgtest.TrustUser, cert.params("application_name="+app)...), "", "SELECT current_user")
		if got.Exit != 0 || strings.TrimSpace(got.Stdout) != pgtest.TrustUser {
			t.Fatalf("psql: %+v", got)
		}
		if info := rec.session(t, app).info; info.Employee != "erin@example.com" {
			t.Errorf("employee %q, want erin@example.com", info.Employee)
		}
	})

	for _, sslmode := range []string{"verify-full", "disable"} {
		t.Run("not required, sslmode "+sslmode, func(t *testing.T) {
			app := proxytest.UniqueName(t)
			conn := proxytest.Connect(t, ctx, p.DSN(pgtest.MD5User, "sslmode="+sslmode, "application_name="+app))
			proxytest.CheckUsable(t, ctx, conn)
			info := rec.session(t, app).info
			if info.Employee != pgtest.MD5User || info.IdentifiedBy != proxy.IdentifiedByRole || len(info.ClientCertificates) != 0 {
				t.Errorf("employee %q identified by %q with %d certificates, want the role %q", info.Employee, info.IdentifiedBy, len(info.ClientCertificates), pgtest.MD5User)
			}
		})
	}
}

// startCertProxy starts a proxy that offers TLS with the cluster CA's
// server certificate and identifies employees by certificate under cfg.
func startCertProxy(t *testing.T, cfg identity.CertConfig) (*proxytest.Proxy, *recorder) {
	t.Helper()
	clientTLS := proxytest.ServerTLS(t)
	rec := &recorder{}
	p := proxytest.Start(t, proxytest.WithInspector(rec), proxytest.WithConfig(func(c *proxy.Config) {
		cfg.Logger = c.Logger // CRL reloads in the proxy's log
		certs, err := identity.NewCerts(cfg)
		if err != nil {
			t.Fatal(err)
		}
		certs.ConfigureTLS(clientTLS)
		c.ClientTLS = clientTLS
		c.Identify = certs.Identify
	}))
	return p, rec
}

// hasSession reports whether a session with application_name app reached
// the inspector.
func hasSession(r *recorder, app string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sessions {
		if s.info.ApplicationName == app {
			return true
		}
	}
	return false
}

// clientCA is a certificate authority of the test's own for client
// certificates: unlike the cluster's, it issues email SANs and revokes.
type clientCA struct {
	*testca.CA
	crls int // lists written
}

// clientCert is a certificate clientCA issued, with its files.
type clientCert struct {
	cert              *x509.Certificate
	certFile, keyFile string
}

// params are the DSN parameters that present the certificate over TLS,
// followed by more.
func (c *clientCert) params(more ...string) []string {
	return append([]string{"sslmode=verify-full", "sslcert=" + c.certFile, "sslkey=" + c.keyFile}, more...)
}

func newClientCA(t *testing.T) *clientCA {
	t.Helper()
	return &clientCA{CA: testca.New(t, "pgwarden e2e client CA")}
}

// issue writes a client certificate for cn and emails and its key.
func (ca *clientCA) issue(t *testing.T, cn string, emails ...string) *clientCert {
	t.Helper()
	cert := ca.Issue(t, cn, emails)
	certFile, keyFile := ca.WriteFiles(t, cert)
	return &clientCert{cert: cert, certFile: certFile, keyFile: keyFile}
}

// writeCRL replaces file with a PEM list, valid for an hour, revoking certs.
// The new file gets a later modification time than the one it replaces.
func (ca *clientCA) writeCRL(t *testing.T, file string, certs ...*clientCert) {
	t.Helper()
	ca.crls++
	var revoked []*x509.Certificate
	for _, c := range certs {
		revoked = append(revoked, c.cert)
	}
	// Written aside and renamed, as an operator's tooling would.
	tmp := file + ".new"
	testca.WriteFile(t, tmp, ca.CRLPEM(t, time.Now().Add(time.Hour), revoked...))
	stamp := time.Now().Add(time.Duration(ca.crls) * time.Second)
	if err := os.Chtimes(tmp, stamp, stamp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}
