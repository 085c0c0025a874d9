package tools

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// python is Debian's interpreter, which has the python3-psycopg package;
// another python3 on PATH (pyenv) may not.
const python = "/usr/bin/python3"

// TestPsycopg reads the source with Python's psycopg 3 (libpq): text and
// binary results, statements prepared on the server, a named cursor
// fetched in pieces, COPY out in text and binary and COPY in, pipeline
// mode and a notification. What it receives through pgwarden is what it
// receives direct.
func TestPsycopg(t *testing.T) {
	if _, err := os.Stat(python); err != nil {
		missing(t, python+" is absent")
	}
	if out, err := exec.Command(python, "-c", "import psycopg").CombinedOutput(); err != nil {
		missing(t, "psycopg 3 is not installed for "+python+" (Debian: apt-get install python3-psycopg): "+string(bytes.TrimSpace(out)))
	}
	ctx := testCtx(t)
	src := source(t)
	w := startWarden(t)
	results := map[string]map[string]any{}
	raw := map[string]string{}
	for _, e := range []endpoint{direct(t), w.endpoint} {
		cmd := exec.CommandContext(ctx, python, "testdata/psycopg_check.py", e.dsn(src))
		cmd.Env = toolEnv(e)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("psycopg via %s: %v\n%s", e.name, err, stderr.String())
		}
		var res map[string]any
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("psycopg via %s printed %q: %v", e.name, out, err)
		}
		results[e.name], raw[e.name] = res, string(out)
	}
	if raw["direct"] != raw["pgwarden"] {
		t.Errorf("psycopg received through pgwarden:\n%s\ndirect:\n%s", raw["pgwarden"], raw["direct"])
	}
	res := results["pgwarden"]
	if res["count"] != float64(nCustomers) {
		t.Errorf("count: %v", res["count"])
	}
	if got := res["copy_in"].([]any); got[0] != float64(nCustomers+1) {
		t.Errorf("COPY FROM STDIN loaded %v rows, want %d", got[0], nCustomers+1)
	}
	if res["copy_in_roundtrip"] != res["copy_in_source"] || res["copy_in_source"] == nil {
		t.Errorf("COPY out then in through pgwarden: %v, source %v", res["copy_in_roundtrip"], res["copy_in_source"])
	}
	if got := fmt.Sprint(res["pipeline"], res["notify"]); got != "[[100 5050] customer77@example.com] [[psycopg_channel ping]]" {
		t.Errorf("pipeline and notification: %s", got)
	}
	pieces := res["named_cursor"].(map[string]any)["pieces"].([]any)
	if len(pieces) != 5 || pieces[0] != float64(700) || pieces[4] != float64(nOrders-4*700) {
		t.Errorf("named cursor fetched in pieces %v, want 4 of 700 and one of %d", pieces, nOrders-4*700)
	}
}
