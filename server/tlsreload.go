package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/identity"
	"github.com/pgwarden/pgwarden/proxy"
)

// tlsFiles keeps serve's TLS material current while it runs: the
// certificate and key presented to clients, the CAs of employees' client
// certificates, and the upstream server's CA. It reads them again on
// SIGHUP and when one of the files changes, and swaps the new set in only
// when every file loads: a bad certificate, a key that does not match,
// a CA file with nothing in it is logged and the set in force stays.
// Handshakes and upstream connections started after a swap use the new
// set; sessions already open keep theirs.
type tlsFiles struct {
	fc  *config.Config
	log *slog.Logger

	mu     sync.Mutex // one reload at a time
	stamps map[string]fileStamp

	server   atomic.Pointer[tls.Config]     // presented to clients
	certs    atomic.Pointer[identity.Certs] // employees' client certificates
	upstream atomic.Pointer[x509.CertPool]  // the upstream CA
}

// tlsSet is one load of every file.
type tlsSet struct {
	server   *tls.Config
	certs    *identity.Certs
	upstream *x509.CertPool
}

// newTLSFiles makes cfg's client TLS, client-certificate identification
// and upstream CA follow their files: Reload and watch read them again.
// It returns nil and leaves cfg as it is when none of them comes from a
// file.
func newTLSFiles(fc *config.Config, cfg *proxy.Config, logger *slog.Logger) (*tlsFiles, error) {
	t := &tlsFiles{fc: fc, log: logger}
	if len(t.files()) == 0 {
		return nil, nil
	}
	set, err := t.load()
	if err != nil {
		return nil, err
	}
	t.swap(set)
	t.stamps = t.stat()
	if set.server != nil {
		cfg.ClientTLS = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return t.server.Load(), nil },
		}
	}
	if set.certs != nil {
		cfg.Identify = func(ctx context.Context, info *proxy.SessionInfo) error { return t.certs.Load().Identify(ctx, info) }
	}
	if set.upstream != nil {
		cfg.UpstreamRootCAs = t.upstream.Load
	}
	return t, nil
}

// watch reloads the files when one of them changes, until ctx ends.
func (t *tlsFiles) watch(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.reload("file_changed", false)
		}
	}
}

// upstreamCAFile is the upstream CA file serve reads: --upstream-ca-file,
// else the upstream URL's sslrootcert.
func upstreamCAFile(fc *config.Config) string {
	if fc.Upstream.CAFile != "" {
		return fc.Upstream.CAFile
	}
	if u, err := url.Parse(fc.Upstream.URL); err == nil {
		return u.Query().Get("sslrootcert")
	}
	return ""
}

// files are the files watched.
func (t *tlsFiles) files() []string {
	var fs []string
	for _, f := range append([]string{t.fc.ClientTLS.CertFile, t.fc.ClientTLS.KeyFile, upstreamCAFile(t.fc)}, t.fc.ClientCerts.CAFiles...) {
		if f != "" {
			fs = append(fs, f)
		}
	}
	return fs
}

// stat stamps every file; a missing one has the zero stamp.
func (t *tlsFiles) stat() map[string]fileStamp {
	m := map[string]fileStamp{}
	for _, f := range t.files() {
		m[f], _ = statStamp(f)
	}
	return m
}

// load reads every file as serve does at startup.
func (t *tlsFiles) load() (tlsSet, error) {
	var set tlsSet
	fc := t.fc
	_, _, up, err := upstreamSettings(fc.Upstream.URL, fc.Upstream.TLSMode, fc.Upstream.CAFile, fc.Upstream.ServerName)
	if err != nil {
		return set, err
	}
	if up != nil {
		set.upstream = up.RootCAs
	}
	if set.server, err = clientTLSConfig(fc.ClientTLS.CertFile, fc.ClientTLS.KeyFile); err != nil {
		return set, err
	}
	if len(fc.ClientCerts.CAFiles) > 0 {
		if set.server == nil {
			return set, errors.New("client certificates need TLS to clients: set --tls-cert and --tls-key")
		}
		cc := fc.ClientCerts
		cc.Logger = t.log
		if set.certs, err = identity.NewCerts(cc); err != nil {
			return set, err
		}
		set.certs.ConfigureTLS(set.server)
	}
	return set, nil
}

func (t *tlsFiles) swap(set tlsSet) {
	t.server.Store(set.server)
	t.certs.Store(set.certs)
	t.upstream.Store(set.upstream)
}

// reload loads the files again, when forced or when one changed since the
// last attempt, and swaps them in if they all load.
func (t *tlsFiles) reload(trigger string, force bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	stamps := t.stat()
	if !force && maps.Equal(stamps, t.stamps) {
		return nil
	}
	// A failed attempt is not retried until a file changes again (a
	// certificate and its key are often replaced one after the other).
	t.stamps = stamps
	set, err := t.load()
	if err != nil {
		t.log.Error("tls_reload_failed", "trigger", trigger, "error", err.Error(), "kept", "the certificates in force")
		return err
	}
	t.swap(set)
	files := t.files()
	slices.Sort(files)
	t.log.Info("tls_reloaded", "trigger", trigger, "files", files)
	return nil
}
