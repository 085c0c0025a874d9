package policy

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/policy/pii"
)

// FuzzParse checks that no input makes Parse panic, that it returns either
// a Policy or errors, and that a parsed Policy answers queries.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(example),
		classifyPolicy,
		rulesPolicy,
		appliesPolicy,
		exceededPolicy,
		DefaultYAML,
		"version: 1\nrules:\n  - {name: a, subjects: [group:g], when: {hours: '23:59-00:01', bytes: 1KiB}, action: log}\ngroups: {g: {roles: [r]}}\n",
		"",
		"version: 1\n",
		"version: 1\npii:\n  columns:\n    - {match: '\"a.b\".[!x-z]*.c?', category: email}\n",
		"version: 1\npii:\n  exclude:\n    - match: a.[b.c\n",
		"version: 1\npii: &a\n  columns: *a\n",
		"version: 1\npii:\n  detectors: {custom: [{name: x, category: ip, pattern: '(?i)a+'}]}\n",
		"- [\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if (p == nil) == (err == nil) {
			t.Fatalf("Parse returned policy %v and error %v", p != nil, err)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		for _, k := range []colKey{{"a.b", "x", "c1"}, {"public", "customers", "email"}, {"", "", ""}} {
			p.Classify(k.schema, k.table, k.column)
			p.Excluded(k.schema, k.table, k.column)
		}
		p.Detectors()
		c := &Context{
			User: "alice", Roles: []string{"r", "analyst"}, ClientAddr: netip.MustParseAddr("10.0.0.1"),
			Application: "psql", Time: time.Date(2024, 1, 15, 23, 59, 0, 0, time.UTC),
			Tables: []string{"public.customers", "a.b.c"}, Kinds: []StatementKind{KindSelect, KindDblink},
		}
		f := &Figures{Rows: 10, Bytes: 1 << 20, PIIRows: 5, DistinctSubjects: 3, PIIValues: map[pii.Category]int64{pii.Email: 7}}
		for _, e := range p.Explain(c) {
			if e.Rule.Applies(c) != e.Applies || e.Applies != (e.Why == "") {
				t.Fatalf("rule %s: Explain %+v disagrees with Applies", e.Rule.Name, e)
			}
			e.Rule.Exceeded(f)
			e.Rule.Limits()
			_ = e.Rule.Scope.Window()
		}
		p.GroupRoles()
		p.Location()
	})
}
