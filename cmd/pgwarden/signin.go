package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/identity/oidc"
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
			var err error
			if entry, err = oidc.PgpassEntry(*pgpass); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(c.Context(), *timeout)
		defer cancel()
		ctx = gooidc.ClientContext(ctx, &http.Client{Timeout: 30 * time.Second})
		tok, who, err := oidc.DeviceSignIn(ctx, c.ErrOrStderr(), *issuer, *clientID, *scopes, *tokenType)
		if err != nil {
			return err
		}
		if entry == nil {
			fmt.Fprintf(c.OutOrStdout(), "export PGPASSWORD='%s'\n", tok.Token)
			fmt.Fprintf(c.ErrOrStderr(), "Signed in as %s until %s.\n", who, tok.Expiry.Local().Format(time.DateTime))
			return nil
		}
		path, err := oidc.PgpassPath(*pgpassFile)
		if err != nil {
			return err
		}
		if err := oidc.WritePgpass(path, entry, tok.Token); err != nil {
			return err
		}
		fmt.Fprintf(c.ErrOrStderr(), "Signed in as %s until %s; the token is in %s for %s.\n", who, tok.Expiry.Local().Format(time.DateTime), path, *pgpass)
		return nil
	}
	return c
}
