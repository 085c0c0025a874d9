package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// TLSMode says how pgwarden secures its connection to the upstream server.
type TLSMode string

// Upstream TLS modes, as libpq's sslmode of the same names.
const (
	TLSDisable    TLSMode = "disable"     // plain TCP
	TLSRequire    TLSMode = "require"     // TLS, certificate not verified
	TLSVerifyFull TLSMode = "verify-full" // TLS, certificate chain and host name verified
)

// DefaultMaxStartupPerAddress is the default of Config.MaxStartupPerAddress.
const DefaultMaxStartupPerAddress = 64

// Config configures a Server. The zero value of every field but UpstreamAddr
// has a sensible default; CheckAndSetDefaults fills them in.
type Config struct {
	// UpstreamAddr is the PostgreSQL server, host:port.
	UpstreamAddr string
	// UpstreamTLSMode defaults to TLSVerifyFull when UpstreamTLS is set and
	// to TLSDisable otherwise.
	UpstreamTLSMode TLSMode
	// UpstreamTLS carries the root CAs and the server name (SNI and
	// verification) for the upstream connection; ServerName defaults to the
	// host of UpstreamAddr.
	UpstreamTLS *tls.Config
	// UpstreamRootCAs, if set, gives the root CAs of each new upstream
	// connection in place of UpstreamTLS.RootCAs, so that a CA file
	// reloaded while pgwarden runs applies to the next session; nil from
	// it keeps UpstreamTLS.RootCAs.
	UpstreamRootCAs func() *x509.CertPool
	// DialTimeout bounds connecting to the upstream server, TLS included.
	DialTimeout time.Duration

	// ClientTLS is offered to clients that send SSLRequest. Nil refuses TLS
	// ('N'), which libpq's default sslmode=prefer accepts.
	ClientTLS *tls.Config

	// MaxConnections caps concurrent client connections (default 1000);
	// clients past it get SQLSTATE 53300, as from PostgreSQL.
	MaxConnections int
	// MaxMessageSize caps the body of a client message once the session is
	// authenticated (default DefaultMaxMessageSize, 64 MiB): a larger one
	// ends the session with FATAL 54000. Before authentication completes
	// every client message is capped at 65,535 bytes, as PostgreSQL caps
	// password and SASL messages; the server's messages keep PostgreSQL's
	// own limit, 1 GiB.
	MaxMessageSize int
	// MaxStartupPerAddress caps the connections from one client IP
	// address (for IPv6, one /64) that have not yet authenticated
	// (default 64; negative: no cap). A connection past it gets SQLSTATE 53300 and is closed at once,
	// so that silent connections from one address cannot take every slot
	// of MaxConnections for the startup timeout.
	MaxStartupPerAddress int
	// StartupTimeout bounds the time from accept to the first ReadyForQuery,
	// authentication included (default 30s).
	StartupTimeout time.Duration
	// IdleTimeout ends sessions whose client has sent nothing for this long
	// while no statement is running (default 0, never).
	IdleTimeout time.Duration
	// CancelTimeout bounds forwarding a cancel request upstream (default 5s).
	CancelTimeout time.Duration
	// HoldTimeout bounds how long an inspected session holds a request of
	// a new batch while the batch before it is answered (default 2s).
	HoldTimeout time.Duration

	// Identify, if set, decides who the employee behind a session is,
	// once the client's startup message has been read (after TLS) and
	// before anything is sent upstream. It may set info.Employee and
	// info.IdentifiedBy (info.ClientCertificates holds the client's
	// verified certificate chain, if it sent one). An error refuses the
	// session: the client gets its text as FATAL 28000. With Login, it runs
	// after a successful login, with User, Employee and IdentifiedBy set.
	Identify func(ctx context.Context, info *SessionInfo) error

	// Login, if set, has pgwarden authenticate employees itself, for the
	// startups its Method picks, and connect upstream as the database
	// role each login maps to (see Login). Nil relays authentication to
	// the upstream server for every session.
	Login *Login
	// Reuse, if set, has the upstream connections of the sessions that
	// Login authenticates serve later sessions of the same role,
	// database and startup parameters (see Reuse). It needs Login.
	Reuse *Reuse

	// Inspector sees every session's traffic; nil relays without decoding.
	Inspector Inspector
	// Observe, if set, is told of connection events for metrics:
	// "connection" (accepted), "failed:<SQLSTATE>" (a session that ended
	// in an error before or while it ran, with the code its client got)
	// and "upstream_error" (the upstream server could not be reached, or
	// dropped the connection). It must not block.
	Observe func(event string)
	// OnDDL, if set, is called after the server reports a command that may
	// change relation or column names (the catalog cache invalidates on it).
	OnDDL func()
	// IsDDLTag classifies command tags for OnDDL.
	IsDDLTag func(tag []byte) bool

	// Logger receives the proxy's structured logs (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// CheckAndSetDefaults validates the configuration and fills in defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.UpstreamAddr == "" {
		return errors.New("upstream address is required")
	}
	host, _, err := net.SplitHostPort(c.UpstreamAddr)
	if err != nil {
		return fmt.Errorf("upstream address %q: %w", c.UpstreamAddr, err)
	}
	switch c.UpstreamTLSMode {
	case "":
		c.UpstreamTLSMode = TLSDisable
		if c.UpstreamTLS != nil {
			c.UpstreamTLSMode = TLSVerifyFull
		}
	case TLSDisable, TLSRequire, TLSVerifyFull:
	default:
		return fmt.Errorf("upstream TLS mode %q: want disable, require or verify-full", c.UpstreamTLSMode)
	}
	if c.UpstreamTLSMode != TLSDisable {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.UpstreamTLS != nil {
			t = c.UpstreamTLS.Clone()
		}
		if t.ServerName == "" {
			t.ServerName = host
		}
		t.InsecureSkipVerify = c.UpstreamTLSMode == TLSRequire
		c.UpstreamTLS = t
	}
	if c.Login != nil {
		if err := c.Login.check(); err != nil {
			return err
		}
	}
	if c.Reuse != nil {
		if c.Login == nil {
			return errors.New("reuse of upstream connections needs Login")
		}
		r := *c.Reuse
		r.setDefaults()
		c.Reuse = &r
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 1000
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MaxStartupPerAddress == 0 {
		c.MaxStartupPerAddress = DefaultMaxStartupPerAddress
	}
	if c.StartupTimeout <= 0 {
		c.StartupTimeout = 30 * time.Second
	}
	if c.CancelTimeout <= 0 {
		c.CancelTimeout = 5 * time.Second
	}
	if c.HoldTimeout <= 0 {
		c.HoldTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
