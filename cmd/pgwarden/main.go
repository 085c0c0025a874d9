// Command pgwarden is a PostgreSQL proxy that guards customer data against
// bulk exfiltration. See README.md.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// commands are the constructors of pgwarden's subcommands, in the order
// the help lists them.
var commands = []func() *cobra.Command{
	serveCommand, configCommand, auditCommand, discoverCommand, policyCommand, usersCommand, holdsCommand,
	replayCommand, sessionsCommand, alertsCommand, tokenCommand, versionCommand,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code: 0, 1
// for a failure (reported on stderr), 2 for a command line error.
func run(args []string, stdout, stderr io.Writer) int {
	root := rootCommand(stdout, stderr)
	root.SetArgs(goStyleFlags(root, args))
	switch err := root.Execute(); {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "pgwarden: %v\n", err)
		return 1
	}
}

// errUsage reports a command line error already explained to the user.
var errUsage = errors.New("usage error")

// rootCommand returns pgwarden's command tree, writing to stdout and
// stderr: every command of commands, help and completion. Their help is
// written by help from the tree.
func rootCommand(stdout, stderr io.Writer) *cobra.Command {
	cobra.EnableCommandSorting = false
	root := &cobra.Command{
		Use:           "pgwarden",
		Long:          "pgwarden: a PostgreSQL proxy that guards customer data against bulk exfiltration",
		Args:          cobra.ArbitraryArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				fmt.Fprintf(c.ErrOrStderr(), "pgwarden: unknown command %q\n\n", args[0])
			}
			fmt.Fprint(c.ErrOrStderr(), usage(c))
			return errUsage
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	for _, cmd := range commands {
		root.AddCommand(cmd())
	}
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Short = "show help for a command"
		case "completion":
			c.Use, c.Short = "completion SHELL", "print a shell completion script: bash, zsh, fish or powershell"
			for _, sh := range c.Commands() {
				sh.Short = "the completion script for " + sh.Name()
			}
		}
	}
	root.Version = version
	root.SetVersionTemplate("pgwarden {{.Version}}\n")
	root.SetHelpFunc(help)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprintf(c.ErrOrStderr(), "%s: %v\nRun '%s --help' for its flags.\n", c.CommandPath(), err, c.CommandPath())
		return errUsage
	})
	walk(root, func(c *cobra.Command) { c.DisableFlagsInUseLine = true })
	return root
}

func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, sub := range c.Commands() {
		walk(sub, f)
	}
}

// group returns a command that holds subcommands only. Alone, or with a
// first word that is none of them, it prints its help and is a usage
// error; the word is checked before any flag.
func group(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{Use: use, Short: short, Long: long, Args: cobra.ArbitraryArgs, DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
			case slices.Contains([]string{"help", "-h", "-help", "--help"}, args[0]):
				help(c, nil)
				return nil
			default:
				fmt.Fprintf(c.ErrOrStderr(), "%s: unknown subcommand %q\n\n", c.CommandPath(), args[0])
			}
			fmt.Fprint(c.ErrOrStderr(), usage(c))
			return errUsage
		}}
	g.AddCommand(subs...)
	return g
}

// help writes c's help: pgwarden's own to stdout, a command's to stderr,
// as the flag package did.
func help(c *cobra.Command, _ []string) {
	w := c.ErrOrStderr()
	if !c.HasParent() {
		w = c.OutOrStdout()
	}
	fmt.Fprint(w, usage(c))
}

// usage is c's help, from the tree: a group lists its commands with their
// synopsis (Use) and Short; a command gives its synopsis, Long, its flags
// and the other commands of its group.
func usage(c *cobra.Command) string {
	var b strings.Builder
	if c.HasAvailableSubCommands() {
		if !c.HasParent() {
			fmt.Fprintf(&b, "%s\n\n", c.Long)
		}
		listCommands(&b, c, "Usage: ")
		if c.HasParent() && c.Long != "" {
			fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(c.Long, "\n"))
		}
		fmt.Fprintf(&b, "\nRun '%s <command> --help' for the flags of a command.\n", c.CommandPath())
		return b.String()
	}
	fmt.Fprintf(&b, "Usage: %s %s\n", c.Parent().CommandPath(), c.Use)
	if c.Long != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(c.Long, "\n"))
	} else if c.Short != "" {
		fmt.Fprintf(&b, "\n%s.\n", strings.ToUpper(c.Short[:1])+c.Short[1:])
	}
	flags := pflag.NewFlagSet(c.Name(), pflag.ContinueOnError)
	c.LocalFlags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" {
			flags.AddFlag(f)
		}
	})
	if flags.HasFlags() {
		fmt.Fprintf(&b, "\nFlags:\n%s", flags.FlagUsages())
	}
	if p := c.Parent(); p.HasParent() {
		fmt.Fprintf(&b, "\nCommands of %s:\n", p.CommandPath())
		listCommands(&b, p, "  ")
	}
	return b.String()
}

// listCommands writes a line for each command of c: its synopsis, after
// prefix on the first line and as many spaces on the others, and what it
// does, on the next line when the synopsis is long.
func listCommands(b *strings.Builder, c *cobra.Command, prefix string) {
	const width = 56
	indent := strings.Repeat(" ", len(prefix))
	for _, sub := range c.Commands() {
		if !sub.IsAvailableCommand() && sub.Name() != "help" {
			continue
		}
		line := prefix + c.CommandPath() + " " + sub.Use
		prefix = indent
		if len(line) >= width {
			fmt.Fprintf(b, "%s\n%*s", line, width, "")
		} else {
			fmt.Fprintf(b, "%-*s", width, line)
		}
		fmt.Fprintln(b, sub.Short)
	}
}

// goStyleFlags writes -name as --name for the flags of the command args
// run: pgwarden's flags were parsed by Go's flag package, which takes
// both.
func goStyleFlags(root *cobra.Command, args []string) []string {
	c, _, err := root.Find(args)
	if err != nil {
		return args
	}
	out := slices.Clone(args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if name == "help" || c.Flags().Lookup(name) != nil {
			out[i] = "-" + a
		}
	}
	return out
}

// versionCommand prints the version.
func versionCommand() *cobra.Command {
	return &cobra.Command{Use: "version", Short: "print the version",
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprintln(c.OutOrStdout(), "pgwarden", version)
			return nil
		}}
}
