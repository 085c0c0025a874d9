package policy

import (
	"github.com/pgwarden/pgwarden/policy/pii"
	"strings"
	"testing"
)

// TestSummaryAndWarnings: check says what is on and off, and warns about
// what a file drops of the built-in policy.
func TestSummaryAndWarnings(t *testing.T) {
	def := Default()
	if w := def.Warnings(); len(w) != 0 {
		t.Errorf("built-in policy warnings: %q", w)
	}
	sum := strings.Join(def.Summary(), "\n")
	for _, want := range []string{"mode: enforce", "declared PII columns: none", "detectors: on, every built-in one",
		"norms: on, 7 learning days, alert only", "rule server-egress: block every statement it matches",
		"rule daily-pii-block: block when pii_values > 200000 in the employee's last 24h", "explained access: off"} {
		if !strings.Contains(sum, want) {
			t.Errorf("built-in summary lacks %q:\n%s", want, sum)
		}
	}
	p, err := Parse("own.yaml", []byte(`version: 1
mode: shadow
pii:
  columns:
    - {match: public.customers.email, category: email}
rules:
  - name: bulk
    when: {pii_values: 100}
    action: block
  - name: mask
    subjects: [bob]
    when: {tables: [public.customers]}
    action: redact
`))
	if err != nil {
		t.Fatal(err)
	}
	sum = strings.Join(p.Summary(), "\n")
	for _, want := range []string{"mode: shadow", "declared PII columns: 1", "detectors: on, every built-in one", "norms: off",
		"rule bulk: would block (shadow) when pii_values > 100 in one statement", "rule mask: would redact (shadow): masks the PII of every result it matches"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	w := strings.Join(p.Warnings(), "\n")
	for _, want := range []string{"norms are off", "server_egress"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
}

// TestMaskingSection: formats per category and a default; an unknown
// category or format is an error where it is written.
func TestMaskingSection(t *testing.T) {
	p, err := Parse("m.yaml", []byte(`version: 1
masking:
  email: keep_domain
  phone: last4
  name: initial
  national_id: null
  default: hidden
`))
	if err != nil {
		t.Fatal(err)
	}
	m := p.Masking()
	for c, want := range map[pii.Category]MaskFormat{"email": MaskKeepDomain, "phone": MaskLast4, "name": MaskInitial,
		"national_id": MaskNull, "address": MaskHidden} {
		if got := m.Format(c); got != want {
			t.Errorf("Format(%s) = %q, want %q", c, got, want)
		}
	}
	if got := Default().Masking().Format("email"); got != "" {
		t.Errorf("built-in policy masks email as %q, want by shape", got)
	}
	_, err = Parse("bad.yaml", []byte("version: 1\nmasking:\n  emails: keep_domain\n  phone: last3\n"))
	if err == nil || !strings.Contains(err.Error(), `bad.yaml:3:3: masking: unknown PII category "emails"`) ||
		!strings.Contains(err.Error(), `bad.yaml:4:10: masking.phone: unknown format "last3"`) {
		t.Errorf("bad masking section: %v", err)
	}
}
