// Command pgwarden is a PostgreSQL proxy that guards customer data against
// bulk exfiltration. See README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
)

const usage = `pgwarden: a PostgreSQL proxy that guards customer data against bulk exfiltration

Usage:
  pgwarden serve [flags]     run the proxy in front of a PostgreSQL server
  pgwarden config [command]  check a configuration file, print the configuration in force
  pgwarden audit [command]   verify or query the tamper-evident audit log
  pgwarden discover [flags]  propose a PII classification by sampling a database
  pgwarden policy [command]  check a policy file, explain which rules apply, print the default
  pgwarden users [command]   list quarantined employees, release one
  pgwarden holds [command]   list results held for approval, approve or deny one
  pgwarden replay [flags]    run a policy over a recorded audit trail: what it would have done
  pgwarden sessions [command] list or end live sessions (through the admin API)
  pgwarden alerts [command]  security's alert queue: list, acknowledge (through the admin API)
  pgwarden token [flags]     an admin API token that expires, derived from the admin secret
  pgwarden health [--ready]  ask a running pgwarden whether it is alive, or ready
  pgwarden version           print the version
  pgwarden help [command]    show help for a command

Run 'pgwarden <command> --help' for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = runServe(rest, stdout, stderr)
	case "config":
		err = runConfig(rest, stdout, stderr)
	case "audit":
		err = runAudit(rest, stdout, stderr)
	case "discover":
		err = runDiscover(rest, stdout, stderr)
	case "policy":
		err = runPolicy(rest, stdout, stderr)
	case "users":
		err = runUsers(rest, stdout, stderr)
	case "holds":
		err = runHolds(rest, stdout, stderr)
	case "replay":
		err = runReplay(rest, stdout, stderr)
	case "sessions":
		err = runSessions(rest, stdout, stderr)
	case "alerts":
		err = runAlerts(rest, stdout, stderr)
	case "token":
		err = runToken(rest, stdout, stderr)
	case "health":
		err = runHealth(rest, stdout, stderr)
	case "version", "--version", "-v":
		err = runVersion(rest, stdout, stderr)
	case "help", "-h", "--help":
		if len(rest) > 0 {
			return run([]string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "pgwarden: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
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

// parseInterleaved parses flags that may come before, between or after the
// positional arguments, and returns the positional ones. A parse error is
// errUsage (the flag package has explained it); -h is flag.ErrHelp.
// subcommand takes the subcommand word off args for the command name. It
// prints usage and returns flag.ErrHelp for a help word, or errUsage for no
// word or one not in known.
func subcommand(name, usage string, args []string, stderr io.Writer, known ...string) (string, []string, error) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return "", nil, errUsage
	}
	switch sub := args[0]; {
	case sub == "-h" || sub == "-help" || sub == "--help" || sub == "help":
		fmt.Fprint(stderr, usage)
		return "", nil, flag.ErrHelp
	case slices.Contains(known, sub):
		return sub, args[1:], nil
	default:
		fmt.Fprintf(stderr, "pgwarden %s: unknown subcommand %q\n\n%s", name, sub, usage)
		return "", nil, errUsage
	}
}

func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		if args = fs.Args(); len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}
