package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/guard"
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

	// The JSON report renders as docs/evaluation.md's tables, with this
	// run's own figures.
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "a.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	runs, err := parseRenderRuns("A s7=" + path)
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	render(&md, runs)
	n := rep.Normal
	for _, want := range []string{
		"| role | A s7 |",
		fmt.Sprintf("| **overall** (target <= 0.01) | **%.4f** (%d/%d; %d blocks) |", n.FalseAlertsPerDay, n.FalseAlerts, n.EmployeeDays, n.FalseBlocks),
		fmt.Sprintf("| recall (target >= 0.99) | %.3f |", rep.Recall),
		fmt.Sprintf("| bulk | %d/2, ", int(rep.Types[slices.IndexFunc(rep.Types, func(x typeResult) bool { return x.Type == atkBulk })].Detected)),
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("rendered tables lack %q:\n%s", want, md.String())
		}
	}
}

// TestSimulationOrgB runs a tiny organisation B (12 employees, 3 days, one
// episode of every channel attack) through a real pgwarden and checks the
// instrument rather than pgwarden's figures: every statement ran as
// intended, every role worked, the jobs read every row unhindered, and an
// attack that was not stopped shows the PII it delivered, whichever
// channel carried it. About 15 seconds.
func TestSimulationOrgB(t *testing.T) {
	cfg, err := parseFlags([]string{"--org", "b", "--employees", "12", "--days", "3", "--customers", "4000", "--episodes", "1", "--seed", "7"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	rep, err := simulate(t.Context(), cfg, &stdout, &stderr)
	if err != nil {
		t.Fatalf("simulate: %v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("%s\n%s", stderr.String(), stdout.String())
	if rep.Run.Errors != 0 {
		t.Errorf("%d unexpected statement errors", rep.Run.Errors)
	}
	if rep.Run.NormalStatements < 1000 {
		t.Errorf("ran %d normal statements, want more", rep.Run.NormalStatements)
	}
	roles := map[string]int{}
	for _, rr := range rep.Normal.ByRole {
		roles[rr.Role] = rr.EmployeeDays
	}
	for _, role := range []string{roleSupport, roleAnalyst, roleDeveloper, roleDBA, roleService, roleBackup, roleBatch} {
		if roles[role] == 0 {
			t.Errorf("role %s worked no day: %v", role, roles)
		}
	}
	if rep.Normal.JobsBlocked != 0 {
		t.Errorf("the backup or month-end job was stopped %d times", rep.Normal.JobsBlocked)
	}
	seen := map[string]bool{}
	for _, er := range rep.Episodes {
		seen[er.Type] = true
		if er.Statements == 0 {
			t.Errorf("episode %d (%s) ran no statement", er.ID, er.Type)
		}
		if !er.Blocked && er.Type != atkSlow && er.LeakedPII == 0 {
			t.Errorf("episode %d (%s) was not stopped, yet the client counted no PII: the channel is not measured", er.ID, er.Type)
		}
	}
	for _, typ := range attackTypesB {
		if !seen[typ] {
			t.Errorf("no %s episode", typ)
		}
	}
	// The dumps the policy's planner rule sees coming leak nothing.
	for _, tr := range rep.Types {
		if (tr.Type == atkBBulk || tr.Type == atkBCopy) && (tr.Blocked != tr.Episodes || tr.LeakPIIMax != 0) {
			t.Errorf("%s: %d of %d blocked, up to %v PII leaked; want all refused before any row", tr.Type, tr.Blocked, tr.Episodes, tr.LeakPIIMax)
		}
	}
	if !strings.Contains(stdout.String(), "organisation B") || !strings.Contains(stdout.String(), "backup and batch jobs stopped") {
		t.Error("the report lacks organisation B's figures")
	}
}

// TestClientDecode checks the simulator's ground truth decodes what a
// client would: hex bytea, base64 text and binary arrays.
func TestClientDecode(t *testing.T) {
	email := patientEmail(42)
	hexed := []byte(`\x` + hex.EncodeToString([]byte(email)))
	b64 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(email+"|", 4)))
	b64 = b64[:76] + "\n" + b64[76:]
	w := &world{cfg: config{org: orgB}}
	for _, c := range []struct {
		name string
		v    []byte
		want int
	}{
		{"plain", []byte(email), 1},
		{"hex bytea", hexed, 1},
		{"base64 with line breaks", []byte(b64), 4},
		{"not base64", []byte("abcdefgh!"), 0},
	} {
		if got := w.countPII(c.v); got != c.want {
			t.Errorf("%s: %d PII values, want %d", c.name, got, c.want)
		}
	}
	arr := binary.BigEndian.AppendUint32(nil, 1)
	arr = binary.BigEndian.AppendUint32(arr, 0)
	arr = binary.BigEndian.AppendUint32(arr, 25)
	arr = binary.BigEndian.AppendUint32(arr, 2)
	arr = binary.BigEndian.AppendUint32(arr, 1)
	for _, s := range []string{"Aiko Okafor", email} {
		arr = binary.BigEndian.AppendUint32(arr, uint32(len(s)))
		arr = append(arr, s...)
	}
	txt, ok := binaryArrayText(arr)
	if !ok || w.countPII(txt) != 2 {
		t.Errorf("binary array: %q %v, want 2 PII values", txt, ok)
	}
}

// TestAboutEpisode: an alert after an episode is the episode's when the
// reads it counts reach back into it, not otherwise.
func TestAboutEpisode(t *testing.T) {
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	w := &world{cfg: config{start: start, days: 10}, employees: []employee{{Name: "ann"}, {Name: "bob"}}}
	w.active = [][]bool{make([]bool, 10), make([]bool, 10)}
	for _, d := range []int{0, 1, 2, 5, 6, 7} { // Mon-Wed, then Sat-Mon
		w.active[0][d] = true
	}
	w.episodes = []episode{{Type: "keyless-sweep", Employee: "ann", Start: start.Add(24*time.Hour + 12*time.Hour), End: start.Add(24*time.Hour + 13*time.Hour)}}
	at := func(day int, h int) time.Time {
		return start.Add(time.Duration(day)*24*time.Hour + time.Duration(h)*time.Hour)
	}
	for _, c := range []struct {
		name string
		d    guard.Decision
		want bool
	}{
		{"in the window", guard.Decision{Employee: "ann", Time: at(1, 13)}, true},
		{"24h rule the next morning", guard.Decision{Employee: "ann", Time: at(2, 9), Window: "24h", Rule: "day-pii-alert"}, true},
		{"24h rule two days on", guard.Decision{Employee: "ann", Time: at(3, 15), Window: "24h"}, false},
		{"1h rule the next morning", guard.Decision{Employee: "ann", Time: at(2, 9), Window: "1h"}, false},
		{"statement rule the next morning", guard.Decision{Employee: "ann", Time: at(2, 9)}, false},
		{"novelty with its history window", guard.Decision{Employee: "ann", Time: at(2, 9), Window: "30d", Kind: "novel_table"}, false},
		{"drift over 2 active days", guard.Decision{Employee: "ann", Time: at(2, 23), Window: "2d", Kind: "drift"}, true},
		{"drift over 2 active days, later", guard.Decision{Employee: "ann", Time: at(6, 23), Window: "2d", Kind: "drift"}, false},
		{"drift over 3 active days across the gap", guard.Decision{Employee: "ann", Time: at(6, 23), Window: "3d", Kind: "drift"}, false},
		{"drift over 4 active days across the gap", guard.Decision{Employee: "ann", Time: at(6, 23), Window: "4d", Kind: "drift"}, true},
		{"another employee", guard.Decision{Employee: "bob", Time: at(2, 9), Window: "24h"}, false},
		{"drift at midnight after the last day", guard.Decision{Employee: "ann", Time: at(10, 0), Window: "2d", Kind: "drift"}, false},
	} {
		if got := w.aboutEpisode(c.d); got != c.want {
			t.Errorf("%s: aboutEpisode = %v, want %v", c.name, got, c.want)
		}
	}
}
