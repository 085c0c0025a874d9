package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pgwarden/pgwarden/proxy"
)

// CertConfig configures identification by client certificate.
type CertConfig struct {
	// CAFiles are PEM files of the authorities that issue employees'
	// client certificates; at least one. They need not be the CA of
	// pgwarden's own server certificate or of the upstream server.
	CAFiles []string `yaml:"ca_files"`
	// CRLFiles are revocation lists, PEM ("X509 CRL" blocks) or DER, each
	// signed by one of the CAs. They are reloaded when they change.
	CRLFiles []string `yaml:"crl_files"`
	// AllowExpiredCRL keeps using a list past its NextUpdate. By default
	// such a list is an error when loaded and refuses every certificate of
	// its CA once it expires in service: a CA that stopped publishing could
	// be hiding revocations.
	AllowExpiredCRL bool `yaml:"allow_expired_crl"`
	// Map says which part of a certificate names the employee: "email"
	// (the first subject alternative name email; the default), "cn" (the
	// subject common name), or several separated by commas, tried in
	// order: "email,cn". Email addresses are lower-cased.
	Map string `yaml:"map"`
	// Domains, if set, restrict employees to email addresses in these
	// domains ("example.com", exact match, any case); names outside them
	// are skipped, and a certificate with none is refused.
	Domains []string `yaml:"domains"`
	// Rules require certificates, and constrain the employees they name,
	// per database and role; the first whose Target matches applies. A
	// session no rule requires a certificate of may come without one: its
	// employee is then its role.
	Rules []CertRule `yaml:"rules"`
	// ReloadInterval is how often, at most, the CRL files are checked for
	// a new version (default 5s).
	ReloadInterval time.Duration `yaml:"reload_interval"`

	// Now is the time certificates and lists are judged by (default
	// time.Now). It is wall time even when the proxy runs on a virtual
	// clock: certificates expire in the real world.
	Now func() time.Time `yaml:"-"`
	// Logger receives CRL reloads and reload failures (default
	// slog.Default()).
	Logger *slog.Logger `yaml:"-"`
}

// Certificate mappings (CertConfig.Map).
const (
	MapEmail = "email" // the first subject alternative name email
	MapCN    = "cn"    // the subject common name
)

// Errors of certificate identification, wrapped with the details; the
// proxy sends their text to the client as FATAL 28000.
var (
	ErrCertRequired   = errors.New("client certificate required")
	ErrCertUnverified = errors.New("client certificate not verified")
	ErrCertRevoked    = errors.New("client certificate revoked")
	ErrCRLExpired     = errors.New("certificate revocation list expired")
	ErrCertNoEmployee = errors.New("client certificate names no employee")
	ErrCertEmployee   = errors.New("client certificate's employee not allowed")
)

// Certs identifies employees by their TLS client certificates. It is safe
// for concurrent use.
type Certs struct {
	pool    *x509.CertPool
	mapping []string
	domains []string
	rules   []certRule
	crls    *crlSet
	now     func() time.Time
}

// NewCerts loads the CAs and revocation lists of cfg and compiles its rules.
// Its errors name the file, rule or setting at fault.
func NewCerts(cfg CertConfig) (*Certs, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReloadInterval <= 0 {
		cfg.ReloadInterval = 5 * time.Second
	}
	c := &Certs{pool: x509.NewCertPool(), now: cfg.Now}
	if len(cfg.CAFiles) == 0 {
		return nil, errors.New("identity: certificates: no CA file")
	}
	var cas []*x509.Certificate
	for _, name := range cfg.CAFiles {
		certs, err := loadCAFile(name)
		if err != nil {
			return nil, fmt.Errorf("identity: certificates: %w", err)
		}
		for _, ca := range certs {
			c.pool.AddCert(ca)
		}
		cas = append(cas, certs...)
	}
	var err error
	if c.mapping, err = parseCertMap(cfg.Map); err != nil {
		return nil, fmt.Errorf("identity: certificates: %w", err)
	}
	for _, raw := range cfg.Domains {
		d := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(raw), "@"))
		if d == "" || strings.ContainsAny(d, "@ \t*") {
			return nil, fmt.Errorf("identity: certificates: domain %q: want a domain name such as example.com", raw)
		}
		c.domains = append(c.domains, d)
	}
	for i, r := range cfg.Rules {
		cr, err := compileCertRule(r)
		if err != nil {
			return nil, fmt.Errorf("identity: certificates: rule %d: %w", i+1, err)
		}
		c.rules = append(c.rules, cr)
	}
	if c.crls, err = newCRLSet(cfg.CRLFiles, cas, cfg.AllowExpiredCRL, cfg.ReloadInterval, cfg.Now, cfg.Logger); err != nil {
		return nil, fmt.Errorf("identity: certificates: %w", err)
	}
	return c, nil
}

// loadCAFile returns the certificates of a PEM file.
func loadCAFile(name string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue // a key or parameters next to the certificate
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA file %s: %w", name, err)
		}
		if !cert.IsCA {
			return nil, fmt.Errorf("CA file %s: %q is not a CA certificate", name, cert.Subject.String())
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("CA file %s: no PEM certificate", name)
	}
	return certs, nil
}

func parseCertMap(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return []string{MapEmail}, nil
	}
	var m []string
	for _, part := range strings.Split(s, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		switch part {
		case MapEmail, MapCN:
		default:
			return nil, fmt.Errorf("map %q: %q is not a certificate field; want email, cn or both, e.g. \"email,cn\"", s, part)
		}
		for _, seen := range m {
			if seen == part {
				return nil, fmt.Errorf("map %q: %s twice", s, part)
			}
		}
		m = append(m, part)
	}
	return m, nil
}

// ConfigureTLS makes tc, the configuration offered to clients, ask for a
// certificate and verify one that is given against the CAs and the
// revocation lists: a revoked certificate fails the handshake. A client may
// still connect without one (tls.VerifyClientCertIfGiven, unless tc already
// requires one); Identify refuses it where a rule requires a certificate.
// It replaces tc.ClientCAs and wraps tc.VerifyConnection; call it before tc
// is used.
func (c *Certs) ConfigureTLS(tc *tls.Config) {
	tc.ClientCAs = c.pool
	if tc.ClientAuth != tls.RequireAndVerifyClientCert {
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	prev := tc.VerifyConnection
	// VerifyConnection, unlike VerifyPeerCertificate, also runs on resumed
	// sessions, whose certificate may have been revoked since.
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		for _, chain := range cs.VerifiedChains {
			if err := c.crls.check(chain); err != nil {
				return err
			}
		}
		return nil
	}
}

// Identify is a proxy.Config.Identify. With a client certificate it
// verifies it again (chain, key usage, revocation: it does not rely on the
// TLS configuration) and names the employee from it; without one it leaves
// the role as the employee unless a rule requires a certificate.
func (c *Certs) Identify(_ context.Context, info *proxy.SessionInfo) error {
	rule := c.rule(info.Database, info.User)
	if len(info.ClientCertificates) == 0 {
		if rule == nil || !rule.require {
			return nil
		}
		how := "none was presented; connect with sslcert and sslkey naming a certificate from pgwarden's client CA"
		if !info.ClientTLS {
			how = "this connection does not use TLS; connect with sslmode=require (or stricter) and sslcert and sslkey"
		}
		return fmt.Errorf("%w: database %q as role %q needs a client certificate (rule %q), and %s",
			ErrCertRequired, info.Database, info.User, rule.target, how)
	}
	employee, err := c.Verify(info.ClientCertificates)
	if err != nil {
		return err
	}
	if rule != nil && !rule.allows(employee) {
		return fmt.Errorf("%w: %q may not use database %q as role %q (rule %q)",
			ErrCertEmployee, employee, info.Database, info.User, rule.target)
	}
	if info.IdentifiedBy == proxy.IdentifiedByLogin || info.IdentifiedBy == proxy.IdentifiedByOIDC {
		// Logged in to pgwarden already (its own login, or a token of
		// the identity provider): the certificate must name the same
		// person, or one person would be counted as two.
		if !strings.EqualFold(employee, info.Employee) {
			return fmt.Errorf("%w: the certificate names %q, but the session logged in as %q",
				ErrCertEmployee, employee, info.Employee)
		}
		return nil
	}
	info.Employee, info.IdentifiedBy = employee, proxy.IdentifiedByCertificate
	return nil
}

// Verify checks a certificate chain as a client presented it (leaf first)
// against the CAs and revocation lists, and returns the employee the leaf
// names.
func (c *Certs) Verify(presented []*x509.Certificate) (string, error) {
	if len(presented) == 0 {
		return "", fmt.Errorf("%w: no certificate", ErrCertUnverified)
	}
	leaf := presented[0]
	inter := x509.NewCertPool()
	for _, ic := range presented[1:] {
		inter.AddCert(ic)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         c.pool,
		Intermediates: inter,
		CurrentTime:   c.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrCertUnverified, describeCert(leaf), err)
	}
	for _, chain := range chains {
		if err := c.crls.check(chain); err != nil {
			return "", err
		}
	}
	return c.Employee(leaf)
}

// Employee returns the employee cert names under the configured mapping and
// domains, or an error saying what the certificate offered.
func (c *Certs) Employee(cert *x509.Certificate) (string, error) {
	var offered []string
	for _, m := range c.mapping {
		switch m {
		case MapEmail:
			for _, e := range cert.EmailAddresses {
				if e = strings.ToLower(e); c.inDomains(e) && printable(e) {
					return e, nil
				}
				offered = append(offered, "email "+e)
			}
			if len(cert.EmailAddresses) == 0 {
				offered = append(offered, "no SAN email")
			}
		case MapCN:
			cn := cert.Subject.CommonName
			if isEmail(cn) {
				cn = strings.ToLower(cn)
			}
			switch {
			case cn == "":
				offered = append(offered, "no common name")
			case !printable(cn):
				offered = append(offered, "a common name with control characters")
			case c.inDomains(cn):
				return cn, nil
			default:
				offered = append(offered, "common name "+cn)
			}
		}
	}
	want := strings.Join(c.mapping, " or ")
	if len(c.domains) > 0 {
		want += " in domain " + strings.Join(c.domains, ", ")
	}
	return "", fmt.Errorf("%w: %s has %s; pgwarden takes the employee from %s",
		ErrCertNoEmployee, describeCert(cert), strings.Join(offered, ", "), want)
}

// inDomains reports whether name is acceptable under the domain restriction.
func (c *Certs) inDomains(name string) bool {
	if len(c.domains) == 0 {
		return true
	}
	if !isEmail(name) {
		return false
	}
	domain := strings.ToLower(name[strings.LastIndexByte(name, '@')+1:])
	for _, d := range c.domains {
		if domain == d {
			return true
		}
	}
	return false
}

// RequiresCertificate reports whether a session on database as role must
// present a client certificate.
func (c *Certs) RequiresCertificate(database, role string) bool {
	r := c.rule(database, role)
	return r != nil && r.require
}

// rule returns the first rule whose target matches, or nil.
func (c *Certs) rule(database, role string) *certRule {
	for i := range c.rules {
		if c.rules[i].matches(database, role) {
			return &c.rules[i]
		}
	}
	return nil
}

// describeCert names cert in a message: its subject, or its first email
// when the subject is empty.
func describeCert(cert *x509.Certificate) string {
	switch {
	case len(cert.Subject.Names) > 0:
		return strconv.Quote(cert.Subject.String())
	case len(cert.EmailAddresses) > 0:
		return "the certificate of " + strconv.Quote(cert.EmailAddresses[0])
	}
	return "a certificate with an empty subject"
}

// isEmail reports whether s looks like local@domain.
func isEmail(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1
}

// printable reports whether s is valid UTF-8 without control characters:
// an employee name ends up in logs and audit records.
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}
