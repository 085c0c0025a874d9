package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestSimulationEndToEnd runs a short simulation through the same code path
// as the command: a real PostgreSQL, a freshly built pgwarden on a virtual
// clock, the built-in sim policy. About 15 seconds.
func TestSimulationEndToEnd(t *testing.T) {
	cfg, err := parseFlags([]string{
		"--employees", "8", "--days", "5", "--customers", "5000",
		"--attacks", "bulk,bulk-parameterized,string_agg,paging,parallel-sessions", "--episodes", "2",
		"--seed", "7",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	rep, err := simulate(t.Context(), cfg, &stdout, &stderr)
	if err != nil {
		t.Fatalf("simulate: %v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("%s\n%s", stderr.String(), stdout.String())
	if d := time.Since(start); d > time.Minute {
		t.Logf("took %s", d)
	}

	// Statements ran, through pgwarden, without surprises.
	if rep.Run.NormalStatements < 500 || rep.Run.AttackStatements == 0 {
		t.Errorf("ran %d normal and %d attack statements, want more", rep.Run.NormalStatements, rep.Run.AttackStatements)
	}
	if rep.Run.Errors != 0 {
		t.Errorf("%d unexpected statement errors", rep.Run.Errors)
	}
	// The clock moved, to the end of the run.
	if rep.Run.ClockPosts < 100 {
		t.Errorf("%d clock moves, want hundreds", rep.Run.ClockPosts)
	}
	if want := cfg.start.AddDate(0, 0, cfg.days).Format(time.RFC3339); rep.Run.VirtualEnd != want {
		t.Errorf("pgwarden's clock ended at %s, want %s", rep.Run.VirtualEnd, want)
	}
	// The decision log was read, and its decisions carry virtual times.
	if rep.Normal.DecisionsTotal == 0 {
		t.Fatal("no decisions read from the decision log")
	}
	for _, er := range rep.Episodes {
		if er.FirstAlert != nil && (er.FirstAlert.Before(cfg.start) || !er.FirstAlert.Before(cfg.start.AddDate(0, 0, cfg.days+1))) {
			t.Errorf("episode %d: first alert at %s, outside the virtual run", er.ID, er.FirstAlert)
		}
	}
	// The bulk dumps, in a literal text and with a bound parameter, were
	// detected and blocked. The planner sees them coming, asked with the
	// Execute's values for the parameterized one: refused before any row
	// leaves.
	for _, typ := range []string{atkBulk, atkBulkParam} {
		var bulk *typeResult
		for i := range rep.Types {
			if rep.Types[i].Type == typ {
				bulk = &rep.Types[i]
			}
		}
		if bulk == nil || bulk.Episodes != 2 {
			t.Fatalf("%s episodes: %+v", typ, bulk)
		}
		if bulk.Recall != 1 || bulk.Blocked != bulk.Episodes {
			t.Errorf("%s: recall %.2f, %d of %d blocked; want all detected and blocked", typ, bulk.Recall, bulk.Blocked, bulk.Episodes)
		}
		if bulk.LeakPIIP95 != 0 {
			t.Errorf("%s leaked %v PII values at p95; want 0 (refused on the planner's estimate)", typ, bulk.LeakPIIP95)
		}
	}
	// Floors for a short run (the full month is measured in docs/evaluation.md).
	if rep.Recall < 1 {
		t.Errorf("recall %.2f over %d episodes, want every one detected", rep.Recall, len(rep.Episodes))
	}
	if rep.Normal.FalseAlertsPerDay > 0.05 {
		t.Errorf("%.4f false alerts per employee-day on normal work, want at most 0.05 in a short run", rep.Normal.FalseAlertsPerDay)
	}
	// No false block on normal traffic under the sim policy.
	if rep.Normal.FalseBlocks != 0 || rep.Normal.FalseBlockedClient != 0 {
		t.Errorf("false blocks: %d in the decision log, %d normal statements blocked outside attack windows: %+v",
			rep.Normal.FalseBlocks, rep.Normal.FalseBlockedClient, rep.Normal.FalseBlockExamples)
	}
	if rep.Normal.EmployeeDays == 0 {
		t.Error("no employee-days of normal work")
	}
	out := stdout.String()
	for _, want := range []string{"recall overall", "false alerts per employee-day", "reproduce: go run ./test/sim"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
