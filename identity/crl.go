package identity

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// crlSet holds the revocation lists of the configured CAs and reloads their
// files when they change.
type crlSet struct {
	cas          []*x509.Certificate
	allowExpired bool
	interval     time.Duration
	now          func() time.Time // judges NextUpdate
	log          *slog.Logger

	mu      sync.Mutex
	checked time.Time // wall time of the last look at the files
	files   []*crlFile
}

// crlFile is one loaded file; a PEM file may hold several lists.
type crlFile struct {
	path  string
	mtime time.Time
	size  int64
	lists []*crlList
}

// crlList is one verified revocation list.
type crlList struct {
	issuer     *x509.Certificate    // the configured CA whose key signed it
	nextUpdate time.Time            // zero when the list gives none
	revoked    map[string]time.Time // serial number (decimal) -> revocation time
}

func newCRLSet(paths []string, cas []*x509.Certificate, allowExpired bool, interval time.Duration, now func() time.Time, log *slog.Logger) (*crlSet, error) {
	s := &crlSet{cas: cas, allowExpired: allowExpired, interval: interval, now: now, log: log, checked: time.Now()}
	for _, p := range paths {
		f, err := s.load(p)
		if err != nil {
			return nil, err
		}
		s.files = append(s.files, f)
	}
	return s, nil
}

// load reads, parses and verifies the lists in path.
func (s *crlSet) load(path string) (*crlFile, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	ders, err := crlDERs(data)
	if err != nil {
		return nil, fmt.Errorf("revocation list %s: %w", path, err)
	}
	f := &crlFile{path: path, mtime: fi.ModTime(), size: fi.Size()}
	now := s.now()
	for i, der := range ders {
		l, err := s.parse(der, now)
		if err != nil {
			if len(ders) > 1 {
				return nil, fmt.Errorf("revocation list %s (list %d of %d): %w", path, i+1, len(ders), err)
			}
			return nil, fmt.Errorf("revocation list %s: %w", path, err)
		}
		f.lists = append(f.lists, l)
	}
	return f, nil
}

// crlDERs returns the DER lists of a PEM file (blocks "X509 CRL") or the
// file itself when it is not PEM.
func crlDERs(data []byte) ([][]byte, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		if len(data) == 0 {
			return nil, errors.New("empty file")
		}
		return [][]byte{data}, nil
	}
	var ders [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "X509 CRL" {
			return nil, fmt.Errorf("PEM block %q, want \"X509 CRL\"", b.Type)
		}
		ders = append(ders, b.Bytes)
	}
	if len(ders) == 0 {
		return nil, errors.New("no PEM block \"X509 CRL\"")
	}
	return ders, nil
}

func (s *crlSet) parse(der []byte, now time.Time) (*crlList, error) {
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, err
	}
	l := &crlList{nextUpdate: rl.NextUpdate, revoked: make(map[string]time.Time, len(rl.RevokedCertificateEntries))}
	var sigErr error
	for _, ca := range s.cas {
		if !bytes.Equal(ca.RawSubject, rl.RawIssuer) {
			continue
		}
		if sigErr = rl.CheckSignatureFrom(ca); sigErr == nil {
			l.issuer = ca
			break
		}
	}
	switch {
	case l.issuer == nil && sigErr != nil:
		return nil, fmt.Errorf("issued by %q but not signed by that CA's key: %w", rl.Issuer, sigErr)
	case l.issuer == nil:
		return nil, fmt.Errorf("issued by %q, which is not one of the configured CAs", rl.Issuer)
	}
	if l.expired(now) && !s.allowExpired {
		return nil, fmt.Errorf("%w: its next update was due %s", ErrCRLExpired, l.nextUpdate.UTC().Format(time.RFC3339))
	}
	for _, e := range rl.RevokedCertificateEntries {
		l.revoked[e.SerialNumber.String()] = e.RevocationTime
	}
	return l, nil
}

func (l *crlList) expired(now time.Time) bool {
	return !l.nextUpdate.IsZero() && now.After(l.nextUpdate)
}

// check returns an error if a certificate of chain (leaf first, root last)
// is revoked by its issuer's lists, or one of those lists has expired.
func (s *crlSet) check(chain []*x509.Certificate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reloadLocked()
	now := s.now()
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		for _, f := range s.files {
			for _, l := range f.lists {
				if !sameCA(l.issuer, issuer) {
					continue
				}
				if l.expired(now) && !s.allowExpired {
					return fmt.Errorf("%w: the list of CA %q (%s) was due for renewal at %s; certificates it covers are refused until it is renewed",
						ErrCRLExpired, issuer.Subject.String(), f.path, l.nextUpdate.UTC().Format(time.RFC3339))
				}
				if at, ok := l.revoked[cert.SerialNumber.String()]; ok {
					return fmt.Errorf("%w: %s (serial %x) was revoked by %q at %s",
						ErrCertRevoked, describeCert(cert), cert.SerialNumber, issuer.Subject.String(), at.UTC().Format(time.RFC3339))
				}
			}
		}
	}
	return nil
}

// sameCA reports whether a and b are the same authority: the same name and
// key, though perhaps different certificates (a CA renewed with its key).
func sameCA(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawSubject, b.RawSubject) && bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo)
}

// reloadLocked loads the files that changed since they were loaded, at most
// once per interval. A file that fails to load keeps its previous lists and
// is tried again at the next interval.
func (s *crlSet) reloadLocked() {
	if len(s.files) == 0 || time.Since(s.checked) < s.interval {
		return
	}
	s.checked = time.Now()
	for i, f := range s.files {
		fi, err := os.Stat(f.path)
		if err != nil {
			s.log.Error("crl_reload_failed", "file", f.path, "error", err)
			continue
		}
		if fi.ModTime().Equal(f.mtime) && fi.Size() == f.size {
			continue
		}
		nf, err := s.load(f.path)
		if err != nil {
			s.log.Error("crl_reload_failed", "file", f.path, "error", err)
			continue
		}
		s.files[i] = nf
		revoked := 0
		for _, l := range nf.lists {
			revoked += len(l.revoked)
		}
		s.log.Info("crl_reloaded", "file", f.path, "revoked", revoked)
	}
}
