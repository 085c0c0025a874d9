package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRenderMarkdown: a JSON report renders as a dated section naming its
// commit and command, with the run's table; anything else is refused.
func TestRenderMarkdown(t *testing.T) {
	dir := t.TempDir()
	r := report{
		Meta: meta{Command: "go run ./test/bench -T 5", Date: "2026-12-06T07:00:00Z", CPUs: 2, Rounds: 1, Seconds: 5,
			PgwardenRev: "abc1234", Targets: []string{targetDirect, targetPgwarden}},
		Workloads: []workloadResult{{Key: "pgbench-simple-c8", Title: "pgbench -S simple -c8", Unit: "tps", CPUUnit: "us/txn",
			Samples: map[string][]sample{
				targetDirect:   {{Round: 1, Position: 1, Value: 1000}},
				targetPgwarden: {{Round: 1, Position: 2, Value: 800}},
			}}},
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bench.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := renderMarkdown(path, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## 2026-12-06, abc1234", "`go run ./test/bench -T 5`", "pgbench -S simple -c8", "(0.80)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("rendered report lacks %q:\n%s", want, out.String())
		}
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"meta": {}}`), 0o600)
	if err := renderMarkdown(bad, &out); err == nil {
		t.Error("a report without workloads rendered")
	}
}
