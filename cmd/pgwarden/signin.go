package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/pgwarden/pgwarden/internal/atomicfile"
)

// loginCommand gets a token of the company's identity provider with the
// device authorization flow, for an employee to sign in to pgwarden with.
func loginCommand() *cobra.Command {
	c := &cobra.Command{Use: "login --issuer URL --client-id ID [--pgpass HOST:PORT[:DB[:USER]]]",
		Short: "sign in with the identity provider and get the token to connect with",
		Long: `Signs in with the company's identity provider (OIDC) by the OAuth 2.0 device
authorization flow (RFC 8628): it prints a URL and a code, you open the URL in
a browser, sign in and enter the code, and pgwarden login receives the token
that pgwarden's login mode (login.oidc) accepts as the password.

The token goes where libpq finds it, so that psql, DBeaver and JDBC work
unchanged: by default an export line on standard output,

  eval "$(pgwarden login --issuer https://example.okta.com --client-id 0oa1b2c3)"
  psql "host=pgwarden.internal sslmode=require user=alice@example.com dbname=app"

or, with --pgpass HOST:PORT[:DATABASE[:USER]], an entry in the password file
($PGPASSFILE, else ~/.pgpass, or --pgpass-file), replacing the entry for the
same host, port, database and user. The prompts go to standard error.
`}
	issuer := c.Flags().String("issuer", os.Getenv("PGWARDEN_OIDC_ISSUER"), "the identity provider's issuer `URL` (default $PGWARDEN_OIDC_ISSUER)")
	clientID := c.Flags().String("client-id", os.Getenv("PGWARDEN_OIDC_CLIENT_ID"), "the OAuth client `ID` registered for pgwarden (default $PGWARDEN_OIDC_CLIENT_ID)")
	scopes := c.Flags().StringSlice("scope", []string{gooidc.ScopeOpenID, "email", "profile"}, "scopes to ask for (add groups, or offline_access, as the provider needs)")
	tokenType := c.Flags().String("token", "id", "which token to keep: id (the ID token) or access (a JWT access token)")
	pgpass := c.Flags().String("pgpass", "", "write an entry for `HOST:PORT[:DATABASE[:USER]]` to the password file instead of printing an export line")
	pgpassFile := c.Flags().String("pgpass-file", "", "the password `file` (default $PGPASSFILE, else ~/.pgpass)")
	timeout := c.Flags().Duration("timeout", 10*time.Minute, "give up if the sign-in is not completed within this long")
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := noArgs(c, args); err != nil {
			return err
		}
		if *issuer == "" || *clientID == "" {
			return errors.New("--issuer and --client-id are required")
		}
		if *tokenType != "id" && *tokenType != "access" {
			return fmt.Errorf("--token %q: want id or access", *tokenType)
		}
		var entry []string
		if *pgpass != "" {
			entry = strings.Split(*pgpass, ":")
			if len(entry) < 2 || len(entry) > 4 || entry[0] == "" || entry[1] == "" {
				return fmt.Errorf("--pgpass %q: want HOST:PORT[:DATABASE[:USER]]", *pgpass)
			}
			for len(entry) < 4 {
				entry = append(entry, "*")
			}
		}
		ctx, cancel := context.WithTimeout(c.Context(), *timeout)
		defer cancel()
		ctx = gooidc.ClientContext(ctx, &http.Client{Timeout: 30 * time.Second})
		tok, who, err := deviceSignIn(ctx, c.ErrOrStderr(), *issuer, *clientID, *scopes, *tokenType)
		if err != nil {
			return err
		}
		if entry == nil {
			fmt.Fprintf(c.OutOrStdout(), "export PGPASSWORD='%s'\n", tok.token)
			fmt.Fprintf(c.ErrOrStderr(), "Signed in as %s until %s.\n", who, tok.expiry.Local().Format(time.DateTime))
			return nil
		}
		path := *pgpassFile
		if path == "" {
			path = os.Getenv("PGPASSFILE")
		}
		if path == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return fmt.Errorf("password file: %w", err)
			}
			path = filepath.Join(home, ".pgpass")
		}
		if err := writePgpass(path, entry, tok.token); err != nil {
			return err
		}
		fmt.Fprintf(c.ErrOrStderr(), "Signed in as %s until %s; the token is in %s for %s.\n", who, tok.expiry.Local().Format(time.DateTime), path, *pgpass)
		return nil
	}
	return c
}

// signedToken is the token kept and when it expires.
type signedToken struct {
	token  string
	expiry time.Time
}

// deviceSignIn runs the device authorization flow against issuer and
// returns the token of tokenType and whom it names.
func deviceSignIn(ctx context.Context, prompt io.Writer, issuer, clientID string, scopes []string, tokenType string) (signedToken, string, error) {
	p, err := gooidc.NewProvider(ctx, issuer)
	if err != nil {
		return signedToken{}, "", fmt.Errorf("identity provider: %w", err)
	}
	ep := p.Endpoint()
	if ep.DeviceAuthURL == "" {
		return signedToken{}, "", fmt.Errorf("identity provider %s offers no device authorization endpoint: allow the device flow for client %s", issuer, clientID)
	}
	conf := &oauth2.Config{ClientID: clientID, Endpoint: ep, Scopes: scopes}
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return signedToken{}, "", fmt.Errorf("device authorization: %w", err)
	}
	fmt.Fprintf(prompt, "To sign in, open %s and enter the code %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(prompt, "(or open %s)\n", da.VerificationURIComplete)
	}
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		return signedToken{}, "", fmt.Errorf("sign-in: %w", err)
	}
	raw := tok.AccessToken
	if tokenType == "id" {
		raw, _ = tok.Extra("id_token").(string)
		if raw == "" {
			return signedToken{}, "", errors.New("the identity provider returned no ID token: ask for the openid scope, or use --token access")
		}
	}
	// The ID token is checked here as pgwarden will check it, so that a
	// misconfiguration shows now rather than as a refused connection.
	if tokenType == "id" {
		idt, err := p.Verifier(&gooidc.Config{ClientID: clientID}).Verify(ctx, raw)
		if err != nil {
			return signedToken{}, "", fmt.Errorf("the ID token does not verify: %w", err)
		}
		var claims struct {
			Email string `json:"email"`
		}
		idt.Claims(&claims)
		return signedToken{token: raw, expiry: idt.Expiry}, cmp.Or(claims.Email, idt.Subject), nil
	}
	return signedToken{token: raw, expiry: tok.Expiry}, "the access token's subject", nil
}

// writePgpass puts an entry for host:port:database:user with password in
// the password file at path (mode 0600), replacing one for the same four.
// https://www.postgresql.org/docs/current/libpq-pgpass.html
func writePgpass(path string, entry []string, password string) error {
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
