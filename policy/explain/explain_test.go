package explain

import (
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/policy"
)

func TestStatement(t *testing.T) {
	p, err := policy.Parse("masked.yaml", []byte(`version: 1
pii:
  columns:
    - {match: public.customers.email, category: email}
    - {match: public.customers.full_name, category: name}
masking:
  email: keep_domain
rules:
  - name: mask-support
    subjects: [bob]
    when: {tables: [public.customers]}
    action: redact
`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Statement(p, "SELECT c.id, c.email, upper(c.full_name), c.phone FROM customers c", "public", policy.Context{User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Context.Tables, ","); got != "public.customers" {
		t.Errorf("tables %q", got)
	}
	m := res.Masking
	if m == nil || m.Rule.Name != "mask-support" || !m.Known || len(m.Columns) != 2 {
		t.Fatalf("masking %+v", m)
	}
	if c := m.Columns[0]; c.Index != 2 || strings.Join(c.Sources, ";") != "public.customers.email: email, keep_domain" {
		t.Errorf("column %+v", c)
	}
	if c := m.Columns[1]; c.Index != 3 || strings.Join(c.Sources, ";") != "public.customers.full_name: name, by shape" {
		t.Errorf("column %+v", c)
	}

	res, err = Statement(p, "SELECT email FROM customers", "public", policy.Context{User: "alice"})
	if err != nil || res.Masking != nil || len(res.Rules) != 1 || res.Rules[0].Applies {
		t.Errorf("alice: %+v %v, want the rule not to apply", res, err)
	}
	if _, err := Statement(p, "SELEC nonsense", "public", policy.Context{User: "bob"}); err == nil {
		t.Error("no error for text that does not parse")
	}
}
