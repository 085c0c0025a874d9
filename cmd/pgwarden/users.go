package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/identity/userstore"
	"github.com/pgwarden/pgwarden/internal/cli"
	"github.com/pgwarden/pgwarden/server"
	"github.com/pgwarden/pgwarden/state/adminlog"
	"github.com/pgwarden/pgwarden/state/holds"
)

func usersCommand() *cobra.Command {
	cmds := []*cobra.Command{
		quarantineCommand("list [--state-dir DIR | --state-url URL]", "employees in quarantine"),
		quarantineCommand("release NAME --reason TEXT [--state-dir DIR | --state-url URL]", "let a quarantined employee connect again"),
		loginsCommand("logins [FILE FLAGS]", "the logins of pgwarden's own login", 0),
		loginsCommand("add NAME --role ROLE [FILE FLAGS]", "add a login mapped to a database role", 1),
		loginsCommand("passwd NAME [FILE FLAGS]", "set a login's password", 1),
		loginsCommand("role NAME ROLE [FILE FLAGS]", "map a login to another database role", 2),
		loginsCommand("remove NAME [FILE FLAGS]", "remove a login", 1),
		loginsCommand("unlock NAME [FILE FLAGS]", "lift a lockout after failed attempts", 1),
		loginsCommand("disable NAME [FILE FLAGS]", "refuse a login", 1),
		loginsCommand("enable NAME [FILE FLAGS]", "accept a refused login again", 1),
	}
	return cli.Group("users [command]", "list quarantined employees, release one; manage pgwarden's own logins", `The quarantine list is where serve keeps it: in its state database
(--state-url, shared by several instances; password PGWARDEN_STATE_PASSWORD)
or its state directory (--state-dir, default $PGWARDEN_STATE_DIR). A running
pgwarden sees a release within a second. release needs --reason; the
audit trail records it with your login name (a running pgwarden writes it
within a second from the state directory).

Logins are employees who authenticate to pgwarden itself (SCRAM-SHA-256),
which then connects upstream as the login's database role with credentials
from its own configuration: the employee never learns them. The users file
holds SCRAM verifiers, never passwords. FILE FLAGS choose it: --users-file
FILE, else --state-dir DIR (DIR/users.json), else $PGWARDEN_USERS_FILE, else
$PGWARDEN_STATE_DIR/users.json. add and passwd prompt twice for the password
without echo on a terminal, and read one line from standard input otherwise.
A running pgwarden sees a change within a second.
`, cmds...)
}

// stateDirFlag defines --state-dir, by default $PGWARDEN_STATE_DIR.
func stateDirFlag(c *cobra.Command) *string {
	return c.Flags().String("state-dir", os.Getenv("PGWARDEN_STATE_DIR"), "pgwarden's state `directory`")
}

// requireStateDir is a usage error when dir is empty.
func requireStateDir(c *cobra.Command, dir string) error {
	if dir == "" {
		return cli.Usagef(c, "--state-dir (or PGWARDEN_STATE_DIR) is required")
	}
	return nil
}

// quarantineCommand is users list or users release: the quarantine list
// of a state directory or of the state database.
func quarantineCommand(use, short string) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short}
	dir := stateDirFlag(c)
	stateURL := c.Flags().String("state-url", "", "`URL` of pgwarden's state database, whose quarantine list every instance shares (password: $PGWARDEN_STATE_PASSWORD)")
	var reason *string
	if c.Name() == "release" {
		reason = c.Flags().String("reason", "", "why (required): recorded in the audit trail with your login name")
	}
	c.RunE = func(c *cobra.Command, pos []string) error {
		if reason != nil && strings.TrimSpace(*reason) == "" {
			return cli.Usagef(c, "--reason is required")
		}
		if *stateURL != "" && c.Flags().Changed("state-dir") {
			fmt.Fprintln(c.ErrOrStderr(), "pgwarden users: unexpected flag \"--state-dir\" with --state-url")
			return errUsage
		}
		if *stateURL == "" {
			if err := requireStateDir(c, *dir); err != nil {
				return err
			}
		}
		q, err := server.OpenQuarantine(*stateURL, *dir)
		if err != nil {
			return err
		}
		defer q.Close()
		var why string
		if reason != nil {
			why = strings.TrimSpace(*reason)
		}
		return runQuarantine(c, q, pos, why)
	}
	return c
}

// runQuarantine lists or releases; a release is recorded (in the state
// directory or database) for the server to audit, with the OS user as
// who.
func runQuarantine(c *cobra.Command, q *server.Quarantine, pos []string, reason string) error {
	stdout := c.OutOrStdout()
	switch c.Name() {
	case "list":
		if len(pos) > 0 {
			return cli.Usagef(c, "unexpected argument %q", pos[0])
		}
		all, err := q.All()
		if err != nil {
			return err
		}
		if len(all) == 0 {
			fmt.Fprintln(stdout, "no employee is quarantined")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "EMPLOYEE\tSINCE\tRULE\tREASON")
		for _, e := range all {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Employee, e.Since.UTC().Format(time.RFC3339), e.Rule, e.Reason)
		}
		return tw.Flush()
	default:
		if len(pos) != 1 {
			return cli.Usagef(c, "want exactly one NAME")
		}
		by := adminlog.OSUser()
		e, err := adminlog.Release(q, pos[0], by, "cli", reason, q.Record)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "released %s by %s (quarantined since %s by rule %s)\n", e.Employee, by, e.Since.UTC().Format(time.RFC3339), e.Rule)
		return nil
	}
}

func holdsCommand() *cobra.Command {
	var cmds []*cobra.Command
	for _, sub := range []struct{ use, short string }{
		{"list [--state-dir DIR]", "results paused for approval"},
		{"approve ID --reason TEXT [--state-dir DIR]", "let a held result go on"},
		{"deny ID --reason TEXT [--state-dir DIR]", "block it"},
	} {
		c := &cobra.Command{Use: sub.use, Short: sub.short}
		dir := stateDirFlag(c)
		reason := new(string)
		if c.Name() != "list" {
			reason = c.Flags().String("reason", "", "why (required): recorded with the hold and in the audit trail, with your login name")
		}
		c.RunE = func(c *cobra.Command, pos []string) error {
			if err := requireStateDir(c, *dir); err != nil {
				return err
			}
			if c.Name() != "list" && strings.TrimSpace(*reason) == "" {
				return cli.Usagef(c, "--reason is required")
			}
			return runHolds(c, *dir, pos, strings.TrimSpace(*reason))
		}
		cmds = append(cmds, c)
	}
	return cli.Group("holds [command]", "list results held for approval, approve or deny one",
		`The state directory is serve's --state-dir (default $PGWARDEN_STATE_DIR).
approve and deny need --reason; the hold and the audit trail record it with
your login name.
`, cmds...)
}

func runHolds(c *cobra.Command, dir string, pos []string, reason string) error {
	stdout, sub := c.OutOrStdout(), c.Name()
	reg, err := holds.Open(filepath.Join(dir, server.HoldsDir))
	if err != nil {
		return err
	}
	if sub == "list" {
		all, err := reg.List()
		if err != nil {
			return err
		}
		if len(all) == 0 {
			fmt.Fprintln(stdout, "no result is held")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tEMPLOYEE\tSINCE\tDEADLINE\tRULE\tREASON\tEMPLOYEE'S JUSTIFICATION")
		for _, h := range all {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.Employee, h.Since.Format(time.RFC3339), h.Deadline.Format(time.RFC3339), h.Rule, h.Reason,
				cmp.Or(h.Justification, "(none given)"))
		}
		return tw.Flush()
	}
	if len(pos) != 1 {
		return cli.Usagef(c, "want exactly one ID")
	}
	by := adminlog.OSUser()
	h, err := adminlog.Decide(reg, dir, pos[0], holds.Decision{Approve: sub == "approve", By: by, Via: "cli", Reason: reason})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s by %s (%s, rule %s)\n", h.Status, h.ID, by, h.Employee, h.Rule)
	return nil
}

// loginsCommand is one of the users subcommands that manage logins; it
// takes want positional arguments.
func loginsCommand(use, short string, want int) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short}
	file := c.Flags().String("users-file", "", "the users `file` (default $PGWARDEN_USERS_FILE, or users.json in the state directory)")
	dir := c.Flags().String("state-dir", "", "pgwarden's state `directory`, whose users.json is the users file (default $PGWARDEN_STATE_DIR)")
	role := new(string)
	if c.Name() == "add" {
		role = c.Flags().String("role", "", "the database `role` pgwarden connects upstream as for this login (required)")
	}
	c.RunE = func(c *cobra.Command, pos []string) error {
		if len(pos) != want {
			what := map[int]string{0: "no argument", 1: "exactly one NAME", 2: "NAME and ROLE"}[want]
			return cli.Usagef(c, "want %s", what)
		}
		if c.Name() == "add" && *role == "" {
			return cli.Usagef(c, "--role is required")
		}
		return runLogins(c, server.UsersFile(*file, *dir), pos, *role)
	}
	return c
}

// runLogins runs the users subcommands that manage logins.
func runLogins(c *cobra.Command, path string, pos []string, role string) error {
	stdout, stderr, sub := c.OutOrStdout(), c.ErrOrStderr(), c.Name()
	if path == "" {
		return cli.Usagef(c, "--users-file or --state-dir (or PGWARDEN_USERS_FILE or PGWARDEN_STATE_DIR) is required")
	}
	store, err := userstore.Open(path, userstore.Options{})
	if err != nil {
		return err
	}

	switch sub {
	case "logins":
		return listLogins(store, stdout)
	case "add":
		if _, err := store.Get(pos[0]); err == nil {
			return fmt.Errorf("login %q already exists (pgwarden users passwd changes its password)", pos[0])
		}
		pw, err := cli.ReadNewPassword(pos[0], os.Stdin, stderr)
		if err != nil {
			return err
		}
		if err := store.Add(pos[0], role, pw); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added login %s (database role %s) to %s\n", pos[0], role, path)
	case "passwd":
		if _, err := store.Get(pos[0]); err != nil {
			return err
		}
		pw, err := cli.ReadNewPassword(pos[0], os.Stdin, stderr)
		if err != nil {
			return err
		}
		if err := store.SetPassword(pos[0], pw); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password of %s changed\n", pos[0])
	case "role":
		if err := store.SetRole(pos[0], pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s now connects as database role %s\n", pos[0], pos[1])
	case "remove":
		if err := store.Remove(pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed login %s\n", pos[0])
	case "unlock":
		was, err := store.Unlock(pos[0])
		if err != nil {
			return err
		}
		if was {
			fmt.Fprintf(stdout, "unlocked %s\n", pos[0])
		} else {
			fmt.Fprintf(stdout, "%s was not locked out; its failed attempts are forgotten\n", pos[0])
		}
	case "disable", "enable":
		if err := store.SetDisabled(pos[0], sub == "disable"); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%sd %s\n", sub, pos[0])
	}
	return nil
}

func listLogins(store *userstore.Store, stdout io.Writer) error {
	users, err := store.Users()
	if err != nil {
		return err
	}
	if len(users) == 0 {
		fmt.Fprintf(stdout, "no login in %s\n", store.Path())
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LOGIN\tROLE\tSTATUS\tPASSWORD SET")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Role, u.Status(now), u.PasswordChanged.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}
