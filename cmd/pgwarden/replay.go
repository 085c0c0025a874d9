package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/policy/replay"
	"github.com/pgwarden/pgwarden/server"
)

const replayUsage = `Usage: pgwarden replay --audit DIR [--policy FILE] [flags]

Runs a policy over a recorded audit trail and reports, per employee and day,
what it would have alerted and blocked: tune a policy before it goes live.
Statements are replayed with their recorded totals; live, a statement that
crosses a limit is stopped at it.

Flags:
`

func runReplay(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, replayUsage); fs.PrintDefaults() }
	var (
		dir       = fs.String("audit", "", "audit log `directory` (pgwarden serve --audit-dir)")
		path      = fs.String("policy", "", "policy `file` (default: the built-in policy)")
		decisions = fs.Bool("decisions", false, "also list every decision")
		saveNorms = fs.String("save-norms", "", "write the norms learned over the trail to `file` (a state directory's norms.json): replaying rebuilds them")
		asJSON    = fs.Bool("json", false, "print decisions as JSON lines instead of the report")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "pgwarden replay: --audit DIR is required, and nothing else")
		return errUsage
	}
	p := policy.Default()
	if *path != "" {
		var err error
		if p, err = policy.Load(*path); err != nil {
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
	var last time.Time
	type dayKey struct{ day, employee string }
	type dayRow struct {
		statements, pii int64
		alerts, blocks  int
		rules           map[string]int
	}
	days := make(map[dayKey]*dayRow)
	var all []replay.Decision
	statements := 0
	err = audit.Read(*dir, nil, func(ev audit.Event) error {
		switch ev.Type {
		case audit.TypeSessionStart:
			var d struct {
				User        string `json:"user"`
				ClientAddr  string `json:"client_addr"`
				Application string `json:"application_name"`
			}
			json.Unmarshal(ev.Data, &d)
			// The event's employee; trails from before identities name
			// only the database user.
			r.StartSession(replay.Session{ID: ev.SessionID, Employee: cmp.Or(ev.Employee, d.User), ClientAddr: d.ClientAddr, Application: d.Application})
		case audit.TypeSessionEnd:
			r.EndSession(ev.SessionID)
		case audit.TypeStatement:
			var d struct {
				Kind      string           `json:"kind"`
				SQL       string           `json:"sql"`
				Rows      int64            `json:"rows"`
				Bytes     int64            `json:"bytes"`
				PIIRows   int64            `json:"pii_rows"`
				PIIValues map[string]int64 `json:"pii_values"`
				Distinct  int64            `json:"distinct_subjects"`
				Tables    []string         `json:"tables"`
				Unexpl    int64            `json:"unexplained_rows"`
				Seq       int64            `json:"sequential_rows"`
				// A service account's statement: how it was used.
				By      string `json:"identified_by"`
				Account string `json:"service_account"`
				TagErr  string `json:"tag_error"`
				Unusual string `json:"unusual"`
			}
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				return fmt.Errorf("event %d: %w", ev.Seq, err)
			}
			statements++
			last = ev.Time
			ds := r.Statement(replay.Statement{Session: ev.SessionID, Employee: ev.Employee, Time: ev.Time, SQL: d.SQL,
				Service: policy.ServiceUse{Account: d.Account, Tagged: d.Account != "" && d.By == "tag",
					BadTag: d.TagErr != "", Unusual: d.Unusual != ""},
				Function: d.Kind == "function_call", Rows: d.Rows, Bytes: d.Bytes, PIIRows: d.PIIRows,
				DistinctSubjects: d.Distinct, PIIValues: d.PIIValues, Tables: d.Tables, Unexplained: d.Unexpl, Sequential: d.Seq})
			k := dayKey{ev.Time.In(p.Location()).Format("2006-01-02"), ev.Employee}
			row := days[k]
			if row == nil {
				row = &dayRow{rules: make(map[string]int)}
				days[k] = row
			}
			row.statements++
			for _, n := range d.PIIValues {
				row.pii += n
			}
			for _, dec := range ds {
				switch {
				case dec.Shadow:
				case dec.Action == "log":
				case dec.Action == "alert":
					row.alerts++
				default:
					row.blocks++
				}
				row.rules[dec.Rule]++
			}
			all = append(all, ds...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !last.IsZero() {
		// Close the last day, as the clock would have.
		all = append(all, r.Advance(last.Add(24*time.Hour))...)
	}
	if *saveNorms != "" {
		if err := server.SaveSnapshot(model.Snapshot, *saveNorms); err != nil {
			return fmt.Errorf("--save-norms: %w", err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, d := range all {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	keys := make([]dayKey, 0, len(days))
	for k := range days {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].day != keys[j].day {
			return keys[i].day < keys[j].day
		}
		return keys[i].employee < keys[j].employee
	})
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DAY\tEMPLOYEE\tSTATEMENTS\tPII VALUES\tALERTS\tBLOCKS\tRULES")
	var alerts, blocks int
	for _, k := range keys {
		row := days[k]
		alerts += row.alerts
		blocks += row.blocks
		var rules []string
		for name, n := range row.rules {
			rules = append(rules, fmt.Sprintf("%s x%d", name, n))
		}
		slices.Sort(rules)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", k.day, orDash(k.employee), row.statements, row.pii, row.alerts, row.blocks, strings.Join(rules, ", "))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\n%d statements replayed against %s: %d alerts, %d blocks would have been raised (shadow rules listed, not counted)\n",
		statements, p.Name(), alerts, blocks)
	if *decisions {
		fmt.Fprintln(stdout)
		for _, d := range all {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s > %d (observed %d)\t%s\n", d.Time.Format("2006-01-02T15:04:05Z07:00"),
				d.Employee, d.Action, d.Rule, orDash(d.Measure), d.Limit, d.Observed, d.SQL)
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
