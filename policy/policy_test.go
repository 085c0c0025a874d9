package policy

import (
	"fmt"
	"testing"

	"github.com/pgwarden/pgwarden/policy/pii"
)

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return p
}

const classifyPolicy = `version: 1
pii:
  columns:
    - match: shop.*.email
      category: custom:glob_first
    - match: public.customers.email
      category: email
    - match: shop.orders.email
      category: email
    - match: public.customers.*
      category: custom:customer_data
    - match: "*.customers.phone"        # shadowed for public by the glob above
      category: phone
    - match: crm.contact?.ssn
      category: national_id
    - match: crm.t.[abc]_id
      category: custom:abc
    - match: crm.t.[!abc]_id
      category: custom:not_abc
    - match: crm.t.x[a-c-]
      category: custom:range
    - match: '"My.Schema"."Mixed.Case".Email'
      category: email
    - match: '"wild*"."q""uote".c'
      category: name
    - match: 'star.t.a\*b'
      category: name
    - match: '"In.Excl".t.*'
      category: card
  exclude:
    - match: public.settings.*
    - match: '"In.Excl".t.secret'
`

func TestClassify(t *testing.T) {
	p := mustParse(t, classifyPolicy)
	for _, tc := range []struct {
		name                  string
		schema, table, column string
		want                  pii.Category // "" means not declared
	}{
		{"exact entry", "public", "customers", "email", pii.Email},
		{"exact entry beats an earlier glob", "shop", "orders", "email", pii.Email},
		{"the earlier glob elsewhere", "shop", "users", "email", "custom:glob_first"},
		{"star glob", "public", "customers", "notes", "custom:customer_data"},
		{"first glob in file order wins", "public", "customers", "phone", "custom:customer_data"},
		{"later glob for another schema", "sales", "customers", "phone", pii.Phone},
		{"star matches the empty string", "", "customers", "phone", pii.Phone},
		{"question mark", "crm", "contact1", "ssn", pii.NationalID},
		{"question mark needs one character", "crm", "contact", "ssn", ""},
		{"question mark is one character, not two", "crm", "contact12", "ssn", ""},
		{"question mark matches one multibyte rune", "crm", "contacté", "ssn", pii.NationalID},
		{"class", "crm", "t", "b_id", "custom:abc"},
		{"negated class", "crm", "t", "d_id", "custom:not_abc"},
		{"range", "crm", "t", "xb", "custom:range"},
		{"dash last in class is literal", "crm", "t", "x-", "custom:range"},
		{"outside the range", "crm", "t", "xd", ""},
		{"case-sensitive", "Public", "customers", "email", ""},
		{"case-sensitive column", "public", "customers", "EMAIL", "custom:customer_data"},
		{"quoted parts with dots and mixed case", "My.Schema", "Mixed.Case", "Email", pii.Email},
		{"quoted parts are exact", "my.schema", "mixed.case", "email", ""},
		{"quoted glob characters are literal", "wild*", `q"uote`, "c", pii.Name},
		{"quoted star does not glob", "wildcard", `q"uote`, "c", ""},
		{"escaped star is literal", "star", "t", "a*b", pii.Name},
		{"escaped star does not glob", "star", "t", "axxb", ""},
		{"excluded", "public", "settings", "email", ""},
		{"exclude beats a declaration", "In.Excl", "t", "secret", ""},
		{"declaration next to an exclusion", "In.Excl", "t", "pan", pii.Card},
		{"unknown column", "public", "orders", "id", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Twice: the first call resolves, the second hits the cache.
			for i := 0; i < 2; i++ {
				got, ok := p.Classify(tc.schema, tc.table, tc.column)
				if got != tc.want || ok != (tc.want != "") {
					t.Fatalf("call %d: Classify(%q, %q, %q) = %q, %v; want %q", i, tc.schema, tc.table, tc.column, got, ok, tc.want)
				}
			}
		})
	}
}

func TestExcluded(t *testing.T) {
	p := mustParse(t, classifyPolicy)
	for _, tc := range []struct {
		schema, table, column string
		want                  bool
	}{
		{"public", "settings", "support_email", true},
		{"In.Excl", "t", "secret", true},
		{"In.Excl", "t", "pan", false},
		{"public", "customers", "email", false},
		{"public", "settingsx", "a", false},
	} {
		for i := 0; i < 2; i++ {
			if got := p.Excluded(tc.schema, tc.table, tc.column); got != tc.want {
				t.Errorf("call %d: Excluded(%q, %q, %q) = %v, want %v", i, tc.schema, tc.table, tc.column, got, tc.want)
			}
		}
	}
}

// TestClassifyCache checks that cached answers equal uncached ones, also
// once the cache has evicted entries.
func TestClassifyCache(t *testing.T) {
	p := mustParse(t, classifyPolicy)
	names := []string{"public", "customers", "email", "phone", "crm", "contact1", "ssn", "settings", "x", "In.Excl", "t", "secret"}
	check := func(round int) {
		for _, s := range names {
			for _, tb := range names {
				for _, c := range names {
					want := p.resolve(colKey{s, tb, c})
					got, ok := p.Classify(s, tb, c)
					if got != want.category || ok != (want.category != "") || p.Excluded(s, tb, c) != want.excluded {
						t.Fatalf("round %d: %s.%s.%s: Classify = %q, %v; Excluded = %v; want %+v", round, s, tb, c, got, ok, p.Excluded(s, tb, c), want)
					}
				}
			}
		}
	}
	check(1)
	check(2)
	for i := 0; i < 2*cacheSize; i++ {
		p.Classify("evict", "t", fmt.Sprint(i))
	}
	if n := p.cache.Len(); n > cacheSize {
		t.Errorf("cache holds %d entries, bound is %d", n, cacheSize)
	}
	check(3)
}

func TestDefault(t *testing.T) {
	p := Default()
	if c, ok := p.Classify("public", "customers", "email"); ok {
		t.Errorf("Default declares public.customers.email as %q", c)
	}
	if p.Excluded("public", "settings", "email") {
		t.Error("Default excludes a column")
	}
	d := p.Detectors()
	if !d.Enabled || len(d.Custom) != 0 {
		t.Errorf("Default detectors = %+v, want enabled and no custom", d)
	}
	if fmt.Sprint(d.Categories) != "[email phone national_id card iban ip]" {
		t.Errorf("Default detector categories = %v", d.Categories)
	}
	d.Categories[0] = "mutated"
	if p.Detectors().Categories[0] != "email" {
		t.Error("Detectors() returned the policy's own slice")
	}
}

func TestCategory(t *testing.T) {
	for _, tc := range []struct {
		c             pii.Category
		valid, custom bool
	}{
		{pii.Email, true, false},
		{pii.DateOfBirth, true, false},
		{"custom:free_text", true, true},
		{"custom:Emp-No_2", true, true},
		{"custom:", false, true},
		{"custom:a b", false, true},
		{"custom:a:b", false, true},
		{"Email", false, false},
		{"", false, false},
		{"postcode", false, false},
	} {
		if got := tc.c.Valid(); got != tc.valid {
			t.Errorf("Category(%q).Valid() = %v, want %v", tc.c, got, tc.valid)
		}
		if got := tc.c.IsCustom(); got != tc.custom {
			t.Errorf("Category(%q).IsCustom() = %v, want %v", tc.c, got, tc.custom)
		}
	}
}

func BenchmarkClassifyCacheHit(b *testing.B) {
	p := mustParse(b, classifyPolicy)
	cols := []colKey{
		{"public", "customers", "email"},
		{"sales", "customers", "phone"},
		{"crm", "t", "b_id"},
		{"public", "orders", "id"},
	}
	for _, k := range cols {
		p.Classify(k.schema, k.table, k.column)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := cols[i&3]
		p.Classify(k.schema, k.table, k.column)
	}
}

func TestClassifyCacheHitAllocs(t *testing.T) {
	p := mustParse(t, classifyPolicy)
	p.Classify("crm", "t", "b_id")
	if n := testing.AllocsPerRun(100, func() { p.Classify("crm", "t", "b_id") }); n != 0 {
		t.Errorf("cache hit allocates %v times, want 0", n)
	}
}

func TestColumnNamed(t *testing.T) {
	p := mustParse(t, `version: 1
pii:
  columns:
    - match: crm.contact?.ssn
      category: national_id
    - match: public.customers.email
      category: email
    - match: crm.t.[abc]_id
      category: custom:abc
    - match: hr.*.*
      category: custom:hr
`)
	for _, tc := range []struct {
		column string
		want   pii.Category
	}{
		{"email", pii.Email},
		{"EMAIL", pii.Email},
		{"ssn", pii.NationalID},
		{"b_id", "custom:abc"},
		{"anything", "custom:hr"},
	} {
		if got, ok := p.ColumnNamed(tc.column); !ok || got != tc.want {
			t.Errorf("ColumnNamed(%q) = %q, %v; want %q", tc.column, got, ok, tc.want)
		}
	}
	if got, ok := p.AnyColumnDeclared(); !ok || got != pii.NationalID {
		t.Errorf("AnyColumnDeclared() = %q, %v; want the first glob's category", got, ok)
	}
	p = mustParse(t, "version: 1\npii:\n  columns:\n    - match: public.t.email\n      category: email\n")
	if got, ok := p.ColumnNamed("id"); ok {
		t.Errorf("ColumnNamed(id) = %q, want none", got)
	}
	if got, ok := p.AnyColumnDeclared(); !ok || got != pii.Email {
		t.Errorf("AnyColumnDeclared() = %q, %v; want email", got, ok)
	}
	if got, ok := Default().AnyColumnDeclared(); ok {
		t.Errorf("the default policy: AnyColumnDeclared() = %q, want none", got)
	}
}
