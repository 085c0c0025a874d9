package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pgwarden/pgwarden/identity/userstore"
	"github.com/pgwarden/pgwarden/internal/cli"
	"github.com/pgwarden/pgwarden/server"
	"github.com/pgwarden/pgwarden/state/adminlog"
	"github.com/pgwarden/pgwarden/state/holds"
	"github.com/pgwarden/pgwarden/state/quarantine"
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
		fmt.Fprintf(c.ErrOrStderr(), "%s: --state-dir (or PGWARDEN_STATE_DIR) is required\n", c.CommandPath())
		return errUsage
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
			fmt.Fprintln(c.ErrOrStderr(), "pgwarden users release: --reason is required")
			return errUsage
		}
		var (
			q      quarantine.Store
			record func(adminlog.Action) error
		)
		if *stateURL != "" {
			if c.Flags().Changed("state-dir") {
				fmt.Fprintln(c.ErrOrStderr(), "pgwarden users: unexpected flag \"--state-dir\" with --state-url")
				return errUsage
			}
			pool, err := server.NewPool(context.Background(), "state", *stateURL, server.StatePasswordEnv, 1)
			if err != nil {
				return err
			}
			defer pool.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if q, err = quarantine.OpenPG(ctx, pool); err != nil {
				return err
			}
			record = func(a adminlog.Action) error { return adminlog.WritePG(ctx, pool, a) }
		} else {
			if err := requireStateDir(c, *dir); err != nil {
				return err
			}
			var err error
			if q, err = quarantine.Open(filepath.Join(*dir, server.QuarantineFile)); err != nil {
				return err
			}
			record = func(a adminlog.Action) error { return adminlog.Write(*dir, a) }
		}
		var why string
		if reason != nil {
			why = strings.TrimSpace(*reason)
		}
		return runQuarantine(c, q, pos, record, why)
	}
	return c
}

// runQuarantine lists or releases; a release is recorded (in the state
// directory or database) for the server to audit, with the OS user as
// who.
func runQuarantine(c *cobra.Command, q quarantine.Store, pos []string, record func(adminlog.Action) error, reason string) error {
	stdout, stderr := c.OutOrStdout(), c.ErrOrStderr()
	switch c.Name() {
	case "list":
		if len(pos) > 0 {
			fmt.Fprintf(stderr, "pgwarden users list: unexpected argument %q\n", pos[0])
			return errUsage
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
			fmt.Fprintln(stderr, "pgwarden users release: want exactly one NAME")
			return errUsage
		}
		e, ok, err := q.Release(pos[0])
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s is not quarantined", pos[0])
		}
		by := adminlog.OSUser()
		if err := record(adminlog.Action{Action: "quarantine_released", By: by, Via: "cli", Reason: reason,
			Employee: e.Employee, Rule: e.Rule, At: time.Now().UTC()}); err != nil {
			return fmt.Errorf("released %s, but the audit record was not written: %w", e.Employee, err)
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
				fmt.Fprintf(c.ErrOrStderr(), "pgwarden holds %s: --reason is required\n", c.Name())
				return errUsage
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
	stdout, stderr, sub := c.OutOrStdout(), c.ErrOrStderr(), c.Name()
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
		fmt.Fprintf(stderr, "pgwarden holds %s: want exactly one ID\n", sub)
		return errUsage
	}
	by := adminlog.OSUser()
	h, err := reg.DecideWith(pos[0], holds.Decision{Approve: sub == "approve", By: by, Via: "cli", Reason: reason})
	if errors.Is(err, holds.ErrNotFound) {
		return fmt.Errorf("no pending hold %q (decided, timed out, or its session ended)", pos[0])
	}
	if err != nil {
		return err
	}
	if err := adminlog.Write(dir, adminlog.Action{Action: "hold_" + h.Status, By: by, Via: "cli", Reason: reason,
		Employee: h.Employee, HoldID: h.ID, Rule: h.Rule, At: h.DecidedAt}); err != nil {
		return fmt.Errorf("%s %s, but the audit record was not written: %w", h.Status, h.ID, err)
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
	var role *string
	if c.Name() == "add" {
		role = c.Flags().String("role", "", "the database `role` pgwarden connects upstream as for this login (required)")
	}
	c.RunE = func(c *cobra.Command, pos []string) error {
		name := strings.TrimPrefix(c.CommandPath(), "pgwarden ")
		if len(pos) != want {
			what := map[int]string{0: "no argument", 1: "exactly one NAME", 2: "NAME and ROLE"}[want]
			fmt.Fprintf(c.ErrOrStderr(), "pgwarden %s: want %s\n", name, what)
			return errUsage
		}
		if role != nil && *role == "" {
			fmt.Fprintf(c.ErrOrStderr(), "pgwarden %s: --role is required\n", name)
			return errUsage
		}
		var r string
		if role != nil {
			r = *role
		}
		return runLogins(c, server.UsersFile(*file, *dir), pos, r)
	}
	return c
}

// runLogins runs the users subcommands that manage logins.
func runLogins(c *cobra.Command, path string, pos []string, role string) error {
	stdout, name, sub := c.OutOrStdout(), strings.TrimPrefix(c.CommandPath(), "pgwarden "), c.Name()
	stderr := c.ErrOrStderr()
	if path == "" {
		fmt.Fprintf(stderr, "pgwarden %s: --users-file or --state-dir (or PGWARDEN_USERS_FILE or PGWARDEN_STATE_DIR) is required\n", name)
		return errUsage
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
		pw, err := readNewPassword(pos[0], stderr)
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
		pw, err := readNewPassword(pos[0], stderr)
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
		var status []string
		if u.Disabled {
			status = append(status, "disabled")
		}
		if u.Locked(now) {
			status = append(status, "locked out until "+u.LockedUntil.UTC().Format(time.RFC3339))
		}
		if len(status) == 0 {
			status = append(status, "active")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Role, strings.Join(status, ", "), u.PasswordChanged.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// readNewPassword prompts twice for a password without echo when standard
// input is a terminal, and reads one line otherwise (scripts, tests).
func readNewPassword(name string, stderr io.Writer) (string, error) {
	fd := int(os.Stdin.Fd())
	if term.IsTerminal(fd) {
		fmt.Fprintf(stderr, "New password for %s: ", name)
		first, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(stderr, "Enter it again: ")
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if string(first) != string(again) {
			return "", errors.New("the passwords do not match")
		}
		if len(first) == 0 {
			return "", errors.New("empty password")
		}
		return string(first), nil
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", fmt.Errorf("no password on standard input: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("empty password")
	}
	return line, nil
}
