package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/testca"
)

// TestTLSReload rotates, while pgwarden serves, the certificate it
// presents to clients, the CA of employees' client certificates and the
// upstream CA, by replacing files (the watcher) and with SIGHUP, and
// connects with pgx before and after each: new handshakes get the new
// material, an open session carries on, and a bad certificate is refused
// and logged while the one in force stays.
func TestTLSReload(t *testing.T) {
	c := pgtest.Shared(t)
	if c.CAFile == "" {
		t.Skip("the cluster has no CA")
	}
	dir := t.TempDir()
	serverCA := testca.New(t, "pgwarden server CA")
	serverCert := func() *x509.Certificate {
		return serverCA.Issue(t, "pgwarden", nil, func(c *x509.Certificate) {
			c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		})
	}
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	install := func(leaf *x509.Certificate) {
		t.Helper()
		crt, key := serverCA.WriteFiles(t, leaf)
		copyFile(t, key, keyFile)
		copyFile(t, crt, certFile)
	}
	first := serverCert()
	install(first)
	employeesCA, otherCA := testca.New(t, "employees"), testca.New(t, "employees next year")
	clientCAFile := filepath.Join(dir, "client-ca.pem")
	copyFile(t, employeesCA.File, clientCAFile)
	upstreamCAFile := filepath.Join(dir, "upstream-ca.pem")
	copyFile(t, c.CAFile, upstreamCAFile)

	listen := freeAddr(t)
	cmd, stderr := startBinary(t, nil, "serve", "--listen", listen, "--upstream", "postgres://"+c.Addr(),
		"--upstream-tls-mode", "verify-full", "--upstream-ca-file", upstreamCAFile,
		"--tls-cert", certFile, "--tls-key", keyFile, "--client-ca", clientCAFile, "--client-cert-map", "cn", "--require-client-cert", "*/"+pgtest.PlainUser)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	// connect connects as the trust user, or with a client certificate as
	// the user whose sessions must present one.
	connect := func(clientCert ...tls.Certificate) (*pgx.Conn, *x509.Certificate, error) {
		user := pgtest.TrustUser
		if len(clientCert) > 0 {
			user = pgtest.PlainUser + ":" + pgtest.Password
		}
		cc, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s@%s/%s?connect_timeout=5", user, listen, c.Database))
		if err != nil {
			t.Fatal(err)
		}
		var seen *x509.Certificate
		cc.TLSConfig = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: clientCert,
			VerifyConnection: func(cs tls.ConnectionState) error {
				seen = cs.PeerCertificates[0]
				return nil
			}}
		cc.Fallbacks = nil
		conn, err := pgx.ConnectConfig(ctx, cc)
		return conn, seen, err
	}
	// waitServed connects until pgwarden presents want (or fails t).
	waitServed := func(want *x509.Certificate, why string) *pgx.Conn {
		t.Helper()
		var last string
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			conn, got, err := connect()
			if err == nil && got != nil && got.SerialNumber.Cmp(want.SerialNumber) == 0 {
				return conn
			}
			if conn != nil {
				conn.Close(ctx)
			}
			last = fmt.Sprint(err)
			if got != nil {
				last += " serial " + got.SerialNumber.Text(16)
			}
		}
		t.Fatalf("%s: pgwarden never presented serial %s (last: %s)\n%s", why, want.SerialNumber.Text(16), last, stderr)
		return nil
	}

	before := waitServed(first, "at start")
	defer before.Close(ctx)

	// A new certificate, written over the files: picked up by the watcher.
	second := serverCert()
	install(second)
	after := waitServed(second, "after the files changed")
	after.Close(ctx)
	if _, err := before.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("the session opened before the rotation: %v", err)
	}

	// A broken certificate is refused; the one in force stays.
	os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"), 0o600)
	waitLog(t, stderr, "msg=tls_reload_failed trigger=file_changed")
	if conn, got, err := connect(); err != nil || got.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Errorf("after a bad certificate: %v, serial %v; want the one in force", err, got)
	} else {
		conn.Close(ctx)
	}

	// SIGHUP reloads too.
	third := serverCert()
	install(third)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, stderr, "msg=tls_reloaded trigger=SIGHUP")
	waitServed(third, "after SIGHUP").Close(ctx)

	// The employees' CA: a certificate of the next CA is not even sent
	// (the server asks for the CAs it knows), so the session that requires
	// one is refused, until the CA file names it.
	erin := otherCA.TLSCert(t, otherCA.Issue(t, "erin", nil))
	if conn, _, err := connect(erin); err == nil {
		conn.Close(ctx)
		t.Fatal("a client certificate of an unknown CA was accepted")
	}
	copyFile(t, otherCA.File, clientCAFile)
	var identified bool
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && !identified; time.Sleep(100 * time.Millisecond) {
		if conn, _, err := connect(erin); err == nil {
			identified = true
			conn.Close(ctx)
		}
	}
	if !identified {
		t.Fatalf("the new client CA never applied\n%s", stderr)
	}

	// The upstream CA: a CA that did not sign the server's certificate
	// fails new sessions (the upstream handshake), the right one again
	// lets them through.
	copyFile(t, serverCA.File, upstreamCAFile)
	var refused bool
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && !refused; time.Sleep(100 * time.Millisecond) {
		conn, _, err := connect()
		if err != nil && strings.Contains(stderr.String(), "upstream TLS handshake") {
			refused = true
		}
		if conn != nil {
			conn.Close(ctx)
		}
	}
	if !refused {
		t.Fatalf("an upstream CA that does not match was never applied\n%s", stderr)
	}
	copyFile(t, c.CAFile, upstreamCAFile)
	waitServed(third, "with the upstream CA restored").Close(ctx)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// Written beside and renamed, as a deployment tool replaces a file.
	if err := os.WriteFile(to+".new", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".new", to); err != nil {
		t.Fatal(err)
	}
}

func waitLog(t *testing.T, stderr interface{ String() string }, want string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(stderr.String(), want) {
			return
		}
	}
	t.Fatalf("no log line %q:\n%s", want, stderr)
}
