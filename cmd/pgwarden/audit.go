package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/server"
)

const auditUsage = `Usage: pgwarden audit verify DIR [--key-file FILE]
       pgwarden audit query DIR [--user NAME] [--since TIME] [--type TYPE] [--json]

verify checks the audit log in DIR: the hash chain across lines and files,
sequence numbers, and, with a key, every checkpoint's HMAC. It prints one
line and exits 0 when the log is intact, or names the file, line and seq of
the first problem and exits 1.

query prints the events of DIR that match, one per line.

Environment:
  PGWARDEN_AUDIT_KEY   checkpoint HMAC key in hex, when --key-file is not given
`

const auditVerifyUsage = `Usage: pgwarden audit verify DIR [--key-file FILE]

Checks the hash chain, sequence numbers, file links and (with a key) the
checkpoint HMACs of the audit log in DIR. Exits 0 when intact, 1 otherwise.
Without a key only the chain is checked, which someone who rewrites every
line can forge. The key is read from --key-file, else from
PGWARDEN_AUDIT_KEY; both hold it in hex.

Flags:
`

const auditQueryUsage = `Usage: pgwarden audit query DIR [--user NAME] [--since TIME] [--type TYPE] [--json]

Prints the audit events of DIR that match every filter given, in order, as
tab-separated lines (seq, time, type, employee, session, data) or, with
--json, as JSON lines. The chain is not checked: run 'pgwarden audit verify'.
Checkpoint and file_start events are shown only when --type asks for them.

Flags:
`

func runAudit(args []string, stdout, stderr io.Writer) error {
	sub, rest, err := subcommand("audit", auditUsage, args, stderr, "verify", "query")
	if err != nil {
		return err
	}
	switch sub {
	case "verify":
		return runAuditVerify(rest, stdout, stderr)
	case "query":
		return runAuditQuery(rest, stdout, stderr)
	}
	return nil
}

// parseWithDir parses flags that may come before or after the one DIR
// argument.
func parseWithDir(fs *flag.FlagSet, args []string, stderr io.Writer) (string, error) {
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return "", err
	}
	switch len(pos) {
	case 0:
		fmt.Fprintf(stderr, "pgwarden audit %s: missing DIR\n", fs.Name())
		return "", errUsage
	case 1:
		return pos[0], nil
	default:
		fmt.Fprintf(stderr, "pgwarden audit %s: unexpected argument %q\n", fs.Name(), pos[1])
		return "", errUsage
	}
}

func runAuditVerify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, auditVerifyUsage); fs.PrintDefaults() }
	keyFile := fs.String("key-file", "", "`file` holding the checkpoint HMAC key in hex (default: $"+server.AuditKeyEnv+")")
	dir, err := parseWithDir(fs, args, stderr)
	if err != nil {
		return err
	}
	key, err := server.AuditKey(*keyFile)
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
	return nil
}

func runAuditQuery(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, auditQueryUsage); fs.PrintDefaults() }
	var (
		user    = fs.String("user", "", "only events of this employee")
		since   = fs.String("since", "", "only events at or after `TIME`: RFC 3339 (2026-11-28T09:00:00Z) or a duration ago (24h)")
		typ     = fs.String("type", "", "only events of this `type` (session_start, statement, decision, checkpoint, ...)")
		table   = fs.String("table", "", "only statements that touched this `table` (schema.table)")
		asJSON  = fs.Bool("json", false, "print JSON lines")
		sinceAt time.Time
	)
	dir, err := parseWithDir(fs, args, stderr)
	if err != nil {
		return err
	}
	if *since != "" {
		if sinceAt, err = parseSince(*since, time.Now()); err != nil {
			fmt.Fprintf(stderr, "pgwarden audit query: %v\n", err)
			return errUsage
		}
	}
	filter := func(ev audit.Event) bool {
		switch {
		case *typ != "" && ev.Type != *typ:
			return false
		case *typ == "" && (ev.Type == audit.TypeCheckpoint || ev.Type == audit.TypeFileStart):
			return false
		case *user != "" && ev.Employee != *user:
			return false
		case !sinceAt.IsZero() && ev.Time.Before(sinceAt):
			return false
		case *table != "" && !touches(ev, *table):
			return false
		}
		return true
	}
	return audit.Read(dir, filter, func(ev audit.Event) error {
		if *asJSON {
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		_, err := fmt.Fprintf(stdout, "%d\t%s\t%s\t%s\t%s\t%s\n", ev.Seq, ev.Time.Format(time.RFC3339Nano),
			ev.Type, dash(ev.Employee), dash(ev.SessionID), dash(string(ev.Data)))
		return err
	})
}

// touches reports whether a statement event lists table among the tables
// it touched.
func touches(ev audit.Event, table string) bool {
	var d struct {
		Tables []string `json:"tables"`
	}
	if ev.Type != audit.TypeStatement || json.Unmarshal(ev.Data, &d) != nil {
		return false
	}
	return slices.Contains(d.Tables, table)
}

// parseSince reads an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time or a duration such as 24h", s)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
