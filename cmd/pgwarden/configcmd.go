package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/pgwarden/pgwarden/config"
)

const configUsage = `Usage:
  pgwarden config check --config FILE [serve flags]   report every mistake in a configuration
  pgwarden config print --config FILE [serve flags]   print the configuration in force, secrets hidden

Both read the file as pgwarden serve does, with the flags of pgwarden serve
written over it. Run 'pgwarden config <command> --help' for its flags.
`

func runConfig(args []string, stdout, stderr io.Writer) error {
	sub, rest, err := subcommand("config", configUsage, args, stderr, "check", "print")
	if err != nil {
		return err
	}
	switch sub {
	case "check":
		return runConfigCheck(rest, stdout, stderr)
	case "print":
		return runConfigPrint(rest, stdout, stderr)
	}
	return nil
}

const configCheckUsage = `Usage: pgwarden config check --config FILE [serve flags]

Reads the configuration as pgwarden serve would and prints every mistake,
each with the file, line and column where it is written (or the flag that
set it), or OK. Exits 1 if there is any. Files the configuration names and
databases it connects to are not opened.

Flags:
`

const configPrintUsage = `Usage: pgwarden config print --config FILE [serve flags]

Prints the configuration pgwarden serve would run with: the file, the flags
written over it and the defaults, as YAML. Passwords in URLs and the Slack
webhook URL are replaced by REDACTED.

Flags:
`

// loadConfig parses the command line of pgwarden serve, or of a command
// that takes its flags (cmd names it, as "config check"), and reads the
// configuration: the file, the flags over it, the defaults.
func loadConfig(cmd, usage string, args []string, stderr io.Writer) (*config.Config, error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	path := fs.String("config", os.Getenv("PGWARDEN_CONFIG"), "YAML config `file`")
	flags := config.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pgwarden %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return nil, errUsage
	}
	c := &config.Config{}
	if *path != "" {
		var err error
		if c, err = config.Load(*path); err != nil {
			return nil, err
		}
	}
	flags.Apply(c)
	c.SetDefaults()
	return c, nil
}

func runConfigCheck(args []string, stdout, stderr io.Writer) error {
	c, err := loadConfig("config check", configCheckUsage, args, stderr)
	if err == nil {
		err = c.Validate()
	}
	var es config.Errors
	switch {
	case err == nil:
		fmt.Fprintln(stdout, "OK")
		return nil
	case errors.As(err, &es):
		for _, e := range es {
			fmt.Fprintln(stdout, e)
		}
		if len(es) == 1 {
			return errors.New("the configuration has 1 error")
		}
		return fmt.Errorf("the configuration has %d errors", len(es))
	}
	return err
}

func runConfigPrint(args []string, stdout, stderr io.Writer) error {
	c, err := loadConfig("config print", configPrintUsage, args, stderr)
	if err != nil {
		return err
	}
	b, err := yaml.Marshal(c.Redacted())
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}
