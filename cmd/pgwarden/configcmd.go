package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/internal/cli"
	"github.com/pgwarden/pgwarden/state/schema"
)

func configCommand() *cobra.Command {
	check := &cobra.Command{Use: "check --config FILE [serve flags]", Short: "report every mistake in a configuration",
		Long: `Reads the configuration as pgwarden serve would and prints every mistake,
each with the file, line and column where it is written (or the flag that
set it), or OK. Exits 1 if there is any. Files the configuration names and
databases it connects to are not opened.
`}
	loadCheck := configFlags(check)
	check.RunE = func(c *cobra.Command, args []string) error {
		if err := noArgs(c, args); err != nil {
			return err
		}
		cfg, err := loadCheck()
		if err == nil {
			err = cfg.Validate()
		}
		var es config.Errors
		switch {
		case err == nil:
			fmt.Fprintln(c.OutOrStdout(), "OK")
			return nil
		case errors.As(err, &es):
			for _, e := range es {
				fmt.Fprintln(c.OutOrStdout(), e)
			}
			if len(es) == 1 {
				return errors.New("the configuration has 1 error")
			}
			return fmt.Errorf("the configuration has %d errors", len(es))
		}
		return err
	}

	print := &cobra.Command{Use: "print --config FILE [serve flags]", Short: "print the configuration in force, secrets hidden",
		Long: `Prints the configuration pgwarden serve would run with: the file, the flags
written over it and the defaults, as YAML. Passwords in URLs and the Slack
webhook URL are replaced by REDACTED.
`}
	loadPrint := configFlags(print)
	print.RunE = func(c *cobra.Command, args []string) error {
		if err := noArgs(c, args); err != nil {
			return err
		}
		cfg, err := loadPrint()
		if err != nil {
			return err
		}
		b, err := yaml.Marshal(cfg.Redacted())
		if err != nil {
			return err
		}
		_, err = c.OutOrStdout().Write(b)
		return err
	}

	schemaCmd := &cobra.Command{Use: "schema", Short: "print the SQL of every table pgwarden keeps in its own databases",
		Long: `Prints state/schema.sql: the tables pgwarden creates in its state database
(state_url) and its audit database (audit.url) when it starts. Where the role
pgwarden connects as may not create tables, run it once with a privileged
role and grant that role SELECT, INSERT, UPDATE and DELETE on the tables and
USAGE on their sequences:

  pgwarden config schema | psql -v ON_ERROR_STOP=1 "$STATE_DATABASE_URL"
`,
		RunE: func(c *cobra.Command, args []string) error {
			if err := noArgs(c, args); err != nil {
				return err
			}
			_, err := io.WriteString(c.OutOrStdout(), schema.SQL)
			return err
		}}

	return cli.Group("config [command]", "check a configuration file, print the configuration in force or the SQL of pgwarden's tables", `check and print read the file as pgwarden serve does, with the flags of
pgwarden serve written over it. schema prints the SQL of the tables pgwarden
keeps in its state and audit databases, for a DBA to create them ahead of time.
`, check, print, schemaCmd)
}
