package proxy

import (
	"crypto/tls"
	"crypto/x509"

	"github.com/pgwarden/pgwarden/internal/scram"
)

// clientEndPoint is the tls-server-end-point channel binding data of the
// certificate pgwarden presented to the client, nil without TLS or when it
// cannot be told (several certificates chosen by server name) or has none.
// With a configuration reloaded between the handshake and the exchange the
// data may be of the new certificate: the exchange then fails, and the
// client's next attempt succeeds.
func (s *session) clientEndPoint() []byte {
	tc, ok := s.client.(*tls.Conn)
	if !ok || s.cfg.ClientTLS == nil {
		return nil
	}
	hello := &tls.ClientHelloInfo{ServerName: tc.ConnectionState().ServerName}
	cfg := s.cfg.ClientTLS
	if cfg.GetConfigForClient != nil {
		if c, err := cfg.GetConfigForClient(hello); err == nil && c != nil {
			cfg = c
		}
	}
	var cert *tls.Certificate
	switch {
	case cfg.GetCertificate != nil:
		c, err := cfg.GetCertificate(hello)
		if err != nil {
			return nil
		}
		cert = c
	case len(cfg.Certificates) == 1:
		cert = &cfg.Certificates[0]
	}
	if cert == nil || len(cert.Certificate) == 0 {
		return nil
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil
		}
	}
	return scram.EndPointHash(leaf)
}
