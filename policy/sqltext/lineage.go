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
}

// Relation is a table or view named in FROM.
type Relation struct {
	Schema, Table, Alias string
}

// Target is what one output column is computed from.
type Target struct {
	Refs []ColumnRef
}

// ColumnRef is a column reference, with its qualifier if written.
type ColumnRef struct {
	Qualifier, Column string
}

// concealing lists functions whose result reveals nothing of their
// argument's value (THREATS.md: length, count distinct are not leaks).
var concealing = map[string]bool{
	"count": true, "length": true, "char_length": true, "character_length": true,
	"octet_length": true, "bit_length": true,
}

// Lineage returns the lineage of sql when it is a single SELECT whose
// output columns can be listed from the text (no *), else nil. Cached.
func (a *Analyzer) Lineage(sql string) *Lineage {
	if l, ok := a.lineage.Get(sql); ok {
		return l
	}
	l := lineageOf(sql)
	if len(sql) <= maxCachedText {
		a.lineage.Add(sql, l)
	}
	return l
}

func lineageOf(sql string) *Lineage {
	tree, err := pg_query.Parse(sql)
	if err != nil || len(tree.GetStmts()) != 1 {
		return nil
	}
	return selectLineage(tree.GetStmts()[0].GetStmt().GetSelectStmt(), nil)
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
			if l := selectLineage(sub, inner); l != nil {
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
	if sel.GetOp() != pg_query.SetOperation_SET_OPERATION_UNDEFINED && sel.GetOp() != pg_query.SetOperation_SETOP_NONE {
		left, right := selectLineage(sel.GetLarg(), scope), selectLineage(sel.GetRarg(), scope)
		if left == nil || right == nil || len(left.Targets) != len(right.Targets) {
			return nil
		}
		l := &Lineage{From: append(append([]Relation(nil), left.From...), right.From...)}
		for i := range left.Targets {
			refs := append(append([]ColumnRef(nil), left.Targets[i].Refs...), right.Targets[i].Refs...)
			l.Targets = append(l.Targets, Target{Refs: refs})
		}
		return l
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
			return nil // the output columns are not known from the text
		}
		var refs []ColumnRef
		walk(rt.GetVal().ProtoReflect(), &refs)
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

// resolveDerived finds the CTE or subquery column a reference names.
func resolveDerived(r ColumnRef, virtual map[string]*derived) (*derived, int) {
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
		if l := selectLineage(sub, scope); l != nil {
			virtual[rs.GetAlias().GetAliasname()] = &derived{lin: l, names: outputNames(sub)}
		}
	case n.GetJoinExpr() != nil:
		collectRelations(n.GetJoinExpr().GetLarg(), out, virtual, scope)
		collectRelations(n.GetJoinExpr().GetRarg(), out, virtual, scope)
	}
}

// walk collects the column references of an expression, skipping the
// arguments of concealing functions and IS [NOT] NULL tests.
func walk(m protoreflect.Message, refs *[]ColumnRef) {
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
			*refs = append(*refs, ColumnRef{Column: parts[0]})
		case 0:
		default:
			*refs = append(*refs, ColumnRef{Qualifier: parts[len(parts)-2], Column: parts[len(parts)-1]})
		}
		return
	case *pg_query.FuncCall:
		if name := funcName(v); concealing[name] || isEmailDomain(v) {
			return
		}
	case *pg_query.NullTest, *pg_query.BooleanTest:
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		switch {
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				list := val.List()
				for i := 0; i < list.Len(); i++ {
					walk(list.Get(i).Message(), refs)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			walk(val.Message(), refs)
		}
		return true
	})
}

// isEmailDomain recognises split_part(x, '@', 2): the domain of an address,
// which THREATS.md counts as no leak.
func isEmailDomain(f *pg_query.FuncCall) bool {
	args := f.GetArgs()
	return funcName(f) == "split_part" && len(args) == 3 &&
		args[1].GetAConst().GetSval().GetSval() == "@" && args[2].GetAConst().GetIval().GetIval() == 2
}

func funcName(f *pg_query.FuncCall) string {
	names := f.GetFuncname()
	if len(names) == 0 {
		return ""
	}
	return strings.ToLower(names[len(names)-1].GetString_().GetSval())
}
