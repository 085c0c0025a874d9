package main

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	Elapsed     float64
	ImportPath  string // build-output, build-fail
	FailedBuild string
}

type testKey struct{ pkg, name string }

// tempDirRE matches the random part of a t.TempDir path, which some pgx
// subtests have in their names (TestParseConfigSSLCertMode).
var tempDirRE = regexp.MustCompile(`(Test\w*?)\d{6,}/`)

// normalizeName makes a test name comparable between runs.
func normalizeName(name string) string {
	return tempDirRE.ReplaceAllString(name, "${1}*/")
}

// testResult is one test or subtest.
type testResult struct {
	action     string // pass, fail, skip; "" while running
	incomplete bool   // started but never finished: the binary crashed or timed out
	output     []string
}

// pkgResult is one package.
type pkgResult struct {
	name        string
	action      string // pass, fail, skip ("no test files")
	buildFailed bool
	elapsed     float64
	output      []string
	tests       []string // test names in start order
}

// counts are the results of a set of tests.
type counts struct{ pass, fail, skip int }

func (c *counts) add(action string) {
	switch action {
	case "pass":
		c.pass++
	case "fail":
		c.fail++
	case "skip":
		c.skip++
	}
}

// runResult is one run of the suite.
type runResult struct {
	target     string
	elapsed    time.Duration
	exitStatus string
	keep       int

	tests    map[testKey]*testResult
	pkgs     map[string]*pkgResult
	pkgOrder []string
	last     event
}

func newRunResult(target string, keep int) *runResult {
	return &runResult{
		target: target, keep: max(keep, 40), exitStatus: "exit status 0",
		tests: make(map[testKey]*testResult), pkgs: make(map[string]*pkgResult),
	}
}

func (r *runResult) pkg(name string) *pkgResult {
	p := r.pkgs[name]
	if p == nil {
		p = &pkgResult{name: name}
		r.pkgs[name] = p
		r.pkgOrder = append(r.pkgOrder, name)
	}
	return p
}

// add records one JSON line and returns the package when the line ends it.
func (r *runResult) add(line []byte) *pkgResult {
	var e event
	if err := json.Unmarshal(line, &e); err != nil {
		return nil // not an event: go test prints some build errors as plain text
	}
	r.last = e
	if e.Package == "" && e.ImportPath != "" { // build-output, build-fail
		name := strings.Fields(e.ImportPath)[0]
		p := r.pkg(name)
		if e.Action == "build-output" {
			p.output = appendCapped(p.output, e.Output, r.keep)
		}
		if e.Action == "build-fail" {
			p.buildFailed = true
		}
		return nil
	}
	if e.Package == "" {
		return nil
	}
	p := r.pkg(e.Package)
	if e.Test == "" {
		switch e.Action {
		case "output":
			p.output = appendCapped(p.output, e.Output, r.keep)
		case "pass", "fail", "skip":
			p.action, p.elapsed = e.Action, e.Elapsed
			if e.FailedBuild != "" {
				p.buildFailed = true
			}
			r.finishPackage(p)
			return p
		}
		return nil
	}
	name := normalizeName(e.Test)
	k := testKey{e.Package, name}
	t := r.tests[k]
	if t == nil {
		t = &testResult{}
		r.tests[k] = t
		p.tests = append(p.tests, name)
	}
	switch e.Action {
	case "output":
		if s := e.Output; !strings.HasPrefix(s, "=== ") {
			t.output = appendCapped(t.output, s, r.keep)
		}
	case "pass", "fail", "skip":
		t.action = e.Action
	}
	return nil
}

// finishPackage marks the tests of p that never finished as failed.
func (r *runResult) finishPackage(p *pkgResult) {
	for _, name := range p.tests {
		if t := r.tests[testKey{p.name, name}]; t.action == "" {
			t.action, t.incomplete = "fail", true
		}
	}
}

// finish ends the run: packages that never reported are failed.
func (r *runResult) finish() {
	for _, name := range r.pkgOrder {
		if p := r.pkgs[name]; p.action == "" {
			p.action = "fail"
			r.finishPackage(p)
		}
	}
}

// lastTestLine describes the last event if it ended a test (for -v).
func (r *runResult) lastTestLine() string {
	e := r.last
	if e.Test == "" || (e.Action != "pass" && e.Action != "fail" && e.Action != "skip") {
		return ""
	}
	return fmt.Sprintf("%-4s %s %s (%.2fs)", strings.ToUpper(e.Action), shortPkg(e.Package), e.Test, e.Elapsed)
}

// counts returns the results of the package's top-level tests, or of all its
// tests and subtests.
func (r *runResult) counts(pkg string, subtests bool) counts {
	var c counts
	p := r.pkgs[pkg]
	if p == nil {
		return c
	}
	for _, name := range p.tests {
		if !subtests && strings.Contains(name, "/") {
			continue
		}
		c.add(r.tests[testKey{pkg, name}].action)
	}
	return c
}

func (p *pkgResult) summary() string {
	status := map[string]string{"pass": "ok  ", "fail": "FAIL", "skip": "?   "}[p.action]
	if p.buildFailed {
		status = "FAIL (build)"
	}
	return fmt.Sprintf("%s %s %.1fs", status, p.name, p.elapsed)
}

func appendCapped(lines []string, s string, keep int) []string {
	lines = append(lines, strings.TrimRight(s, "\n"))
	if len(lines) > 2*keep {
		lines = append(lines[:0], lines[len(lines)-keep:]...)
	}
	return lines
}

func shortPkg(p string) string {
	if p == "github.com/jackc/pgx/v5" {
		return "pgx"
	}
	return strings.TrimPrefix(p, "github.com/jackc/pgx/v5/")
}

// report prints the comparison and returns the number of regressions: tests
// (top level) that pass directly but fail, or do not run, through pgwarden.
func report(w io.Writer, o *options, runs []*runResult, env *environment, reruns map[testKey]rerun) int {
	var pkgs []string
	seen := map[string]bool{}
	for _, r := range runs {
		for _, p := range r.pkgOrder {
			if !seen[p] {
				seen[p] = true
				pkgs = append(pkgs, p)
			}
		}
	}

	fmt.Fprintln(w)
	width := len("total (top-level tests)")
	for _, p := range pkgs {
		width = max(width, len(shortPkg(p)))
	}
	cell := "  | %6s %6s %7s %7s"
	hdr := fmt.Sprintf("%-*s", width, "")
	sub := fmt.Sprintf("%-*s", width, "package")
	for _, r := range runs {
		hdr += fmt.Sprintf("  | %-29s", r.target)
		sub += fmt.Sprintf(cell, "passed", "failed", "skipped", "time")
	}
	fmt.Fprintln(w, hdr)
	fmt.Fprintln(w, sub)
	fmt.Fprintln(w, strings.Repeat("-", len(sub)))
	totals := make([]counts, len(runs))
	all := make([]counts, len(runs))
	for _, p := range pkgs {
		line := fmt.Sprintf("%-*s", width, shortPkg(p))
		for i, r := range runs {
			pr := r.pkgs[p]
			if pr == nil {
				line += fmt.Sprintf(cell, "-", "-", "-", "-")
				continue
			}
			c := r.counts(p, false)
			a := r.counts(p, true)
			totals[i].pass, totals[i].fail, totals[i].skip = totals[i].pass+c.pass, totals[i].fail+c.fail, totals[i].skip+c.skip
			all[i].pass, all[i].fail, all[i].skip = all[i].pass+a.pass, all[i].fail+a.fail, all[i].skip+a.skip
			fail := fmt.Sprint(c.fail)
			if pr.buildFailed {
				fail = "build"
			} else if pr.action == "fail" && c.fail == 0 {
				fail = "pkg"
			}
			line += fmt.Sprintf(cell, fmt.Sprint(c.pass), fail, fmt.Sprint(c.skip), fmt.Sprintf("%.0fs", pr.elapsed))
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w, strings.Repeat("-", len(sub)))
	line := fmt.Sprintf("%-*s", width, "total (top-level tests)")
	line2 := fmt.Sprintf("%-*s", width, "total (with subtests)")
	for i, r := range runs {
		line += fmt.Sprintf(cell, fmt.Sprint(totals[i].pass), fmt.Sprint(totals[i].fail), fmt.Sprint(totals[i].skip), r.elapsed.Round(time.Second).String())
		line2 += fmt.Sprintf(cell, fmt.Sprint(all[i].pass), fmt.Sprint(all[i].fail), fmt.Sprint(all[i].skip), "")
	}
	fmt.Fprintln(w, line)
	fmt.Fprintln(w, line2)
	fmt.Fprintln(w, "(time: the package's test binary; total: wall time of the whole go test -p run)")

	fmt.Fprintln(w)
	for _, r := range runs {
		vars := env.vars(r.target)
		fmt.Fprintf(w, "%s run: %s, %s; PGX_TEST_* set: %s\n", r.target, r.elapsed.Round(time.Second), r.exitStatus,
			strings.Join(trimAll(sortedKeys(vars), "PGX_TEST_"), ", "))
	}

	if len(runs) == 1 {
		listFailures(w, o, runs[0])
		return 0
	}
	direct, proxied := runs[0], runs[1]

	tops, groups, nregressed := regressions(direct, proxied)
	fmt.Fprintf(w, "\nTests that pass direct but fail through pgwarden: %d top-level (%d with subtests)\n", len(tops), nregressed)
	counted := 0
	for _, top := range tops {
		note := ""
		if rr, ok := reruns[top]; ok {
			note = fmt.Sprintf("  [rerun alone through pgwarden: passed %d of %d", rr.passed, rr.runs)
			if rr.passed > 0 {
				note += ": flaky"
			}
			note += "]"
			if rr.passed > 0 && o.allowFlaky {
				counted--
			}
		}
		counted++
		fmt.Fprintf(w, "  %s %s%s\n", shortPkg(top.pkg), top.name, note)
		for _, k := range groups[top] {
			pt := proxied.tests[k]
			if k.name != top.name {
				fmt.Fprintf(w, "      %s: %s\n", k.name, describe(pt))
			}
		}
		// Show the output of the innermost failures: a parent's output is
		// only the "--- FAIL" lines.
		for _, k := range groups[top] {
			pt := proxied.tests[k]
			if pt == nil || hasRegressedChild(k, groups[top]) {
				continue
			}
			fmt.Fprintf(w, "      --- %s: %s\n", k.name, describe(pt))
			for _, l := range lastLines(pt.output, o.keepTail) {
				fmt.Fprintf(w, "        %s\n", l)
			}
		}
	}

	var skipped []testKey
	for k, t := range direct.tests {
		if pt := proxied.tests[k]; t.action == "pass" && pt != nil && pt.action == "skip" && !strings.Contains(k.name, "/") {
			skipped = append(skipped, k)
		}
	}
	for k, t := range direct.tests {
		if pt := proxied.tests[k]; t.action == "pass" && pt != nil && pt.action == "skip" && strings.Contains(k.name, "/") {
			if p := proxied.tests[testKey{k.pkg, topName(k.name)}]; p == nil || p.action != "skip" {
				skipped = append(skipped, k)
			}
		}
	}
	sortKeys(skipped)
	fmt.Fprintf(w, "\nTests that pass direct but are skipped through pgwarden: %d\n", len(skipped))
	for _, k := range skipped {
		fmt.Fprintf(w, "  %s %s: %s\n", shortPkg(k.pkg), k.name, skipReason(proxied.tests[k]))
	}

	var fixed []testKey
	for k, t := range proxied.tests {
		if dt := direct.tests[k]; t.action == "pass" && dt != nil && dt.action == "fail" {
			fixed = append(fixed, k)
		}
	}
	sortKeys(fixed)
	if len(fixed) > 0 {
		fmt.Fprintf(w, "\nTests that fail direct but pass through pgwarden: %d\n", len(fixed))
		for _, k := range fixed {
			fmt.Fprintf(w, "  %s %s\n", shortPkg(k.pkg), k.name)
		}
	}
	listFailures(w, o, direct)
	return counted
}

// rerun is what became of a regressed test run again on its own.
type rerun struct{ runs, passed int }

// regressions returns the top-level tests that pass direct but fail through
// pgwarden, each with the tests and subtests concerned, and the number of
// those. A test that did not run through pgwarden counts unless its top-level
// test passed there (subtest names can differ between runs).
func regressions(direct, proxied *runResult) (tops []testKey, groups map[testKey][]testKey, n int) {
	var regressed []testKey
	for k, t := range direct.tests {
		if t.action != "pass" {
			continue
		}
		pt := proxied.tests[k]
		if pt != nil && pt.action == "fail" {
			regressed = append(regressed, k)
		}
		if pt == nil {
			if top := proxied.tests[testKey{k.pkg, topName(k.name)}]; top == nil || top.action != "pass" {
				regressed = append(regressed, k)
			}
		}
	}
	sortKeys(regressed)
	groups = map[testKey][]testKey{}
	for _, k := range regressed {
		top := testKey{k.pkg, topName(k.name)}
		if _, ok := groups[top]; !ok {
			tops = append(tops, top)
		}
		groups[top] = append(groups[top], k)
	}
	return tops, groups, len(regressed)
}

// listFailures lists the tests that fail in r without a comparison.
func listFailures(w io.Writer, o *options, r *runResult) {
	var failed []testKey
	for k, t := range r.tests {
		if t.action == "fail" && !strings.Contains(k.name, "/") {
			failed = append(failed, k)
		}
	}
	sortKeys(failed)
	if len(failed) == 0 {
		return
	}
	fmt.Fprintf(w, "\nTests that fail in the %s run: %d\n", r.target, len(failed))
	for _, k := range failed {
		fmt.Fprintf(w, "  %s %s: %s\n", shortPkg(k.pkg), k.name, describe(r.tests[k]))
	}
}

func topName(name string) string { return strings.SplitN(name, "/", 2)[0] }

func hasRegressedChild(k testKey, group []testKey) bool {
	for _, g := range group {
		if g.pkg == k.pkg && strings.HasPrefix(g.name, k.name+"/") {
			return true
		}
	}
	return false
}

func describe(t *testResult) string {
	switch {
	case t == nil:
		return "did not run"
	case t.incomplete:
		return "did not finish (test binary crashed or timed out)"
	}
	return map[string]string{"pass": "passed", "fail": "failed", "skip": "skipped"}[t.action]
}

// skipReason returns the message a skipped test logged.
func skipReason(t *testResult) string {
	for i := len(t.output) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(t.output[i]); l != "" && !strings.HasPrefix(l, "--- SKIP") {
			return l
		}
	}
	return "skipped"
}

func lastLines(lines []string, n int) []string {
	var out []string
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

func sortKeys(ks []testKey) {
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].pkg != ks[j].pkg {
			return ks[i].pkg < ks[j].pkg
		}
		return ks[i].name < ks[j].name
	})
}

func trimAll(ss []string, prefix string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.TrimPrefix(s, prefix)
	}
	return out
}
