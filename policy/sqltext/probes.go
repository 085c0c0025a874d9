package sqltext

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Probes returns the columns a statement's predicates test against values
// the client chose: a comparison, range, IN list, ANY or pattern match of a
// column (or of a function of one column, lower(email)) with constants and
// bound parameters, anywhere in the statement (WHERE, HAVING, JOIN ... ON,
// subqueries). Such a statement tells the client something about the
// column's values even when it returns none of them: repeated with other
// values, SELECT count(*) FROM customers WHERE ssn < $1 finds a number by
// bisection. The result is a Lineage of one Target holding the probed
// columns, with From listing every relation the statement names; nil when
// nothing is probed, the text is past the limits or does not parse.
// Comparisons of two columns (a join) probe nothing. Cached, by text and
// by shape: which columns are probed does not depend on the values.
func (a *Analyzer) Probes(sql string) *Lineage {
	if e, _, _ := a.entry(sql); e != nil {
		return e.probes
	}
	return a.cachedLineage("\x00probe\x00"+sql, func() *Lineage { return probesOf(sql) })
}

func probesOf(sql string) *Lineage { return parsed(sql, probesTree) }

// probesTree is probesOf for a parsed text.
func probesTree(tree *pg_query.ParseResult) *Lineage {
	p := prober{l: &Lineage{}, seen: map[ColumnRef]bool{}, rels: map[Relation]bool{}}
	for _, st := range tree.GetStmts() {
		p.walk(st.GetStmt().ProtoReflect())
	}
	if len(p.l.Targets) == 0 {
		return nil
	}
	return p.l
}

type prober struct {
	l    *Lineage
	seen map[ColumnRef]bool
	rels map[Relation]bool
}

func (p *prober) walk(m protoreflect.Message) {
	if !m.IsValid() {
		return
	}
	switch v := m.Interface().(type) {
	case *pg_query.RangeVar:
		r := Relation{Schema: v.GetSchemaname(), Table: v.GetRelname(), Alias: v.GetAlias().GetAliasname()}
		if !p.rels[r] {
			p.rels[r] = true
			p.l.From = append(p.l.From, r)
		}
		return
	case *pg_query.A_Expr:
		p.compare(v)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		switch {
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				list := val.List()
				for i := 0; i < list.Len(); i++ {
					p.walk(list.Get(i).Message())
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			p.walk(val.Message())
		}
		return true
	})
}

// probeOps are the operators that compare a column with a value: equality,
// order, and pattern matches (LIKE is ~~).
var probeOps = map[string]bool{
	"=": true, "<>": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true,
	"~~": true, "!~~": true, "~~*": true, "!~~*": true, "~": true, "~*": true,
}

// compare records the column of a comparison with a value.
func (p *prober) compare(e *pg_query.A_Expr) {
	switch e.GetKind() {
	case pg_query.A_Expr_Kind_AEXPR_OP, pg_query.A_Expr_Kind_AEXPR_OP_ANY, pg_query.A_Expr_Kind_AEXPR_OP_ALL:
		names := e.GetName()
		if len(names) != 1 || !probeOps[names[0].GetString_().GetSval()] {
			return
		}
	case pg_query.A_Expr_Kind_AEXPR_IN, pg_query.A_Expr_Kind_AEXPR_LIKE, pg_query.A_Expr_Kind_AEXPR_ILIKE,
		pg_query.A_Expr_Kind_AEXPR_SIMILAR, pg_query.A_Expr_Kind_AEXPR_BETWEEN, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
	default:
		return
	}
	for _, side := range [2][2]*pg_query.Node{{e.GetLexpr(), e.GetRexpr()}, {e.GetRexpr(), e.GetLexpr()}} {
		if ref, ok := probedColumn(side[0]); ok && isValue(side[1]) {
			if !p.seen[ref] {
				p.seen[ref] = true
				if len(p.l.Targets) == 0 {
					p.l.Targets = []Target{{}}
				}
				p.l.Targets[0].Refs = append(p.l.Targets[0].Refs, ref)
			}
			return
		}
	}
}

// probedColumn returns the column an operand is: a column, a cast of one,
// or a function of one column and values (lower(email), substr(ssn, 1, 3)).
func probedColumn(n *pg_query.Node) (ColumnRef, bool) {
	for n.GetTypeCast() != nil {
		n = n.GetTypeCast().GetArg()
	}
	if cr := n.GetColumnRef(); cr != nil {
		var parts []string
		for _, f := range cr.GetFields() {
			if s := f.GetString_(); s != nil {
				parts = append(parts, s.GetSval())
			}
		}
		switch len(parts) {
		case 0:
			return ColumnRef{}, false
		case 1:
			return ColumnRef{Column: parts[0]}, true
		}
		return ColumnRef{Qualifier: parts[len(parts)-2], Column: parts[len(parts)-1]}, true
	}
	if f := n.GetFuncCall(); f != nil && !concealing[funcName(f)] {
		var ref ColumnRef
		found := false
		for _, a := range f.GetArgs() {
			if r, ok := probedColumn(a); ok && !found {
				ref, found = r, true
				continue
			}
			if !isValue(a) {
				return ColumnRef{}, false
			}
		}
		return ref, found
	}
	return ColumnRef{}, false
}

// isValue reports whether an expression is made of constants and bound
// parameters only: $1, 'x', $1 + 19, ARRAY[...], ('a', 'b').
func isValue(n *pg_query.Node) bool {
	switch {
	case n == nil:
		return false
	case n.GetAConst() != nil, n.GetParamRef() != nil:
		return true
	case n.GetTypeCast() != nil:
		return isValue(n.GetTypeCast().GetArg())
	case n.GetList() != nil:
		return allValues(n.GetList().GetItems())
	case n.GetAArrayExpr() != nil:
		return allValues(n.GetAArrayExpr().GetElements())
	case n.GetAExpr() != nil:
		e := n.GetAExpr()
		return (e.GetLexpr() == nil || isValue(e.GetLexpr())) && isValue(e.GetRexpr())
	case n.GetFuncCall() != nil:
		return allValues(n.GetFuncCall().GetArgs())
	}
	return false
}

func allValues(ns []*pg_query.Node) bool {
	if len(ns) == 0 {
		return false
	}
	for _, n := range ns {
		if !isValue(n) {
			return false
		}
	}
	return true
}
