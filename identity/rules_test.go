package identity

import (
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/test/testca"
)

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true},
		{"*", "anything/at all", true},
		{"prod", "prod", true},
		{"prod", "Prod", false},
		{"prod", "prod2", false},
		{"prod*", "prod2", true},
		{"prod*", "pro", false},
		{"*_ro", "billing_ro", true},
		{"*_ro", "billing_rw", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"a*b*c", "abcbc", true},
		{"?", "é", true}, // one character, two bytes
		{"?", "ab", false},
		{"s?pport", "support", true},
		{`\*`, "*", true},
		{`\*`, "x", false},
		{`a\?`, "a?", true},
		{`a\?`, "ab", false},
		{"**x", "yyx", true},
		{"*", "a/b", true}, // a slash in a name is matched like any character
	} {
		g, err := compileGlob(tc.pattern)
		if err != nil {
			t.Fatalf("compile %q: %v", tc.pattern, err)
		}
		if got := g.match(tc.name); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestGlobBacktracksInLinearTime(t *testing.T) {
	g, err := compileGlob(strings.Repeat("a*", 30) + "b")
	if err != nil {
		t.Fatal(err)
	}
	// Exponential backtracking would not finish.
	if g.match(strings.Repeat("a", 5000)) {
		t.Error("matched a name without b")
	}
}

func TestSplitTarget(t *testing.T) {
	for _, tc := range []struct {
		target, db, role, err string
	}{
		{target: "prod/*", db: "prod", role: "*"},
		{target: "*/support", db: "*", role: "support"},
		{target: `a\/b/c`, db: `a\/b`, role: "c"},
		{target: "prod", err: "want database/role"},
		{target: "", err: "want database/role"},
		{target: "a/b/c", err: "more than one /"},
		{target: "/x", err: "empty database or role"},
		{target: "x/", err: "empty database or role"},
	} {
		db, role, err := splitTarget(tc.target)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: err = %v, want %q", tc.target, err, tc.err)
		case tc.err == "" && (err != nil || db != tc.db || role != tc.role):
			t.Errorf("%q = %q, %q, %v; want %q, %q", tc.target, db, role, err, tc.db, tc.role)
		}
	}
}

// TestCertRules: the first rule whose target matches decides, and a name
// with a slash cannot slip past a * on either side.
func TestCertRules(t *testing.T) {
	ca := testca.New(t, "rules CA")
	c, err := NewCerts(CertConfig{CAFiles: []string{ca.File}, Rules: []CertRule{
		{Target: "prod/monitor"},
		{Target: "prod/*", Require: true},
		{Target: "*/support", Require: true, Employees: []string{"*@support.example.com"}},
		{Target: `odd\/db/x`, Require: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		db, role string
		want     bool
	}{
		{"prod", "monitor", false}, // exception listed first
		{"prod", "alice", true},
		{"prod", "team/alice", true},
		{"staging", "alice", false},
		{"staging", "support", true},
		{"a/b", "support", true},
		{"odd/db", "x", true},
		{"oddxdb", "x", false},
		{"prod2", "alice", false},
	} {
		if got := c.RequiresCertificate(tc.db, tc.role); got != tc.want {
			t.Errorf("%s/%s requires a certificate = %v, want %v", tc.db, tc.role, got, tc.want)
		}
	}
	r := c.rule("staging", "support")
	for employee, want := range map[string]bool{
		"bob@support.example.com": true,
		"Bob@Support.Example.com": true,
		"bob@example.com":         false,
		"bob@support.example.org": false,
	} {
		if got := r.allows(employee); got != want {
			t.Errorf("rule %q allows %q = %v, want %v", r.target, employee, got, want)
		}
	}
}

func TestTargets(t *testing.T) {
	ts, err := ParseTargets([]string{"*/svc_*", `prod/dba`})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		db, role string
		want     bool
	}{
		{"any", "svc_billing", true},
		{"prod", "dba", true},
		{"staging", "dba", false},
		{"prod", "alice", false},
	} {
		if got := ts.Match(tt.db, tt.role); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.db, tt.role, got, tt.want)
		}
	}
	if _, err := ParseTargets([]string{"no-slash"}); err == nil {
		t.Error("a pattern without a slash accepted")
	}
	if ts, _ := ParseTargets(nil); ts.Match("a", "b") {
		t.Error("no pattern matched something")
	}
}
