package admin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
)

// Scope is what a principal may do: read everything, act on alerts,
// holds, quarantine and sessions, or administer pgwarden itself (policy
// reload, norms restore, the virtual clock). Each includes the ones
// before it.
type Scope int

// Scopes, weakest first.
const (
	ScopeRead Scope = iota + 1
	ScopeAct
	ScopeAdmin
)

func (s Scope) String() string {
	switch s {
	case ScopeRead:
		return "read"
	case ScopeAct:
		return "act"
	case ScopeAdmin:
		return "admin"
	}
	return fmt.Sprintf("scope(%d)", int(s))
}

// ParseScope reads "read", "act" or "admin".
func ParseScope(s string) (Scope, error) {
	switch s {
	case "read":
		return ScopeRead, nil
	case "act":
		return ScopeAct, nil
	case "admin":
		return ScopeAdmin, nil
	}
	return 0, fmt.Errorf("unknown scope %q: want read, act or admin", s)
}

// Principal is the person (or tool) a request acts for.
type Principal struct {
	// Name is who: "admin" for the bare secret, the token's name, or the
	// client certificate's email address or common name.
	Name  string
	Scope Scope
	// Via says how they proved it: "secret", "token" or "certificate".
	Via string
}

type principalKey struct{}

// PrincipalOf returns who the request acts for; its auth set it.
func PrincipalOf(r *http.Request) Principal {
	p, _ := r.Context().Value(principalKey{}).(Principal)
	return p
}

// Claims are what a token says of its holder.
type Claims struct {
	Name    string
	Scope   Scope
	Expires time.Time
}

type wireClaims struct {
	Name  string `json:"sub"`
	Scope string `json:"scope"`
	Exp   int64  `json:"exp"`
}

// tokenPrefix marks a named token: pgw2.<base64url claims>.<hex HMAC>.
const tokenPrefix = "pgw2."

// maxNameLen bounds an administrator's name.
const maxNameLen = 128

// ValidName reports whether name can name an administrator: printable,
// no spaces at either end, at most 128 bytes.
func ValidName(name string) error {
	if name == "" || len(name) > maxNameLen || strings.TrimSpace(name) != name {
		return fmt.Errorf("invalid name %q: want 1 to %d characters without surrounding spaces", name, maxNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("invalid name %q: control characters", name)
		}
	}
	return nil
}

// IssueToken derives from the admin secret a token that names its holder
// and their scope and expires: for a person or a tool that should not
// hold the secret itself. The claims are signed with HMAC-SHA256 keyed
// by the secret.
func IssueToken(secret []byte, c Claims) (string, error) {
	if err := ValidName(c.Name); err != nil {
		return "", err
	}
	if c.Scope < ScopeRead || c.Scope > ScopeAdmin {
		return "", fmt.Errorf("invalid scope %v", c.Scope)
	}
	raw, err := json.Marshal(wireClaims{Name: c.Name, Scope: c.Scope.String(), Exp: c.Expires.Unix()})
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(raw)
	return tokenPrefix + payload + "." + hex.EncodeToString(tokenMAC(secret, payload)), nil
}

func tokenMAC(secret []byte, payload string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tokenPrefix + payload))
	return m.Sum(nil)
}

var (
	errBadToken = errors.New("admin: bad token")
	errExpired  = errors.New("admin: token expired")
)

// check verifies a presented token and says whom it names. Comparisons
// are constant-time: the secret through hashes of equal length, a named
// token's MAC through hmac.Equal (before its claims are even decoded).
func (h *Handler) check(tok string, now time.Time) (Principal, error) {
	if rest, ok := strings.CutPrefix(tok, tokenPrefix); ok {
		payload, mac, ok := strings.Cut(rest, ".")
		got, err := hex.DecodeString(mac)
		if !ok || err != nil || !hmac.Equal(got, tokenMAC(h.cfg.Token, payload)) {
			return Principal{}, errBadToken
		}
		raw, err := base64.RawURLEncoding.DecodeString(payload)
		if err != nil {
			return Principal{}, errBadToken
		}
		var c wireClaims
		if err := json.Unmarshal(raw, &c); err != nil {
			return Principal{}, errBadToken
		}
		scope, err := ParseScope(c.Scope)
		if err != nil || ValidName(c.Name) != nil {
			return Principal{}, errBadToken
		}
		if !now.Before(time.Unix(c.Exp, 0)) {
			return Principal{}, errExpired
		}
		return Principal{Name: c.Name, Scope: scope, Via: "token"}, nil
	}
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], h.token[:]) != 1 {
		return Principal{}, errBadToken
	}
	return Principal{Name: "admin", Scope: ScopeAdmin, Via: "secret"}, nil
}

// certPrincipal names the holder of a verified client certificate: its
// first email address, else its common name; the scope is the one
// CertScopes gives that name (or the common name, or "*"). With no
// CertScopes at all, every verified certificate is an administrator.
func (h *Handler) certPrincipal(cert *x509.Certificate) (Principal, error) {
	name := cert.Subject.CommonName
	if len(cert.EmailAddresses) > 0 {
		name = cert.EmailAddresses[0]
	}
	if name == "" {
		return Principal{}, errors.New("the client certificate names nobody (no email address, no common name)")
	}
	p := Principal{Name: name, Via: "certificate"}
	if len(h.cfg.CertScopes) == 0 {
		p.Scope = ScopeAdmin
		return p, nil
	}
	for _, key := range append(cert.EmailAddresses, cert.Subject.CommonName, "*") {
		if s, ok := h.cfg.CertScopes[key]; ok && key != "" {
			p.Scope = s
			return p, nil
		}
	}
	return Principal{}, fmt.Errorf("the client certificate of %s has no scope (admin.client_scopes)", name)
}

// auth admits requests carrying the secret or a named token, or a
// verified client certificate (mTLS), whose principal has at least
// scope; it records the principal in the request's context. A wrong or
// missing credential gets 401, too weak a scope 403.
func (h *Handler) auth(scope Scope, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var (
			p   Principal
			err error
		)
		if h.cfg.ClientCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			if p, err = h.certPrincipal(r.TLS.VerifiedChains[0][0]); err != nil {
				writeError(w, http.StatusForbidden, err.Error())
				h.cfg.Logger.Warn("admin_forbidden", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "why", err.Error())
				return
			}
		} else {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			why := "missing or wrong bearer token"
			if ok {
				p, err = h.check(got, time.Now())
				if errors.Is(err, errExpired) {
					why = "the bearer token has expired"
				}
			}
			if !ok || err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="pgwarden"`)
				writeError(w, http.StatusUnauthorized, why)
				h.cfg.Logger.Warn("admin_unauthorized", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "why", why)
				return
			}
		}
		if p.Scope < scope {
			msg := fmt.Sprintf("%s (scope %s) may not do this: it needs scope %s", p.Name, p.Scope, scope)
			writeError(w, http.StatusForbidden, msg)
			h.cfg.Logger.Warn("admin_forbidden", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "by", p.Name, "scope", p.Scope.String())
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}
