package identity

import (
	"errors"
	"fmt"
	"strings"
)

// CertRule says what a session needs to present for the databases and roles
// its Target matches. Rules are tried in order and the first whose Target
// matches applies, as in pg_hba.conf: put exceptions before the broad rules.
type CertRule struct {
	// Target is "database/role", each side a pattern in which * matches
	// any run of characters, ? matches one, and \ makes the next character
	// literal (write \/ for a slash in a name). "prod/*" is every role on
	// database prod, "*/support" the role support on every database.
	Target string `yaml:"target"`
	// Require refuses sessions without a verified client certificate.
	Require bool `yaml:"require"`
	// Employees, if set, are patterns (as in Target, compared without
	// regard to case) of which the employee a certificate names must
	// match one: "*@sre.example.com". They constrain sessions that present
	// a certificate; with Require, that is every session.
	Employees []string `yaml:"employees"`
}

// certRule is a CertRule with its patterns compiled.
type certRule struct {
	target    string
	database  nameGlob
	role      nameGlob
	require   bool
	employees []nameGlob
}

func compileCertRule(r CertRule) (certRule, error) {
	db, role, err := splitTarget(r.Target)
	if err != nil {
		return certRule{}, err
	}
	cr := certRule{target: r.Target, require: r.Require}
	if cr.database, err = compileGlob(db); err != nil {
		return certRule{}, fmt.Errorf("target %q: database: %w", r.Target, err)
	}
	if cr.role, err = compileGlob(role); err != nil {
		return certRule{}, fmt.Errorf("target %q: role: %w", r.Target, err)
	}
	for _, e := range r.Employees {
		g, err := compileGlob(strings.ToLower(e))
		if err != nil {
			return certRule{}, fmt.Errorf("employee pattern %q: %w", e, err)
		}
		cr.employees = append(cr.employees, g)
	}
	return cr, nil
}

func (r *certRule) matches(database, role string) bool {
	return r.database.match(database) && r.role.match(role)
}

// allows reports whether the rule accepts employee.
func (r *certRule) allows(employee string) bool {
	if len(r.employees) == 0 {
		return true
	}
	employee = strings.ToLower(employee)
	for _, g := range r.employees {
		if g.match(employee) {
			return true
		}
	}
	return false
}

// splitTarget cuts "database/role" at its one unescaped slash.
func splitTarget(target string) (database, role string, err error) {
	cut := -1
	for i := 0; i < len(target); i++ {
		switch target[i] {
		case '\\':
			i++ // the escaped character, whatever it is
		case '/':
			if cut >= 0 {
				return "", "", fmt.Errorf("target %q: more than one /; write \\/ for a slash in a name", target)
			}
			cut = i
		}
	}
	if cut < 0 {
		return "", "", fmt.Errorf("target %q: want database/role, e.g. \"prod/*\" or \"*/support\"", target)
	}
	database, role = target[:cut], target[cut+1:]
	if database == "" || role == "" {
		return "", "", fmt.Errorf("target %q: empty database or role; use * for any", target)
	}
	return database, role, nil
}

// nameGlob is a compiled pattern over a whole name: * matches any run of
// characters (a slash too), ? exactly one, \x the character x.
type nameGlob []globToken

type globToken struct {
	kind byte // '*', '?' or 0 for the literal r
	r    rune
}

var errTrailingBackslash = errors.New("pattern ends in an unfinished \\ escape")

func compileGlob(pattern string) (nameGlob, error) {
	if pattern == "" {
		return nil, errors.New("empty pattern")
	}
	var g nameGlob
	escaped := false
	for _, r := range pattern {
		switch {
		case escaped:
			g = append(g, globToken{r: r})
			escaped = false
		case r == '\\':
			escaped = true
		case r == '*':
			if len(g) > 0 && g[len(g)-1].kind == '*' {
				continue // ** is *
			}
			g = append(g, globToken{kind: '*'})
		case r == '?':
			g = append(g, globToken{kind: '?'})
		default:
			g = append(g, globToken{r: r})
		}
	}
	if escaped {
		return nil, errTrailingBackslash
	}
	return g, nil
}

// match reports whether the whole of name matches g. It backtracks only to
// the last *, so it runs in O(len(g) * len(name)).
func (g nameGlob) match(name string) bool {
	s := []rune(name)
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		if pi < len(g) {
			switch t := g[pi]; {
			case t.kind == '*':
				star, mark = pi, si
				pi++
				continue
			case t.kind == '?' || t.r == s[si]:
				pi++
				si++
				continue
			}
		}
		if star < 0 {
			return false
		}
		// Let the last * swallow one more character and try again.
		mark++
		pi, si = star+1, mark
	}
	for pi < len(g) && g[pi].kind == '*' {
		pi++
	}
	return pi == len(g)
}

// Targets is a list of "database/role" patterns, as CertRule.Target.
type Targets []certRule

// ParseTargets compiles "database/role" patterns.
func ParseTargets(patterns []string) (Targets, error) {
	var ts Targets
	for _, p := range patterns {
		r, err := compileCertRule(CertRule{Target: p})
		if err != nil {
			return nil, err
		}
		ts = append(ts, r)
	}
	return ts, nil
}

// Match reports whether one of the patterns matches database and role.
func (ts Targets) Match(database, role string) bool {
	for i := range ts {
		if ts[i].matches(database, role) {
			return true
		}
	}
	return false
}
