package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// renderRun is one report of a --render, with the label its column has.
type renderRun struct {
	label string
	rep   report
}

// parseRenderRuns reads the reports a --render names, as
// "LABEL=FILE,LABEL=FILE" (a FILE alone is labelled with its org and seed).
func parseRenderRuns(spec string) ([]renderRun, error) {
	var runs []renderRun
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		label, path, ok := strings.Cut(item, "=")
		if !ok {
			label, path = "", item
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if label == "" {
			label = fmt.Sprintf("%s s%d", strings.ToUpper(r.Meta.Org), r.Meta.Seed)
		}
		runs = append(runs, renderRun{label: label, rep: r})
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("--render: no report named")
	}
	return runs, nil
}

// render writes the Markdown tables of docs/evaluation.md from the runs'
// reports, so that the figures there are regenerated, never edited: the
// commands, false alerts per employee-day by role, the overall figures,
// and recall per attack type.
func render(w io.Writer, runs []renderRun) {
	fmt.Fprintln(w, "Runs (each column one `--json` report):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "```sh")
	for _, r := range runs {
		at := ""
		if c := r.rep.Meta.Commit; c != "" {
			at = " (at " + c + ")"
		}
		fmt.Fprintf(w, "# %s%s\n%s\n", r.label, at, r.rep.Meta.Command)
	}
	fmt.Fprintln(w, "```")
	fmt.Fprintln(w)

	var roles []string
	for _, r := range runs {
		for _, rr := range r.rep.Normal.ByRole {
			if rr.Role != "organisation" && !slices.Contains(roles, rr.Role) {
				roles = append(roles, rr.Role)
			}
		}
	}
	header := func(first string) {
		fmt.Fprintf(w, "| %s |", first)
		for _, r := range runs {
			fmt.Fprintf(w, " %s |", r.label)
		}
		fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(runs)))
	}
	fmt.Fprintln(w, "Normal traffic, false alerts per employee-day by role (rate, alerts on active employee-days,")
	fmt.Fprintln(w, "false blocks in the decision log). Organisation-level alerts name no employee and count in the")
	fmt.Fprintln(w, "overall figure only:")
	fmt.Fprintln(w)
	header("role")
	for _, role := range roles {
		fmt.Fprintf(w, "| %s |", role)
		for _, r := range runs {
			i := slices.IndexFunc(r.rep.Normal.ByRole, func(x roleResult) bool { return x.Role == role })
			if i < 0 {
				fmt.Fprint(w, " — |")
				continue
			}
			x := r.rep.Normal.ByRole[i]
			fmt.Fprintf(w, " %.3f (%d/%d; %d blocks) |", x.FalseAlertsPerDay, x.FalseAlerts, x.EmployeeDays, x.FalseBlocks)
		}
		fmt.Fprintln(w)
	}
	row := func(name string, cell func(r report) string) {
		fmt.Fprintf(w, "| %s |", name)
		for _, r := range runs {
			fmt.Fprintf(w, " %s |", cell(r.rep))
		}
		fmt.Fprintln(w)
	}
	row("organisation", func(r report) string { return fmt.Sprintf("%d alerts", r.Normal.UnattributedAlerts) })
	row("**overall** (target <= 0.01)", func(r report) string {
		n := r.Normal
		return fmt.Sprintf("**%.4f** (%d/%d; %d blocks)", n.FalseAlertsPerDay, n.FalseAlerts, n.EmployeeDays, n.FalseBlocks)
	})
	row("jobs stopped (target 0)", func(r report) string { return fmt.Sprint(r.Normal.JobsBlocked) })
	row("recall (target >= 0.99)", func(r report) string { return fmt.Sprintf("%.3f", r.Recall) })
	fmt.Fprintln(w)

	fmt.Fprintln(w, "False alerts by rule:")
	fmt.Fprintln(w)
	for _, r := range runs {
		var by []string
		for rule, n := range r.rep.Normal.FalseByRule {
			by = append(by, fmt.Sprintf("%s %d", rule, n))
		}
		slices.Sort(by)
		if len(by) == 0 {
			by = []string{"none"}
		}
		fmt.Fprintf(w, "- %s: %s\n", r.label, strings.Join(by, ", "))
	}
	fmt.Fprintln(w)

	var orgs []string
	for _, r := range runs {
		if !slices.Contains(orgs, r.rep.Meta.Org) {
			orgs = append(orgs, r.rep.Meta.Org)
		}
	}
	fmt.Fprintln(w, "Attacks, per run: episodes detected / episodes, blocked, the most PII the client received")
	fmt.Fprintln(w, "before the block in one episode, and the median working days to the first alert (1: the day")
	fmt.Fprintln(w, "it began); then the first alerts' rules of the organisation's first run:")
	for _, org := range orgs {
		var of []renderRun
		for _, r := range runs {
			if r.rep.Meta.Org == org {
				of = append(of, r)
			}
		}
		attackTable(w, of)
	}
}

// attackTable writes the attack table of runs of one organisation.
func attackTable(w io.Writer, runs []renderRun) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| attack |")
	for _, r := range runs {
		fmt.Fprintf(w, " %s |", r.label)
	}
	fmt.Fprintf(w, " first alerts (%s) |\n|---|%s---|\n", runs[0].label, strings.Repeat("---|", len(runs)))
	for _, t := range runs[0].rep.Types {
		fmt.Fprintf(w, "| %s |", t.Type)
		for _, r := range runs {
			i := slices.IndexFunc(r.rep.Types, func(x typeResult) bool { return x.Type == t.Type })
			if i < 0 {
				fmt.Fprint(w, " — |")
				continue
			}
			x := r.rep.Types[i]
			days := "—"
			if x.Detected > 0 {
				days = fmt.Sprintf("%g d", x.DaysMedian)
			}
			fmt.Fprintf(w, " %d/%d, %d blocked, %s PII, %s |", x.Detected, x.Episodes, x.Blocked, commas(int64(x.LeakPIIMax)), days)
		}
		fmt.Fprintf(w, " %s |\n", t.FirstAlerts)
	}
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + commas(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
