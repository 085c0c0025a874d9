package policy

import (
	"slices"

	"gopkg.in/yaml.v3"
)

// Canaries are honeytoken values: rows planted in the data that no
// legitimate work touches. Any access to one is alerted; a statement or
// session that receives BlockAt or more is blocked (bulk access). They
// watch the employees their subjects and except name, as a rule's do
// (Applies): a backup job, which copies every row, can be excepted.
type Canaries struct {
	Values  []string
	BlockAt int // default 2

	who audience
}

// Applies reports whether the canaries watch c's employee: one among
// their subjects (everyone when they name none) and not excepted.
func (c Canaries) Applies(ctx *Context) bool {
	ok, _ := c.who.check(ctx, false)
	return ok
}

// Explain is Applies, with why not in words, such as "except: backup_svc
// is excepted by name"; empty when they apply.
func (c Canaries) Explain(ctx *Context) (bool, string) {
	return c.who.check(ctx, true)
}

// minCanaryLen keeps canaries distinctive: a short value would match
// ordinary data.
const minCanaryLen = 6

// Canaries returns the policy's honeytokens; Values is empty when none.
func (p *Policy) Canaries() Canaries {
	c := p.canaries
	c.Values = slices.Clone(c.Values)
	return c
}

func (ps *parser) canaryConfig(n *yaml.Node) {
	c := Canaries{BlockAt: 2}
	seen := ps.mapping(n, "canaries", map[string]field{
		"values": func(v *yaml.Node) {
			dup := make(map[string]int)
			ps.stringList(v, "canaries.values", func(item *yaml.Node, s string) bool {
				if len(s) < minCanaryLen {
					ps.errorf(item, "canaries.values: %q is shorter than %d characters and would match ordinary data", s, minCanaryLen)
					return false
				}
				if line, ok := dup[s]; ok {
					ps.errorf(item, "canaries.values: %q listed twice (first at line %d)", s, line)
					return false
				}
				dup[s] = item.Line
				c.Values = append(c.Values, s)
				return true
			})
		},
		"subjects": func(v *yaml.Node) {
			c.who.subjects, _ = ps.subjectsField(v, "canaries.subjects")
		},
		"except": func(v *yaml.Node) {
			c.who.except, _ = ps.subjects(v, "canaries.except")
		},
		"block_at": func(v *yaml.Node) {
			n, ok := ps.limit(v, "canaries.block_at")
			if ok && n < 1 {
				ps.errorf(v, "canaries.block_at: want at least 1")
				ok = false
			}
			if ok {
				c.BlockAt = int(n)
			}
		},
	})
	if seen != nil && !seen["values"] {
		ps.errorf(n, "canaries: missing required key %q", "values")
	}
	ps.p.canaries = c
}
