package scram

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// Verifiers PostgreSQL 15 stored (SELECT rolpassword FROM pg_authid after
// SET password_encryption = 'scram-sha-256'; CREATE ROLE ... PASSWORD ...).
var pgVerifiers = []struct {
	name, password, verifier string
}{
	{"ascii", "pencil", "SCRAM-SHA-256$4096:1WZXXKHd07Ba8/WELc+Sgw==$FSwfgyyIJe7O45oR86ACqbcGsjL70c+cxdnhoY+RMqE=:OJcI+etiQDCfmk/ib6+XteucHtmOfMDp0bodhh/uRtg="},
	// U+FB01 and full-width letters: SASLprep's NFKC makes this "fi pass".
	{"saslprep", "\ufb01 \uff50\uff41\uff53\uff53", "SCRAM-SHA-256$4096:v/Y9mm9+0DTtXhsM0K06RA==$HJU4+nK6IJGv4D/1eYvaPAVDhIWHyf3hk22Mc+ZQCro=:L2hsQ1tAPx5VCQlDEDEOVRP0aiXn5W/Xqwc8Z4wkuys="},
}

func TestParseVerifierFromPostgreSQL(t *testing.T) {
	for _, tc := range pgVerifiers {
		t.Run(tc.name, func(t *testing.T) {
			v, err := ParseVerifier(tc.verifier)
			if err != nil {
				t.Fatal(err)
			}
			if v.Iterations != 4096 || len(v.Salt) != 16 {
				t.Errorf("iterations %d, salt of %d bytes", v.Iterations, len(v.Salt))
			}
			if got := v.String(); got != tc.verifier {
				t.Errorf("String() = %q, want %q", got, tc.verifier)
			}
			if !v.Check(tc.password) {
				t.Error("Check(right password) = false")
			}
			if v.Check(tc.password + "x") {
				t.Error("Check(wrong password) = true")
			}
			// The same derivation with PostgreSQL's salt gives its keys.
			mine, err := deriveVerifier(tc.password, v.Salt, v.Iterations)
			if err != nil {
				t.Fatal(err)
			}
			if mine.String() != tc.verifier {
				t.Errorf("derived %q, PostgreSQL stored %q", mine, tc.verifier)
			}
			if err := exchange(t, v, tc.password); err != nil {
				t.Errorf("SCRAM exchange with the right password: %v", err)
			}
		})
	}
	if v, _ := ParseVerifier(pgVerifiers[1].verifier); !v.Check("fi pass") {
		t.Error("the NFKC form of the password does not check")
	}
}

func TestNewVerifier(t *testing.T) {
	v, err := NewVerifier("correct horse", 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Iterations != DefaultIterations || len(v.Salt) != saltLen {
		t.Errorf("iterations %d, salt of %d bytes", v.Iterations, len(v.Salt))
	}
	w, err := NewVerifier("correct horse", 0)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(v.Salt, w.Salt) || bytes.Equal(v.StoredKey, w.StoredKey) {
		t.Error("two verifiers of one password share a salt")
	}
	p, err := ParseVerifier(v.String())
	if err != nil {
		t.Fatal(err)
	}
	if p.String() != v.String() || !p.Check("correct horse") || p.Check("correct horse ") {
		t.Errorf("round trip through the text form: %q", p)
	}
	if strings.Contains(v.String(), "correct") {
		t.Error("the verifier holds the password")
	}
	if _, err := NewVerifier("x", MaxIterations+1); err == nil {
		t.Error("an iteration count over MaxIterations was accepted")
	}
}

func TestParseVerifierRejects(t *testing.T) {
	good := pgVerifiers[0].verifier
	for _, s := range []string{
		"",
		"md5c6a1f2ad8a3e9a0b6b5c1c1e1e1e1e1e",
		"pencil",
		strings.Replace(good, "SCRAM-SHA-256$", "SCRAM-SHA-1$", 1),
		strings.Replace(good, "$4096:", "$0:", 1),
		strings.Replace(good, "$4096:", "$+4096:", 1),
		strings.Replace(good, "$4096:", "$x:", 1),
		strings.Replace(good, "$4096:1WZX", "$4096:*WZX", 1),
		strings.Replace(good, "$4096:1WZXXKHd07Ba8/WELc+Sgw==", "$4096:", 1),
		good[:strings.LastIndex(good, ":")],
		good + "AA",
		strings.Replace(good, "$FSwf", "$", 1),
	} {
		if _, err := ParseVerifier(s); !errors.Is(err, ErrVerifierFormat) {
			t.Errorf("ParseVerifier(%q) = %v, want ErrVerifierFormat", s, err)
		}
	}
}

// exchange runs one SCRAM exchange between Client and Server; it returns
// the Server's error or the Client's failure to verify the server.
func exchange(t *testing.T, v *Verifier, password string) error {
	t.Helper()
	c, err := NewClient([]string{SHA256}, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(v)
	first, err := s.ClientFirst(c.ClientFirst())
	if err != nil {
		return err
	}
	final, err := c.ServerFirst(first)
	if err != nil {
		t.Fatal(err)
	}
	serverFinal, err := s.ClientFinal(final)
	if err != nil {
		return err
	}
	return c.ServerFinal(serverFinal)
}

func TestServerExchange(t *testing.T) {
	v, err := NewVerifier("s3cret", 4096)
	if err != nil {
		t.Fatal(err)
	}
	if err := exchange(t, v, "s3cret"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := exchange(t, v, "s3creT"); !errors.Is(err, ErrClientProof) {
		t.Fatalf("wrong password: %v, want ErrClientProof", err)
	}
	mock := MockVerifier([]byte("key"), "nobody", 0)
	if err := exchange(t, mock, ""); !errors.Is(err, ErrClientProof) {
		t.Fatalf("mock verifier: %v, want ErrClientProof", err)
	}
}

// TestServerRFC7677 replays the RFC's exchange with the RFC's nonces.
func TestServerRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	v, err := deriveVerifier("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(v)
	if _, err := s.ClientFirst([]byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")); err != nil {
		t.Fatal(err)
	}
	// Put the RFC's server nonce in place of the random one.
	s.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	s.serverFirst = "r=" + s.nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	final, err := s.ClientFinal([]byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="; string(final) != want {
		t.Errorf("server-final = %q, want %q", final, want)
	}
}

func TestServerRejectsMalformed(t *testing.T) {
	v, _ := NewVerifier("pw", 4096)
	for _, first := range []string{
		"",
		"n,",
		"p=tls-server-end-point,,n=,r=abc",
		"x,,n=,r=abc",
		"n,a=admin,n=,r=abc",
		"n,,m=ext,n=,r=abc",
		"n,,r=abc",
		"n,,n=",
		"n,,n=,r=",
		"n,,n=,r=ab\x01c",
	} {
		if _, err := NewServer(v).ClientFirst([]byte(first)); !errors.Is(err, ErrProtocol) {
			t.Errorf("ClientFirst(%q) = %v, want ErrProtocol", first, err)
		}
	}

	c, _ := NewClient([]string{SHA256}, "pw", nil)
	s := NewServer(v)
	first, err := s.ClientFirst(c.ClientFirst())
	if err != nil {
		t.Fatal(err)
	}
	final, err := c.ServerFirst(first)
	if err != nil {
		t.Fatal(err)
	}
	withoutProof, proof, _ := strings.Cut(string(final), ",p=")
	for name, msg := range map[string]string{
		"no proof":         withoutProof,
		"short proof":      withoutProof + ",p=AAAA",
		"other binding":    strings.Replace(withoutProof, "c=biws", "c=eSws", 1) + ",p=" + proof,
		"other nonce":      strings.Replace(withoutProof, ",r=", ",r=x", 1) + ",p=" + proof,
		"no binding":       withoutProof[strings.Index(withoutProof, ",")+1:] + ",p=" + proof,
		"proof not base64": withoutProof + ",p=*" + proof[1:],
	} {
		s := *s
		if _, err := s.ClientFinal([]byte(msg)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: ClientFinal = %v, want ErrProtocol", name, err)
		}
	}
	// A client on TLS that was not offered PLUS says "y": accepted.
	s = NewServer(v)
	if _, err := s.ClientFirst([]byte("y,,n=,r=abc")); err != nil {
		t.Errorf("y flag: %v", err)
	}
	if _, err := s.ClientFirst([]byte("n,,n=,r=abc")); !errors.Is(err, ErrProtocol) {
		t.Errorf("a second client-first was accepted: %v", err)
	}
}

func TestMockVerifierStable(t *testing.T) {
	a := MockVerifier([]byte("k1"), "alice", 0)
	if b := MockVerifier([]byte("k1"), "alice", 0); a.String() != b.String() {
		t.Error("the mock verifier of one name changes")
	}
	if b := MockVerifier([]byte("k1"), "bob", 0); bytes.Equal(a.Salt, b.Salt) {
		t.Error("two names share a mock salt")
	}
	if b := MockVerifier([]byte("k2"), "alice", 0); bytes.Equal(a.Salt, b.Salt) {
		t.Error("two keys give one mock salt")
	}
	if a.Iterations != DefaultIterations || len(a.Salt) != saltLen {
		t.Errorf("mock verifier differs in shape from a real one: %q", a)
	}
	if _, err := ParseVerifier(a.String()); err != nil {
		t.Errorf("mock verifier does not parse: %v", err)
	}
}
