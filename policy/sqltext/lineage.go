package sqltext

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Lineage says which table columns each output column of a SELECT is
// computed from, as far as the text alone tells: expressions such as
// md5(email) or encode(convert_to(email, 'UTF8'), 'base64') report no
// table in RowDescription, and their values may not look like what they
// carry.
type Lineage struct {
	// From lists the relations of the top-level FROM clause, joins included.
	From []Relation
	// Targets has one entry per output column.
	Targets []Target
	// Star is set, with no Targets, for SELECT * over a single function in
	// FROM: output column i is the function's output column i.
	Star bool
}

// Relation is a table or view named in FROM, or a function called there
// (Func set, Table the function's name).
type Relation struct {
	Schema, Table, Alias string
	Func                 bool
}

// Target is what one output column is computed from.
type Target struct {
	Refs []ColumnRef
}

// ColumnRef is a column reference, with its qualifier if written, or the
// result of a function call (Func set, FuncSchema if written): a SQL
// function's body may read PII the text of the call does not show.
type ColumnRef struct {
	Qualifier, Column string
	FuncSchema, Func  string
}

// concealing lists functions whose result reveals nothing of their
// argument's value (THREATS.md: length, count distinct are not leaks).
var concealing = map[string]bool{
	"count": true, "length": true, "char_length": true, "character_length": true,
	"octet_length": true, "bit_length": true,
}

// Lineage returns the lineage of sql when it is a single SELECT whose
// output columns can be listed from the text (no *, except over a single
// function), else nil: nil too for a text past the limits (MaxAnalyzedBytes,
// MaxAnalyzedTokens). Cached, by text, and by shape when no constant
// decides it.
func (a *Analyzer) Lineage(sql string) *Lineage {
	if e, _, _ := a.entry(sql); e != nil && e.lineageOK {
		return e.lineage
	}
	return a.cachedLineage(sql, func() *Lineage { return lineageOf(sql) })
}

func lineageOf(sql string) *Lineage { return parsed(sql, lineageTree) }

// cachedLineage returns the lineage cached under key, computing and
// keeping it on a miss.
func (a *Analyzer) cachedLineage(key string, compute func() *Lineage) *Lineage {
	c := a.lineage
	if len(key) > maxCachedText {
		c = a.bigLineage
	}
	if l, ok := c.Get(key); ok {
		return l
	}
	l := compute()
	c.Add(key, l)
	return l
}

// parsed applies f to the parse tree of sql; nil for a text past the
// limits (MaxAnalyzedBytes, MaxAnalyzedTokens) or one that does not parse.
func parsed(sql string, f func(*pg_query.ParseResult) *Lineage) *Lineage {
	if overLimits(sql) != "" {
		return nil
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil
	}
	return f(tree)
}

// lineageTree is lineageOf for a parsed text.
func lineageTree(tree *pg_query.ParseResult) *Lineage {
	if len(tree.GetStmts()) != 1 {
		return nil
	}
	return selectLineage(tree.GetStmts()[0].GetStmt().GetSelectStmt(), nil)
}

// FunctionLineage returns the lineage of a SQL function's result from its
// body: the body's last statement when it is a SELECT (what the function
// returns), or the expression of a RETURN. body is pg_proc.prosrc, or for a
// function written with a SQL-standard body, what pg_get_function_sqlbody
// returns (BEGIN ATOMIC ... END, or RETURN expr); nil past the limits.
// Cached.
func (a *Analyzer) FunctionLineage(body string) *Lineage {
	key := "\x00fn\x00" + body
	c := a.lineage
	if len(key) > maxCachedText {
		c = a.bigLineage
	}
	if l, ok := c.Get(key); ok {
		return l
	}
	l := functionLineage(body)
	c.Add(key, l)
	return l
}

func functionLineage(body string) *Lineage {
	if overLimits(body) != "" {
		return nil
	}
	trimmed := strings.ToUpper(strings.TrimSpace(body))
	if strings.HasPrefix(trimmed, "BEGIN") || strings.HasPrefix(trimmed, "RETURN") {
		// A SQL-standard body: parse it as the body of a function.
		tree, err := pg_query.Parse("CREATE FUNCTION f() RETURNS void LANGUAGE sql " + body)
		if err != nil || len(tree.GetStmts()) != 1 {
			return nil
		}
		stmts := tree.GetStmts()[0].GetStmt().GetCreateFunctionStmt().GetSqlBody()
		if l := stmts.GetList(); l != nil {
			// BEGIN ATOMIC: a list holding the list of statements.
			items := l.GetItems()
			if len(items) == 1 && items[0].GetList() != nil {
				items = items[0].GetList().GetItems()
			}
			if len(items) == 0 {
				return nil
			}
			return statementLineage(items[len(items)-1])
		}
		return statementLineage(stmts)
	}
	tree, err := pg_query.Parse(body)
	if err != nil || len(tree.GetStmts()) == 0 {
		return nil
	}
	stmts := tree.GetStmts()
	return statementLineage(stmts[len(stmts)-1].GetStmt())
}

// statementLineage reads a SELECT, or a RETURN expression as a one-column
// result.
func statementLineage(n *pg_query.Node) *Lineage {
	if r := n.GetReturnStmt(); r != nil {
		l := &Lineage{}
		var t Target
		w := walker{refs: &t.Refs, from: &l.From}
		w.walk(r.GetReturnval().ProtoReflect())
		l.Targets = []Target{t}
		return l
	}
	return selectLineage(n.GetSelectStmt(), nil)
}

// derived is a CTE or a subquery in FROM: a relation whose columns are
// themselves computed from others.
type derived struct {
	lin   *Lineage
	names []string // output column names, in order
}

// selectLineage reads one SELECT. A set operation (UNION, INTERSECT,
// EXCEPT) merges its branches column by column; a reference to a CTE or to
// a subquery in FROM is replaced by what that column is computed from.
// scope holds the CTEs visible from enclosing queries.
func selectLineage(sel *pg_query.SelectStmt, scope map[string]*derived) *Lineage {
	if sel == nil {
		return nil
	}
	if w := sel.GetWithClause(); w != nil {
		inner := make(map[string]*derived, len(scope)+len(w.GetCtes()))
		for k, v := range scope {
			inner[k] = v
		}
		for _, c := range w.GetCtes() {
			cte := c.GetCommonTableExpr()
			sub := cte.GetCtequery().GetSelectStmt()
			if l := selectLineage(sub, inner); l != nil && !l.Star {
				names := outputNames(sub)
				for i, a := range cte.GetAliascolnames() {
					if i < len(names) {
						names[i] = a.GetString_().GetSval()
					}
				}
				inner[cte.GetCtename()] = &derived{lin: l, names: names}
			}
		}
		scope = inner
	}
	if isSetOp(sel) {
		return setLineage(sel, scope)
	}
	if len(sel.GetTargetList()) == 0 {
		return nil
	}
	l := &Lineage{}
	virtual := make(map[string]*derived)
	for _, n := range sel.GetFromClause() {
		collectRelations(n, &l.From, virtual, scope)
	}
	added := make(map[*derived]bool)
	for _, n := range sel.GetTargetList() {
		rt := n.GetResTarget()
		if rt == nil {
			return nil
		}
		if cr := rt.GetVal().GetColumnRef(); cr != nil && hasStar(cr) {
			// The output columns are not known from the text, unless the
			// only thing in FROM is a function: its columns are its body's.
			if len(sel.GetTargetList()) == 1 && len(l.From) == 1 && l.From[0].Func && len(virtual) == 0 {
				return &Lineage{From: l.From, Star: true}
			}
			return nil
		}
		var refs []ColumnRef
		w := walker{refs: &refs, from: &l.From, scope: scope}
		w.walk(rt.GetVal().ProtoReflect())
		var t Target
		for _, r := range refs {
			d, idx := resolveDerived(r, virtual)
			if d == nil {
				t.Refs = append(t.Refs, r)
				continue
			}
			t.Refs = append(t.Refs, d.lin.Targets[idx].Refs...)
			if !added[d] {
				added[d] = true
				l.From = append(l.From, d.lin.From...)
			}
		}
		l.Targets = append(l.Targets, t)
	}
	return l
}

func isSetOp(sel *pg_query.SelectStmt) bool {
	return sel.GetOp() != pg_query.SetOperation_SET_OPERATION_UNDEFINED && sel.GetOp() != pg_query.SetOperation_SETOP_NONE
}

// setLineage merges the branches of a set operation column by column,
// each relation and reference once. The branches of nested set operations
// (a UNION b UNION c parses as (a UNION b) UNION c) are merged in one
// pass: merging pairwise would copy what the left side holds at every
// level.
func setLineage(sel *pg_query.SelectStmt, scope map[string]*derived) *Lineage {
	var branches []*pg_query.SelectStmt
	stack := []*pg_query.SelectStmt{sel}
	for len(stack) > 0 {
		b := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if isSetOp(b) && (b == sel || b.GetWithClause() == nil) {
			stack = append(stack, b.GetRarg(), b.GetLarg())
			continue
		}
		branches = append(branches, b)
	}
	var l *Lineage
	from := make(map[Relation]bool)
	var refs []map[ColumnRef]bool
	for _, b := range branches {
		bl := selectLineage(b, scope)
		if bl == nil || bl.Star || l != nil && len(bl.Targets) != len(l.Targets) {
			return nil
		}
		if l == nil {
			l = &Lineage{Targets: make([]Target, len(bl.Targets))}
			refs = make([]map[ColumnRef]bool, len(bl.Targets))
			for i := range refs {
				refs[i] = make(map[ColumnRef]bool)
			}
		}
		for _, r := range bl.From {
			if !from[r] {
				from[r] = true
				l.From = append(l.From, r)
			}
		}
		for i, t := range bl.Targets {
			for _, r := range t.Refs {
				if !refs[i][r] {
					refs[i][r] = true
					l.Targets[i].Refs = append(l.Targets[i].Refs, r)
				}
			}
		}
	}
	return l
}

// resolveDerived finds the CTE or subquery column a reference names.
func resolveDerived(r ColumnRef, virtual map[string]*derived) (*derived, int) {
	if r.Func != "" {
		return nil, 0
	}
	for alias, d := range virtual {
		if r.Qualifier != "" && r.Qualifier != alias {
			continue
		}
		for i, name := range d.names {
			if name == r.Column && i < len(d.lin.Targets) {
				return d, i
			}
		}
	}
	return nil, 0
}

// outputNames names a SELECT's output columns as PostgreSQL does: the
// alias, else the column's or function's name.
func outputNames(sel *pg_query.SelectStmt) []string {
	for sel.GetOp() != pg_query.SetOperation_SET_OPERATION_UNDEFINED && sel.GetOp() != pg_query.SetOperation_SETOP_NONE {
		sel = sel.GetLarg()
	}
	var names []string
	for _, n := range sel.GetTargetList() {
		rt := n.GetResTarget()
		name := rt.GetName()
		if name == "" {
			if cr := rt.GetVal().GetColumnRef(); cr != nil && len(cr.GetFields()) > 0 {
				name = cr.GetFields()[len(cr.GetFields())-1].GetString_().GetSval()
			} else if fc := rt.GetVal().GetFuncCall(); fc != nil {
				name = funcName(fc)
			} else {
				name = "?column?"
			}
		}
		names = append(names, name)
	}
	return names
}

func hasStar(cr *pg_query.ColumnRef) bool {
	for _, f := range cr.GetFields() {
		if f.GetAStar() != nil {
			return true
		}
	}
	return false
}

// collectRelations adds the relations of a FROM item, through joins; CTE
// references and subqueries go to virtual, by the name the query uses.
func collectRelations(n *pg_query.Node, out *[]Relation, virtual, scope map[string]*derived) {
	switch {
	case n.GetRangeVar() != nil:
		rv := n.GetRangeVar()
		name := rv.GetAlias().GetAliasname()
		if d := scope[rv.GetRelname()]; d != nil && rv.GetSchemaname() == "" {
			if name == "" {
				name = rv.GetRelname()
			}
			virtual[name] = d
			return
		}
		*out = append(*out, Relation{Schema: rv.GetSchemaname(), Table: rv.GetRelname(), Alias: name})
	case n.GetRangeSubselect() != nil:
		rs := n.GetRangeSubselect()
		sub := rs.GetSubquery().GetSelectStmt()
		if l := selectLineage(sub, scope); l != nil && !l.Star {
			virtual[rs.GetAlias().GetAliasname()] = &derived{lin: l, names: outputNames(sub)}
		}
	case n.GetRangeFunction() != nil:
		rf := n.GetRangeFunction()
		for _, item := range rf.GetFunctions() {
			// Each item is a list: the call, then its column definitions.
			for _, fn := range item.GetList().GetItems() {
				if fc := fn.GetFuncCall(); fc != nil {
					schema, name := funcQualifiedName(fc)
					alias := rf.GetAlias().GetAliasname()
					if alias == "" {
						alias = name
					}
					*out = append(*out, Relation{Schema: schema, Table: name, Alias: alias, Func: true})
				}
			}
		}
	case n.GetJoinExpr() != nil:
		collectRelations(n.GetJoinExpr().GetLarg(), out, virtual, scope)
		collectRelations(n.GetJoinExpr().GetRarg(), out, virtual, scope)
	}
}

// walker collects the column references of an expression, skipping the
// arguments of concealing functions and IS [NOT] NULL tests. A function
// call is itself a reference (its body may read PII); a scalar subquery's
// references are collected with its relations, which join from.
type walker struct {
	refs  *[]ColumnRef
	from  *[]Relation
	scope map[string]*derived
}

func (w walker) walk(m protoreflect.Message) {
	if !m.IsValid() {
		return
	}
	switch v := m.Interface().(type) {
	case *pg_query.ColumnRef:
		var parts []string
		for _, f := range v.GetFields() {
			if s := f.GetString_(); s != nil {
				parts = append(parts, s.GetSval())
			}
		}
		switch len(parts) {
		case 1:
			*w.refs = append(*w.refs, ColumnRef{Column: parts[0]})
		case 0:
		default:
			*w.refs = append(*w.refs, ColumnRef{Qualifier: parts[len(parts)-2], Column: parts[len(parts)-1]})
		}
		return
	case *pg_query.FuncCall:
		if name := funcName(v); concealing[name] || isEmailDomain(v) || saltedHash(v) || shortPrefix(v) || coarseDate(v) {
			return
		}
		schema, name := funcQualifiedName(v)
		*w.refs = append(*w.refs, ColumnRef{FuncSchema: schema, Func: name})
	case *pg_query.NullTest, *pg_query.BooleanTest:
		return
	case *pg_query.SubLink:
		if v.GetSubLinkType() == pg_query.SubLinkType_EXPR_SUBLINK || v.GetSubLinkType() == pg_query.SubLinkType_ARRAY_SUBLINK {
			// (SELECT email FROM ...) and ARRAY(SELECT ...) return values;
			// EXISTS, IN and comparisons return booleans.
			if l := selectLineage(v.GetSubselect().GetSelectStmt(), w.scope); l != nil && !l.Star {
				for _, t := range l.Targets {
					*w.refs = append(*w.refs, t.Refs...)
				}
				*w.from = append(*w.from, l.From...)
			}
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		switch {
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				list := val.List()
				for i := 0; i < list.Len(); i++ {
					w.walk(list.Get(i).Message())
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			w.walk(val.Message())
		}
		return true
	})
}

// hashes lists the digests whose result is a fixed-size hash of their
// arguments: a dictionary of candidate values inverts them, unless a
// secret random salt is hashed with the value (saltedHash).
var hashes = map[string]bool{
	"md5": true, "sha224": true, "sha256": true, "sha384": true, "sha512": true,
	"digest": true, "hmac": true, "hashtext": true, "hashtextextended": true,
}

// saltedHash recognises a hash of a value salted with a fresh random value
// that the statement does not return: md5(email || gen_random_uuid()::text),
// digest(email || encode(gen_random_bytes(16), 'hex'), 'sha256'), hmac with
// a random key. No client can invert it, not even with a dictionary of
// candidate values, so it is not the value. Only the strong random sources
// salt (see strongRandom); crypt() is not a salted hash here, since its
// result carries its salt.
func saltedHash(f *pg_query.FuncCall) bool {
	if !hashes[funcName(f)] {
		return false
	}
	for _, a := range f.GetArgs() {
		if hasSalt(a) {
			return true
		}
	}
	return false
}

// hasSalt reports whether an expression's value is made by concatenating,
// casting or encoding pieces of which one is a strong random value: the
// salt cannot be dropped on the way (in a CASE branch or under a function
// that keeps a few characters of it, it is not recognised).
func hasSalt(n *pg_query.Node) bool {
	switch {
	case n.GetTypeCast() != nil:
		return hasSalt(n.GetTypeCast().GetArg())
	case n.GetAExpr() != nil:
		e := n.GetAExpr()
		names := e.GetName()
		if e.GetKind() != pg_query.A_Expr_Kind_AEXPR_OP || len(names) != 1 || names[0].GetString_().GetSval() != "||" {
			return false
		}
		return hasSalt(e.GetLexpr()) || hasSalt(e.GetRexpr())
	case n.GetFuncCall() != nil:
		f := n.GetFuncCall()
		args := f.GetArgs()
		switch name := funcName(f); name {
		case "concat", "convert_to", "textsend", "encode", "concat_ws":
			if name == "concat_ws" && len(args) > 0 {
				// The separator only appears between two values.
				args = args[1:]
			}
			if name == "convert_to" || name == "encode" {
				args = args[:min(len(args), 1)]
			}
			for _, a := range args {
				if hasSalt(a) {
					return true
				}
			}
			return false
		}
		return strongRandom(f)
	}
	return false
}

// minSaltBytes is the least random a salt must carry: 64 bits.
const minSaltBytes = 8

// strongRandom recognises a call that returns a fresh value from
// PostgreSQL's strong random source, unknown to the client:
// gen_random_uuid() and uuid_generate_v4() (122 random bits), and
// gen_random_bytes(n) for n >= 8. random() is not one: setseed() makes
// it repeat. Nor are the clock functions: now() is the same for the whole
// transaction and the client can read it, clock_timestamp() is known to
// within the statement's duration, a few hundred thousand microseconds to
// try per value. gen_salt() is left out too: some of its algorithms carry
// a dozen bits.
func strongRandom(f *pg_query.FuncCall) bool {
	switch funcName(f) {
	case "gen_random_uuid", "uuid_generate_v4":
		return len(f.GetArgs()) == 0
	case "gen_random_bytes":
		args := f.GetArgs()
		return len(args) == 1 && args[0].GetAConst() != nil && args[0].GetAConst().GetIval().GetIval() >= minSaltBytes
	}
	return false
}

// maxPrefixChars is the longest prefix of a value that is not the value:
// three characters of a name, an address or a number (an area code, the
// first letters of a surname) do not tell one person from thousands.
const maxPrefixChars = 3

// shortPrefix recognises left(col, n), substr(col, 1, n) and
// substring(col from 1 for n) with a constant n <= maxPrefixChars, over a
// column itself (or a cast of it): a prefix of anything else may be a
// later part of the value (left(substr(email, 4), 3)), which statements
// could put together piece by piece.
func shortPrefix(f *pg_query.FuncCall) bool {
	args := f.GetArgs()
	if len(args) == 0 || !isColumn(args[0]) {
		return false
	}
	switch funcName(f) {
	case "left":
		n, ok := intConst(args, 1)
		return len(args) == 2 && ok && n >= 0 && n <= maxPrefixChars
	case "substr", "substring":
		start, ok1 := intConst(args, 1)
		n, ok2 := intConst(args, 2)
		// substr(s, start, n) returns the characters from max(start, 1)
		// to start+n-1.
		return len(args) == 3 && ok1 && ok2 && start <= 1 && n >= 0 && start+n-1 <= maxPrefixChars
	}
	return false
}

// coarseFields are the parts of a date too coarse to tell one person from
// thousands: the decade of a birth date is a histogram's bucket. The year,
// month and day are not among them: three columns of them are the date.
var coarseFields = map[string]bool{"decade": true, "century": true, "millennium": true}

// coarseDate recognises extract(decade FROM col), date_part('decade', col)
// and date_trunc('decade', col), and the same of century and millennium,
// over a column itself (or a cast of it).
func coarseDate(f *pg_query.FuncCall) bool {
	args := f.GetArgs()
	switch funcName(f) {
	case "extract", "date_part", "date_trunc":
	default:
		return false
	}
	return len(args) == 2 && coarseFields[strings.ToLower(args[0].GetAConst().GetSval().GetSval())] && isColumn(args[1])
}

func isColumn(n *pg_query.Node) bool {
	for n.GetTypeCast() != nil {
		n = n.GetTypeCast().GetArg()
	}
	return n.GetColumnRef() != nil
}

// intConst returns args[i] when it is an integer constant.
func intConst(args []*pg_query.Node, i int) (int64, bool) {
	if i >= len(args) {
		return 0, false
	}
	c := args[i].GetAConst()
	if c == nil || c.GetIval() == nil {
		return 0, false
	}
	return int64(c.GetIval().GetIval()), true
}

// isEmailDomain recognises split_part(x, '@', 2): the domain of an address,
// which THREATS.md counts as no leak.
func isEmailDomain(f *pg_query.FuncCall) bool {
	args := f.GetArgs()
	return funcName(f) == "split_part" && len(args) == 3 &&
		args[1].GetAConst().GetSval().GetSval() == "@" && args[2].GetAConst().GetIval().GetIval() == 2
}

func funcName(f *pg_query.FuncCall) string {
	_, name := funcQualifiedName(f)
	return strings.ToLower(name)
}

// funcQualifiedName returns a call's schema (if written) and name.
func funcQualifiedName(f *pg_query.FuncCall) (schema, name string) {
	names := f.GetFuncname()
	switch len(names) {
	case 0:
		return "", ""
	case 1:
		return "", names[0].GetString_().GetSval()
	}
	return names[len(names)-2].GetString_().GetSval(), names[len(names)-1].GetString_().GetSval()
}
