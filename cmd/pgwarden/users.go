package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgwarden/pgwarden/identity/userstore"
	"github.com/pgwarden/pgwarden/server"
	"github.com/pgwarden/pgwarden/state/holds"
	"github.com/pgwarden/pgwarden/state/quarantine"

	"golang.org/x/term"
)

const usersUsage = `Usage:
  pgwarden users list [--state-dir DIR | --state-url URL]           employees in quarantine
  pgwarden users release NAME [--state-dir DIR | --state-url URL]   let a quarantined employee connect again

  pgwarden users logins [FILE FLAGS]                     the logins of pgwarden's own login
  pgwarden users add NAME --role ROLE [FILE FLAGS]       add a login mapped to a database role
  pgwarden users passwd NAME [FILE FLAGS]                set a login's password
  pgwarden users role NAME ROLE [FILE FLAGS]             map a login to another database role
  pgwarden users remove NAME [FILE FLAGS]                remove a login
  pgwarden users unlock NAME [FILE FLAGS]                lift a lockout after failed attempts
  pgwarden users disable|enable NAME [FILE FLAGS]        refuse a login, or accept it again

The quarantine list is where serve keeps it: in its state database
(--state-url, shared by several instances; password PGWARDEN_STATE_PASSWORD)
or its state directory (--state-dir, default $PGWARDEN_STATE_DIR). A running
pgwarden sees a release within a second.

Logins are employees who authenticate to pgwarden itself (SCRAM-SHA-256),
which then connects upstream as the login's database role with credentials
from its own configuration: the employee never learns them. The users file
holds SCRAM verifiers, never passwords. FILE FLAGS choose it: --users-file
FILE, else --state-dir DIR (DIR/users.json), else $PGWARDEN_USERS_FILE, else
$PGWARDEN_STATE_DIR/users.json. add and passwd prompt twice for the password
without echo on a terminal, and read one line from standard input otherwise.
A running pgwarden sees a change within a second.
`

const holdsUsage = `Usage:
  pgwarden holds list [--state-dir DIR]           results paused for approval
  pgwarden holds approve ID [--state-dir DIR]     let a held result go on
  pgwarden holds deny ID [--state-dir DIR]        block it

The state directory is serve's --state-dir (default $PGWARDEN_STATE_DIR).
`

// stateFlags parses --state-dir and the positional arguments around it.
func stateFlags(name, usage string, args []string, stderr io.Writer) (dir string, pos []string, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	d := fs.String("state-dir", os.Getenv("PGWARDEN_STATE_DIR"), "pgwarden's state `directory`")
	if pos, err = parseInterleaved(fs, args); err != nil {
		return "", nil, err
	}
	if *d == "" {
		fmt.Fprintf(stderr, "pgwarden %s: --state-dir (or PGWARDEN_STATE_DIR) is required\n", name)
		return "", nil, errUsage
	}
	return *d, pos, nil
}

func runUsers(args []string, stdout, stderr io.Writer) error {
	sub, rest, err := subcommand("users", usersUsage, args, stderr,
		"list", "release", "logins", "add", "passwd", "role", "remove", "unlock", "disable", "enable")
	if err != nil {
		return err
	}
	if sub != "list" && sub != "release" {
		return runLogins(sub, rest, stdout, stderr)
	}
	var stateURL string
	for i := 0; i < len(rest); i++ {
		if a := rest[i]; a == "--state-url" || a == "-state-url" {
			if i+1 >= len(rest) {
				fmt.Fprintln(stderr, "pgwarden users: --state-url needs a URL")
				return errUsage
			}
			stateURL = rest[i+1]
			rest = append(rest[:i:i], rest[i+2:]...)
			break
		} else if v, ok := strings.CutPrefix(a, "--state-url="); ok {
			stateURL = v
			rest = append(rest[:i:i], rest[i+1:]...)
			break
		}
	}
	var q quarantine.Store
	var pos []string
	if stateURL != "" {
		for _, a := range rest {
			if strings.HasPrefix(a, "-") {
				fmt.Fprintf(stderr, "pgwarden users: unexpected flag %q with --state-url\n", a)
				return errUsage
			}
			pos = append(pos, a)
		}
		pool, err := server.NewPool(context.Background(), "state", stateURL, server.StatePasswordEnv, 1)
		if err != nil {
			return err
		}
		defer pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if q, err = quarantine.OpenPG(ctx, pool); err != nil {
			return err
		}
	} else {
		dir, p, err := stateFlags("users "+sub, usersUsage, rest, stderr)
		if err != nil {
			return err
		}
		pos = p
		if q, err = quarantine.Open(filepath.Join(dir, server.QuarantineFile)); err != nil {
			return err
		}
	}
	switch sub {
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
		fmt.Fprintf(stdout, "released %s (quarantined since %s by rule %s)\n", e.Employee, e.Since.UTC().Format(time.RFC3339), e.Rule)
		return nil
	}
}

func runHolds(args []string, stdout, stderr io.Writer) error {
	sub, rest, err := subcommand("holds", holdsUsage, args, stderr, "list", "approve", "deny")
	if err != nil {
		return err
	}
	dir, pos, err := stateFlags("holds "+sub, holdsUsage, rest, stderr)
	if err != nil {
		return err
	}
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
		fmt.Fprintln(tw, "ID\tEMPLOYEE\tSINCE\tDEADLINE\tRULE\tREASON")
		for _, h := range all {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.Employee, h.Since.Format(time.RFC3339), h.Deadline.Format(time.RFC3339), h.Rule, h.Reason)
		}
		return tw.Flush()
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "pgwarden holds %s: want exactly one ID\n", sub)
		return errUsage
	}
	by := os.Getenv("USER")
	if by == "" {
		by = "cli"
	}
	h, err := reg.Decide(pos[0], sub == "approve", by)
	if errors.Is(err, holds.ErrNotFound) {
		return fmt.Errorf("no pending hold %q (decided, timed out, or its session ended)", pos[0])
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s (%s, rule %s)\n", h.Status, h.ID, h.Employee, h.Rule)
	return nil
}

// runLogins runs the users subcommands that manage logins.
func runLogins(sub string, args []string, stdout, stderr io.Writer) error {
	name := "users " + sub
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usersUsage); fs.PrintDefaults() }
	file := fs.String("users-file", "", "the users `file` (default $PGWARDEN_USERS_FILE, or users.json in the state directory)")
	dir := fs.String("state-dir", "", "pgwarden's state `directory`, whose users.json is the users file (default $PGWARDEN_STATE_DIR)")
	var role *string
	if sub == "add" {
		role = fs.String("role", "", "the database `role` pgwarden connects upstream as for this login (required)")
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	want := 1
	switch sub {
	case "logins":
		want = 0
	case "role":
		want = 2
	}
	if len(pos) != want {
		what := map[int]string{0: "no argument", 1: "exactly one NAME", 2: "NAME and ROLE"}[want]
		fmt.Fprintf(stderr, "pgwarden %s: want %s\n", name, what)
		return errUsage
	}
	if role != nil && *role == "" {
		fmt.Fprintf(stderr, "pgwarden %s: --role is required\n", name)
		return errUsage
	}
	path := server.UsersFile(*file, *dir)
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
		if err := store.Add(pos[0], *role, pw); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added login %s (database role %s) to %s\n", pos[0], *role, path)
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
