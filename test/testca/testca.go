// Package testca is a throwaway certificate authority for tests: client
// and intermediate certificates with the fields a test needs, their keys,
// TLS certificates and files for libpq, and revocation lists.
package testca

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

// CA issues certificates and revocation lists.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// File is the certificate, PEM, in a directory of the test.
	File string
	crls int64
	// keys are the private keys of the certificates it issued, by serial.
	keys map[string]*ecdsa.PrivateKey
}

// New makes a self-signed CA called name, valid from an hour ago for a
// day.
func New(t testing.TB, name string) *CA {
	t.Helper()
	key := Key(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
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
	ca := &CA{Cert: cert, Key: key, File: filepath.Join(t.TempDir(), "ca.crt"), keys: map[string]*ecdsa.PrivateKey{}}
	WriteFile(t, ca.File, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return ca
}

// Issue signs a client certificate for cn and emails; edit may change the
// template first.
func (ca *CA) Issue(t testing.TB, cn string, emails []string, edit ...func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:   serial(t),
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
	key := Key(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
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

// Intermediate issues a CA certificate for name signed by ca.
func (ca *CA) Intermediate(t testing.TB, name string) *CA {
	t.Helper()
	cert := ca.Issue(t, name, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage, c.ExtKeyUsage = x509.KeyUsageCertSign|x509.KeyUsageCRLSign, nil
	})
	return &CA{Cert: cert, Key: ca.keyOf(t, cert), keys: map[string]*ecdsa.PrivateKey{}}
}

func (ca *CA) keyOf(t testing.TB, leaf *x509.Certificate) *ecdsa.PrivateKey {
	t.Helper()
	key, ok := ca.keys[leaf.SerialNumber.String()]
	if !ok {
		t.Fatalf("%s was not issued by %s", leaf.Subject, ca.Cert.Subject)
	}
	return key
}

// TLSCert returns a certificate ca issued, with its key, and the chain up
// to (not including) the root.
func (ca *CA) TLSCert(t testing.TB, leaf *x509.Certificate, chain ...*x509.Certificate) tls.Certificate {
	t.Helper()
	tc := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: ca.keyOf(t, leaf), Leaf: leaf}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

// WriteFiles writes a certificate ca issued and its key, PEM, mode 0600
// (libpq refuses a key others can read), as libpq's sslcert and sslkey.
func (ca *CA) WriteFiles(t testing.TB, leaf *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.keyOf(t, leaf))
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(t.TempDir(), "client-"+leaf.SerialNumber.Text(16))
	WriteFile(t, base+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}))
	WriteFile(t, base+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return base + ".crt", base + ".key"
}

// CRL returns a DER revocation list of ca, due for renewal at next, that
// revokes certs; lists are numbered from 1.
func (ca *CA) CRL(t testing.TB, next time.Time, certs ...*x509.Certificate) []byte {
	t.Helper()
	ca.crls++
	this := time.Now().Add(-time.Minute)
	if next.Before(this) {
		this = next.Add(-time.Minute)
	}
	tmpl := &x509.RevocationList{Number: big.NewInt(ca.crls), ThisUpdate: this, NextUpdate: next}
	for _, c := range certs {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// CRLPEM is CRL, PEM-encoded.
func (ca *CA) CRLPEM(t testing.TB, next time.Time, certs ...*x509.Certificate) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: ca.CRL(t, next, certs...)})
}

// Key returns a new P-256 key.
func Key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// WriteFile writes data to name (mode 0600), replacing it.
func WriteFile(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
