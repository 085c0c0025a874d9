package oidc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/pgwarden/pgwarden/internal/atomicfile"
)

// What pgwarden login does on the employee's machine: get a token of the
// identity provider, and put it where libpq finds it.

// SignedToken is the token pgwarden login keeps, and when it expires.
type SignedToken struct {
	Token  string
	Expiry time.Time
}

// DeviceSignIn runs the OAuth 2.0 device authorization flow (RFC 8628)
// against issuer, telling the employee on prompt where to sign in, and
// returns the token of tokenType ("id" or "access") and whom it names. An
// ID token is verified as pgwarden's login verifies it, so that a
// misconfiguration shows now rather than as a refused connection.
func DeviceSignIn(ctx context.Context, prompt io.Writer, issuer, clientID string, scopes []string, tokenType string) (SignedToken, string, error) {
	p, err := gooidc.NewProvider(ctx, issuer)
	if err != nil {
		return SignedToken{}, "", fmt.Errorf("identity provider: %w", err)
	}
	ep := p.Endpoint()
	if ep.DeviceAuthURL == "" {
		return SignedToken{}, "", fmt.Errorf("identity provider %s offers no device authorization endpoint: allow the device flow for client %s", issuer, clientID)
	}
	conf := &oauth2.Config{ClientID: clientID, Endpoint: ep, Scopes: scopes}
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return SignedToken{}, "", fmt.Errorf("device authorization: %w", err)
	}
	fmt.Fprintf(prompt, "To sign in, open %s and enter the code %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(prompt, "(or open %s)\n", da.VerificationURIComplete)
	}
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		return SignedToken{}, "", fmt.Errorf("sign-in: %w", err)
	}
	raw := tok.AccessToken
	if tokenType == "id" {
		raw, _ = tok.Extra("id_token").(string)
		if raw == "" {
			return SignedToken{}, "", errors.New("the identity provider returned no ID token: ask for the openid scope, or use --token access")
		}
	}
	if tokenType == "id" {
		idt, err := p.Verifier(&gooidc.Config{ClientID: clientID}).Verify(ctx, raw)
		if err != nil {
			return SignedToken{}, "", fmt.Errorf("the ID token does not verify: %w", err)
		}
		var claims struct {
			Email string `json:"email"`
		}
		idt.Claims(&claims)
		return SignedToken{Token: raw, Expiry: idt.Expiry}, cmp.Or(claims.Email, idt.Subject), nil
	}
	return SignedToken{Token: raw, Expiry: tok.Expiry}, "the access token's subject", nil
}

// PgpassEntry reads HOST:PORT[:DATABASE[:USER]] into the four fields of
// a password file entry, "*" for those not given.
func PgpassEntry(s string) ([]string, error) {
	entry := strings.Split(s, ":")
	if len(entry) < 2 || len(entry) > 4 || entry[0] == "" || entry[1] == "" {
		return nil, fmt.Errorf("--pgpass %q: want HOST:PORT[:DATABASE[:USER]]", s)
	}
	for len(entry) < 4 {
		entry = append(entry, "*")
	}
	return entry, nil
}

// PgpassPath is where libpq reads its password file: file when not empty,
// else $PGPASSFILE, else ~/.pgpass.
func PgpassPath(file string) (string, error) {
	if file = cmp.Or(file, os.Getenv("PGPASSFILE")); file != "" {
		return file, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	return filepath.Join(home, ".pgpass"), nil
}

// WritePgpass puts an entry for host:port:database:user with password in
// the password file at path (mode 0600), replacing one for the same four,
// where libpq finds it.
// https://www.postgresql.org/docs/current/libpq-pgpass.html
func WritePgpass(path string, entry []string, password string) error {
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	key := make([]string, len(entry))
	for i, e := range entry {
		key[i] = esc.Replace(e)
	}
	prefix := strings.Join(key, ":") + ":"
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("password file: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if l != "" && !strings.HasPrefix(l, prefix) {
			lines = append(lines, l)
		}
	}
	lines = append(lines, prefix+esc.Replace(password))
	if err := atomicfile.Write(path, []byte(strings.Join(lines, "\n")+"\n")); err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	return nil
}
