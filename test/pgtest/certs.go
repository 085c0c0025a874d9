package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certLifetime is long enough for any cluster a script keeps running.
const certLifetime = 10 * 365 * 24 * time.Hour

// authority is the throwaway certificate authority of one cluster.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte // cert, PEM-encoded
}

// newAuthority generates a self-signed ECDSA P-256 CA.
func newAuthority() (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl, err := template("pgtest CA")
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, pem: pemBlock("CERTIFICATE", der)}, nil
}

// writeFiles writes the CA certificate and key as dir/name.crt and dir/name.key.
func (a *authority) writeFiles(dir, name string, own *owner) (certFile, keyFile string, err error) {
	keyPEM, err := encodeKey(a.key)
	if err != nil {
		return "", "", err
	}
	return writePair(dir, name, a.pem, keyPEM, own)
}

// issue returns a new certificate and key signed by a, PEM-encoded.
func (a *authority) issue(commonName string, dnsNames []string, ips []net.IP, client bool) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl, err := template(commonName)
	if err != nil {
		return nil, nil, err
	}
	tmpl.DNSNames = dnsNames
	tmpl.IPAddresses = ips
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, key.Public(), a.key)
	if err != nil {
		return nil, nil, err
	}
	kp, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), kp, nil
}

// issueFiles issues a certificate and writes it as dir/name.crt and dir/name.key.
func (a *authority) issueFiles(dir, name, commonName string, dnsNames []string, ips []net.IP, client bool, own *owner) (certFile, keyFile string, err error) {
	certPEM, kp, err := a.issue(commonName, dnsNames, ips, client)
	if err != nil {
		return "", "", err
	}
	return writePair(dir, name, certPEM, kp, own)
}

// template returns the fields every certificate shares.
func template(commonName string) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"pgwarden tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
	}, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writePair writes certificate and key files, the key with mode 0600; postgres
// refuses a key file that others can read. Both go to own when it is set.
func writePair(dir, name string, certPEM, keyPEM []byte, own *owner) (certFile, keyFile string, err error) {
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	if err := writeFile(certFile, certPEM, 0o644, own); err != nil {
		return "", "", err
	}
	if err := writeFile(keyFile, keyPEM, 0o600, own); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// writeFile writes data to a new file with mode perm, owned by own when it is set.
func writeFile(name string, data []byte, perm os.FileMode, own *owner) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && own != nil {
		err = f.Chown(own.uid, own.gid)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
