package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/internal/cli"
	"github.com/pgwarden/pgwarden/server"
)

func auditCommand() *cobra.Command {
	verify := &cobra.Command{Use: "verify DIR [--key-file FILE]", Short: "check the audit log's hash chain and checkpoints",
		Long: `Checks the hash chain, sequence numbers, file links and (with a key) the
checkpoint HMACs of the audit log in DIR. Exits 0 when intact, 1 otherwise.
The key is read from --key-file, else from PGWARDEN_AUDIT_KEY; both hold it
in hex. Without a key the checkpoints cannot be checked, and the chain alone
can be forged by someone who rewrites every line: verify then exits 1
unless --chain-only says that is what is wanted.
`}
	keyFile := verify.Flags().String("key-file", "", "`file` holding the checkpoint HMAC key in hex (default: $"+server.AuditKeyEnv+")")
	chainOnly := verify.Flags().Bool("chain-only", false, "without a key, check the hash chain alone and exit 0 when it is intact")
	verify.RunE = func(c *cobra.Command, args []string) error {
		dir, err := oneDir(c, args)
		if err != nil {
			return err
		}
		return auditVerify(c.OutOrStdout(), dir, *keyFile, *chainOnly)
	}

	query := &cobra.Command{Use: "query DIR [--user NAME] [--since TIME] [--type TYPE] [--json]", Short: "print the events that match",
		Long: `Prints the audit events of DIR that match every filter given, in order, as
tab-separated lines (seq, time, type, employee, session, data) or, with
--json, as JSON lines. The chain is not checked: run 'pgwarden audit verify'.
Checkpoint and file_start events are shown only when --type asks for them.
`}
	var q audit.Filter
	query.Flags().StringVar(&q.Employee, "user", "", "only events of this employee")
	since := query.Flags().String("since", "", "only events at or after `TIME`: RFC 3339 (2026-11-28T09:00:00Z) or a duration ago (24h)")
	query.Flags().StringVar(&q.Type, "type", "", "only events of this `type` (session_start, statement, decision, checkpoint, ...)")
	query.Flags().StringVar(&q.Table, "table", "", "only statements that touched this `table` (schema.table)")
	asJSON := query.Flags().Bool("json", false, "print JSON lines")
	query.RunE = func(c *cobra.Command, args []string) error {
		dir, err := oneDir(c, args)
		if err != nil {
			return err
		}
		if err := q.Validate(); err != nil {
			return cli.Usagef(c, "%v", err)
		}
		if *since != "" {
			if q.Since, err = audit.ParseSince(*since, time.Now()); err != nil {
				return cli.Usagef(c, "%v", err)
			}
		}
		return auditQuery(c.OutOrStdout(), dir, q, *asJSON)
	}

	return cli.Group("audit [command]", "verify or query the tamper-evident audit log", `verify checks the audit log in DIR: the hash chain across lines and files,
sequence numbers, and, with a key, every checkpoint's HMAC. It prints one
line and exits 0 when the log is intact, or names the file, line and seq of
the first problem and exits 1.

query prints the events of DIR that match, one per line.

Environment:
  PGWARDEN_AUDIT_KEY   checkpoint HMAC key in hex, when --key-file is not given
`, verify, query)
}

// oneDir is the one DIR argument of an audit command.
func oneDir(c *cobra.Command, args []string) (string, error) {
	switch len(args) {
	case 0:
		fmt.Fprintf(c.ErrOrStderr(), "%s: missing DIR\n", c.CommandPath())
		return "", errUsage
	case 1:
		return args[0], nil
	default:
		fmt.Fprintf(c.ErrOrStderr(), "%s: unexpected argument %q\n", c.CommandPath(), args[1])
		return "", errUsage
	}
}

func auditVerify(stdout io.Writer, dir, keyFile string, chainOnly bool) error {
	key, err := server.AuditKey(keyFile)
	if err != nil {
		return err
	}
	rep, err := audit.Verify(dir, key)
	var p *audit.Problem
	if errors.As(err, &p) {
		return fmt.Errorf("audit log %s is NOT intact: %v (%d events checked before it)", dir, p, rep.Events)
	}
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("audit log %s intact: %d events in %d files, last seq %d", dir, rep.Events, rep.Files, rep.LastSeq)
	if key != nil {
		msg += fmt.Sprintf(", %d checkpoint HMACs verified (key id %s)", rep.Checkpoints, strings.Join(rep.KeyIDs, ", "))
	} else {
		msg += ", checkpoint HMACs NOT checked (no key: --key-file or " + server.AuditKeyEnv + ")"
	}
	if rep.Unsigned > 0 {
		msg += fmt.Sprintf(", %d events after the last checkpoint", rep.Unsigned)
	}
	if rep.TornTail {
		msg += ", torn final line from a crash (removed when pgwarden next opens the log)"
	}
	fmt.Fprintln(stdout, msg)
	if key == nil && rep.Checkpoints > 0 && !chainOnly {
		return fmt.Errorf("audit log %s: its %d checkpoint HMACs were not checked: give the key (--key-file or %s), or --chain-only to check the chain alone",
			dir, rep.Checkpoints, server.AuditKeyEnv)
	}
	return nil
}

func auditQuery(stdout io.Writer, dir string, f audit.Filter, asJSON bool) error {
	return audit.Read(dir, f.Match, func(ev audit.Event) error {
		if asJSON {
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		_, err := fmt.Fprintf(stdout, "%d\t%s\t%s\t%s\t%s\t%s\n", ev.Seq, ev.Time.Format(time.RFC3339Nano),
			ev.Type, orDash(ev.Employee), orDash(ev.SessionID), orDash(string(ev.Data)))
		return err
	})
}
