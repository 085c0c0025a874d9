package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/internal/cli"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/policy/replay"
	"github.com/pgwarden/pgwarden/server"
)

func replayCommand() *cobra.Command {
	c := &cobra.Command{Use: "replay --audit DIR [--policy FILE] [flags]", Short: "run a policy over a recorded audit trail: what it would have done",
		Long: `Runs a policy over a recorded audit trail and reports, per employee and day,
what it would have alerted and blocked: tune a policy before it goes live.
Statements are replayed with their recorded totals; live, a statement that
crosses a limit is stopped at it.
`}
	var o replayOptions
	fs := c.Flags()
	fs.StringVar(&o.dir, "audit", "", "audit log `directory` (pgwarden serve --audit-dir)")
	fs.StringVar(&o.policy, "policy", "", "policy `file` (default: the built-in policy)")
	fs.BoolVar(&o.decisions, "decisions", false, "also list every decision")
	fs.StringVar(&o.saveNorms, "save-norms", "", "write the norms learned over the trail to `file` (a state directory's norms.json): replaying rebuilds them")
	fs.BoolVar(&o.asJSON, "json", false, "print decisions as JSON lines instead of the report")
	c.RunE = func(c *cobra.Command, args []string) error {
		if o.dir == "" || len(args) > 0 {
			return cli.Usagef(c, "--audit DIR is required, and nothing else")
		}
		return runReplay(c.OutOrStdout(), o)
	}
	return c
}

// replayOptions are pgwarden replay's flags.
type replayOptions struct {
	dir, policy, saveNorms string
	decisions, asJSON      bool
}

func runReplay(stdout io.Writer, o replayOptions) error {
	p := policy.Default()
	if o.policy != "" {
		var err error
		if p, err = policy.Load(o.policy); err != nil {
			return err
		}
	}
	nc := p.Norms()
	model, err := norm.New(norm.Config{Location: p.Location(), LearningDays: nc.LearningDays,
		MinActiveDays: nc.MinActiveDays, HistoryDays: nc.HistoryDays, MaxDailyRise: nc.MaxDailyRise})
	if err != nil {
		return err
	}
	r, err := replay.New(p, model)
	if err != nil {
		return err
	}
	t := replay.NewTrail(r)
	if err := audit.Read(o.dir, nil, func(ev audit.Event) error { return replayEvent(t, ev) }); err != nil {
		return err
	}
	t.Close()
	if o.saveNorms != "" {
		if err := server.SaveSnapshot(model.Snapshot, o.saveNorms); err != nil {
			return fmt.Errorf("--save-norms: %w", err)
		}
	}
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		for _, d := range t.Decisions {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	replayReport(stdout, t, p.Name(), o.decisions)
	return nil
}

// replayEvent replays one event of the trail.
func replayEvent(t *replay.Trail, ev audit.Event) error {
	switch ev.Type {
	case audit.TypeSessionStart:
		var d audit.SessionStart
		json.Unmarshal(ev.Data, &d)
		// The event's employee; trails from before identities name
		// only the database user.
		t.StartSession(replay.Session{ID: ev.SessionID, Employee: cmp.Or(ev.Employee, d.User), ClientAddr: d.ClientAddr, Application: d.Application})
	case audit.TypeSessionEnd:
		t.EndSession(ev.SessionID)
	case audit.TypeStatement:
		var d audit.Statement
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return fmt.Errorf("event %d: %w", ev.Seq, err)
		}
		t.Statement(replay.Statement{Session: ev.SessionID, Employee: ev.Employee, Time: ev.Time, SQL: d.SQL,
			Service: policy.ServiceUse{Account: d.ServiceAccount, Tagged: d.ServiceAccount != "" && d.IdentifiedBy == "tag",
				BadTag: d.TagError != "", Unusual: d.Unusual != ""},
			Function: d.Kind == "function_call", Rows: d.Rows, Bytes: d.Bytes, PIIRows: d.PIIRows,
			DistinctSubjects: d.DistinctSubjects, PIIValues: d.PIIValues, Tables: d.Tables,
			Unexplained: d.UnexplainedRows, Sequential: d.SequentialRows})
	}
	return nil
}

// replayReport writes the sums per day and employee, and with decisions
// every decision.
func replayReport(stdout io.Writer, t *replay.Trail, policyName string, decisions bool) {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DAY\tEMPLOYEE\tSTATEMENTS\tPII VALUES\tALERTS\tBLOCKS\tRULES")
	var alerts, blocks int
	for _, d := range t.Days() {
		alerts += d.Alerts
		blocks += d.Blocks
		var rules []string
		for name, n := range d.Rules {
			rules = append(rules, fmt.Sprintf("%s x%d", name, n))
		}
		slices.Sort(rules)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", d.Date, orDash(d.Employee), d.Statements, d.PIIValues, d.Alerts, d.Blocks, strings.Join(rules, ", "))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\n%d statements replayed against %s: %d alerts, %d blocks would have been raised (shadow rules listed, not counted)\n",
		t.Statements, policyName, alerts, blocks)
	if decisions {
		fmt.Fprintln(stdout)
		for _, d := range t.Decisions {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s > %d (observed %d)\t%s\n", d.Time.Format("2006-01-02T15:04:05Z07:00"),
				d.Employee, d.Action, d.Rule, orDash(d.Measure), d.Limit, d.Observed, d.SQL)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
