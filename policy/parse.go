package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pgwarden/pgwarden/policy/pii"
)

// currentVersion is the only policy file version this build understands.
const currentVersion = 1

// Parse parses and validates a policy file; name is used in error messages.
// On any problem it returns a nil Policy and an ErrorList holding every
// problem found, each with its line and column.
func Parse(name string, data []byte) (*Policy, error) {
	ps := &parser{
		file:       name,
		p:          newPolicy(name),
		columns:    make(map[string]seenEntry),
		excludes:   make(map[string]seenEntry),
		groupNodes: make(map[string]*yaml.Node),
		ruleNodes:  make(map[string]*yaml.Node),
		roles:      make(map[string]struct{}),
	}
	ps.p.detectors = defaultDetectors()
	ps.parse(data)
	if len(ps.errs) > 0 {
		ps.errs.sort()
		return nil, ps.errs
	}
	return ps.p, nil
}

// parser walks the YAML node tree by hand, rather than decoding into
// structs, so that every problem is reported with its position and none
// stops the walk.
type parser struct {
	file     string
	errs     ErrorList
	p        *Policy
	columns  map[string]seenEntry // canonical match -> first declaration
	excludes map[string]seenEntry

	groupNodes map[string]*yaml.Node // group name -> its key
	ruleNodes  map[string]*yaml.Node // rule name -> its name value
	groupRefs  []groupRef
	roles      map[string]struct{} // roles named by role:NAME subjects
	// serviceRefs are the rules' service_account conditions, checked
	// against service_accounts once the whole file is read.
	serviceRefs []*yaml.Node
}

// seenEntry remembers where a match was first given, for duplicate errors.
type seenEntry struct {
	line, column int
	category     pii.Category
}

// field handles the value of one mapping key.
type field func(val *yaml.Node)

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (ps *parser) parse(data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.errs = append(ps.errs, &Error{File: ps.file, Msg: "empty policy file"})
			return
		}
		ps.syntaxError(err)
		return
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		ps.errorf(&extra, "a policy file holds one YAML document")
	case !errors.Is(err, io.EOF):
		ps.syntaxError(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(root) {
		ps.errs = append(ps.errs, &Error{File: ps.file, Msg: "empty policy file"})
		return
	}
	seen := ps.mapping(root, "policy", map[string]field{
		"version":          ps.version,
		"pii":              ps.pii,
		"mode":             ps.mode,
		"timezone":         ps.timezone,
		"groups":           ps.groups,
		"rules":            ps.rules,
		"canaries":         ps.canaryConfig,
		"norms":            ps.normsConfig,
		"explained_access": ps.explainedConfig,
		"masking":          ps.maskingConfig,
		"service_accounts": ps.serviceAccounts,
	})
	if seen != nil && !seen["version"] {
		ps.errorf(root, "missing required key %q", "version")
	}
	ps.resolve()
}

func (ps *parser) syntaxError(err error) {
	e := &Error{File: ps.file, Msg: err.Error()}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = m[2]
	}
	e.Msg = strings.TrimPrefix(e.Msg, "yaml: ")
	ps.errs = append(ps.errs, e)
}

func (ps *parser) errorf(n *yaml.Node, format string, args ...any) {
	ps.errs = append(ps.errs, &Error{File: ps.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)})
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// want checks a node's kind; aliases are refused so that a node's position
// is always where its text is.
func (ps *parser) want(n *yaml.Node, kind yaml.Kind, what string) bool {
	if n.Kind == yaml.AliasNode {
		ps.errorf(n, "YAML aliases are not supported")
		return false
	}
	if n.Kind != kind {
		ps.errorf(n, "%s: expected %s, got %s", what, kindName(kind), describe(n))
		return false
	}
	return true
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a scalar"
}

func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
	}
	return kindName(n.Kind)
}

// mapping calls fields[key] for each key of n and returns the keys seen, or
// nil when n is not a mapping. Unknown and repeated keys are errors.
func (ps *parser) mapping(n *yaml.Node, what string, fields map[string]field) map[string]bool {
	if !ps.want(n, yaml.MappingNode, what) {
		return nil
	}
	seen := make(map[string]bool, len(n.Content)/2)
	first := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !ps.want(k, yaml.ScalarNode, what+" key") {
			continue
		}
		f, ok := fields[k.Value]
		if !ok {
			ps.errorf(k, "unknown key %q in %s (want %s)", k.Value, what, keyList(fields))
			continue
		}
		if prev := first[k.Value]; prev != nil {
			ps.errorf(k, "key %q repeated (first at line %d)", k.Value, prev.Line)
			continue
		}
		first[k.Value] = k
		seen[k.Value] = true
		f(v)
	}
	return seen
}

func keyList(fields map[string]field) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

// sequence calls f for each item of n; null stands for an empty list.
func (ps *parser) sequence(n *yaml.Node, what string, f func(item *yaml.Node)) {
	if isNull(n) || !ps.want(n, yaml.SequenceNode, what) {
		return
	}
	for _, item := range n.Content {
		f(item)
	}
}

// str returns a string scalar's value.
func (ps *parser) str(n *yaml.Node, what string) (string, bool) {
	if !ps.want(n, yaml.ScalarNode, what) {
		return "", false
	}
	if n.Tag != "!!str" {
		ps.errorf(n, "%s: expected a string, got %s", what, describe(n))
		return "", false
	}
	return n.Value, true
}

func (ps *parser) required(n *yaml.Node, seen map[string]bool, what string, keys ...string) bool {
	if seen == nil {
		return false
	}
	ok := true
	for _, k := range keys {
		if !seen[k] {
			ps.errorf(n, "%s: missing required key %q", what, k)
			ok = false
		}
	}
	return ok
}

func (ps *parser) version(n *yaml.Node) {
	if !ps.want(n, yaml.ScalarNode, "version") {
		return
	}
	v, err := strconv.Atoi(n.Value)
	if n.Tag != "!!int" || err != nil {
		ps.errorf(n, "version: expected an integer, got %s", describe(n))
		return
	}
	if v != currentVersion {
		ps.errorf(n, "unsupported version %d (this pgwarden reads version %d)", v, currentVersion)
	}
}

func (ps *parser) pii(n *yaml.Node) {
	if isNull(n) {
		return
	}
	ps.mapping(n, "pii", map[string]field{
		"columns": func(v *yaml.Node) {
			ps.sequence(v, "pii.columns", ps.column)
		},
		"detectors": ps.detectors,
		"exclude": func(v *yaml.Node) {
			ps.sequence(v, "pii.exclude", ps.exclude)
		},
	})
}

// match parses a `match:` value.
func (ps *parser) match(n *yaml.Node, what string) *namePattern {
	s, ok := ps.str(n, what)
	if !ok {
		return nil
	}
	pat, err := parseMatch(s)
	if err != nil {
		ps.errorf(n, "%s: %v", what, err)
		return nil
	}
	return pat
}

func (ps *parser) category(n *yaml.Node, what string) (pii.Category, bool) {
	s, ok := ps.str(n, what)
	if !ok {
		return "", false
	}
	c := pii.Category(s)
	if !c.Valid() {
		if c.IsCustom() {
			ps.errorf(n, "%s: bad custom category %q: want custom:<name> with letters, digits, '_' or '-'", what, s)
		} else {
			ps.errorf(n, "%s: unknown category %q (want one of %s, or custom:<name>)", what, s, categoryList())
		}
		return "", false
	}
	return c, true
}

func categoryList() string { return joinCategories(pii.Builtins()) }

// joinCategories lists categories for messages: "email, phone".
func joinCategories(cats []pii.Category) string {
	names := make([]string, len(cats))
	for i, c := range cats {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

func (ps *parser) column(n *yaml.Node) {
	const what = "pii.columns entry"
	var (
		pat *namePattern
		cat pii.Category
		ok  = true
	)
	var matchNode *yaml.Node
	seen := ps.mapping(n, what, map[string]field{
		"match": func(v *yaml.Node) {
			matchNode = v
			pat = ps.match(v, "match")
			ok = ok && pat != nil
		},
		"category": func(v *yaml.Node) {
			var good bool
			cat, good = ps.category(v, "category")
			ok = ok && good
		},
	})
	if !ps.required(n, seen, what, "match", "category") || !ok {
		return
	}
	key := pat.canonical()
	if prev, dup := ps.columns[key]; dup {
		if prev.category == cat {
			ps.errorf(matchNode, "duplicate column entry %q (first at line %d, column %d)", matchNode.Value, prev.line, prev.column)
		} else {
			ps.errorf(matchNode, "column %q declared again as %q (first as %q at line %d, column %d)", matchNode.Value, cat, prev.category, prev.line, prev.column)
		}
		return
	}
	ps.columns[key] = seenEntry{line: matchNode.Line, column: matchNode.Column, category: cat}
	if pat.exact() {
		ps.p.exact[pat.key()] = cat
	} else {
		ps.p.globs = append(ps.p.globs, columnRule{pattern: pat, category: cat})
	}
}

func (ps *parser) exclude(n *yaml.Node) {
	const what = "pii.exclude entry"
	var pat *namePattern
	var matchNode *yaml.Node
	seen := ps.mapping(n, what, map[string]field{
		"match": func(v *yaml.Node) {
			matchNode = v
			pat = ps.match(v, "match")
		},
	})
	if !ps.required(n, seen, what, "match") || pat == nil {
		return
	}
	key := pat.canonical()
	if prev, dup := ps.excludes[key]; dup {
		ps.errorf(matchNode, "duplicate exclude entry %q (first at line %d, column %d)", matchNode.Value, prev.line, prev.column)
		return
	}
	ps.excludes[key] = seenEntry{line: matchNode.Line, column: matchNode.Column}
	if pat.exact() {
		ps.p.exclExact[pat.key()] = struct{}{}
	} else {
		ps.p.exclGlobs = append(ps.p.exclGlobs, pat)
	}
}

func (ps *parser) detectors(n *yaml.Node) {
	d := &ps.p.detectors
	d.Enabled = true
	d.Categories = pii.Detectable()
	if isNull(n) {
		return
	}
	ps.mapping(n, "pii.detectors", map[string]field{
		"enabled": func(v *yaml.Node) {
			if !ps.want(v, yaml.ScalarNode, "enabled") {
				return
			}
			b, err := strconv.ParseBool(v.Value)
			if v.Tag != "!!bool" || err != nil {
				ps.errorf(v, "enabled: expected true or false, got %s", describe(v))
				return
			}
			d.Enabled = b
		},
		"categories": func(v *yaml.Node) {
			d.Categories = []pii.Category{}
			first := make(map[string]int)
			ps.sequence(v, "categories", func(item *yaml.Node) {
				c, ok := ps.category(item, "categories")
				if !ok {
					return
				}
				if !c.Detectable() {
					ps.errorf(item, "categories: no built-in detector for %q (detectors exist for %s; use custom for others)", c, joinCategories(pii.Detectable()))
					return
				}
				if line, dup := first[string(c)]; dup {
					ps.errorf(item, "categories: %q listed twice (first at line %d)", c, line)
					return
				}
				first[string(c)] = item.Line
				d.Categories = append(d.Categories, c)
			})
		},
		"custom": func(v *yaml.Node) {
			names := make(map[string]int)
			ps.sequence(v, "custom", func(item *yaml.Node) {
				ps.customDetector(item, names)
			})
		},
	})
}

func (ps *parser) customDetector(n *yaml.Node, names map[string]int) {
	const what = "pii.detectors.custom entry"
	var (
		cd       CustomDetector
		ok       = true
		nameNode *yaml.Node
	)
	seen := ps.mapping(n, what, map[string]field{
		"name": func(v *yaml.Node) {
			s, good := ps.str(v, "name")
			if good && !pii.ValidName(s) {
				ps.errorf(v, "name: %q: want letters, digits, '_' or '-'", s)
				good = false
			}
			cd.Name, nameNode, ok = s, v, ok && good
		},
		"category": func(v *yaml.Node) {
			c, good := ps.category(v, "category")
			cd.Category, ok = c, ok && good
		},
		"pattern": func(v *yaml.Node) {
			s, good := ps.str(v, "pattern")
			if good {
				if s == "" {
					ps.errorf(v, "pattern: empty regular expression")
					good = false
				} else if _, err := regexp.Compile(s); err != nil {
					ps.errorf(v, "pattern: %v", err)
					good = false
				}
			}
			cd.Pattern, ok = s, ok && good
		},
	})
	if nameNode != nil && pii.ValidName(cd.Name) {
		if line, dup := names[cd.Name]; dup {
			ps.errorf(nameNode, "custom detector %q defined twice (first at line %d)", cd.Name, line)
			ok = false
		} else {
			names[cd.Name] = nameNode.Line
		}
	}
	if !ps.required(n, seen, what, "name", "category", "pattern") || !ok {
		return
	}
	ps.p.detectors.Custom = append(ps.p.detectors.Custom, cd)
}
