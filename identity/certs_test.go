package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/testca"
)

// TestNewCertsErrors: bad inputs are refused with an error naming what is
// wrong.
func TestNewCertsErrors(t *testing.T) {
	ca := testca.New(t, "Errors CA")
	impostor := testca.New(t, "Errors CA") // same name, another key
	stranger := testca.New(t, "Stranger CA")
	next := time.Now().Add(time.Hour)
	leaf := ca.Issue(t, "leaf", nil)
	leafFile := tempFile(t, "leaf.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}))
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for name, tc := range map[string]struct {
		cfg  CertConfig
		want []string
	}{
		"no CA":            {CertConfig{}, []string{"no CA file"}},
		"unreadable CA":    {CertConfig{CAFiles: []string{missing}}, []string{"CA file", missing, "no such file"}},
		"CA file not PEM":  {CertConfig{CAFiles: []string{tempFile(t, "ca.pem", []byte("hello"))}}, []string{"no PEM certificate"}},
		"CA file garbled":  {CertConfig{CAFiles: []string{tempFile(t, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("xx")}))}}, []string{"CA file"}},
		"CA file not a CA": {CertConfig{CAFiles: []string{leafFile}}, []string{"not a CA certificate", "CN=leaf"}},
		"unknown map":      {CertConfig{CAFiles: []string{ca.File}, Map: "email,upn"}, []string{`"upn" is not a certificate field`}},
		"map twice":        {CertConfig{CAFiles: []string{ca.File}, Map: "cn, cn"}, []string{"cn twice"}},
		"bad domain":       {CertConfig{CAFiles: []string{ca.File}, Domains: []string{"example.com", "a@b"}}, []string{`domain "a@b"`}},
		"target without slash": {CertConfig{CAFiles: []string{ca.File}, Rules: []CertRule{{Target: "*/x"}, {Target: "prod"}}},
			[]string{"rule 2", `"prod"`, "database/role"}},
		"target with two slashes": {CertConfig{CAFiles: []string{ca.File}, Rules: []CertRule{{Target: "a/b/c"}}}, []string{"rule 1", "more than one /"}},
		"unfinished escape":       {CertConfig{CAFiles: []string{ca.File}, Rules: []CertRule{{Target: `a/b\`}}}, []string{"rule 1", "role", `unfinished \ escape`}},
		"bad employee pattern":    {CertConfig{CAFiles: []string{ca.File}, Rules: []CertRule{{Target: "*/*", Employees: []string{`x\`}}}}, []string{"employee pattern"}},
		"unreadable CRL":          {CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{missing}}, []string{"revocation list", missing}},
		"CRL garbage":             {CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{tempFile(t, "x.crl", []byte("not a list"))}}, []string{"revocation list", "x.crl"}},
		"CRL PEM of a certificate": {CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{ca.File}},
			[]string{`PEM block "CERTIFICATE"`}},
		"CRL signed by another key": {CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{tempFile(t, "x.crl", impostor.CRLPEM(t, next))}},
			[]string{"not signed by that CA's key"}},
		"CRL of an unknown CA": {CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{tempFile(t, "x.crl", stranger.CRL(t, next))}},
			[]string{"Stranger CA", "not one of the configured CAs"}},
		"CRL expired": {CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{tempFile(t, "x.crl", ca.CRL(t, time.Now().Add(-time.Second)))}},
			[]string{"revocation list expired", "x.crl"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewCerts(tc.cfg)
			if err == nil {
				t.Fatalf("NewCerts succeeded, want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestCertEmployee: the configured fields name the employee, in order,
// within the domains.
func TestCertEmployee(t *testing.T) {
	ca := testca.New(t, "Mapping CA")
	both := ca.Issue(t, "Alice Example", []string{"Alice@Example.COM", "alice@home.example.org"})
	cnOnly := ca.Issue(t, "bob", nil)
	cnEmail := ca.Issue(t, "Carol@Example.com", nil)
	personal := ca.Issue(t, "dave", []string{"dave@home.example.org", "dave@corp.example.com"})
	control := ca.Issue(t, "eve\nadmin", nil)
	for _, tc := range []struct {
		name    string
		mapping string
		domains []string
		cert    *x509.Certificate
		want    string // "" means refused
		wantErr string
	}{
		{"default is email", "", nil, both, "alice@example.com", ""},
		{"email", "email", nil, both, "alice@example.com", ""},
		{"email missing", "email", nil, cnOnly, "", "has no SAN email; pgwarden takes the employee from email"},
		{"cn", "cn", nil, both, "Alice Example", ""},
		{"email then cn", "email,cn", nil, cnOnly, "bob", ""},
		{"cn then email", "cn,email", nil, both, "Alice Example", ""},
		{"cn holding an email is lower-cased", "cn", nil, cnEmail, "carol@example.com", ""},
		{"domain picks the matching email", "email", []string{"corp.example.com"}, personal, "dave@corp.example.com", ""},
		{"domain with @ and any case", "email", []string{"@EXAMPLE.com"}, both, "alice@example.com", ""},
		{"domain refuses the others", "email", []string{"corp.example.com"}, both, "", "in domain corp.example.com"},
		{"domain needs an email in the cn", "email,cn", []string{"example.com"}, cnOnly, "", "common name bob"},
		{"domain accepts an email cn", "email,cn", []string{"example.com"}, cnEmail, "carol@example.com", ""},
		{"control characters", "cn", nil, control, "", "control characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCerts(CertConfig{CAFiles: []string{ca.File}, Map: tc.mapping, Domains: tc.domains})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Employee(tc.cert)
			switch {
			case tc.want != "" && (err != nil || got != tc.want):
				t.Errorf("employee = %q, %v; want %q", got, err, tc.want)
			case tc.want == "" && !errors.Is(err, ErrCertNoEmployee):
				t.Errorf("employee = %q, %v; want ErrCertNoEmployee", got, err)
			case tc.want == "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestIdentify: what Identify makes of a session's certificate, or of its
// absence, per database and role.
func TestIdentify(t *testing.T) {
	ca := testca.New(t, "Identify CA")
	inter := ca.Intermediate(t, "Identify Intermediate")
	viaInter := inter.Issue(t, "ivan", []string{"ivan@example.com"})
	revokedInter := ca.Intermediate(t, "Revoked Intermediate")
	viaRevokedInter := revokedInter.Issue(t, "rita", []string{"rita@example.com"})
	alice := ca.Issue(t, "alice", []string{"alice@example.com"})
	revoked := ca.Issue(t, "mallory", []string{"mallory@example.com"})
	expired := ca.Issue(t, "old", []string{"old@example.com"}, func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Minute) })
	serverOnly := ca.Issue(t, "srv", []string{"srv@example.com"}, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	noName := ca.Issue(t, "", nil)
	stranger := testca.New(t, "Stranger CA").Issue(t, "alice", []string{"alice@example.com"})
	c, err := NewCerts(CertConfig{
		CAFiles:  []string{ca.File},
		CRLFiles: []string{tempFile(t, "ca.crl", ca.CRLPEM(t, time.Now().Add(time.Hour), revoked, revokedInter.Cert))},
		Rules: []CertRule{
			{Target: "prod/*", Require: true},
			{Target: "*/support", Require: true, Employees: []string{"*@support.example.com"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		db, role string
		tls      bool
		certs    []*x509.Certificate
		employee string // with identifiedBy certificate; "" keeps the role
		err      error
		errText  []string
	}{
		{name: "no certificate, none required", db: "dev", role: "app", tls: true},
		{name: "no certificate, plain connection, none required", db: "dev", role: "app"},
		{name: "certificate, none required", db: "dev", role: "app", tls: true, certs: []*x509.Certificate{alice}, employee: "alice@example.com"},
		{name: "certificate, required", db: "prod", role: "app", tls: true, certs: []*x509.Certificate{alice}, employee: "alice@example.com"},
		{name: "no certificate, required", db: "prod", role: "app", tls: true, err: ErrCertRequired,
			errText: []string{`database "prod" as role "app" needs a client certificate`, `rule "prod/*"`, "none was presented"}},
		{name: "plain connection, required", db: "prod", role: "app", err: ErrCertRequired,
			errText: []string{`database "prod" as role "app"`, "does not use TLS"}},
		{name: "through an intermediate", db: "prod", role: "app", tls: true, certs: []*x509.Certificate{viaInter, inter.Cert}, employee: "ivan@example.com"},
		{name: "intermediate missing", db: "dev", role: "app", tls: true, certs: []*x509.Certificate{viaInter}, err: ErrCertUnverified},
		{name: "intermediate revoked", db: "dev", role: "app", tls: true, certs: []*x509.Certificate{viaRevokedInter, revokedInter.Cert}, err: ErrCertRevoked,
			errText: []string{"CN=Revoked Intermediate"}},
		{name: "revoked", db: "dev", role: "app", tls: true, certs: []*x509.Certificate{revoked}, err: ErrCertRevoked},
		{name: "expired", db: "dev", role: "app", tls: true, certs: []*x509.Certificate{expired}, err: ErrCertUnverified, errText: []string{"expired"}},
		{name: "server certificate", db: "dev", role: "app", tls: true, certs: []*x509.Certificate{serverOnly}, err: ErrCertUnverified},
		{name: "another CA", db: "dev", role: "app", tls: true, certs: []*x509.Certificate{stranger}, err: ErrCertUnverified},
		{name: "names no employee", db: "dev", role: "app", tls: true, certs: []*x509.Certificate{noName}, err: ErrCertNoEmployee},
		{name: "employee not allowed", db: "dev", role: "support", tls: true, certs: []*x509.Certificate{alice}, err: ErrCertEmployee,
			errText: []string{`"alice@example.com" may not use database "dev" as role "support"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := &proxy.SessionInfo{Database: tc.db, User: tc.role, Employee: tc.role, IdentifiedBy: proxy.IdentifiedByRole,
				ClientTLS: tc.tls, ClientCertificates: tc.certs}
			err := c.Identify(context.Background(), info)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				for _, w := range tc.errText {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v, want it to contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantEmployee, wantBy := tc.role, proxy.IdentifiedByRole
			if tc.employee != "" {
				wantEmployee, wantBy = tc.employee, proxy.IdentifiedByCertificate
			}
			if info.Employee != wantEmployee || info.IdentifiedBy != wantBy {
				t.Errorf("employee %q identified by %q, want %q by %q", info.Employee, info.IdentifiedBy, wantEmployee, wantBy)
			}
		})
	}
}

// TestIdentifyAfterLogin: a session that logged in to pgwarden keeps its
// login as the employee; a certificate must name the same person.
func TestIdentifyAfterLogin(t *testing.T) {
	ca := testca.New(t, "Login CA")
	alice := ca.Issue(t, "alice", []string{"Alice@example.com"})
	c, err := NewCerts(CertConfig{CAFiles: []string{ca.File}})
	if err != nil {
		t.Fatal(err)
	}
	login := func(name string) *proxy.SessionInfo {
		return &proxy.SessionInfo{Database: "dev", User: "app", Employee: name, IdentifiedBy: proxy.IdentifiedByLogin,
			ClientTLS: true, ClientCertificates: []*x509.Certificate{alice}}
	}
	info := login("alice@example.com")
	if err := c.Identify(context.Background(), info); err != nil || info.Employee != "alice@example.com" || info.IdentifiedBy != proxy.IdentifiedByLogin {
		t.Errorf("the same person: %v, %q by %q", err, info.Employee, info.IdentifiedBy)
	}
	if err := c.Identify(context.Background(), login("bob@example.com")); !errors.Is(err, ErrCertEmployee) || !strings.Contains(err.Error(), "logged in as") {
		t.Errorf("another person: %v", err)
	}
	// Signed in with a token of the identity provider: the same.
	info = login("alice@example.com")
	info.IdentifiedBy = proxy.IdentifiedByOIDC
	if err := c.Identify(context.Background(), info); err != nil || info.IdentifiedBy != proxy.IdentifiedByOIDC {
		t.Errorf("token, the same person: %v, %q by %q", err, info.Employee, info.IdentifiedBy)
	}
	info = login("bob@example.com")
	info.IdentifiedBy = proxy.IdentifiedByOIDC
	if err := c.Identify(context.Background(), info); !errors.Is(err, ErrCertEmployee) || info.Employee != "bob@example.com" {
		t.Errorf("token, another person: %v, %q by %q", err, info.Employee, info.IdentifiedBy)
	}
}

// TestConfigureTLS runs TLS handshakes against a configuration adjusted by
// ConfigureTLS: a certificate is optional, verified when given, and a
// revoked one fails the handshake.
func TestConfigureTLS(t *testing.T) {
	clientCA := testca.New(t, "Client CA")
	serverCA := testca.New(t, "Server CA")
	good := clientCA.Issue(t, "good", []string{"good@example.com"})
	revoked := clientCA.Issue(t, "bad", []string{"bad@example.com"})
	stranger := serverCA.Issue(t, "stranger", []string{"stranger@example.com"})
	c, err := NewCerts(CertConfig{
		CAFiles:  []string{clientCA.File},
		CRLFiles: []string{tempFile(t, "client.crl", clientCA.CRLPEM(t, time.Now().Add(time.Hour), revoked))},
	})
	if err != nil {
		t.Fatal(err)
	}
	serverCert := serverCA.TLSCert(t, serverCA.Issue(t, "localhost", nil, func(tmpl *x509.Certificate) {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}))
	prevCalled := 0
	server := &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12,
		VerifyConnection: func(tls.ConnectionState) error { prevCalled++; return nil }}
	c.ConfigureTLS(server)
	if server.ClientAuth != tls.VerifyClientCertIfGiven || server.ClientCAs == nil {
		t.Fatalf("ClientAuth %v, ClientCAs %v", server.ClientAuth, server.ClientCAs)
	}
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)

	handshake := func(t *testing.T, ca *testca.CA, leaf *x509.Certificate, version uint16) ([]*x509.Certificate, error) {
		t.Helper()
		client := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: version, MaxVersion: version}
		if leaf != nil {
			// Sent even when the server does not list its CA as acceptable.
			cert := ca.TLSCert(t, leaf)
			client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		}
		// Loopback TCP, not net.Pipe: in TLS 1.2 the server's alert and
		// the rest of the client's flight cross, which an unbuffered pipe
		// would deadlock.
		cc, sc := tcpPair(t)
		defer cc.Close()
		defer sc.Close()
		deadline := time.Now().Add(5 * time.Second)
		cc.SetDeadline(deadline)
		sc.SetDeadline(deadline)
		ts := tls.Server(sc, server)
		done := make(chan error, 1)
		go func() {
			// TLS 1.3 clients finish before the server has judged their
			// certificate: read so that the server's alert arrives.
			tc := tls.Client(cc, client)
			err := tc.Handshake()
			if err == nil {
				_, err = tc.Read(make([]byte, 1))
			}
			done <- err
		}()
		err := ts.Handshake()
		if err == nil {
			ts.Write([]byte{1})
		}
		sc.Close()
		<-done
		return ts.ConnectionState().PeerCertificates, err
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			if certs, err := handshake(t, clientCA, good, version); err != nil || len(certs) != 1 {
				t.Errorf("good certificate: %d certificates, %v", len(certs), err)
			}
			if certs, err := handshake(t, nil, nil, version); err != nil || len(certs) != 0 {
				t.Errorf("no certificate: %d certificates, %v", len(certs), err)
			}
			if _, err := handshake(t, clientCA, revoked, version); !errors.Is(err, ErrCertRevoked) {
				t.Errorf("revoked certificate: err = %v, want ErrCertRevoked", err)
			}
			if _, err := handshake(t, serverCA, stranger, version); err == nil || !strings.Contains(err.Error(), "unknown authority") {
				t.Errorf("certificate of another CA: err = %v, want unknown authority", err)
			}
		})
	}
	if prevCalled == 0 {
		t.Error("the configuration's own VerifyConnection was dropped")
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	return client, server
}

// BenchmarkIdentify is the cost Identify adds to a session's startup with a
// certificate: chain verification, a revocation lookup and the mapping.
func BenchmarkIdentify(b *testing.B) {
	ca := testca.New(b, "Bench CA")
	cert := ca.Issue(b, "", []string{"bench@example.com"})
	var revoked []*x509.Certificate
	for range 1000 {
		revoked = append(revoked, ca.Issue(b, "", nil))
	}
	c, err := NewCerts(CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{tempFile(b, "ca.crl", ca.CRL(b, time.Now().Add(time.Hour), revoked...))},
		Rules: []CertRule{{Target: "prod/*", Require: true}, {Target: "*/support", Require: true}}})
	if err != nil {
		b.Fatal(err)
	}
	info := &proxy.SessionInfo{Database: "prod", User: "app", ClientTLS: true, ClientCertificates: []*x509.Certificate{cert}}
	for b.Loop() {
		if err := c.Identify(context.Background(), info); err != nil {
			b.Fatal(err)
		}
	}
}
