package policy

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	// A policy valid on one host is valid on every host: time zones do not
	// depend on the system's zoneinfo.
	_ "time/tzdata"

	"gopkg.in/yaml.v3"

	"github.com/pgwarden/pgwarden/policy/pii"
)

// groupRef is a group:NAME subject, resolved once every group is known
// (groups may come after rules in the file).
type groupRef struct {
	node *yaml.Node
	subj *subject
}

func (ps *parser) mode(n *yaml.Node) {
	s, ok := ps.str(n, "mode")
	if !ok {
		return
	}
	switch s {
	case "enforce":
		ps.p.shadow = false
	case "shadow":
		ps.p.shadow = true
	default:
		ps.errorf(n, "mode: unknown mode %q (want enforce or shadow)", s)
	}
}

func (ps *parser) timezone(n *yaml.Node) {
	s, ok := ps.str(n, "timezone")
	if !ok {
		return
	}
	if s == "" || s == "Local" {
		ps.errorf(n, "timezone: %q is not a time zone name (want an IANA name such as UTC or Europe/Paris)", s)
		return
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		ps.errorf(n, "timezone: unknown time zone %q (want an IANA name such as UTC or Europe/Paris)", s)
		return
	}
	ps.p.loc = loc
}

// validName reports whether s is a non-empty run of ASCII letters, digits,
// '_', '.' and '-': the shape of rule and group names.
func validName(s string) bool {
	return pii.ValidName(strings.ReplaceAll(s, ".", "_"))
}

func (ps *parser) groups(n *yaml.Node) {
	if isNull(n) || !ps.want(n, yaml.MappingNode, "groups") {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ok := ps.str(k, "group name")
		if !ok {
			continue
		}
		if !validName(name) {
			ps.errorf(k, "group name %q: want letters, digits, '_', '.' or '-'", name)
			continue
		}
		if prev, dup := ps.groupNodes[name]; dup {
			ps.errorf(k, "group %q defined twice (first at line %d)", name, prev.Line)
			continue
		}
		ps.groupNodes[name] = k
		g := &group{name: name}
		what := "groups." + name
		switch {
		case v.Kind == yaml.MappingNode:
			ps.mapping(v, what, map[string]field{
				"members": func(l *yaml.Node) { g.members = ps.names(l, what+".members", "member") },
				"roles":   func(l *yaml.Node) { g.roles = ps.names(l, what+".roles", "role") },
			})
		case v.Kind == yaml.SequenceNode || isNull(v):
			g.members = ps.names(v, what, "member")
		case v.Kind == yaml.AliasNode:
			ps.want(v, yaml.SequenceNode, what)
		default:
			ps.errorf(v, "%s: expected a list of members or a mapping with members and roles, got %s", what, describe(v))
		}
		ps.p.groups[name] = g
	}
}

// names reads a list of non-empty strings: group members or roles.
func (ps *parser) names(n *yaml.Node, what, item string) []string {
	var out []string
	ps.sequence(n, what, func(v *yaml.Node) {
		s, ok := ps.str(v, what+" "+item)
		if !ok {
			return
		}
		if s == "" {
			ps.errorf(v, "%s: empty %s name", what, item)
			return
		}
		out = append(out, s)
	})
	return out
}

func (ps *parser) rules(n *yaml.Node) {
	ps.sequence(n, "rules", ps.rule)
}

// thresholdKeys are the keys of when that are thresholds.
var thresholdKeys = []string{"pii_values", "pii_rows", "distinct_subjects", "rows", "bytes", "unexplained_rows", "sequential_rows"}

func (ps *parser) rule(n *yaml.Node) {
	const what = "rules entry"
	r := &Rule{Line: n.Line, Scope: ScopeStatement}
	ok := true
	var nameNode, scopeNode, whenNode, redactNode, holdNode *yaml.Node
	var whenSeen map[string]bool
	seen := ps.mapping(n, what, map[string]field{
		"name": func(v *yaml.Node) {
			s, good := ps.str(v, "name")
			if good && !validName(s) {
				ps.errorf(v, "name: %q: want letters, digits, '_', '.' or '-'", s)
				good = false
			}
			r.Name, nameNode, ok = s, v, ok && good
		},
		"description": func(v *yaml.Node) {
			s, good := ps.str(v, "description")
			r.Description, ok = s, ok && good
		},
		"subjects": func(v *yaml.Node) {
			var good bool
			r.who.subjects, good = ps.subjectsField(v, "subjects")
			ok = ok && good
		},
		"except": func(v *yaml.Node) {
			var good bool
			r.who.except, good = ps.subjects(v, "except")
			ok = ok && good
		},
		"scope": func(v *yaml.Node) {
			s, good := ps.str(v, "scope")
			if good && !slices.Contains(scopes, Scope(s)) {
				ps.errorf(v, "scope: unknown scope %q (want statement, session, 1m, 10m, 1h or 24h)", s)
				good = false
			}
			if good {
				r.Scope, scopeNode = Scope(s), v
			}
			ok = ok && good
		},
		"when": func(v *yaml.Node) {
			whenNode = v
			var good bool
			whenSeen, good = ps.when(v, r)
			ok = ok && good
		},
		"action": func(v *yaml.Node) {
			s, good := ps.str(v, "action")
			if good {
				switch a := Action(s); {
				case a.Severity() >= 0:
					r.Action = a
				default:
					ps.errorf(v, "action: unknown action %q (want log, alert, redact, hold, block, kill or quarantine)", s)
					good = false
				}
			}
			ok = ok && good
		},
		"shadow": func(v *yaml.Node) {
			b, good := ps.boolean(v, "shadow")
			r.Shadow, ok = b, ok && good
		},
		"redact": func(v *yaml.Node) {
			redactNode = v
			s, good := ps.str(v, "redact")
			if good && s != "mask" && s != "null" {
				ps.errorf(v, "redact: want mask or null, got %q", s)
				good = false
			}
			r.RedactWith, ok = s, ok && good
		},
		"hold_timeout": func(v *yaml.Node) {
			holdNode = v
			s, good := ps.str(v, "hold_timeout")
			if good {
				d, err := time.ParseDuration(s)
				if err != nil || d <= 0 {
					ps.errorf(v, "hold_timeout: want a positive duration such as 5m, got %q", s)
					good = false
				}
				r.HoldTimeout = d
			}
			ok = ok && good
		},
		"severity": func(v *yaml.Node) {
			s, good := ps.str(v, "severity")
			if good && !slices.Contains(severities, s) {
				ps.errorf(v, "severity: unknown severity %q (want low, medium, high or critical)", s)
				good = false
			}
			r.Severity, ok = s, ok && good
		},
	})
	if nameNode != nil && validName(r.Name) {
		if prev, dup := ps.ruleNodes[r.Name]; dup {
			ps.errorf(nameNode, "rule %q defined twice (first at line %d)", r.Name, prev.Line)
			ok = false
		} else {
			ps.ruleNodes[r.Name] = nameNode
		}
	}
	if whenNode != nil && whenSeen != nil && len(whenSeen) == 0 {
		ps.errorf(whenNode, "when: no condition (a rule needs at least one)")
		ok = false
	}
	if scopeNode != nil && r.Scope != ScopeStatement && whenSeen != nil &&
		!slices.ContainsFunc(thresholdKeys, func(k string) bool { return whenSeen[k] }) {
		ps.errorf(scopeNode, "scope: scope applies only to thresholds (%s), and this rule has none", strings.Join(thresholdKeys, ", "))
		ok = false
	}
	if redactNode != nil && r.Action != ActionRedact && r.Action != "" {
		ps.errorf(redactNode, "redact: only for action redact")
		ok = false
	}
	if holdNode != nil && r.Action != ActionHold && r.Action != "" {
		ps.errorf(holdNode, "hold_timeout: only for action hold")
		ok = false
	}
	if !ps.required(n, seen, what, "name", "when", "action") || !ok {
		return
	}
	if r.Action == ActionRedact && r.RedactWith == "" {
		r.RedactWith = "mask"
	}
	if r.Action == ActionHold && r.HoldTimeout == 0 {
		r.HoldTimeout = 5 * time.Minute
	}
	if r.Severity == "" {
		r.Severity = r.Action.defaultSeverity()
	}
	ps.p.rules = append(ps.p.rules, r)
}

func (ps *parser) boolean(n *yaml.Node, what string) (bool, bool) {
	if !ps.want(n, yaml.ScalarNode, what) {
		return false, false
	}
	b, err := strconv.ParseBool(n.Value)
	if n.Tag != "!!bool" || err != nil {
		ps.errorf(n, "%s: expected true or false, got %s", what, describe(n))
		return false, false
	}
	return b, true
}

// subjectsField reads a subjects key (what names it in messages), which
// must list someone.
func (ps *parser) subjectsField(n *yaml.Node, what string) ([]*subject, bool) {
	subjects, ok := ps.subjects(n, what)
	if ok && len(subjects) == 0 {
		ps.errorf(n, `%s: empty list (omit subjects, or write ["*"], for everyone)`, what)
		ok = false
	}
	return subjects, ok
}

// subjects reads a subjects or except list; null is an empty list.
func (ps *parser) subjects(n *yaml.Node, what string) ([]*subject, bool) {
	var out []*subject
	bad := !isNull(n) && n.Kind != yaml.SequenceNode
	ps.sequence(n, what, func(v *yaml.Node) {
		s, ok := ps.str(v, what)
		if !ok {
			bad = true
			return
		}
		subj := &subject{text: s}
		prefix, name, ref := strings.Cut(s, ":")
		switch {
		case s == "*":
			subj.kind = subjectAll
		case ref && prefix == "group":
			subj.kind, subj.name = subjectGroup, name
			if name == "" {
				ps.errorf(v, "%s: %q names no group", what, s)
				bad = true
				return
			}
			ps.groupRefs = append(ps.groupRefs, groupRef{node: v, subj: subj})
		case ref && prefix == "role":
			subj.kind, subj.name = subjectRole, name
			if name == "" {
				ps.errorf(v, "%s: %q names no role", what, s)
				bad = true
				return
			}
			ps.roles[name] = struct{}{}
		case s == "":
			ps.errorf(v, "%s: empty name", what)
			bad = true
			return
		case strings.Contains(s, "*"):
			ps.errorf(v, `%s: %q: names are matched exactly; "*" alone means everyone`, what, s)
			bad = true
			return
		default:
			subj.kind, subj.name = subjectUser, s
		}
		out = append(out, subj)
	})
	return out, !bad
}

// resolve links group:NAME subjects to their groups and finishes the rules
// once the whole file is read.
func (ps *parser) resolve() {
	for _, ref := range ps.groupRefs {
		g, ok := ps.p.groups[ref.subj.name]
		if !ok {
			ps.errorf(ref.node, "unknown group %q (groups defines %s)", ref.subj.name, ps.groupNames())
			continue
		}
		ref.subj.group = g
	}
	for _, g := range ps.p.groups {
		for _, role := range g.roles {
			ps.roles[role] = struct{}{}
		}
	}
	for role := range ps.roles {
		ps.p.groupRoles = append(ps.p.groupRoles, role)
	}
	slices.Sort(ps.p.groupRoles)
	for _, r := range ps.p.rules {
		r.Shadow = r.Shadow || ps.p.shadow
		r.loc = ps.p.loc
	}
	if len(ps.p.services) == 0 {
		for _, n := range ps.serviceRefs {
			ps.errorf(n, "service_account: the policy lists no service_accounts")
		}
	}
}

func (ps *parser) groupNames() string {
	if len(ps.groupNodes) == 0 {
		return "none"
	}
	names := make([]string, 0, len(ps.groupNodes))
	for name := range ps.groupNodes {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// when reads a rule's conditions into r and returns the keys seen (nil when
// when is not a mapping) and whether they all parsed.
func (ps *parser) when(n *yaml.Node, r *Rule) (map[string]bool, bool) {
	ok := true
	var (
		perCategory []threshold
		total       = threshold{name: "pii_values", measure: measurePIITotal, limit: -1}
		others      = make([]threshold, len(measures))
	)
	fields := map[string]field{
		"pii_values": func(v *yaml.Node) {
			var good bool
			perCategory, total.limit, good = ps.piiValues(v)
			ok = ok && good
		},
	}
	for i, m := range measures {
		others[i] = threshold{name: m.key, measure: i, limit: -1}
		fields[m.key] = func(v *yaml.Node) {
			read := ps.limit
			if m.bytes {
				read = func(v *yaml.Node, _ string) (int64, bool) { return ps.byteSize(v) }
			}
			l, good := read(v, m.key)
			if good {
				others[i].limit = l
			}
			ok = ok && good
		}
	}
	conds := make([]condition, len(contextConditions))
	for i, cc := range contextConditions {
		fields[cc.key] = func(v *yaml.Node) {
			conds[i] = cc.read(ps, v)
			ok = ok && conds[i] != nil
		}
	}
	seen := ps.mapping(n, "when", fields)
	for _, c := range conds {
		if c != nil {
			r.conds = append(r.conds, c)
		}
	}
	r.thresholds = perCategory
	for _, t := range append([]threshold{total}, others...) {
		if t.limit >= 0 {
			r.thresholds = append(r.thresholds, t)
		}
	}
	return seen, ok && seen != nil
}

// piiValues reads pii_values: a limit on the total, or a mapping of limits
// per category where "any" is the total. It returns the per-category
// thresholds in file order and the total's limit, -1 when none.
func (ps *parser) piiValues(n *yaml.Node) ([]threshold, int64, bool) {
	const what = "pii_values"
	if n.Kind != yaml.MappingNode {
		l, ok := ps.limit(n, what)
		if !ok {
			return nil, -1, false
		}
		return nil, l, true
	}
	var per []threshold
	total := int64(-1)
	ok := true
	first := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if _, good := ps.str(k, what+" key"); !good {
			ok = false
			continue
		}
		var cat pii.Category
		if k.Value != "any" {
			var good bool
			if cat, good = ps.category(k, what); !good {
				ok = false
				continue
			}
		}
		if prev := first[k.Value]; prev != nil {
			ps.errorf(k, "%s: %q repeated (first at line %d)", what, k.Value, prev.Line)
			ok = false
			continue
		}
		first[k.Value] = k
		l, good := ps.limit(v, what+"."+k.Value)
		if !good {
			ok = false
			continue
		}
		if cat == "" {
			total = l
		} else {
			per = append(per, threshold{name: what + "." + string(cat), measure: measureCategory, category: cat, limit: l})
		}
	}
	if len(n.Content) == 0 {
		ps.errorf(n, "%s: empty mapping (want a limit, or limits per category)", what)
		ok = false
	}
	return per, total, ok
}

// limit reads a threshold: a non-negative integer.
func (ps *parser) limit(n *yaml.Node, what string) (int64, bool) {
	if !ps.want(n, yaml.ScalarNode, what) {
		return 0, false
	}
	var v int64
	if n.Tag != "!!int" || n.Decode(&v) != nil {
		ps.errorf(n, "%s: expected a non-negative integer, got %s", what, describe(n))
		return 0, false
	}
	if v < 0 {
		ps.errorf(n, "%s: negative limit %d", what, v)
		return 0, false
	}
	return v, true
}

var (
	byteSizeRE = regexp.MustCompile(`^([0-9]+) ?([A-Za-z]*)$`)
	byteUnits  = map[string]int64{
		"": 1, "B": 1,
		"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	}
)

const byteUnitList = "B, kB, MB, GB, TB, KiB, MiB, GiB, TiB"

// byteSize reads a bytes threshold: an integer, or a string such as 50MB.
func (ps *parser) byteSize(n *yaml.Node) (int64, bool) {
	const what = "bytes"
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return ps.limit(n, what)
	}
	m := byteSizeRE.FindStringSubmatch(n.Value)
	if m == nil {
		ps.errorf(n, "%s: bad size %q: want a whole number of bytes, optionally with a unit (%s)", what, n.Value, byteUnitList)
		return 0, false
	}
	unit, ok := byteUnits[m[2]]
	if !ok {
		ps.errorf(n, "%s: unknown unit %q in %q (want %s)", what, m[2], n.Value, byteUnitList)
		return 0, false
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || v > math.MaxInt64/unit {
		ps.errorf(n, "%s: %q is too large", what, n.Value)
		return 0, false
	}
	return v * unit, true
}

// stringList calls f for each string of a non-empty list and reports
// whether the list was one with every item accepted by f.
func (ps *parser) stringList(n *yaml.Node, what string, f func(v *yaml.Node, s string) bool) bool {
	if isNull(n) || n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		ps.errorf(n, "%s: empty list (omit the condition instead)", what)
		return false
	}
	if !ps.want(n, yaml.SequenceNode, what) {
		return false
	}
	ok := true
	for _, v := range n.Content {
		s, good := ps.str(v, what)
		ok = good && f(v, s) && ok
	}
	return ok
}

func (ps *parser) tables(n *yaml.Node) []tableCond {
	var out []tableCond
	if !ps.stringList(n, "tables", func(v *yaml.Node, s string) bool {
		c := tableCond{text: s}
		if err := parseName(s, c.pat.parts[:], "schema.table"); err != nil {
			ps.errorf(v, "tables: %v", err)
			return false
		}
		out = append(out, c)
		return true
	}) {
		return nil
	}
	return out
}

func (ps *parser) kinds(n *yaml.Node) []StatementKind {
	var out []StatementKind
	first := make(map[string]int)
	if !ps.stringList(n, "statements", func(v *yaml.Node, s string) bool {
		var add []StatementKind
		switch {
		case s == kindServerEgress:
			add = serverEgress
		case slices.Contains(statementKinds, StatementKind(s)):
			add = []StatementKind{StatementKind(s)}
		default:
			ps.errorf(v, "statements: unknown statement kind %q (want one of %s, or %s)", s, kindList(statementKinds), kindServerEgress)
			return false
		}
		if line, dup := first[s]; dup {
			ps.errorf(v, "statements: %q listed twice (first at line %d)", s, line)
			return false
		}
		first[s] = v.Line
		for _, k := range add {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
		return true
	}) {
		return nil
	}
	return out
}

// hours reads a time of day range, or a list of them.
func (ps *parser) hours(n *yaml.Node) ([]hourRange, []string) {
	var (
		out   []hourRange
		texts []string
	)
	one := func(v *yaml.Node, s string) bool {
		h, err := parseHours(s)
		if err != nil {
			ps.errorf(v, "hours: %v", err)
			return false
		}
		out, texts = append(out, h), append(texts, s)
		return true
	}
	var ok bool
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		var s string
		if s, ok = ps.str(n, "hours"); ok {
			ok = one(n, s)
		}
	} else {
		ok = ps.stringList(n, "hours", one)
	}
	if !ok {
		return nil, nil
	}
	return out, texts
}

// parseHours parses HH:MM-HH:MM, a range of local time of day that wraps
// midnight when the end is not after the start.
func parseHours(s string) (hourRange, error) {
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		return hourRange{}, fmt.Errorf("bad range %q: want HH:MM-HH:MM", s)
	}
	var h hourRange
	var err error
	if h.start, err = parseClock(strings.TrimSpace(from), s, false); err != nil {
		return hourRange{}, err
	}
	if h.end, err = parseClock(strings.TrimSpace(to), s, true); err != nil {
		return hourRange{}, err
	}
	if h.start == h.end%(24*60) {
		return hourRange{}, fmt.Errorf("empty range %q: start and end are the same time", s)
	}
	return h, nil
}

// parseClock parses H:MM or HH:MM as minutes since midnight; 24:00 only as
// the end of a range.
func parseClock(c, rng string, end bool) (int, error) {
	bad := fmt.Errorf("bad time %q in %q: want HH:MM from 00:00 to 24:00", c, rng)
	hh, mm, ok := strings.Cut(c, ":")
	if !ok || len(hh) < 1 || len(hh) > 2 || len(mm) != 2 {
		return 0, bad
	}
	if !digits(hh) || !digits(mm) {
		return 0, bad
	}
	h, _ := strconv.Atoi(hh)
	m, _ := strconv.Atoi(mm)
	if m > 59 {
		return 0, bad
	}
	switch {
	case h < 24:
		return h*60 + m, nil
	case h == 24 && m == 0 && end:
		return 24 * 60, nil
	}
	return 0, bad
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// days reads a list of days as a bit set, 0 on error.
func (ps *parser) days(n *yaml.Node) uint8 {
	var set uint8
	first := make(map[string]int)
	if !ps.stringList(n, "days", func(v *yaml.Node, s string) bool {
		d := slices.Index(dayNames[:], s)
		if d < 0 {
			ps.errorf(v, "days: unknown day %q (want mon, tue, wed, thu, fri, sat or sun)", s)
			return false
		}
		if line, dup := first[s]; dup {
			ps.errorf(v, "days: %q listed twice (first at line %d)", s, line)
			return false
		}
		first[s] = v.Line
		set |= 1 << d
		return true
	}) {
		return 0
	}
	return set
}

// nets reads a list of CIDR prefixes and addresses.
func (ps *parser) nets(n *yaml.Node, what string) []netCond {
	var out []netCond
	if !ps.stringList(n, what, func(v *yaml.Node, s string) bool {
		c := netCond{text: s}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				ps.errorf(v, "%s: bad CIDR %q: %s", what, s, netipReason(err))
				return false
			}
			c.prefix = p.Masked()
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				ps.errorf(v, "%s: bad address %q: %s", what, s, netipReason(err))
				return false
			}
			a = a.WithZone("").Unmap()
			c.prefix = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, c)
		return true
	}) {
		return nil
	}
	return out
}

// netipReason strips the call and its argument from a net/netip error.
func netipReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		return msg[i+3:]
	}
	return msg
}

// apps reads a list of application_name globs.
func (ps *parser) apps(n *yaml.Node, what string) []appCond {
	var out []appCond
	if !ps.stringList(n, what, func(v *yaml.Node, s string) bool {
		lit, re, err := compileGlob(s)
		if err != nil {
			ps.errorf(v, "%s: malformed glob %q: %v", what, s, err)
			return false
		}
		out = append(out, appCond{text: s, glob: namePart{lit: lit, re: re}})
		return true
	}) {
		return nil
	}
	return out
}
