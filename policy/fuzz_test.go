package policy

import (
	"os"
	"path/filepath"
	"testing"
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
	})
}
