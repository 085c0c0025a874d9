package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/policy/pii"
)

func TestParseExample(t *testing.T) {
	p, err := Load(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := DetectorConfig{
		Enabled:    true,
		Categories: []pii.Category{"email", "phone", "national_id", "card", "iban", "ip"},
		Custom: []CustomDetector{
			{Name: "employee_number", Category: "custom:employee_number", Pattern: "EMP-[0-9]{6}"},
		},
	}
	if got := p.Detectors(); !reflect.DeepEqual(got, want) {
		t.Errorf("Detectors() = %+v, want %+v", got, want)
	}
	for _, tc := range []struct {
		schema, table, column string
		want                  pii.Category
	}{
		{"public", "customers", "email", pii.Email},
		{"sales", "customers", "phone", pii.Phone},
		{"crm", "leads", "ssn", pii.NationalID},
		{"public", "customers", "notes", "custom:free_text"},
		{"Sales.EU", "Leads", "FullName", pii.Name},
		{"public", "customers", "birth_date", pii.DateOfBirth},
		{"public", "customers", "dirth_date", pii.DateOfBirth},
		{"public", "settings", "email", ""},
		{"public", "tickets", "support_email", ""},
	} {
		got, ok := p.Classify(tc.schema, tc.table, tc.column)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("Classify(%q, %q, %q) = %q, %v; want %q", tc.schema, tc.table, tc.column, got, ok, tc.want)
		}
	}
	if !p.Excluded("public", "settings", "anything") {
		t.Error("public.settings.anything not excluded")
	}
}

func TestParseDefaults(t *testing.T) {
	for _, src := range []string{
		"version: 1\n",
		"version: 1\npii:\n",
		"version: 1\npii:\n  columns:\n  detectors:\n",
	} {
		p, err := Parse("p.yaml", []byte(src))
		if err != nil {
			t.Fatalf("Parse(%q): %v", src, err)
		}
		if got, want := p.Detectors(), Default().Detectors(); !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%q).Detectors() = %+v, want the default %+v", src, got, want)
		}
	}
	p, err := Parse("p.yaml", []byte("version: 1\npii:\n  detectors:\n    enabled: false\n    categories: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Detectors(); d.Enabled || len(d.Categories) != 0 {
		t.Errorf("Detectors() = %+v, want disabled with an empty category list", d)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string // one line per error, without the "p.yaml:" prefix
	}{
		{"empty file", "", []string{"empty policy file"}},
		{"comments only", "# nothing\n", []string{"empty policy file"}},
		{"not a mapping", "- 1\n", []string{`1:1: policy: expected a mapping, got a list`}},
		{"missing version", "pii:\n  columns: []\n", []string{`1:1: missing required key "version"`}},
		{"bad version", "version: 2\n", []string{`1:10: unsupported version 2 (this pgwarden reads version 1)`}},
		{"version not int", "version: one\n", []string{`1:10: version: expected an integer, got str "one"`}},
		{"unknown top-level key", "version: 1\nactions: []\n", []string{`2:1: unknown key "actions" in policy (want canaries, explained_access, groups, masking, mode, norms, pii, rules, service_accounts, timezone, version)`}},
		{"repeated key", "version: 1\nversion: 1\n", []string{`2:1: key "version" repeated (first at line 1)`}},
		{"yaml syntax", "version: 1\npii: [\n", []string{`2: did not find expected node content`}},
		{"two documents", "version: 1\n---\nversion: 1\n", []string{`2:1: a policy file holds one YAML document`}},
		{"alias", "version: &v 1\npii: &a\n  columns: *v\nx: *a\n", []string{
			`3:12: YAML aliases are not supported`,
			`4:1: unknown key "x" in policy (want canaries, explained_access, groups, masking, mode, norms, pii, rules, service_accounts, timezone, version)`,
		}},
		{"unknown pii key", "version: 1\npii:\n  column: []\n", []string{
			`3:3: unknown key "column" in pii (want columns, detectors, exclude)`,
		}},
		{"unknown category", `version: 1
pii:
  columns:
    - match: public.customers.email
      category: e-mail
`, []string{`5:17: category: unknown category "e-mail" (want one of email, name, phone, national_id, card, address, date_of_birth, ip, iban, or custom:<name>)`}},
		{"bad custom category", `version: 1
pii:
  columns:
    - match: a.b.c
      category: "custom:"
`, []string{`5:17: category: bad custom category "custom:": want custom:<name> with letters, digits, '_' or '-'`}},
		{"missing category and unknown key", `version: 1
pii:
  columns:
    - match: a.b.c
      kind: email
`, []string{
			`4:7: pii.columns entry: missing required key "category"`,
			`5:7: unknown key "kind" in pii.columns entry (want category, match)`,
		}},
		{"two parts", `version: 1
pii:
  columns:
    - {match: customers.email, category: email}
`, []string{`4:15: match: "customers.email" has 2 name parts, want schema.table.column`}},
		{"four parts", `version: 1
pii:
  columns:
    - {match: db.public.customers.email, category: email}
`, []string{`4:15: match: "db.public.customers.email" has 4 name parts, want schema.table.column`}},
		{"empty part", `version: 1
pii:
  columns:
    - {match: public..email, category: email}
`, []string{`4:15: match: empty name part in "public..email": want schema.table.column`}},
		{"malformed globs", `version: 1
pii:
  columns:
    - match: public.[abc.email
      category: email
    - match: public.t.c\
      category: email
    - match: public.[z-a].c
      category: email
  exclude:
    - match: 'public.t]x.c'
`, []string{
			`4:14: match: malformed glob "[abc": unterminated character class`,
			`6:14: match: malformed glob "c\\": trailing backslash`,
			`8:14: match: malformed glob "[z-a]": bad range 'z'-'a' in character class`,
			`11:14: match: malformed glob "t]x": unmatched ']'`,
		}},
		{"bad quoted identifiers", `version: 1
pii:
  exclude:
    - match: '"public.t.c'
    - match: '"".t.c'
    - match: '"a"b.t.c'
    - match: 'a"b".t.c'
`, []string{
			`4:14: match: unterminated quoted identifier in "\"public.t.c"`,
			`5:14: match: empty quoted identifier in "\"\".t.c"`,
			`6:14: match: unexpected 'b' after quoted identifier in "\"a\"b.t.c"`,
			`7:14: match: unexpected '"' in "a\"b\".t.c": quote a whole name part`,
		}},
		{"duplicates", `version: 1
pii:
  columns:
    - match: public.customers.email
      category: email
    - match: public.customers.email
      category: email
    - match: "*.customers.phone"
      category: phone
    - match: '*.customers.phone'
      category: custom:phone
    - match: '"public".customers.email'
      category: email
  exclude:
    - match: a.b.*
    - match: a.b.*
`, []string{
			`6:14: duplicate column entry "public.customers.email" (first at line 4, column 14)`,
			`10:14: column "*.customers.phone" declared again as "custom:phone" (first as "phone" at line 8, column 14)`,
			`12:14: duplicate column entry "\"public\".customers.email" (first at line 4, column 14)`,
			`16:14: duplicate exclude entry "a.b.*" (first at line 15, column 14)`,
		}},
		{"detectors", `version: 1
pii:
  detectors:
    enabled: maybe
    categories: [email, name, email, postcode]
    custom:
      - name: emp
        category: custom:emp
        pattern: 'EMP-[0-9'
      - name: emp
        category: custom:emp
        pattern: x
      - name: bad name
        category: custom:x
        pattern: ""
      - name: ok
`, []string{
			`4:14: enabled: expected true or false, got str "maybe"`,
			`5:25: categories: no built-in detector for "name" (detectors exist for email, phone, national_id, card, iban, ip; use custom for others)`,
			`5:31: categories: "email" listed twice (first at line 5)`,
			`5:38: categories: unknown category "postcode" (want one of email, name, phone, national_id, card, address, date_of_birth, ip, iban, or custom:<name>)`,
			"9:18: pattern: error parsing regexp: missing closing ]: `[0-9`",
			`10:15: custom detector "emp" defined twice (first at line 7)`,
			`13:15: name: "bad name": want letters, digits, '_' or '-'`,
			`15:18: pattern: empty regular expression`,
			`16:9: pii.detectors.custom entry: missing required key "category"`,
			`16:9: pii.detectors.custom entry: missing required key "pattern"`,
		}},
		{"wrong shapes", `version: 1
pii:
  columns:
    match: a.b.c
  exclude:
    - a.b.c
  detectors: [email]
`, []string{
			`4:5: pii.columns: expected a list, got a mapping`,
			`6:7: pii.exclude entry: expected a mapping, got str "a.b.c"`,
			`7:14: pii.detectors: expected a mapping, got a list`,
		}},
		{"non-string match", "version: 1\npii:\n  exclude:\n    - match: 12\n", []string{
			`4:14: match: expected a string, got int "12"`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("Parse succeeded, want errors:\n%s", strings.Join(tc.want, "\n"))
			}
			if p != nil {
				t.Error("Parse returned a Policy along with errors")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an ErrorList", err)
			}
			var got []string
			for _, line := range strings.Split(err.Error(), "\n") {
				got = append(got, strings.TrimPrefix(strings.TrimPrefix(line, "p.yaml:"), " "))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if len(list) != len(tc.want) {
				t.Errorf("ErrorList has %d errors, want %d", len(list), len(tc.want))
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("version: 1\nbogus: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2:1: ") {
		t.Errorf("Load(bad) = %v, want an error at %s:2:1", err, path)
	}
}
