package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA is a throwaway certificate authority for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the certificate, PEM
	crls int64  // numbers the lists it issues
	// keys are the private keys of the certificates it issued, by serial.
	keys map[string]*ecdsa.PrivateKey
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	return newTestCAKey(t, name, mustKey(t))
}

func newTestCAKey(t testing.TB, name string, key *ecdsa.PrivateKey) *testCA {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"pgwarden tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "ca.crt")
	writeTestFile(t, file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return &testCA{cert: cert, key: key, file: file, keys: map[string]*ecdsa.PrivateKey{}}
}

// issue signs a client certificate for cn and emails; edit may change the
// template first.
func (ca *testCA) issue(t testing.TB, cn string, emails []string, edit ...func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:   randomSerial(t),
		Subject:        pkix.Name{CommonName: cn},
		EmailAddresses: emails,
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(24 * time.Hour),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, e := range edit {
		e(tmpl)
	}
	key := mustKey(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca.keys[cert.SerialNumber.String()] = key
	return cert
}

// intermediate issues a CA certificate for name signed by ca.
func (ca *testCA) intermediate(t testing.TB, name string) *testCA {
	t.Helper()
	cert := ca.issue(t, name, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage, c.ExtKeyUsage = x509.KeyUsageCertSign|x509.KeyUsageCRLSign, nil
	})
	return &testCA{cert: cert, key: ca.keys[cert.SerialNumber.String()], keys: map[string]*ecdsa.PrivateKey{}}
}

// tlsCert returns a certificate ca issued, with its key, and the chain up
// to (not including) the root.
func (ca *testCA) tlsCert(t testing.TB, leaf *x509.Certificate, chain ...*x509.Certificate) tls.Certificate {
	t.Helper()
	key, ok := ca.keys[leaf.SerialNumber.String()]
	if !ok {
		t.Fatalf("%s was not issued by %s", leaf.Subject, ca.cert.Subject)
	}
	tc := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

// crl returns a DER revocation list of ca, due for renewal at next, that
// revokes certs.
func (ca *testCA) crl(t testing.TB, next time.Time, certs ...*x509.Certificate) []byte {
	t.Helper()
	ca.crls++
	this := time.Now().Add(-time.Minute)
	if next.Before(this) {
		this = next.Add(-time.Minute)
	}
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(ca.crls),
		ThisUpdate: this,
		NextUpdate: next,
	}
	for _, c := range certs {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// crlPEM is crl, PEM-encoded.
func (ca *testCA) crlPEM(t testing.TB, next time.Time, certs ...*x509.Certificate) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: ca.crl(t, next, certs...)})
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func randomSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writeTestFile writes data to name, replacing it.
func writeTestFile(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tempFile writes data to a new file in a test directory and returns its name.
func tempFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	writeTestFile(t, p, data)
	return p
}
