package proxy

import "crypto/tls"

// upstreamTLSConfig is the TLS configuration of a new upstream connection:
// UpstreamTLS, with the root CAs UpstreamRootCAs gives when it is set.
func (c *Config) upstreamTLSConfig() *tls.Config {
	if c.UpstreamRootCAs == nil {
		return c.UpstreamTLS
	}
	pool := c.UpstreamRootCAs()
	if pool == nil {
		return c.UpstreamTLS
	}
	t := c.UpstreamTLS.Clone()
	t.RootCAs = pool
	return t
}
