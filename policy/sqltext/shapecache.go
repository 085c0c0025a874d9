package sqltext

import (
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// shapeEntry is what the texts of one shape share.
type shapeEntry struct {
	// info is the Info of the shape's first text; nil when each text of
	// the shape is analyzed on its own: not only queries (SELECT, INSERT,
	// UPDATE, DELETE, MERGE), skimmed, not parsed, or with values the
	// shape does not tell.
	info *Info
	// estimable is set when info.Estimable is the text itself.
	estimable bool
	// consts say which literal each constant of info.Predicates is.
	consts []constRef
	// probes is what Probes says of the shape's texts.
	probes *Lineage
	// lineage is what Lineage says of them, when lineageOK: when no
	// function whose recognition reads a constant (split_part(x, '@', 2),
	// left(x, 3)) is called.
	lineage   *Lineage
	lineageOK bool
}

// constRef is the literal lit of a text (negated when neg) that is value
// val of predicate pred.
type constRef struct {
	pred, val, lit int
	neg            bool
}

// entry returns the shape entry of sql, and its shape. It builds the
// entry on a miss and returns sql's Info as built then. e is nil for a
// text analyzed on its own: too long for the cache, not read by the
// scanner, or naming search_path (whose value a literal holds).
func (a *Analyzer) entry(sql string) (e *shapeEntry, sh shape, built *Info) {
	if len(sql) > maxCachedText {
		return nil, sh, nil
	}
	sh = scanShape(sql)
	if !sh.ok || containsFold(sql, "search_path") {
		return nil, sh, nil
	}
	if e, ok := a.shapes.Get(sh.key); ok {
		if e.info == nil {
			return nil, sh, nil
		}
		return e, sh, nil
	}
	built, e = newEntry(sql, &sh)
	a.shapes.Add(sh.key, e)
	if e.info == nil {
		return nil, sh, built
	}
	return e, sh, built
}

// newEntry analyzes sql and makes of it the entry of its shape.
func newEntry(sql string, sh *shape) (*Info, *shapeEntry) {
	if why := overLimits(sql); why != "" {
		return skimmed(sql, why), &shapeEntry{}
	}
	info, tree, shaped := analyzeParsed(sql, sh)
	e := &shapeEntry{}
	if tree == nil || !shaped || info.Skipped != "" || info.Cursor != "" || info.SearchPath != nil {
		return info, e
	}
	if info.Estimable != "" {
		if info.Estimable != sql {
			return info, e
		}
		e.estimable = true
	}
	_, nodes := predicateOperands(tree)
	for i, p := range info.Predicates {
		for j, v := range p.Values {
			n := nodes[i][j]
			if tc := n.GetTypeCast(); tc != nil {
				n = tc.GetArg()
			}
			if v.Param != 0 {
				if n.GetParamRef() == nil {
					return info, e // $1 + 19: the sum is the literal's
				}
				continue
			}
			c := n.GetAConst()
			if c == nil {
				return info, e
			}
			k, neg, ok := sh.literalAt(sql, int(c.GetLocation()))
			if !ok {
				return info, e
			}
			if s, ok := sh.lits[k].value(sql, neg); !ok || s != v.Const {
				return info, e
			}
			e.consts = append(e.consts, constRef{pred: i, val: j, lit: k, neg: neg})
		}
	}
	e.probes = probesTree(tree)
	if e.lineageOK = !callsAny(tree.ProtoReflect(), constantReaders); e.lineageOK {
		e.lineage = lineageTree(tree)
	}
	e.info = info
	return info, e
}

// constantReaders are the functions whose lineage depends on the values
// of their constant arguments (isEmailDomain, strongRandom, shortPrefix,
// coarseDate).
var constantReaders = map[string]bool{"split_part": true, "gen_random_bytes": true, "left": true, "substr": true, "substring": true,
	"extract": true, "date_part": true, "date_trunc": true}

// callsAny reports whether m calls a function named in names.
func callsAny(m protoreflect.Message, names map[string]bool) bool {
	if !m.IsValid() {
		return false
	}
	if f, ok := m.Interface().(*pg_query.FuncCall); ok && names[funcName(f)] {
		return true
	}
	return !children(m, func(c protoreflect.Message) bool { return !callsAny(c, names) })
}

// queriesOnly reports whether a text's statements are all queries, whose
// literals the parser keeps as constants. Utility statements read some
// literals as names, paths and options (COPY ... TO 'file', COMMIT
// PREPARED 'gid'), and are analyzed text by text.
func queriesOnly(tree *pg_query.ParseResult) bool {
	for _, raw := range tree.GetStmts() {
		n := raw.GetStmt()
		if n.GetSelectStmt() == nil && n.GetInsertStmt() == nil && n.GetUpdateStmt() == nil &&
			n.GetDeleteStmt() == nil && n.GetMergeStmt() == nil {
			return false
		}
	}
	return len(tree.GetStmts()) > 0
}

// literalAt returns the literal the parser locates at loc: the literal
// starting there, or, for a minus sign folded into a number, the literal
// after it with only whitespace and comments between.
func (sh *shape) literalAt(sql string, loc int) (k int, neg, ok bool) {
	k, found := slices.BinarySearchFunc(sh.lits, loc, func(l literal, loc int) int { return l.pos - loc })
	if found {
		return k, false, true
	}
	if loc < 0 || loc >= len(sql) || sql[loc] != '-' || k >= len(sh.lits) {
		return 0, false, false
	}
	for i := loc + 1; i < sh.lits[k].pos; {
		switch c := sql[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' && sql[i] != '\r' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			i, _ = blockComment(sql, i)
		default:
			return 0, false, false
		}
	}
	return k, true, true
}

// instance is the Info of sql, of the entry's shape sh: the entry's, with
// the text's own Estimable and predicate constants. nil when a constant
// cannot be read.
func (e *shapeEntry) instance(sql string, sh *shape) *Info {
	if !e.estimable && len(e.consts) == 0 {
		return e.info
	}
	info := *e.info
	if e.estimable {
		info.Estimable = sql
	}
	if len(e.consts) > 0 {
		info.Predicates = slices.Clone(info.Predicates)
		last := -1
		for _, c := range e.consts {
			p := &info.Predicates[c.pred]
			if c.pred != last {
				p.Values, last = slices.Clone(p.Values), c.pred
			}
			v, ok := sh.lits[c.lit].value(sql, c.neg)
			if !ok {
				return nil
			}
			p.Values[c.val].Const = v
		}
	}
	return &info
}

// containsFold reports whether s contains sub, a lower-case ASCII word,
// in any case.
func containsFold(s, sub string) bool {
	c0 := sub[0]
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i]|0x20 == c0 && strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
