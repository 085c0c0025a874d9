// Command pgwarden is a PostgreSQL proxy that guards customer data against
// bulk exfiltration. See README.md.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/internal/buildinfo"
	"github.com/pgwarden/pgwarden/internal/cli"
)

// commands are the constructors of pgwarden's subcommands, in the order
// the help lists them.
var commands = []func() *cobra.Command{
	serveCommand, configCommand, auditCommand, discoverCommand, policyCommand, usersCommand, holdsCommand,
	replayCommand, sessionsCommand, alertsCommand, tokenCommand, loginCommand, healthCommand, versionCommand,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code: 0, 1
// for a failure (reported on stderr), 2 for a command line error.
func run(args []string, stdout, stderr io.Writer) int {
	return cli.Execute(rootCommand(stdout, stderr), args)
}

// errUsage reports a command line error already explained to the user.
var errUsage = cli.ErrUsage

// rootCommand returns pgwarden's command tree, writing to stdout and
// stderr: every command of commands, help and completion, with the help
// of each written from the tree (cli.Usage).
func rootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:  "pgwarden",
		Long: "pgwarden: a PostgreSQL proxy that guards customer data against bulk exfiltration",
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				fmt.Fprintf(c.ErrOrStderr(), "pgwarden: unknown command %q\n\n", args[0])
			}
			fmt.Fprint(c.ErrOrStderr(), cli.Usage(c))
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
	cli.Setup(root)
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
	root.Version = buildinfo.Get().String()
	root.SetVersionTemplate("{{.Version}}\n")
	return root
}
