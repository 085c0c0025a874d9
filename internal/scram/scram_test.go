package scram

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// RFC 7677 section 3.
func TestRFC7677Vector(t *testing.T) {
	c, err := newClient([]string{SHA256}, "pencil", nil, "user", "rOprNGfwEbeRWgbNEkqO")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(c.ClientFirst()), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"; got != want {
		t.Fatalf("client-first = %q, want %q", got, want)
	}
	final, err := c.ServerFirst([]byte("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"))
	if err != nil {
		t.Fatal(err)
	}
	want := "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	if string(final) != want {
		t.Fatalf("client-final = %q, want %q", final, want)
	}
	if err := c.ServerFinal([]byte("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")); err != nil {
		t.Fatalf("ServerFinal: %v", err)
	}
}

func TestNewClientMechanism(t *testing.T) {
	cert := testCert(t, x509.ECDSAWithSHA256)
	edCert := testCert(t, x509.PureEd25519)
	tests := []struct {
		name      string
		offered   []string
		cert      *x509.Certificate
		mechanism string
		gs2       string
	}{
		{"no TLS, both offered", []string{SHA256Plus, SHA256}, nil, SHA256, "n,,"},
		{"no TLS, plain offered", []string{SHA256}, nil, SHA256, "n,,"},
		{"TLS, both offered", []string{SHA256, SHA256Plus}, cert, SHA256Plus, "p=tls-server-end-point,,"},
		{"TLS, only PLUS offered", []string{SHA256Plus}, cert, SHA256Plus, "p=tls-server-end-point,,"},
		{"TLS, PLUS not offered", []string{SHA256}, cert, SHA256, "y,,"},
		{"TLS, certificate without end-point hash", []string{SHA256Plus, SHA256}, edCert, SHA256, "n,,"},
		{"TLS, unknown mechanism ignored", []string{"OAUTHBEARER", SHA256}, cert, SHA256, "y,,"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.offered, "secret", tt.cert)
			if err != nil {
				t.Fatal(err)
			}
			if c.Mechanism() != tt.mechanism {
				t.Errorf("Mechanism() = %q, want %q", c.Mechanism(), tt.mechanism)
			}
			first := string(c.ClientFirst())
			if !strings.HasPrefix(first, tt.gs2+"n=,r=") {
				t.Errorf("client-first = %q, want GS2 header %q and empty user", first, tt.gs2)
			}
			if nonce := strings.TrimPrefix(first, tt.gs2+"n=,r="); len(nonce) != 24 {
				t.Errorf("client nonce %q: want 24 base64 characters", nonce)
			}
		})
	}

	for _, offered := range [][]string{nil, {"OAUTHBEARER"}, {SHA256Plus}} {
		if _, err := NewClient(offered, "secret", nil); !errors.Is(err, ErrNoMechanism) {
			t.Errorf("NewClient(%q, no TLS) error = %v, want ErrNoMechanism", offered, err)
		}
	}
}

func TestClientNoncesDiffer(t *testing.T) {
	a, _ := NewClient([]string{SHA256}, "x", nil)
	b, _ := NewClient([]string{SHA256}, "x", nil)
	if bytes.Equal(a.ClientFirst(), b.ClientFirst()) {
		t.Fatal("two clients sent the same nonce")
	}
}

func TestEndPointHash(t *testing.T) {
	raw := []byte("certificate DER")
	s256 := sha256.Sum256(raw)
	s384 := sha512.Sum384(raw)
	s512 := sha512.Sum512(raw)
	tests := []struct {
		alg  x509.SignatureAlgorithm
		want []byte
	}{
		{x509.MD5WithRSA, s256[:]},
		{x509.SHA1WithRSA, s256[:]},
		{x509.ECDSAWithSHA1, s256[:]},
		{x509.SHA256WithRSA, s256[:]},
		{x509.SHA256WithRSAPSS, s256[:]},
		{x509.ECDSAWithSHA256, s256[:]},
		{x509.SHA384WithRSA, s384[:]},
		{x509.ECDSAWithSHA384, s384[:]},
		{x509.SHA512WithRSAPSS, s512[:]},
		{x509.ECDSAWithSHA512, s512[:]},
		{x509.PureEd25519, nil},
		{x509.MD2WithRSA, nil},
		{x509.UnknownSignatureAlgorithm, nil},
	}
	for _, tt := range tests {
		t.Run(tt.alg.String(), func(t *testing.T) {
			got := endPointHash(&x509.Certificate{Raw: raw, SignatureAlgorithm: tt.alg})
			if !bytes.Equal(got, tt.want) {
				t.Errorf("endPointHash = %x, want %x", got, tt.want)
			}
		})
	}
}

func TestExchange(t *testing.T) {
	cert256 := testCert(t, x509.ECDSAWithSHA256)
	cert384 := testCert(t, x509.ECDSAWithSHA384)
	tests := []struct {
		name        string
		plusOffered bool
		cert        *x509.Certificate // what the client sees
		serverCert  *x509.Certificate // what the server has; differs under a MITM
		clientPass  string
		wantMech    string
		wantErr     string // from the server; empty for success
	}{
		{name: "no TLS", cert: nil, clientPass: "pencil", wantMech: SHA256},
		{name: "TLS without PLUS", cert: cert256, serverCert: cert256, clientPass: "pencil", wantMech: SHA256},
		{name: "PLUS SHA-256", plusOffered: true, cert: cert256, serverCert: cert256, clientPass: "pencil", wantMech: SHA256Plus},
		{name: "PLUS SHA-384", plusOffered: true, cert: cert384, serverCert: cert384, clientPass: "pencil", wantMech: SHA256Plus},
		{name: "non-ASCII password", plusOffered: true, cert: cert256, serverCert: cert256, clientPass: "p\u00e4ss\u00a0w\u00f6rd", wantMech: SHA256Plus},
		{name: "wrong password", clientPass: "pencil2", wantMech: SHA256, wantErr: "password authentication failed"},
		{name: "PLUS, certificate substituted", plusOffered: true, cert: cert384, serverCert: cert256, clientPass: "pencil", wantMech: SHA256Plus, wantErr: "channel binding mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverPass := "pencil"
			if tt.name == "non-ASCII password" {
				serverPass = tt.clientPass
			}
			var serverBinding []byte
			if tt.serverCert != nil {
				serverBinding = endPointHash(tt.serverCert)
			}
			srv := newTestServer(serverPass, tt.plusOffered, serverBinding)

			c, err := NewClient(srv.mechanisms(), tt.clientPass, tt.cert)
			if err != nil {
				t.Fatal(err)
			}
			if c.Mechanism() != tt.wantMech {
				t.Fatalf("Mechanism() = %q, want %q", c.Mechanism(), tt.wantMech)
			}
			serverFirst, err := srv.clientFirst(c.Mechanism(), c.ClientFirst())
			if err != nil {
				t.Fatalf("server rejected client-first: %v", err)
			}
			clientFinal, err := c.ServerFirst(serverFirst)
			if err != nil {
				t.Fatalf("ServerFirst: %v", err)
			}
			if tt.wantMech == SHA256Plus {
				cb := "c=" + base64.StdEncoding.EncodeToString(append([]byte("p=tls-server-end-point,,"), endPointHash(tt.cert)...))
				if !strings.HasPrefix(string(clientFinal), cb+",") {
					t.Fatalf("client-final %q does not carry the binding data %q", clientFinal, cb)
				}
			}
			serverFinal, err := srv.clientFinal(clientFinal)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("server error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("server rejected client-final: %v", err)
			}
			if err := c.ServerFinal(serverFinal); err != nil {
				t.Fatalf("ServerFinal: %v", err)
			}
		})
	}
}

// exchangeToFinal runs an exchange up to the server-final-message.
func exchangeToFinal(t *testing.T) (*Client, []byte) {
	t.Helper()
	srv := newTestServer("pencil", false, nil)
	c, err := NewClient(srv.mechanisms(), "pencil", nil)
	if err != nil {
		t.Fatal(err)
	}
	serverFirst, err := srv.clientFirst(c.Mechanism(), c.ClientFirst())
	if err != nil {
		t.Fatal(err)
	}
	clientFinal, err := c.ServerFirst(serverFirst)
	if err != nil {
		t.Fatal(err)
	}
	serverFinal, err := srv.clientFinal(clientFinal)
	if err != nil {
		t.Fatal(err)
	}
	return c, serverFinal
}

func TestServerFinalRejects(t *testing.T) {
	flipBit := func(final []byte) []byte {
		sig, _ := base64.StdEncoding.DecodeString(string(final[2:]))
		sig[len(sig)-1] ^= 1
		return []byte("v=" + base64.StdEncoding.EncodeToString(sig))
	}
	tests := []struct {
		name   string
		tamper func([]byte) []byte
		want   error
	}{
		{"bit flipped", flipBit, ErrServerSignature},
		{"truncated", func(f []byte) []byte { return []byte("v=" + base64.StdEncoding.EncodeToString(make([]byte, 16))) }, ErrServerSignature},
		{"empty verifier", func([]byte) []byte { return []byte("v=") }, ErrServerSignature},
		{"not base64", func([]byte) []byte { return []byte("v=!!!!") }, ErrServerSignature},
		{"server error", func([]byte) []byte { return []byte("e=invalid-proof") }, ErrProtocol},
		{"no verifier", func([]byte) []byte { return []byte("x=1") }, ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, final := exchangeToFinal(t)
			if err := c.ServerFinal(tt.tamper(final)); !errors.Is(err, tt.want) {
				t.Fatalf("ServerFinal error = %v, want %v", err, tt.want)
			}
			if c.Verified() {
				t.Fatal("Verified after a rejected server-final-message")
			}
			// A failed exchange stays failed, even given the genuine message.
			if err := c.ServerFinal(final); err == nil {
				t.Fatal("ServerFinal accepted a message after a failure")
			}
		})
	}

	t.Run("extension after verifier", func(t *testing.T) {
		c, final := exchangeToFinal(t)
		if err := c.ServerFinal(append(final, ",x=ext"...)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestServerFirstRejects(t *testing.T) {
	const nonce = "rOprNGfwEbeRWgbNEkqO"
	tests := []struct {
		name        string
		serverFirst string
	}{
		{"nonce does not extend client nonce", "r=XXprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"},
		{"nonce is a prefix of client nonce", "r=rOprNGfwEbeRWgbNE,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"},
		{"nonce equals client nonce", "r=" + nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"},
		{"nonce with non-printable byte", "r=" + nonce + "a\x7fb,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"},
		{"mandatory extension", "m=ext,r=" + nonce + "srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"},
		{"missing nonce", "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"},
		{"missing salt", "r=" + nonce + "srv,i=4096"},
		{"empty salt", "r=" + nonce + "srv,s=,i=4096"},
		{"salt not base64", "r=" + nonce + "srv,s=***,i=4096"},
		{"missing iterations", "r=" + nonce + "srv,s=W22ZaJ0SNY7soEsUEjb6gQ=="},
		{"zero iterations", "r=" + nonce + "srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0"},
		{"negative iterations", "r=" + nonce + "srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1"},
		{"signed iterations", "r=" + nonce + "srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=+4096"},
		{"iterations not a number", "r=" + nonce + "srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4k"},
		{"too many iterations", "r=" + nonce + "srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=10000001"},
		{"iterations overflow", "r=" + nonce + "srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999999999999"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newClient([]string{SHA256}, "pencil", nil, "", nonce)
			if err != nil {
				t.Fatal(err)
			}
			final, err := c.ServerFirst([]byte(tt.serverFirst))
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("ServerFirst error = %v, want ErrProtocol", err)
			}
			if final != nil {
				t.Fatalf("ServerFirst returned a client-final %q with its error", final)
			}
		})
	}

	t.Run("extension after iterations", func(t *testing.T) {
		c, _ := newClient([]string{SHA256}, "pencil", nil, "", nonce)
		if _, err := c.ServerFirst([]byte("r=" + nonce + "srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,x=ext")); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOutOfOrder(t *testing.T) {
	c, err := NewClient([]string{SHA256}, "pencil", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ServerFinal([]byte("v=AAAA")); !errors.Is(err, ErrProtocol) {
		t.Fatalf("ServerFinal before ServerFirst: %v, want ErrProtocol", err)
	}

	c, final := exchangeToFinal(t)
	if _, err := c.ServerFirst([]byte("r=x,s=AAAA,i=1")); !errors.Is(err, ErrProtocol) {
		t.Fatalf("second ServerFirst: %v, want ErrProtocol", err)
	}
	if c.Verified() {
		t.Fatal("Verified before ServerFinal")
	}
	if err := c.ServerFinal(final); err != nil {
		t.Fatal(err)
	}
	if !c.Verified() {
		t.Fatal("not Verified after ServerFinal")
	}
	if err := c.ServerFinal(final); !errors.Is(err, ErrProtocol) {
		t.Fatalf("second ServerFinal: %v, want ErrProtocol", err)
	}
}

func TestSASLName(t *testing.T) {
	c, _ := newClient([]string{SHA256}, "x", nil, "a=b,c", "nonce")
	if got, want := string(c.ClientFirst()), "n,,n=a=3Db=2Cc,r=nonce"; got != want {
		t.Fatalf("client-first = %q, want %q", got, want)
	}
}

// testCert makes a self-signed certificate signed with alg.
func testCert(t *testing.T, alg x509.SignatureAlgorithm) *x509.Certificate {
	t.Helper()
	var key crypto.Signer
	var err error
	switch alg {
	case x509.ECDSAWithSHA256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case x509.ECDSAWithSHA384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case x509.PureEd25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("testCert: unsupported %v", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(1),
		Subject:            pkix.Name{CommonName: "upstream"},
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().Add(time.Hour),
		SignatureAlgorithm: alg,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if cert.SignatureAlgorithm != alg {
		t.Fatalf("certificate signed with %v, want %v", cert.SignatureAlgorithm, alg)
	}
	return cert
}
