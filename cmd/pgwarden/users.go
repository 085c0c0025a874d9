package main

import (
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

	"github.com/pgwarden/pgwarden/internal/holds"
	"github.com/pgwarden/pgwarden/internal/quarantine"
)

const usersUsage = `Usage:
  pgwarden users list [--state-dir DIR | --state-url URL]           employees in quarantine
  pgwarden users release NAME [--state-dir DIR | --state-url URL]   let a quarantined employee connect again

The list is where serve keeps it: in its state database (--state-url, shared
by several instances; password PGWARDEN_STATE_PASSWORD) or its state
directory (--state-dir, default $PGWARDEN_STATE_DIR). A running pgwarden sees
a release within a second.
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
	sub, rest, err := subcommand("users", usersUsage, args, stderr, "list", "release")
	if err != nil {
		return err
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
		pool, err := newPool("state", stateURL, "PGWARDEN_STATE_PASSWORD", 1)
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
		if q, err = quarantine.Open(filepath.Join(dir, quarantineFile)); err != nil {
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
	reg, err := holds.Open(filepath.Join(dir, holdsDir))
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
