// Package oidctest is an identity provider for tests: discovery, a JWKS
// whose keys can be rotated, tokens signed with go-jose, and the device
// authorization flow (RFC 8628).
package oidctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ClientID is the audience of the tokens IdP signs by default.
const ClientID = "pgwarden-test"

// IdP is a test identity provider served over HTTP.
type IdP struct {
	*httptest.Server
	// JWKSFetches counts the requests for the keys.
	JWKSFetches atomic.Int64

	mu      sync.Mutex
	keys    []*jose.JSONWebKey // private; the last one signs
	down    bool
	devices map[string]*device
	// Claims of the token the device flow issues.
	deviceClaims map[string]any
}

type device struct {
	userCode string
	approved bool
}

// New starts an IdP with one RSA key; it stops with the test.
func New(t testing.TB) *IdP {
	t.Helper()
	idp := &IdP{devices: map[string]*device{}}
	idp.Rotate(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", idp.discovery)
	mux.HandleFunc("/keys", idp.jwks)
	mux.HandleFunc("/device", idp.deviceAuth)
	mux.HandleFunc("/token", idp.token)
	idp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idp.mu.Lock()
		down := idp.down
		idp.mu.Unlock()
		if down {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(idp.Close)
	return idp
}

// Issuer is the IdP's issuer URL.
func (idp *IdP) Issuer() string { return idp.URL }

// SetDown makes every request fail (503) or serves again.
func (idp *IdP) SetDown(down bool) {
	idp.mu.Lock()
	idp.down = down
	idp.mu.Unlock()
}

// Rotate adds a new RSA signing key, which signs from now on; the older
// keys stay published.
func (idp *IdP) Rotate(t testing.TB) *jose.JSONWebKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idp.mu.Lock()
	defer idp.mu.Unlock()
	jwk := &jose.JSONWebKey{Key: k, KeyID: fmt.Sprintf("key-%d", len(idp.keys)+1), Algorithm: string(jose.RS256), Use: "sig"}
	idp.keys = append(idp.keys, jwk)
	return jwk
}

// Withdraw stops publishing the key kid (rotate first if it signs).
func (idp *IdP) Withdraw(kid string) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	for i, k := range idp.keys {
		if k.KeyID == kid {
			idp.keys = append(idp.keys[:i:i], idp.keys[i+1:]...)
			break
		}
	}
}

// Unpublished returns a key with a fresh kid that the JWKS does not list.
func Unpublished(t testing.TB, kid string) *jose.JSONWebKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"}
}

// ECKey returns an ES256 key, for a signature with the wrong key type.
func ECKey(t testing.TB, kid string) *jose.JSONWebKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}
}

// Claims are the standard claims of a token for email, valid for an hour.
func (idp *IdP) Claims(email string, groups ...string) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": idp.URL, "aud": ClientID, "sub": "sub-" + email, "email": email, "email_verified": true,
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if groups != nil {
		c["groups"] = groups
	}
	return c
}

// Sign signs claims with the current key.
func (idp *IdP) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	idp.mu.Lock()
	k := idp.keys[len(idp.keys)-1]
	idp.mu.Unlock()
	return SignWith(t, k, claims, nil)
}

// Token is a signed token for email in groups.
func (idp *IdP) Token(t testing.TB, email string, groups ...string) string {
	t.Helper()
	return idp.Sign(t, idp.Claims(email, groups...))
}

// SignWith signs claims with key, with extra protected headers.
func SignWith(t testing.TB, key *jose.JSONWebKey, claims map[string]any, headers map[jose.HeaderKey]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), key.KeyID)
	for k, v := range headers {
		opts = opts.WithHeader(k, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key.Key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Unsigned is claims as a token with "alg": "none".
func Unsigned(claims map[string]any) string {
	b64 := func(v any) string {
		j, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(j)
	}
	return b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64(claims) + "."
}

func (idp *IdP) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{
		"issuer":                                idp.URL,
		"jwks_uri":                              idp.URL + "/keys",
		"token_endpoint":                        idp.URL + "/token",
		"device_authorization_endpoint":         idp.URL + "/device",
		"authorization_endpoint":                idp.URL + "/authorize",
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
	})
}

func (idp *IdP) jwks(w http.ResponseWriter, _ *http.Request) {
	idp.JWKSFetches.Add(1)
	idp.mu.Lock()
	var set jose.JSONWebKeySet
	for _, k := range idp.keys {
		set.Keys = append(set.Keys, k.Public())
	}
	idp.mu.Unlock()
	writeJSON(w, set)
}

// DeviceClaims sets the claims of the token the device flow issues.
func (idp *IdP) DeviceClaims(c map[string]any) {
	idp.mu.Lock()
	idp.deviceClaims = c
	idp.mu.Unlock()
}

// Approve approves the device authorization with userCode, as the
// employee does in the browser; it reports whether there was one.
func (idp *IdP) Approve(userCode string) bool {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	for _, d := range idp.devices {
		if d.userCode == userCode {
			d.approved = true
			return true
		}
	}
	return false
}

func (idp *IdP) deviceAuth(w http.ResponseWriter, r *http.Request) {
	if r.ParseForm() != nil || r.PostForm.Get("client_id") != ClientID {
		w.WriteHeader(http.StatusBadRequest)
		writeJSON(w, map[string]string{"error": "invalid_client"})
		return
	}
	idp.mu.Lock()
	n := len(idp.devices) + 1
	code, user := fmt.Sprintf("dev-%d", n), fmt.Sprintf("WDJB-MJH%d", n)
	idp.devices[code] = &device{userCode: user}
	idp.mu.Unlock()
	writeJSON(w, map[string]any{
		"device_code": code, "user_code": user,
		"verification_uri":          idp.URL + "/activate",
		"verification_uri_complete": idp.URL + "/activate?user_code=" + user,
		"expires_in":                600, "interval": 1,
	})
}

func (idp *IdP) token(w http.ResponseWriter, r *http.Request) {
	if r.ParseForm() != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" {
		w.WriteHeader(http.StatusBadRequest)
		writeJSON(w, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	idp.mu.Lock()
	d := idp.devices[r.PostForm.Get("device_code")]
	approved := d != nil && d.approved
	claims := idp.deviceClaims
	k := idp.keys[len(idp.keys)-1]
	idp.mu.Unlock()
	switch {
	case d == nil:
		w.WriteHeader(http.StatusBadRequest)
		writeJSON(w, map[string]string{"error": "invalid_grant"})
		return
	case !approved:
		w.WriteHeader(http.StatusBadRequest)
		writeJSON(w, map[string]string{"error": "authorization_pending"})
		return
	}
	if claims == nil {
		claims = idp.Claims("device.user@example.com")
	}
	var t fatalT
	tok := SignWith(&t, k, claims, nil)
	writeJSON(w, map[string]any{"access_token": "opaque-" + strings.Repeat("a", 8), "token_type": "Bearer",
		"expires_in": 3600, "id_token": tok})
}

// fatalT lets SignWith run in a handler.
type fatalT struct{ testing.TB }

func (*fatalT) Helper()           {}
func (*fatalT) Fatal(args ...any) { panic(fmt.Sprint(args...)) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
