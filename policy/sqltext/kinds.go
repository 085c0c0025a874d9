package sqltext

import (
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Statement kinds, named as policy rules name them.
const (
	KindSelect        = "select"
	KindCopyToStdout  = "copy_to_stdout"
	KindCopyToFile    = "copy_to_file"
	KindCopyToProgram = "copy_to_program"
	KindCopyFrom      = "copy_from"
	KindCreateTableAs = "create_table_as"
	KindInsertSelect  = "insert_select"
	KindLoExport      = "lo_export"
	KindDblink        = "dblink"
	KindDDL           = "ddl"
	KindDML           = "dml"
	KindOther         = "other"
)

// classify returns the kinds of the statements in a parsed text, the
// relations they name anywhere (FROM, JOIN, subqueries, INSERT and COPY
// targets, CTEs excepted) and the functions they call (Func set), each
// once.
func classify(tree *pg_query.ParseResult) (kinds []string, rels, funcs []Relation) {
	add := func(k string) {
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	for _, raw := range tree.GetStmts() {
		n := raw.GetStmt()
		switch {
		case n.GetSelectStmt() != nil:
			if n.GetSelectStmt().GetIntoClause() != nil {
				add(KindCreateTableAs)
			} else {
				add(KindSelect)
			}
		case n.GetCopyStmt() != nil:
			c := n.GetCopyStmt()
			switch {
			case c.GetIsFrom():
				add(KindCopyFrom)
			case c.GetIsProgram():
				add(KindCopyToProgram)
			case c.GetFilename() != "":
				add(KindCopyToFile)
			default:
				add(KindCopyToStdout)
			}
		case n.GetCreateTableAsStmt() != nil:
			add(KindCreateTableAs)
		case n.GetInsertStmt() != nil:
			add(KindDML)
			if sel := n.GetInsertStmt().GetSelectStmt().GetSelectStmt(); sel != nil && len(sel.GetValuesLists()) == 0 {
				add(KindInsertSelect)
			}
		case n.GetUpdateStmt() != nil, n.GetDeleteStmt() != nil, n.GetMergeStmt() != nil:
			add(KindDML)
		case n.GetCreateForeignServerStmt() != nil, n.GetImportForeignSchemaStmt() != nil,
			n.GetCreateUserMappingStmt() != nil, n.GetCreateForeignTableStmt() != nil:
			// Setting up a link to another server.
			add(KindDblink)
			add(KindDDL)
		default:
			if isDDL(n) {
				add(KindDDL)
			} else {
				add(KindOther)
			}
		}
		scanCalls(n.ProtoReflect(), add, &relSet{list: &rels}, &relSet{list: &funcs}, nil)
	}
	return kinds, rels, funcs
}

// isDDL reports whether a statement defines or changes schema objects or
// privileges.
func isDDL(n *pg_query.Node) bool {
	name := string(n.ProtoReflect().WhichOneof(n.ProtoReflect().Descriptor().Oneofs().ByName("node")).Name())
	for _, p := range []string{"create", "alter", "drop", "grant", "rename", "comment", "truncate", "reindex", "cluster", "vacuum", "refresh", "define", "index", "view"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// scanCalls walks a statement for the functions that send data off the
// server (lo_export, dblink*), the relations it names and the functions it
// calls. ctes holds the CTE names in scope, which are not relations.
func scanCalls(m protoreflect.Message, add func(string), rels, funcs *relSet, ctes []string) {
	if !m.IsValid() {
		return
	}
	switch v := m.Interface().(type) {
	case *pg_query.FuncCall:
		schema, name := funcQualifiedName(v)
		funcs.add(Relation{Schema: schema, Table: name, Func: true})
		switch name := funcName(v); {
		case name == "lo_export":
			add(KindLoExport)
		case strings.HasPrefix(name, "dblink"):
			add(KindDblink)
		case loWriters[name]:
			// A query's result written into a large object, to be read
			// back later: staged, as by CREATE TABLE AS.
			add(KindCreateTableAs)
		}
	case *pg_query.InsertStmt:
		// An INSERT of a query's result, at the top or in a WITH, or of
		// VALUES computed by subqueries (the same INSERT ... SELECT
		// written otherwise), stages what it reads.
		if sel := v.GetSelectStmt().GetSelectStmt(); sel != nil && (len(sel.GetValuesLists()) == 0 || hasSubLink(sel.ProtoReflect())) {
			add(KindDML)
			add(KindInsertSelect)
		}
	case *pg_query.WithClause:
		for _, c := range v.GetCtes() {
			ctes = append(ctes, c.GetCommonTableExpr().GetCtename())
		}
	case *pg_query.SelectStmt:
		if w := v.GetWithClause(); w != nil {
			for _, c := range w.GetCtes() {
				ctes = append(ctes, c.GetCommonTableExpr().GetCtename())
			}
		}
	case *pg_query.RangeVar:
		if v.GetSchemaname() != "" || !slices.Contains(ctes, v.GetRelname()) {
			rels.add(Relation{Schema: v.GetSchemaname(), Table: v.GetRelname()})
		}
		return
	}
	children(m, func(c protoreflect.Message) bool {
		scanCalls(c, add, rels, funcs, ctes)
		return true
	})
}

// loWriters are the SQL functions that write into a large object.
var loWriters = map[string]bool{"lo_from_bytea": true, "lo_put": true, "lowrite": true}

// hasSubLink reports whether an expression tree holds a subquery.
func hasSubLink(m protoreflect.Message) bool {
	if !m.IsValid() {
		return false
	}
	if _, ok := m.Interface().(*pg_query.SubLink); ok {
		return true
	}
	return !children(m, func(c protoreflect.Message) bool { return !hasSubLink(c) })
}

// relSet lists relations each once, in the order first seen.
type relSet struct {
	list *[]Relation
	seen map[Relation]struct{}
}

func (s *relSet) add(r Relation) {
	if s.seen == nil {
		s.seen = make(map[Relation]struct{})
	}
	if _, ok := s.seen[r]; !ok {
		s.seen[r] = struct{}{}
		*s.list = append(*s.list, r)
	}
}

// children calls f with each message m holds, in field order (Range's
// order is undefined, and not always the same: relations are listed as
// the text names them), until f returns false; it returns false then.
func children(m protoreflect.Message, f func(protoreflect.Message) bool) bool {
	d := m.Descriptor()
	if oo := d.Oneofs(); oo.Len() == 1 && oo.Get(0).Fields().Len() == d.Fields().Len() {
		// A Node: one of its hundreds of fields is set.
		fd := m.WhichOneof(oo.Get(0))
		if fd == nil || fd.Kind() != protoreflect.MessageKind {
			return true
		}
		return f(m.Get(fd).Message())
	}
	fields := d.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Kind() != protoreflect.MessageKind || !m.Has(fd) {
			continue
		}
		if fd.IsList() {
			list := m.Get(fd).List()
			for j := 0; j < list.Len(); j++ {
				if !f(list.Get(j).Message()) {
					return false
				}
			}
		} else if !f(m.Get(fd).Message()) {
			return false
		}
	}
	return true
}

// EstimableQuery returns the query whose row count a planner estimate
// tells, for a text that is one SELECT, a DECLARE of a cursor, or a COPY
// TO STDOUT of a query or a table; ok is false for anything else, and for
// a query past the planning budget (MaxPlannedRelations, MaxPlannedQueries).
// params is set when the query holds parameters ($1): it can be planned
// only with the values an Execute binds.
func EstimableQuery(sql string) (query string, params, ok bool) {
	if overLimits(sql) != "" {
		return "", false, false
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return "", false, false
	}
	return estimableOf(tree, sql)
}

func estimableOf(tree *pg_query.ParseResult, sql string) (query string, params, ok bool) {
	if len(tree.GetStmts()) != 1 {
		return "", false, false
	}
	query, ok = estimable(tree, sql)
	if !ok || !withinPlanBudget(tree) {
		return "", false, false
	}
	return query, hasParam(tree), true
}

// The planning budget of a query pgwarden asks the planner about. Planning
// time grows steeply with the relations joined (30 joined tables can take
// a second) and with CTEs and subqueries (600 chained CTEs take 15
// seconds, 3,000 a quarter of an hour), and PostgreSQL does not look for
// a cancel or a statement_timeout inside those loops: an EXPLAIN past its
// deadline cannot be stopped, and would go on, on pgwarden's connection,
// after the client has had its answer. Queries past the budget are not
// estimated. (A view is counted as one relation: what it joins is the
// deadline's to bound.)
const (
	// MaxPlannedRelations bounds the tables, views, CTE references and
	// functions in FROM clauses.
	MaxPlannedRelations = 24
	// MaxPlannedQueries bounds the SELECTs: CTEs, subqueries, branches of
	// set operations, the query itself.
	MaxPlannedQueries = 100
)

// withinPlanBudget counts a parsed text's relations and queries.
func withinPlanBudget(tree *pg_query.ParseResult) bool {
	var rels, queries int
	var walk func(m protoreflect.Message) bool
	walk = func(m protoreflect.Message) bool {
		if !m.IsValid() {
			return true
		}
		switch m.Interface().(type) {
		case *pg_query.RangeVar, *pg_query.RangeFunction:
			rels++
		case *pg_query.SelectStmt:
			queries++
		}
		if rels > MaxPlannedRelations || queries > MaxPlannedQueries {
			return false
		}
		return children(m, walk)
	}
	return walk(tree.ProtoReflect())
}

func estimable(tree *pg_query.ParseResult, sql string) (query string, ok bool) {
	n := tree.GetStmts()[0].GetStmt()
	var q *pg_query.Node
	switch {
	case n.GetSelectStmt() != nil:
		if n.GetSelectStmt().GetIntoClause() != nil {
			return "", false
		}
		return sql, true
	case n.GetDeclareCursorStmt() != nil:
		q = n.GetDeclareCursorStmt().GetQuery()
	case n.GetCopyStmt() != nil && !n.GetCopyStmt().GetIsFrom() && n.GetCopyStmt().GetFilename() == "":
		c := n.GetCopyStmt()
		if c.GetQuery() != nil {
			q = c.GetQuery()
		} else if rv := c.GetRelation(); rv != nil {
			name := quoteIdent(rv.GetRelname())
			if rv.GetSchemaname() != "" {
				name = quoteIdent(rv.GetSchemaname()) + "." + name
			}
			return "SELECT * FROM " + name, true
		}
	}
	if q == nil || q.GetSelectStmt() == nil {
		return "", false
	}
	out, err := pg_query.Deparse(&pg_query.ParseResult{Version: tree.GetVersion(), Stmts: []*pg_query.RawStmt{{Stmt: q}}})
	if err != nil {
		return "", false
	}
	return out, true
}

// hasParam reports whether a parse tree holds a $n parameter.
func hasParam(tree *pg_query.ParseResult) bool {
	found := false
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		if found || !m.IsValid() {
			return
		}
		if _, ok := m.Interface().(*pg_query.ParamRef); ok {
			found = true
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
			switch {
			case fd.IsList():
				if fd.Kind() == protoreflect.MessageKind {
					list := val.List()
					for i := 0; i < list.Len(); i++ {
						walk(list.Get(i).Message())
					}
				}
			case fd.Kind() == protoreflect.MessageKind:
				walk(val.Message())
			}
			return !found
		})
	}
	walk(tree.ProtoReflect())
	return found
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
