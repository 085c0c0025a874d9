package main

import (
	"cmp"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/admin"
	"github.com/pgwarden/pgwarden/internal/cli"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/server"
)

// adminAPINote ends the help of the commands that call the admin API.
const adminAPINote = `These talk to a running pgwarden's admin API (serve --admin-listen), with the
bearer token from --admin-token-file or PGWARDEN_ADMIN_TOKEN.
`

// adminCommands gives each of cmds the flags that reach the admin API and
// runs it with a client of the API: the command line's --admin and
// --admin-token-file, else $PGWARDEN_ADMIN_URL and $PGWARDEN_ADMIN_TOKEN.
func adminCommands(run func(c *cobra.Command, client *admin.Client, pos []string) error, cmds ...*cobra.Command) []*cobra.Command {
	for _, c := range cmds {
		base := c.Flags().String("admin", cmp.Or(os.Getenv("PGWARDEN_ADMIN_URL"), "http://127.0.0.1:7070"), "admin API base `URL` (default $PGWARDEN_ADMIN_URL)")
		tokenFile := c.Flags().String("admin-token-file", "", "`file` holding the admin bearer token (default $PGWARDEN_ADMIN_TOKEN)")
		c.RunE = func(c *cobra.Command, pos []string) error {
			tok, err := server.AdminToken(*tokenFile)
			if err != nil {
				return err
			}
			return run(c, admin.NewClient(*base, tok), pos)
		}
	}
	return cmds
}

func sessionsCommand() *cobra.Command {
	list := &cobra.Command{Use: "list [--admin URL]", Short: "live sessions"}
	kill := &cobra.Command{Use: "kill ID --reason TEXT [--admin URL]", Short: "end a session (the client is told why)"}
	reason := kill.Flags().String("reason", "", "why (required): the client is told, and the audit trail records it with your name")
	run := func(c *cobra.Command, client *admin.Client, pos []string) error {
		return runSessions(c, client, pos, *reason)
	}
	return cli.Group("sessions [command]", "list or end live sessions (through the admin API)", adminAPINote,
		adminCommands(run, list, kill)...)
}

func runSessions(cmd *cobra.Command, c *admin.Client, pos []string, reason string) error {
	stdout, sub := cmd.OutOrStdout(), cmd.Name()
	if sub == "kill" {
		if len(pos) != 1 {
			return cli.Usagef(cmd, "want exactly one ID")
		}
		if strings.TrimSpace(reason) == "" {
			return cli.Usagef(cmd, "--reason is required")
		}
		if err := c.Do(cmd.Context(), "DELETE", "/v1/sessions/"+url.PathEscape(pos[0])+"?reason="+url.QueryEscape(reason), nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "killed %s\n", pos[0])
		return nil
	}
	var list []proxy.SessionSnapshot
	if err := c.Do(cmd.Context(), "GET", "/v1/sessions", &list); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEMPLOYEE\tIDENTIFIED BY\tROLE\tDATABASE\tAPPLICATION\tCLIENT\tSTARTED")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, cmp.Or(s.Employee, s.User), orDash(s.IdentifiedBy), s.User, s.Database,
			orDash(s.Application), s.ClientAddr, s.StartedAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func tokenCommand() *cobra.Command {
	c := &cobra.Command{Use: "token --name NAME [--scope read|act|admin] [--ttl 8h] [--admin-token-file FILE]", Short: "a named admin API token that expires, derived from the admin secret",
		Long: `Prints an admin API token for one person or tool, derived from the admin
secret (--admin-token-file or PGWARDEN_ADMIN_TOKEN): it names its holder, who
is recorded in the audit trail for every change they make, carries a scope
and expires after --ttl. Scopes: read (look only), act (also acknowledge
alerts, approve or deny holds, release quarantined employees, end sessions),
admin (also reload the policy, restore norms, move the virtual clock).
`}
	ttl := c.Flags().Duration("ttl", 8*time.Hour, "how long the token is valid")
	name := c.Flags().String("name", "", "who holds the token (required): a person's name or a tool's")
	scope := c.Flags().String("scope", "read", "what the holder may do: read, act or admin")
	tokenFile := c.Flags().String("admin-token-file", "", "`file` holding the admin secret (default $PGWARDEN_ADMIN_TOKEN)")
	c.RunE = func(c *cobra.Command, args []string) error {
		if *ttl <= 0 || len(args) > 0 {
			return cli.Usagef(c, "--ttl must be positive, and nothing else is expected")
		}
		if *name == "" {
			return cli.Usagef(c, "--name is required: the token names who holds it")
		}
		sc, err := admin.ParseScope(*scope)
		if err != nil {
			return cli.Usagef(c, "--scope: %v", err)
		}
		secret, err := server.AdminToken(*tokenFile)
		if err != nil {
			return err
		}
		tok, err := admin.IssueToken(secret, admin.Claims{Name: *name, Scope: sc, Expires: time.Now().Add(*ttl)})
		if err != nil {
			return err
		}
		fmt.Fprintln(c.OutOrStdout(), tok)
		return nil
	}
	return c
}
