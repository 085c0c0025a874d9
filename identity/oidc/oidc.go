package oidc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/pgwarden/pgwarden/proxy"
)

// Token types (Config.TokenType).
const (
	TokenID     = "id"     // an OIDC ID token
	TokenAccess = "access" // a JWT access token (RFC 9068 or the provider's own)
)

// On a session that outlives its token (Config.OnExpiry).
const (
	ExpiryEnd   = "end"   // end it at a clean point past MaxSession
	ExpiryAllow = "allow" // let it run
)

// RoleRule picks the database role for employees in a group.
type RoleRule struct {
	// Group is a policy group (after GroupMap).
	Group string `yaml:"group"`
	// Role is the database role to log in upstream as.
	Role string `yaml:"role"`
}

// Config configures a Verifier.
type Config struct {
	// Issuer is the identity provider's issuer URL, as its tokens' iss
	// says; its discovery document is Issuer + /.well-known/openid-configuration.
	Issuer string
	// Audience is what the tokens' aud must hold: the client id for ID
	// tokens, the API's identifier for access tokens.
	Audience string
	// TokenType is TokenID (default) or TokenAccess. An ID token must
	// not carry the access token type "at+jwt".
	TokenType string
	// UsernameClaim names the employee (default "email").
	UsernameClaim string
	// GroupsClaim holds the employee's groups, a list of strings or one
	// string (default "groups").
	GroupsClaim string
	// GroupMap renames the provider's groups to policy groups; groups it
	// does not name keep their names.
	GroupMap map[string]string
	// Roles pick the role to log in upstream as: the first whose Group
	// the employee is in. DefaultRole applies when none does; without
	// it such an employee is refused.
	Roles       []RoleRule
	DefaultRole string
	// Algorithms are the signing algorithms accepted; default: those of
	// the discovery document, else RS256.
	Algorithms []string
	// Skew is the clock difference allowed for exp and nbf (default 30s).
	Skew time.Duration
	// MinRefreshInterval bounds how often a token with an unknown key id
	// fetches the keys again (default 30s).
	MinRefreshInterval time.Duration
	// KeysMaxAge is how long fetched keys stay usable while the provider
	// cannot be reached (default 24h).
	KeysMaxAge time.Duration
	// OnExpiry is ExpiryEnd (default) or ExpiryAllow; MaxSession is how
	// long past its start a session may run once its token has expired
	// (default 0: it ends at the token's expiry).
	OnExpiry   string
	MaxSession time.Duration
	// HTTPClient reaches the provider (default: a client with a 10s
	// timeout).
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
}

// CheckAndSetDefaults validates the configuration and fills in defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Issuer == "" {
		return errors.New("oidc: issuer is required")
	}
	if c.Audience == "" {
		return errors.New("oidc: audience (the client id) is required")
	}
	switch c.TokenType {
	case "":
		c.TokenType = TokenID
	case TokenID, TokenAccess:
	default:
		return fmt.Errorf("oidc: token type %q: want id or access", c.TokenType)
	}
	switch c.OnExpiry {
	case "":
		c.OnExpiry = ExpiryEnd
	case ExpiryEnd, ExpiryAllow:
	default:
		return fmt.Errorf("oidc: on_expiry %q: want end or allow", c.OnExpiry)
	}
	for _, a := range c.Algorithms {
		if strings.EqualFold(a, "none") {
			return errors.New(`oidc: algorithm "none" is never accepted`)
		}
	}
	for i, r := range c.Roles {
		if r.Group == "" || r.Role == "" {
			return fmt.Errorf("oidc: roles entry %d needs a group and a role", i)
		}
	}
	c.UsernameClaim = cmp.Or(c.UsernameClaim, "email")
	c.GroupsClaim = cmp.Or(c.GroupsClaim, "groups")
	if c.Skew <= 0 {
		c.Skew = 30 * time.Second
	}
	if c.MinRefreshInterval <= 0 {
		c.MinRefreshInterval = 30 * time.Second
	}
	if c.KeysMaxAge <= 0 {
		c.KeysMaxAge = 24 * time.Hour
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Why a token was refused (Refusal.Reason).
const (
	ReasonMalformed     = "malformed_token"      // not a signed JWT, or signed with an algorithm not accepted ("none")
	ReasonUnknownKey    = "unknown_key"          // no key of the issuer has the token's kid
	ReasonBadSignature  = "bad_signature"        // the key with the token's kid did not sign it
	ReasonKeysExpired   = "keys_expired"         // the provider has been unreachable longer than KeysMaxAge
	ReasonWrongIssuer   = "wrong_issuer"         // iss is another issuer
	ReasonWrongAudience = "wrong_audience"       // aud does not hold the audience
	ReasonExpired       = "expired"              // exp has passed
	ReasonNotYetValid   = "not_yet_valid"        // nbf is to come
	ReasonWrongType     = "wrong_token_type"     // an access token where an ID token is expected
	ReasonNoEmployee    = "no_employee_claim"    // the username claim is missing
	ReasonNoRole        = "no_role"              // no role for the employee's groups
	ReasonUnavailable   = "provider_unavailable" // discovery failed
)

// Refusal is why a token was refused. Its text never holds the token.
type Refusal struct {
	Reason string
	Err    error
}

func (r *Refusal) Error() string {
	if r.Err == nil {
		return r.Reason
	}
	return r.Reason + ": " + r.Err.Error()
}

func (r *Refusal) Unwrap() error { return r.Err }

func refuse(reason string, err error) *Refusal { return &Refusal{Reason: reason, Err: err} }

// Verifier checks tokens of one issuer.
type Verifier struct {
	cfg Config

	mu       sync.Mutex
	ks       *keySet
	verifier *gooidc.IDTokenVerifier
	triedAt  time.Time // last failed discovery
}

// New returns a Verifier. It does not reach the provider: discovery
// happens at the first token, and again after a failure, at most once per
// MinRefreshInterval; Discover may be called to do it at startup.
func New(cfg Config) (*Verifier, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Verifier{cfg: cfg}, nil
}

// Discover fetches the discovery document and the keys.
func (v *Verifier) Discover(ctx context.Context) error {
	_, err := v.discovered(ctx)
	return err
}

func (v *Verifier) discovered(ctx context.Context) (*gooidc.IDTokenVerifier, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.verifier != nil {
		return v.verifier, nil
	}
	if !v.triedAt.IsZero() && v.cfg.Now().Sub(v.triedAt) < v.cfg.MinRefreshInterval {
		return nil, refuse(ReasonUnavailable, errors.New("discovery failed recently"))
	}
	v.triedAt = v.cfg.Now()
	p, err := gooidc.NewProvider(gooidc.ClientContext(ctx, v.cfg.HTTPClient), v.cfg.Issuer)
	if err != nil {
		v.cfg.Logger.Warn("oidc_discovery_failed", "issuer", v.cfg.Issuer, "error", err)
		return nil, refuse(ReasonUnavailable, err)
	}
	var meta struct {
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
		return nil, refuse(ReasonUnavailable, fmt.Errorf("discovery document has no jwks_uri (%v)", err))
	}
	algs := v.cfg.Algorithms
	if len(algs) == 0 {
		algs = meta.Algs
	}
	algs = slices.DeleteFunc(slices.Clone(algs), func(a string) bool { return strings.EqualFold(a, "none") })
	if len(algs) == 0 {
		algs = []string{gooidc.RS256}
	}
	ks := &keySet{url: meta.JWKSURI, client: v.cfg.HTTPClient, minRefresh: v.cfg.MinRefreshInterval,
		maxAge: v.cfg.KeysMaxAge, now: v.cfg.Now, log: v.cfg.Logger}
	for _, a := range algs {
		ks.algs = append(ks.algs, jose.SignatureAlgorithm(a))
	}
	if err := ks.refresh(ctx, false); err != nil {
		v.cfg.Logger.Warn("oidc_jwks_fetch_failed", "issuer", v.cfg.Issuer, "error", err)
		return nil, refuse(ReasonUnavailable, err)
	}
	v.ks = ks
	v.verifier = gooidc.NewVerifier(v.cfg.Issuer, ks, &gooidc.Config{
		ClientID:             v.cfg.Audience,
		SupportedSigningAlgs: algs,
		SkipExpiryCheck:      true, // checked below, with Skew
	})
	v.cfg.Logger.Info("oidc_discovered", "issuer", v.cfg.Issuer, "jwks_uri", meta.JWKSURI, "algorithms", algs)
	return v.verifier, nil
}

// Verify checks token and returns whom it names, or a *Refusal.
func (v *Verifier) Verify(ctx context.Context, token string) (*proxy.TokenIdentity, error) {
	iv, err := v.discovered(ctx)
	if err != nil {
		return nil, err
	}
	if v.cfg.TokenType == TokenID {
		if jws, err := jose.ParseSigned(token, v.ks.algs); err == nil && len(jws.Signatures) == 1 {
			if typ, _ := jws.Signatures[0].Header.ExtraHeaders["typ"].(string); strings.EqualFold(strings.TrimPrefix(strings.ToLower(typ), "application/"), "at+jwt") {
				return nil, refuse(ReasonWrongType, errors.New(`typ "at+jwt": an access token`))
			}
		}
	}
	n := &note{}
	idt, err := iv.Verify(context.WithValue(ctx, noteKey{}, n), token)
	if err != nil {
		if n.refusal != nil {
			return nil, n.refusal
		}
		return nil, classify(v.ks, token, err)
	}
	var c jwt.Claims
	if err := idt.Claims(&c); err != nil {
		return nil, refuse(ReasonMalformed, err)
	}
	now := v.cfg.Now()
	if c.Expiry == nil {
		return nil, refuse(ReasonExpired, errors.New("no exp claim"))
	}
	exp := c.Expiry.Time()
	switch err := c.ValidateWithLeeway(jwt.Expected{Time: now}, v.cfg.Skew); {
	case errors.Is(err, jwt.ErrExpired):
		return nil, refuse(ReasonExpired, fmt.Errorf("expired at %s", exp.UTC().Format(time.RFC3339)))
	case errors.Is(err, jwt.ErrNotValidYet):
		return nil, refuse(ReasonNotYetValid, fmt.Errorf("not valid before %s", c.NotBefore.Time().UTC().Format(time.RFC3339)))
	case err != nil:
		return nil, refuse(ReasonMalformed, err)
	}
	var all map[string]any
	if err := idt.Claims(&all); err != nil {
		return nil, refuse(ReasonMalformed, err)
	}
	employee, _ := all[v.cfg.UsernameClaim].(string)
	if employee == "" {
		return nil, refuse(ReasonNoEmployee, fmt.Errorf("no %q claim (subject %q)", v.cfg.UsernameClaim, idt.Subject))
	}
	if v.cfg.UsernameClaim == "email" {
		if verified, ok := all["email_verified"].(bool); ok && !verified {
			return nil, refuse(ReasonNoEmployee, fmt.Errorf("email %q is not verified", employee))
		}
		employee = strings.ToLower(employee)
	}
	groups := v.groups(all[v.cfg.GroupsClaim])
	role := v.cfg.DefaultRole
	for _, r := range v.cfg.Roles {
		if slices.Contains(groups, r.Group) {
			role = r.Role
			break
		}
	}
	if role == "" {
		return nil, refuse(ReasonNoRole, fmt.Errorf("employee %q is in none of the groups roles are given for (groups %v)", employee, groups))
	}
	id := &proxy.TokenIdentity{Employee: employee, Role: role, Groups: groups,
		Issuer: idt.Issuer, Subject: idt.Subject, Expiry: exp}
	if v.cfg.OnExpiry == ExpiryEnd {
		id.SessionEnd = exp
		if end := now.Add(v.cfg.MaxSession); end.After(exp) {
			id.SessionEnd = end
		}
	}
	return id, nil
}

// Token implements proxy.Login.Token.
func (v *Verifier) Token(ctx context.Context, _ *proxy.SessionInfo, token string) (*proxy.TokenIdentity, error) {
	return v.Verify(ctx, token)
}

// groups maps the groups claim's value to policy groups, sorted.
func (v *Verifier) groups(claim any) []string {
	var raw []string
	switch g := claim.(type) {
	case string:
		raw = []string{g}
	case []any:
		for _, e := range g {
			if s, ok := e.(string); ok {
				raw = append(raw, s)
			}
		}
	}
	out := make([]string, 0, len(raw))
	for _, g := range raw {
		if m, ok := v.cfg.GroupMap[g]; ok {
			g = m
		}
		if g != "" {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// classify turns go-oidc's error, which carries no type, into a Refusal.
func classify(ks *keySet, token string, err error) *Refusal {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "issued by a different provider"):
		return refuse(ReasonWrongIssuer, err)
	case strings.Contains(msg, "expected audience"):
		return refuse(ReasonWrongAudience, err)
	case strings.Contains(msg, "malformed jwt"), strings.Contains(msg, "not signed"), strings.Contains(msg, "multiple signatures"):
		if ks != nil {
			if _, perr := jose.ParseSigned(token, ks.algs); perr != nil {
				return refuse(ReasonMalformed, perr)
			}
		}
		return refuse(ReasonMalformed, err)
	}
	return refuse(ReasonMalformed, err)
}
