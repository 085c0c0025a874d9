package scram

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
)

// plusExchange runs an exchange between a Client that sees clientCert and
// a Server offering PLUS with the end point of serverCert (nil: no PLUS).
func plusExchange(t *testing.T, v *Verifier, password string, clientCert, serverCert *x509.Certificate, editFirst func([]byte) []byte) (mechanism string, err error) {
	t.Helper()
	s := NewServer(v)
	if serverCert != nil {
		s = NewServerPlus(v, EndPointHash(serverCert))
	}
	c, err := NewClient(s.Mechanisms(), password, clientCert)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Select(c.Mechanism()); err != nil {
		return c.Mechanism(), err
	}
	cf := c.ClientFirst()
	if editFirst != nil {
		cf = editFirst(cf)
	}
	first, err := s.ClientFirst(cf)
	if err != nil {
		return c.Mechanism(), err
	}
	final, err := c.ServerFirst(first)
	if err != nil {
		t.Fatal(err)
	}
	serverFinal, err := s.ClientFinal(final)
	if err != nil {
		return c.Mechanism(), err
	}
	return c.Mechanism(), c.ServerFinal(serverFinal)
}

// TestServerPlus: SCRAM-SHA-256-PLUS binds the exchange to the server's
// certificate: the client's view of a different certificate (a
// machine in the middle) fails, a downgrade to "y" is refused, and a
// client without TLS still uses SCRAM-SHA-256.
func TestServerPlus(t *testing.T) {
	v, err := NewVerifier("s3cret", 4096)
	if err != nil {
		t.Fatal(err)
	}
	cert := testCert(t, x509.ECDSAWithSHA256)
	other := testCert(t, x509.ECDSAWithSHA384)

	mech, err := plusExchange(t, v, "s3cret", cert, cert, nil)
	if err != nil || mech != SHA256Plus {
		t.Fatalf("bound exchange: %s, %v", mech, err)
	}
	if _, err := plusExchange(t, v, "s3creT", cert, cert, nil); !errors.Is(err, ErrClientProof) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := plusExchange(t, v, "s3cret", other, cert, nil); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "channel binding does not match") {
		t.Fatalf("client saw another certificate: %v", err)
	}
	if mech, err := plusExchange(t, v, "s3cret", nil, cert, nil); err != nil || mech != SHA256 {
		t.Fatalf("client without TLS: %s, %v", mech, err)
	}
	downgrade := func(b []byte) []byte { return []byte("y,," + strings.SplitN(string(b), ",,", 2)[1]) }
	s := NewServerPlus(v, EndPointHash(cert))
	if err := s.Select(SHA256); err != nil {
		t.Fatal(err)
	}
	c, _ := NewClient([]string{SHA256}, "s3cret", cert) // "y,,": thinks PLUS is not offered
	if _, err := s.ClientFirst(c.ClientFirst()); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "thinks the server does not") {
		t.Fatalf("downgrade to y: %v", err)
	}
	if _, err := plusExchange(t, v, "s3cret", cert, cert, downgrade); !errors.Is(err, ErrProtocol) {
		t.Fatalf("PLUS selected, y flag: %v", err)
	}
	if err := NewServer(v).Select(SHA256Plus); !errors.Is(err, ErrProtocol) {
		t.Fatalf("PLUS selected but not offered: %v", err)
	}
	if mech, err := plusExchange(t, v, "s3cret", cert, nil, nil); err != nil || mech != SHA256 {
		t.Fatalf("PLUS not offered: %s, %v", mech, err)
	}
}
