package sqltext

import (
	"strconv"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Predicate is a comparison in a query's WHERE clause between a column and
// values known before it runs: constants, and parameters plus a constant.
// Only the conjuncts (AND) of the top-level WHERE of a single SELECT are
// read; a disjunction or a comparison with another column tells nothing
// and is left out.
type Predicate struct {
	// Qualifier and Column name the column as written: t.id is "t", "id".
	Qualifier, Column string
	// Op is "=", "in", "between", "<", "<=", ">" or ">=", the column on the
	// left ("5 < id" is read as "id > 5").
	Op string
	// Values are the operands: one for a comparison, the list for "in",
	// low and high for "between".
	Values []Operand
}

// Operand is a value a predicate compares with: the constant Const when
// Param is 0, else the Param-th parameter ($1 is 1) plus Add.
type Operand struct {
	Param int
	Add   int64
	Const string
}

// maxPredicateValues bounds the values kept of one IN list.
const maxPredicateValues = 1000

// predicatesOf reads the predicates of a single SELECT's WHERE clause.
func predicatesOf(tree *pg_query.ParseResult) []Predicate {
	p, _ := predicateOperands(tree)
	return p
}

// predicateOperands is predicatesOf, with the expression each of the
// predicates' values is read from.
func predicateOperands(tree *pg_query.ParseResult) ([]Predicate, [][]*pg_query.Node) {
	if len(tree.GetStmts()) != 1 {
		return nil, nil
	}
	sel := tree.GetStmts()[0].GetStmt().GetSelectStmt()
	if sel == nil || sel.GetWhereClause() == nil || isSetOp(sel) {
		return nil, nil
	}
	var out []Predicate
	var nodes [][]*pg_query.Node
	var conj func(n *pg_query.Node)
	conj = func(n *pg_query.Node) {
		if b := n.GetBoolExpr(); b != nil {
			if b.GetBoolop() == pg_query.BoolExprType_AND_EXPR {
				for _, a := range b.GetArgs() {
					conj(a)
				}
			}
			return
		}
		if p, ns, ok := predicate(n.GetAExpr()); ok {
			out = append(out, p)
			nodes = append(nodes, ns)
		}
	}
	conj(sel.GetWhereClause())
	return out, nodes
}

var flipped = map[string]string{"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

func predicate(e *pg_query.A_Expr) (Predicate, []*pg_query.Node, bool) {
	if e == nil || len(e.GetName()) != 1 {
		return Predicate{}, nil, false
	}
	op := e.GetName()[0].GetString_().GetSval()
	left, right := e.GetLexpr(), e.GetRexpr()
	var p Predicate
	var nodes []*pg_query.Node
	switch e.GetKind() {
	case pg_query.A_Expr_Kind_AEXPR_OP:
		if _, ok := flipped[op]; !ok {
			return Predicate{}, nil, false
		}
		if !columnOf(left, &p) {
			if !columnOf(right, &p) {
				return Predicate{}, nil, false
			}
			left, right, op = right, left, flipped[op]
		}
		v, ok := operandOf(right)
		if !ok {
			return Predicate{}, nil, false
		}
		p.Op, p.Values, nodes = op, []Operand{v}, []*pg_query.Node{right}
	case pg_query.A_Expr_Kind_AEXPR_IN:
		if op != "=" || !columnOf(left, &p) {
			return Predicate{}, nil, false
		}
		items := right.GetList().GetItems()
		if len(items) == 0 || len(items) > maxPredicateValues {
			return Predicate{}, nil, false
		}
		p.Op = "in"
		for _, it := range items {
			v, ok := operandOf(it)
			if !ok {
				return Predicate{}, nil, false
			}
			p.Values = append(p.Values, v)
			nodes = append(nodes, it)
		}
	case pg_query.A_Expr_Kind_AEXPR_BETWEEN:
		bounds := right.GetList().GetItems()
		if !columnOf(left, &p) || len(bounds) != 2 {
			return Predicate{}, nil, false
		}
		lo, ok1 := operandOf(bounds[0])
		hi, ok2 := operandOf(bounds[1])
		if !ok1 || !ok2 {
			return Predicate{}, nil, false
		}
		p.Op, p.Values, nodes = "between", []Operand{lo, hi}, bounds
	default:
		return Predicate{}, nil, false
	}
	return p, nodes, true
}

// columnOf reads a column reference, through a cast.
func columnOf(n *pg_query.Node, p *Predicate) bool {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.GetArg()
	}
	cr := n.GetColumnRef()
	if cr == nil {
		return false
	}
	var names []string
	for _, f := range cr.GetFields() {
		s := f.GetString_()
		if s == nil {
			return false // t.*
		}
		names = append(names, s.GetSval())
	}
	switch len(names) {
	case 1:
		p.Column = names[0]
	case 2:
		p.Qualifier, p.Column = names[0], names[1]
	default:
		p.Qualifier, p.Column = names[len(names)-2], names[len(names)-1]
	}
	return true
}

// operandOf reads a constant, a parameter, or a parameter plus or minus an
// integer constant, through casts.
func operandOf(n *pg_query.Node) (Operand, bool) {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.GetArg()
	}
	if pr := n.GetParamRef(); pr != nil {
		return Operand{Param: int(pr.GetNumber())}, pr.GetNumber() > 0
	}
	if c := n.GetAConst(); c != nil {
		switch {
		case c.GetIsnull():
			return Operand{}, false
		case c.GetIval() != nil:
			return Operand{Const: strconv.FormatInt(int64(c.GetIval().GetIval()), 10)}, true
		case c.GetFval() != nil:
			return Operand{Const: c.GetFval().GetFval()}, true
		case c.GetSval() != nil:
			return Operand{Const: c.GetSval().GetSval()}, true
		}
		return Operand{}, false
	}
	e := n.GetAExpr()
	if e == nil || e.GetKind() != pg_query.A_Expr_Kind_AEXPR_OP || len(e.GetName()) != 1 {
		return Operand{}, false
	}
	op := e.GetName()[0].GetString_().GetSval()
	if op != "+" && op != "-" {
		return Operand{}, false
	}
	l, ok1 := operandOf(e.GetLexpr())
	r, ok2 := operandOf(e.GetRexpr())
	if !ok1 || !ok2 {
		return Operand{}, false
	}
	if l.Param == 0 && r.Param != 0 && op == "+" {
		l, r = r, l
	}
	if l.Param == 0 || r.Param != 0 {
		return Operand{}, false // constant folding is the server's
	}
	k, err := strconv.ParseInt(r.Const, 10, 64)
	if err != nil {
		return Operand{}, false
	}
	if op == "-" {
		k = -k
	}
	l.Add += k
	return l, true
}
