package identity

import (
	"bytes"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/testca"
)

// TestCRLFormats: lists load from PEM, DER, and a PEM file holding the
// lists of two CAs, and revoke exactly what they name.
func TestCRLFormats(t *testing.T) {
	a, b := testca.New(t, "CA a"), testca.New(t, "CA b")
	aRevoked, aGood := a.Issue(t, "", []string{"ra@example.com"}), a.Issue(t, "", []string{"ga@example.com"})
	bRevoked, bGood := b.Issue(t, "", []string{"rb@example.com"}), b.Issue(t, "", []string{"gb@example.com"})
	next := time.Now().Add(time.Hour)
	both := append(a.CRLPEM(t, next, aRevoked), b.CRLPEM(t, next, bRevoked)...)
	for name, tc := range map[string]struct {
		files   [][]byte
		revoked []*x509.Certificate
		good    []*x509.Certificate
	}{
		"PEM": {files: [][]byte{a.CRLPEM(t, next, aRevoked)}, revoked: []*x509.Certificate{aRevoked}, good: []*x509.Certificate{aGood, bRevoked, bGood}},
		"DER": {files: [][]byte{a.CRL(t, next, aRevoked)}, revoked: []*x509.Certificate{aRevoked}, good: []*x509.Certificate{aGood, bRevoked, bGood}},
		"two lists in one PEM file": {files: [][]byte{both},
			revoked: []*x509.Certificate{aRevoked, bRevoked}, good: []*x509.Certificate{aGood, bGood}},
		"one file per CA": {files: [][]byte{a.CRL(t, next, aRevoked), b.CRLPEM(t, next, bRevoked)},
			revoked: []*x509.Certificate{aRevoked, bRevoked}, good: []*x509.Certificate{aGood, bGood}},
	} {
		t.Run(name, func(t *testing.T) {
			var files []string
			for _, f := range tc.files {
				files = append(files, tempFile(t, "list.crl", f))
			}
			c, err := NewCerts(CertConfig{CAFiles: []string{a.File, b.File}, CRLFiles: files})
			if err != nil {
				t.Fatal(err)
			}
			for _, cert := range tc.revoked {
				if _, err := c.Verify([]*x509.Certificate{cert}); !errors.Is(err, ErrCertRevoked) {
					t.Errorf("%v: err = %v, want ErrCertRevoked", cert.EmailAddresses, err)
				}
			}
			for _, cert := range tc.good {
				if _, err := c.Verify([]*x509.Certificate{cert}); err != nil {
					t.Errorf("%v: %v", cert.EmailAddresses, err)
				}
			}
		})
	}
}

// TestCRLRevokedMessage: the refusal names the certificate and its CA.
func TestCRLRevokedMessage(t *testing.T) {
	ca := testca.New(t, "Message CA")
	cert := ca.Issue(t, "Mallory", []string{"mallory@example.com"})
	c, err := NewCerts(CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{tempFile(t, "ca.crl", ca.CRLPEM(t, time.Now().Add(time.Hour), cert))}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Verify([]*x509.Certificate{cert})
	for _, want := range []string{"client certificate revoked", "CN=Mallory", "CN=Message CA"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %q", err, want)
		}
	}
}

// TestCRLExpiry: a list past its NextUpdate refuses every certificate of
// its CA, revoked or not, unless AllowExpiredCRL; an already expired list
// is an error at load.
func TestCRLExpiry(t *testing.T) {
	ca := testca.New(t, "Expiry CA")
	revoked, good := ca.Issue(t, "", []string{"r@example.com"}), ca.Issue(t, "", []string{"g@example.com"})
	other := testca.New(t, "Other CA")
	otherGood := other.Issue(t, "", []string{"o@example.com"})
	next := time.Now().Add(time.Hour)
	file := tempFile(t, "ca.crl", ca.CRLPEM(t, next, revoked))
	now := time.Now()
	clock := func() time.Time { return now }
	c, err := NewCerts(CertConfig{CAFiles: []string{ca.File, other.File}, CRLFiles: []string{file}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify([]*x509.Certificate{good}); err != nil {
		t.Fatalf("before NextUpdate: %v", err)
	}
	now = next.Add(time.Second)
	for _, cert := range []*x509.Certificate{good, revoked} {
		_, err := c.Verify([]*x509.Certificate{cert})
		if !errors.Is(err, ErrCRLExpired) || !strings.Contains(err.Error(), "Expiry CA") {
			t.Errorf("%v after NextUpdate: err = %v, want ErrCRLExpired naming the CA", cert.EmailAddresses, err)
		}
	}
	if _, err := c.Verify([]*x509.Certificate{otherGood}); err != nil {
		t.Errorf("a CA without a list is not affected: %v", err)
	}

	// Loading a list that has already expired.
	expired := tempFile(t, "expired.crl", ca.CRLPEM(t, time.Now().Add(-time.Minute), revoked))
	_, err = NewCerts(CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{expired}})
	if !errors.Is(err, ErrCRLExpired) || !strings.Contains(err.Error(), expired) {
		t.Errorf("loading an expired list: err = %v, want ErrCRLExpired naming the file", err)
	}
	lax, err := NewCerts(CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{expired}, AllowExpiredCRL: true})
	if err != nil {
		t.Fatalf("AllowExpiredCRL: %v", err)
	}
	if _, err := lax.Verify([]*x509.Certificate{good}); err != nil {
		t.Errorf("AllowExpiredCRL, good certificate: %v", err)
	}
	if _, err := lax.Verify([]*x509.Certificate{revoked}); !errors.Is(err, ErrCertRevoked) {
		t.Errorf("AllowExpiredCRL, revoked certificate: err = %v, want ErrCertRevoked", err)
	}
}

// TestCRLReload: a replaced list takes effect at the next check after the
// interval; one that fails to load leaves the previous one in force.
func TestCRLReload(t *testing.T) {
	ca := testca.New(t, "Reload CA")
	cert := ca.Issue(t, "", []string{"later@example.com"})
	next := time.Now().Add(time.Hour)
	file := tempFile(t, "ca.crl", ca.CRLPEM(t, next))
	var logs bytes.Buffer
	c, err := NewCerts(CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{file},
		ReloadInterval: time.Nanosecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	verify := func() error {
		time.Sleep(time.Millisecond) // past the interval
		_, err := c.Verify([]*x509.Certificate{cert})
		return err
	}
	if err := verify(); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	stamp := time.Now()
	replace := func(data []byte) {
		stamp = stamp.Add(time.Second) // a new modification time even on a coarse file system
		testca.WriteFile(t, file, data)
		if err := os.Chtimes(file, stamp, stamp); err != nil {
			t.Fatal(err)
		}
	}

	replace(ca.CRLPEM(t, next, cert))
	if err := verify(); !errors.Is(err, ErrCertRevoked) {
		t.Fatalf("after the list revoking it was written: err = %v, want ErrCertRevoked", err)
	}
	if !strings.Contains(logs.String(), "crl_reloaded") {
		t.Errorf("no crl_reloaded in the log:\n%s", logs.String())
	}

	replace([]byte("-----BEGIN X509 CRL-----\ntruncated"))
	if err := verify(); !errors.Is(err, ErrCertRevoked) {
		t.Errorf("after a broken write: err = %v, want the previous list (ErrCertRevoked)", err)
	}
	if !strings.Contains(logs.String(), "crl_reload_failed") {
		t.Errorf("no crl_reload_failed in the log:\n%s", logs.String())
	}
	other := testca.New(t, "Reload CA") // same name, another key
	replace(other.CRLPEM(t, next))
	if err := verify(); !errors.Is(err, ErrCertRevoked) {
		t.Errorf("after a list signed by another key: err = %v, want the previous list (ErrCertRevoked)", err)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := verify(); !errors.Is(err, ErrCertRevoked) {
		t.Errorf("after the file was removed: err = %v, want the previous list (ErrCertRevoked)", err)
	}

	replace(ca.CRLPEM(t, next)) // unrevoked, as a CA may do for a hold
	if err := verify(); err != nil {
		t.Errorf("after the list no longer names it: %v", err)
	}
}

// TestCRLReloadInterval: the files are not looked at more often than the
// interval.
func TestCRLReloadInterval(t *testing.T) {
	ca := testca.New(t, "Interval CA")
	cert := ca.Issue(t, "", []string{"x@example.com"})
	next := time.Now().Add(time.Hour)
	file := tempFile(t, "ca.crl", ca.CRLPEM(t, next))
	c, err := NewCerts(CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{file}, ReloadInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	testca.WriteFile(t, file, ca.CRLPEM(t, next, cert))
	if _, err := c.Verify([]*x509.Certificate{cert}); err != nil {
		t.Errorf("within the interval the loaded list still applies: %v", err)
	}
}

// TestCRLConcurrentReload: handshakes check certificates while the list is
// being replaced (run with -race).
func TestCRLConcurrentReload(t *testing.T) {
	ca := testca.New(t, "Concurrent CA")
	cert := ca.Issue(t, "", []string{"c@example.com"})
	next := time.Now().Add(time.Hour)
	file := tempFile(t, "ca.crl", ca.CRLPEM(t, next))
	c, err := NewCerts(CertConfig{CAFiles: []string{ca.File}, CRLFiles: []string{file}, ReloadInterval: time.Nanosecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Verify([]*x509.Certificate{cert}); err != nil && !errors.Is(err, ErrCertRevoked) {
					t.Errorf("verify: %v", err)
					return
				}
			}
		})
	}
	for i := range 20 {
		if i%2 == 0 {
			testca.WriteFile(t, file, ca.CRLPEM(t, next, cert))
		} else {
			testca.WriteFile(t, file, ca.CRLPEM(t, next))
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
}
