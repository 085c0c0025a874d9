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
	return selectLineage(tree.GetStmts()[0].GetStmt().GetSelectStmt())
}

// selectLineage reads one SELECT; a set operation (UNION, INTERSECT,
// EXCEPT) merges its branches column by column.
func selectLineage(sel *pg_query.SelectStmt) *Lineage {
	if sel == nil {
		return nil
	}
	if sel.GetOp() != pg_query.SetOperation_SET_OPERATION_UNDEFINED && sel.GetOp() != pg_query.SetOperation_SETOP_NONE {
		left, right := selectLineage(sel.GetLarg()), selectLineage(sel.GetRarg())
		if left == nil || right == nil || len(left.Targets) != len(right.Targets) {
			return nil
		}
		l := &Lineage{From: append(left.From, right.From...)}
		for i := range left.Targets {
			l.Targets = append(l.Targets, Target{Refs: append(left.Targets[i].Refs, right.Targets[i].Refs...)})
		}
		return l
	}
	if len(sel.GetTargetList()) == 0 {
		return nil
	}
	l := &Lineage{}
	for _, n := range sel.GetFromClause() {
		collectRelations(n, &l.From)
	}
	for _, n := range sel.GetTargetList() {
		rt := n.GetResTarget()
		if rt == nil {
			return nil
		}
		if cr := rt.GetVal().GetColumnRef(); cr != nil && hasStar(cr) {
			return nil // the output columns are not known from the text
		}
		var t Target
		walk(rt.GetVal().ProtoReflect(), &t.Refs)
		l.Targets = append(l.Targets, t)
	}
	return l
}

func hasStar(cr *pg_query.ColumnRef) bool {
	for _, f := range cr.GetFields() {
		if f.GetAStar() != nil {
			return true
		}
	}
	return false
}

// collectRelations adds the relations of a FROM item, through joins.
func collectRelations(n *pg_query.Node, out *[]Relation) {
	switch {
	case n.GetRangeVar() != nil:
		rv := n.GetRangeVar()
		*out = append(*out, Relation{Schema: rv.GetSchemaname(), Table: rv.GetRelname(), Alias: rv.GetAlias().GetAliasname()})
	case n.GetJoinExpr() != nil:
		collectRelations(n.GetJoinExpr().GetLarg(), out)
		collectRelations(n.GetJoinExpr().GetRarg(), out)
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
