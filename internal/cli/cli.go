// Package cli holds the conventions of pgwarden's command line over a
// cobra command tree, so that every command's help is written from the
// tree and cannot drift from it:
//
//   - Usage writes a command's help: a group lists its commands'
//     synopses (Use) and Short; a command gives its synopsis, Long, its
//     flags and the other commands of its group. Help writes the
//     program's help to stdout and a command's to stderr.
//   - Group makes a command of subcommands that checks its first word
//     before any flag.
//   - A command line error is explained where it is found and returned as
//     ErrUsage; Execute turns it into exit code 2, and any other error
//     into a one-line reason on stderr and exit code 1.
//   - GoStyleFlags reads -name as --name, as Go's flag package did.
package cli

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// ErrUsage reports a command line error already explained to the user.
var ErrUsage = errors.New("usage error")

// Setup gives every command of root's tree this package's help and flag
// errors; call it once the tree is complete. Help lists commands in the
// order they were added (cobra.EnableCommandSorting is turned off).
func Setup(root *cobra.Command) {
	cobra.EnableCommandSorting = false
	root.SilenceErrors, root.SilenceUsage = true, true
	root.SetHelpFunc(Help)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprintf(c.ErrOrStderr(), "%s: %v\nRun '%s --help' for its flags.\n", c.CommandPath(), err, c.CommandPath())
		return ErrUsage
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.DisableFlagsInUseLine = true
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// Execute runs root with args and returns the process exit code: 0; 2
// for a command line error; 1 for any other error, written to root's
// stderr after its name.
func Execute(root *cobra.Command, args []string) int {
	root.SetArgs(GoStyleFlags(root, args))
	switch err := root.Execute(); {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	default:
		fmt.Fprintf(root.ErrOrStderr(), "%s: %v\n", root.Name(), err)
		return 1
	}
}

// Group returns a command that holds subcommands only. Alone, or with a
// first word that is none of them, it prints its help and is a usage
// error; the word is checked before any flag.
func Group(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{Use: use, Short: short, Long: long, Args: cobra.ArbitraryArgs, DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
			case slices.Contains([]string{"help", "-h", "-help", "--help"}, args[0]):
				Help(c, nil)
				return nil
			default:
				fmt.Fprintf(c.ErrOrStderr(), "%s: unknown subcommand %q\n\n", c.CommandPath(), args[0])
			}
			fmt.Fprint(c.ErrOrStderr(), Usage(c))
			return ErrUsage
		}}
	g.AddCommand(subs...)
	return g
}

// Help writes c's help: the program's own to stdout, a command's to
// stderr.
func Help(c *cobra.Command, _ []string) {
	w := c.ErrOrStderr()
	if !c.HasParent() {
		w = c.OutOrStdout()
	}
	fmt.Fprint(w, Usage(c))
}

// Usage is c's help, from the tree.
func Usage(c *cobra.Command) string {
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

// GoStyleFlags writes -name as --name for the flags of the command args
// run, as Go's flag package takes both.
func GoStyleFlags(root *cobra.Command, args []string) []string {
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

// Usagef explains a command line error on c's standard error, after c's
// path ("pgwarden users add: ..."), and returns ErrUsage.
func Usagef(c *cobra.Command, format string, a ...any) error {
	fmt.Fprintf(c.ErrOrStderr(), "%s: %s\n", c.CommandPath(), fmt.Sprintf(format, a...))
	return ErrUsage
}

// Root returns a program's root command over cmds, set up as Setup does,
// with a help command, a completion command (bash, zsh, fish,
// powershell) and version as --version. Without a command, or with one
// it does not know, it prints its help and is a usage error.
func Root(use, long, version string, stdout, stderr io.Writer, cmds ...*cobra.Command) *cobra.Command {
	root := &cobra.Command{
		Use:  use,
		Long: long,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				fmt.Fprintf(c.ErrOrStderr(), "%s: unknown command %q\n\n", use, args[0])
			}
			fmt.Fprint(c.ErrOrStderr(), Usage(c))
			return ErrUsage
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(cmds...)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	Setup(root)
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
	root.SetVersionTemplate("{{.Version}}\n")
	return root
}
