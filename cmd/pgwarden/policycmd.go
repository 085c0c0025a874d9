package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/internal/cli"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/explain"
)

func policyCommand() *cobra.Command {
	check := &cobra.Command{Use: "check FILE...", Short: "validate policy files",
		Long: `Parses each policy file and lists every problem with its line and column;
for a good file, says what it has on and off and warns about what it drops
of the built-in policy (norms, the server egress rule).
Exits 1 if any file has a problem.
`,
		RunE: func(c *cobra.Command, args []string) error { return policyCheck(c, args) }}
	def := &cobra.Command{Use: "default", Short: "print the built-in policy",
		RunE: func(c *cobra.Command, args []string) error {
			if err := noArgs(c, args); err != nil {
				return err
			}
			fmt.Fprint(c.OutOrStdout(), policy.DefaultYAML)
			return nil
		}}
	return cli.Group("policy [command]", "check a policy file, explain which rules apply, print the default", "",
		check, explainCommand(), def)
}

func policyCheck(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cli.Usagef(c, "missing FILE")
	}
	stdout := c.OutOrStdout()
	bad := 0
	for _, path := range args {
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
		return fmt.Errorf("%d of %d policy files have errors", bad, len(args))
	}
	return nil
}

func explainCommand() *cobra.Command {
	c := &cobra.Command{Use: "explain --policy FILE --user NAME --sql SQL [flags]", Short: "show which rules would apply to a statement",
		Long: `Shows, rule by rule, whether it applies to the statement and why not, and
the limits of those that do. Thresholds are compared with counts only at
run time.
`}
	fs := c.Flags()
	var (
		path   = fs.String("policy", "", "policy `file` (default: the built-in policy)")
		user   = fs.String("user", "", "the employee (database user) `name`")
		sql    = fs.String("sql", "", "the statement")
		client = fs.String("client", "", "client `address`")
		app    = fs.String("application", "", "application_name")
		at     = fs.String("at", "", "`time` of the statement, RFC 3339 (default now)")
		schema = fs.String("schema", "public", "`schema` of unqualified table names")
		roles  = fs.StringSlice("role", nil, "PostgreSQL `role` granted to the user, directly or through other roles; superuser status grants none (repeat, or comma-separated)")
	)
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := noArgs(c, args); err != nil {
			return err
		}
		stdout := c.OutOrStdout()
		if *user == "" || *sql == "" {
			return cli.Usagef(c, "--user and --sql are required")
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
		pc := policy.Context{User: *user, Roles: *roles, Application: *app, Time: when.In(p.Location())}
		if *client != "" {
			a, err := netip.ParseAddr(*client)
			if err != nil {
				return fmt.Errorf("--client: %w", err)
			}
			pc.ClientAddr = a
		}
		res, err := explain.Statement(p, *sql, *schema, pc)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "statement: %s\nkinds:     %s\ntables:    %s\n\n", res.Normalized, joinKinds(res.Context.Kinds), orNone(strings.Join(res.Context.Tables, ", ")))
		for _, e := range res.Rules {
			r := e.Rule
			if !e.Applies {
				fmt.Fprintf(stdout, "  -  %-28s does not apply: %s\n", r.Name, e.Why)
				continue
			}
			what := r.Mode() + " before the statement runs"
			switch {
			case r.When() != "":
				what = r.Mode() + " when " + r.When()
			case r.Action == policy.ActionRedact:
				what = r.Mode() + ": its result's PII masked from the first row"
			}
			fmt.Fprintf(stdout, "  +  %-28s applies: %s\n", r.Name, what)
		}
		if res.Masking != nil {
			explainMasking(stdout, res.Masking)
		}
		return nil
	}
	return c
}

// explainMasking lists the result's columns a redact rule masks; values
// the detectors find in the others are masked as the rows arrive.
func explainMasking(w io.Writer, m *explain.Masking) {
	when := "once its limits are passed"
	if len(m.Rule.Limits()) == 0 {
		when = "from the first row"
	}
	fmt.Fprintf(w, "\nmasked by %s (%s):\n", m.Rule.Name, when)
	if !m.Known {
		fmt.Fprintln(w, "  the result's columns cannot be listed from the text: every PII value found is masked")
		return
	}
	for _, c := range m.Columns {
		fmt.Fprintf(w, "  column %d: %s\n", c.Index, strings.Join(c.Sources, "; "))
	}
	fmt.Fprintln(w, "  and any value the detectors find in the other columns")
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
