package oidc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pgwarden/pgwarden/identity/oidc"
	"github.com/pgwarden/pgwarden/identity/oidc/oidctest"
)

func newVerifier(t *testing.T, idp *oidctest.IdP, edit func(*oidc.Config)) *oidc.Verifier {
	t.Helper()
	cfg := oidc.Config{Issuer: idp.Issuer(), Audience: oidctest.ClientID, DefaultRole: "app_ro",
		MinRefreshInterval: 50 * time.Millisecond}
	if edit != nil {
		edit(&cfg)
	}
	v, err := oidc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func reasonOf(err error) string {
	var r *oidc.Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

func TestVerifyAccepts(t *testing.T) {
	idp := oidctest.New(t)
	v := newVerifier(t, idp, nil)
	id, err := v.Verify(context.Background(), idp.Token(t, "Alice@Example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if id.Employee != "alice@example.com" || id.Role != "app_ro" || id.Issuer != idp.Issuer() || id.Subject != "sub-Alice@Example.com" {
		t.Fatalf("identity %+v", id)
	}
	if d := time.Until(id.Expiry); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("expiry %v", id.Expiry)
	}
	if !id.SessionEnd.Equal(id.Expiry) {
		t.Fatalf("session end %v, want the token's expiry %v", id.SessionEnd, id.Expiry)
	}
}

func TestVerifyRefuses(t *testing.T) {
	idp := oidctest.New(t)
	other := oidctest.New(t)
	v := newVerifier(t, idp, nil)
	now := time.Now()
	with := func(edit func(map[string]any)) string {
		c := idp.Claims("bob@example.com")
		edit(c)
		return idp.Sign(t, c)
	}
	stranger := oidctest.Unpublished(t, "key-1") // same kid as the IdP's key
	for _, tc := range []struct {
		name, token, reason string
	}{
		{"wrong audience", with(func(c map[string]any) { c["aud"] = "another-app" }), oidc.ReasonWrongAudience},
		{"wrong issuer", with(func(c map[string]any) { c["iss"] = other.Issuer() }), oidc.ReasonWrongIssuer},
		{"expired", with(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), oidc.ReasonExpired},
		{"not yet valid", with(func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() }), oidc.ReasonNotYetValid},
		{"bad signature", oidctest.SignWith(t, stranger, idp.Claims("bob@example.com"), nil), oidc.ReasonBadSignature},
		{"unknown kid", oidctest.SignWith(t, oidctest.Unpublished(t, "nobody"), idp.Claims("bob@example.com"), nil), oidc.ReasonUnknownKey},
		{"alg none", oidctest.Unsigned(idp.Claims("bob@example.com")), oidc.ReasonMalformed},
		{"other issuer's token, same kid", other.Token(t, "bob@example.com"), oidc.ReasonBadSignature},
		{"not a jwt", "hunter2", oidc.ReasonMalformed},
		{"no email", with(func(c map[string]any) { delete(c, "email") }), oidc.ReasonNoEmployee},
		{"email not verified", with(func(c map[string]any) { c["email_verified"] = false }), oidc.ReasonNoEmployee},
		{"access token as id token", idpSignTyped(t, idp), oidc.ReasonWrongType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.token)
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
		})
	}
}

func idpSignTyped(t *testing.T, idp *oidctest.IdP) string {
	idp.Token(t, "x@example.com") // the IdP's key
	return oidctest.SignWith(t, currentKey(t, idp), idp.Claims("bob@example.com"), map[jose.HeaderKey]any{"typ": "at+jwt"})
}

// currentKey rotates to a fresh key the test can sign with directly.
func currentKey(t *testing.T, idp *oidctest.IdP) *jose.JSONWebKey { return idp.Rotate(t) }

func TestVerifyRotationAndOutage(t *testing.T) {
	idp := oidctest.New(t)
	now := time.Now()
	v := newVerifier(t, idp, func(c *oidc.Config) { c.Now = func() time.Time { return now } })
	ctx := context.Background()
	if _, err := v.Verify(ctx, idp.Token(t, "carol@example.com")); err != nil {
		t.Fatal(err)
	}
	fetches := idp.JWKSFetches.Load()
	for range 3 {
		if _, err := v.Verify(ctx, idp.Token(t, "carol@example.com")); err != nil {
			t.Fatal(err)
		}
	}
	if n := idp.JWKSFetches.Load(); n != fetches {
		t.Fatalf("known key fetched the keys again: %d fetches, want %d", n, fetches)
	}

	idp.Rotate(t)
	now = now.Add(time.Second)
	if _, err := v.Verify(ctx, idp.Token(t, "carol@example.com")); err != nil {
		t.Fatalf("token of the rotated key: %v", err)
	}
	if n := idp.JWKSFetches.Load(); n != fetches+1 {
		t.Fatalf("rotation: %d fetches, want %d", n, fetches+1)
	}

	// Unknown kids fetch at most once per MinRefreshInterval.
	fetches = idp.JWKSFetches.Load()
	for i := range 20 {
		tok := oidctest.SignWith(t, oidctest.Unpublished(t, "flood"), idp.Claims("mallory@example.com"), nil)
		if _, err := v.Verify(ctx, tok); reasonOf(err) != oidc.ReasonUnknownKey {
			t.Fatalf("flood %d: %v", i, err)
		}
	}
	if n := idp.JWKSFetches.Load() - fetches; n > 1 {
		t.Fatalf("20 unknown kids in a burst fetched the keys %d times, want at most 1", n)
	}

	tok := idp.Token(t, "carol@example.com")
	idp.SetDown(true)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("IdP down, cached key: %v", err)
	}
	now = now.Add(time.Second) // past MinRefreshInterval: an unknown kid tries the IdP
	unknown := oidctest.SignWith(t, oidctest.Unpublished(t, "later"), idp.Claims("carol@example.com"), nil)
	if _, err := v.Verify(ctx, unknown); reasonOf(err) != oidc.ReasonUnknownKey {
		t.Fatalf("IdP down, unknown kid: %v", err)
	}
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("IdP down after a failed refresh, cached key: %v", err)
	}
}

func TestVerifyKeysExpireWhileIdPDown(t *testing.T) {
	idp := oidctest.New(t)
	now := time.Now()
	clock := func() time.Time { return now }
	v := newVerifier(t, idp, func(c *oidc.Config) { c.KeysMaxAge = 10 * time.Minute; c.Now = clock })
	tok := idp.Token(t, "dan@example.com")
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	idp.SetDown(true)
	now = now.Add(5 * time.Minute)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("within KeysMaxAge: %v", err)
	}
	now = now.Add(6 * time.Minute)
	if _, err := v.Verify(context.Background(), tok); reasonOf(err) != oidc.ReasonKeysExpired {
		t.Fatalf("past KeysMaxAge with the IdP down: %v", err)
	}
	idp.SetDown(false)
	now = now.Add(2 * time.Second)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("IdP back: %v", err)
	}
}

func TestVerifyIdPDownAtStart(t *testing.T) {
	idp := oidctest.New(t)
	idp.SetDown(true)
	now := time.Now()
	v := newVerifier(t, idp, func(c *oidc.Config) { c.Now = func() time.Time { return now } })
	if _, err := v.Verify(context.Background(), idp.Token(t, "erin@example.com")); reasonOf(err) != oidc.ReasonUnavailable {
		t.Fatalf("IdP down at the first token: %v", err)
	}
	idp.SetDown(false)
	now = now.Add(time.Second) // discovery is tried again after MinRefreshInterval
	if _, err := v.Verify(context.Background(), idp.Token(t, "erin@example.com")); err != nil {
		t.Fatalf("IdP back: %v", err)
	}
}

func TestVerifyGroupsAndRoles(t *testing.T) {
	idp := oidctest.New(t)
	v := newVerifier(t, idp, func(c *oidc.Config) {
		c.DefaultRole = ""
		c.GroupMap = map[string]string{"Customer Support": "support", "ignored": ""}
		c.Roles = []oidc.RoleRule{{Group: "dba", Role: "dba_rw"}, {Group: "support", Role: "support_ro"}}
	})
	ctx := context.Background()
	id, err := v.Verify(ctx, idp.Token(t, "fay@example.com", "Customer Support", "everyone", "ignored"))
	if err != nil {
		t.Fatal(err)
	}
	if id.Role != "support_ro" || len(id.Groups) != 2 || id.Groups[0] != "everyone" || id.Groups[1] != "support" {
		t.Fatalf("identity %+v", id)
	}
	if id, err = v.Verify(ctx, idp.Token(t, "gus@example.com", "support", "dba")); err != nil || id.Role != "dba_rw" {
		t.Fatalf("first matching rule: %+v, %v", id, err)
	}
	if _, err := v.Verify(ctx, idp.Token(t, "hal@example.com", "marketing")); reasonOf(err) != oidc.ReasonNoRole {
		t.Fatalf("no group with a role: %v", err)
	}
}

func TestSessionEnd(t *testing.T) {
	idp := oidctest.New(t)
	ctx := context.Background()
	v := newVerifier(t, idp, func(c *oidc.Config) { c.MaxSession = 8 * time.Hour })
	id, err := v.Verify(ctx, idp.Token(t, "ivy@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(id.SessionEnd); d < 7*time.Hour || d > 8*time.Hour {
		t.Fatalf("session end in %v, want 8h", d)
	}
	v = newVerifier(t, idp, func(c *oidc.Config) { c.OnExpiry = oidc.ExpiryAllow })
	if id, err = v.Verify(ctx, idp.Token(t, "ivy@example.com")); err != nil || !id.SessionEnd.IsZero() {
		t.Fatalf("allow: %+v, %v", id, err)
	}
}

// TestVerifyWithdrawnKey: a key the provider no longer publishes stops
// verifying once the cached keys are an hour old and fetched again.
func TestVerifyWithdrawnKey(t *testing.T) {
	idp := oidctest.New(t)
	now := time.Now()
	v := newVerifier(t, idp, func(c *oidc.Config) { c.Now = func() time.Time { return now } })
	claims := idp.Claims("kai@example.com")
	claims["exp"] = now.Add(3 * time.Hour).Unix()
	tok := idp.Sign(t, claims)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	idp.Withdraw("key-1")
	now = now.Add(30 * time.Minute)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("within the hour, cached: %v", err)
	}
	now = now.Add(31 * time.Minute)
	if _, err := v.Verify(context.Background(), tok); reasonOf(err) != oidc.ReasonUnknownKey {
		t.Fatalf("withdrawn key after an hour: %v", err)
	}
}

// TestVerifyAccessToken: with token_type access, a JWT access token (typ
// at+jwt, the API's audience) names the employee by the configured claim.
func TestVerifyAccessToken(t *testing.T) {
	idp := oidctest.New(t)
	v := newVerifier(t, idp, func(c *oidc.Config) {
		c.TokenType, c.Audience, c.UsernameClaim = oidc.TokenAccess, "api://pgwarden", "preferred_username"
	})
	c := idp.Claims("ignored@example.com")
	c["aud"], c["preferred_username"] = "api://pgwarden", "lou@example.com"
	key := idp.Rotate(t)
	tok := oidctest.SignWith(t, key, c, map[jose.HeaderKey]any{"typ": "at+jwt"})
	id, err := v.Verify(context.Background(), tok)
	if err != nil || id.Employee != "lou@example.com" {
		t.Fatalf("access token: %+v, %v", id, err)
	}
	if _, err := v.Verify(context.Background(), idp.Token(t, "lou@example.com")); reasonOf(err) != oidc.ReasonWrongAudience {
		t.Fatalf("an ID token for the client: %v", err)
	}
}
