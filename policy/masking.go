package policy

import (
	"fmt"
	"github.com/pgwarden/pgwarden/policy/pii"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaskFormat is how action redact masks a value of a PII category.
type MaskFormat string

// Mask formats. Empty is the shape of the value: an address keeps its
// domain, a number its last four digits, anything else its first letter.
const (
	MaskKeepDomain MaskFormat = "keep_domain" // j***@example.com
	MaskLast4      MaskFormat = "last4"       // ***-**-1234, +*******0002
	MaskInitial    MaskFormat = "initial"     // J***
	MaskHidden     MaskFormat = "hidden"      // ***
	MaskNull       MaskFormat = "null"        // NULL
)

var maskFormats = []MaskFormat{MaskKeepDomain, MaskLast4, MaskInitial, MaskHidden, MaskNull}

// Masking is the policy's masking section: a format per PII category,
// and one for the others.
type Masking struct {
	formats map[pii.Category]MaskFormat
	def     MaskFormat
}

// Format is how a value of category c is masked; empty: by its shape.
func (m Masking) Format(c pii.Category) MaskFormat {
	if f, ok := m.formats[c]; ok {
		return f
	}
	return m.def
}

// Masking returns the policy's masking formats.
func (p *Policy) Masking() Masking { return p.masking }

func (ps *parser) maskingConfig(n *yaml.Node) {
	if !ps.want(n, yaml.MappingNode, "masking") {
		return
	}
	m := Masking{formats: map[pii.Category]MaskFormat{}}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !ps.want(k, yaml.ScalarNode, "masking key") {
			continue
		}
		if line, ok := seen[k.Value]; ok {
			ps.errorf(k, "key %q repeated (first at line %d)", k.Value, line)
			continue
		}
		seen[k.Value] = k.Line
		c := pii.Category(k.Value)
		if k.Value != "default" && !c.Valid() {
			ps.errorf(k, "masking: unknown PII category %q (want default, %s, or custom:NAME)", k.Value, categoryList())
			continue
		}
		f := MaskFormat("null")
		if !isNull(v) {
			s, ok := ps.str(v, "masking."+k.Value)
			if !ok {
				continue
			}
			f = MaskFormat(s)
		}
		if !slices.Contains(maskFormats, f) {
			ps.errorf(v, "masking.%s: unknown format %q (want %s)", k.Value, f, formatList())
			continue
		}
		if k.Value == "default" {
			m.def = f
		} else {
			m.formats[c] = f
		}
	}
	ps.p.masking = m
}

func formatList() string {
	s := make([]string, len(maskFormats))
	for i, f := range maskFormats {
		s[i] = string(f)
	}
	return strings.Join(s, ", ")
}

// maskingWords says how the masking section masks, for Summary.
func (m Masking) words() string {
	if len(m.formats) == 0 && m.def == "" {
		return "masking: by the value's shape (an address keeps its domain, a number its last four digits, a name its initial)"
	}
	var parts []string
	for _, c := range pii.Builtins() {
		if f, ok := m.formats[c]; ok {
			parts = append(parts, fmt.Sprintf("%s %s", c, f))
		}
	}
	for c, f := range m.formats {
		if c.IsCustom() {
			parts = append(parts, fmt.Sprintf("%s %s", c, f))
		}
	}
	def := string(m.def)
	if def == "" {
		def = "by shape"
	}
	return "masking: " + strings.Join(append(parts, "others "+def), ", ")
}
