package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// renderMarkdown prints a JSON report as the figures of docs/performance.md:
// what ran, on what, at which commit, and the table the run printed. The
// document is regenerated from a run this way, never edited by hand.
func renderMarkdown(path string, out io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(r.Workloads) == 0 {
		return fmt.Errorf("%s: no workloads: not a report of test/bench -json", path)
	}
	m := r.Meta
	rev := m.PgwardenRev
	if rev == "" {
		rev = "an unknown commit"
	}
	date, _, _ := strings.Cut(m.Date, "T")
	fmt.Fprintf(out, "## %s, %s\n\n", date, rev)
	fmt.Fprintf(out, "`%s`, %d rounds of %d s, %.0f s in all, on %d CPUs (%s), load %s at the start.\n",
		m.Command, m.Rounds, m.Seconds, m.ElapsedSeconds, m.CPUs, m.CPUModel, m.LoadStart)
	fmt.Fprintf(out, "Rendered from its JSON with `go run ./test/bench -render FILE`.\n\n")
	fmt.Fprintln(out, "```")
	var table strings.Builder
	r.summarize()
	r.writeTable(&table)
	fmt.Fprint(out, strings.TrimLeft(table.String(), "\n"))
	fmt.Fprintln(out, "```")
	for _, e := range r.Errors {
		fmt.Fprintf(out, "\nError during the run: %s\n", e)
	}
	return nil
}
