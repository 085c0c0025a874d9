// Command pgwarden is a PostgreSQL proxy that guards customer data against
// bulk exfiltration. See README.md.
package main

import (
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
	cmds := make([]*cobra.Command, len(commands))
	for i, cmd := range commands {
		cmds[i] = cmd()
	}
	return cli.Root("pgwarden", "pgwarden: a PostgreSQL proxy that guards customer data against bulk exfiltration",
		buildinfo.Get().String(), stdout, stderr, cmds...)
}
