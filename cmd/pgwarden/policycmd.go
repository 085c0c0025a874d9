package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/sqltext"
)

const policyUsage = `Usage:
  pgwarden policy check FILE...                      validate policy files
  pgwarden policy explain --policy FILE --user NAME --sql SQL [flags]
                                                     show which rules would apply to a statement
  pgwarden policy default                            print the built-in policy

Run 'pgwarden policy <command> --help' for its flags.
`

func runPolicy(args []string, stdout, stderr io.Writer) error {
	sub, rest, err := subcommand("policy", policyUsage, args, stderr, "check", "explain", "default")
	if err != nil {
		return err
	}
	switch sub {
	case "check":
		return runPolicyCheck(rest, stdout, stderr)
	case "explain":
		return runPolicyExplain(rest, stdout, stderr)
	case "default":
		fmt.Fprint(stdout, policy.DefaultYAML)
		return nil
	}
	return nil
}

func runPolicyCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: pgwarden policy check FILE...\n\nParses each policy file and lists every problem with its line and column;\nfor a good file, says what it has on and off and warns about what it drops\nof the built-in policy (norms, the server egress rule).\nExits 1 if any file has a problem.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "pgwarden policy check: missing FILE")
		return errUsage
	}
	bad := 0
	for _, path := range fs.Args() {
		p, err := policy.Load(path)
		if err != nil {
			fmt.Fprintln(stdout, err)
			bad++
			continue
		}
		shadow := ""
		if p.Shadow() {
			shadow = ", shadow mode"
		}
		fmt.Fprintf(stdout, "%s: ok (%d rules%s)\n", path, len(p.Rules()), shadow)
		for _, l := range p.Summary() {
			fmt.Fprintf(stdout, "  %s\n", l)
		}
		for _, w := range p.Warnings() {
			fmt.Fprintf(stdout, "  warning: %s\n", w)
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d policy files have errors", bad, fs.NArg())
	}
	return nil
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, strings.Split(v, ",")...); return nil }

func runPolicyExplain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: pgwarden policy explain --policy FILE --user NAME --sql SQL [flags]\n\nShows, rule by rule, whether it applies to the statement and why not, and\nthe limits of those that do. Thresholds are compared with counts only at\nrun time.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var roles listFlag
	var (
		path   = fs.String("policy", "", "policy `file` (default: the built-in policy)")
		user   = fs.String("user", "", "the employee (database user) `name`")
		sql    = fs.String("sql", "", "the statement")
		client = fs.String("client", "", "client `address`")
		app    = fs.String("application", "", "application_name")
		at     = fs.String("at", "", "`time` of the statement, RFC 3339 (default now)")
		schema = fs.String("schema", "public", "`schema` of unqualified table names")
	)
	fs.Var(&roles, "role", "PostgreSQL `role` granted to the user, directly or through other roles; superuser status grants none (repeat, or comma-separated)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if *user == "" || *sql == "" {
		fmt.Fprintln(stderr, "pgwarden policy explain: --user and --sql are required")
		return errUsage
	}
	p := policy.Default()
	if *path != "" {
		var err error
		if p, err = policy.Load(*path); err != nil {
			return err
		}
	}
	when := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return fmt.Errorf("--at: %w", err)
		}
		when = t
	}
	c := policy.Context{User: *user, Roles: roles, Application: *app, Time: when.In(p.Location())}
	if *client != "" {
		a, err := netip.ParseAddr(*client)
		if err != nil {
			return fmt.Errorf("--client: %w", err)
		}
		c.ClientAddr = a
	}
	info := sqltext.New(1).Analyze(*sql)
	if info.Fingerprint == "" {
		return errors.New("--sql does not parse as PostgreSQL SQL")
	}
	for _, k := range info.Kinds {
		c.Kinds = append(c.Kinds, policy.StatementKind(k))
	}
	for _, r := range info.Relations {
		s := r.Schema
		if s == "" {
			s = *schema
		}
		c.Tables = append(c.Tables, s+"."+r.Table)
	}
	fmt.Fprintf(stdout, "statement: %s\nkinds:     %s\ntables:    %s\n\n", info.Normalized, joinKinds(c.Kinds), orNone(strings.Join(c.Tables, ", ")))
	for _, e := range p.Explain(&c) {
		r := e.Rule
		mode := string(r.Action)
		if r.Shadow {
			mode = "would " + mode + " (shadow)"
		}
		if !e.Applies {
			fmt.Fprintf(stdout, "  -  %-28s does not apply: %s\n", r.Name, e.Why)
			continue
		}
		var limits []string
		for _, l := range r.Limits() {
			limits = append(limits, fmt.Sprintf("%s > %d", l.Measure, l.Limit))
		}
		if len(limits) == 0 {
			fmt.Fprintf(stdout, "  +  %-28s applies: %s before the statement runs\n", r.Name, mode)
			continue
		}
		fmt.Fprintf(stdout, "  +  %-28s applies: %s when %s %s\n", r.Name, mode, strings.Join(limits, " and "), scopeWords(r.Scope))
	}
	return nil
}

func joinKinds(ks []policy.StatementKind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return orNone(strings.Join(s, ", "))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func scopeWords(s policy.Scope) string {
	switch s {
	case policy.ScopeStatement:
		return "in the statement"
	case policy.ScopeSession:
		return "in the session"
	}
	return "in the employee's last " + string(s)
}
