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
		scanCalls(n.ProtoReflect(), add, &rels, &funcs, nil)
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
func scanCalls(m protoreflect.Message, add func(string), rels, funcs *[]Relation, ctes []string) {
	if !m.IsValid() {
		return
	}
	switch v := m.Interface().(type) {
	case *pg_query.FuncCall:
		schema, name := funcQualifiedName(v)
		if f := (Relation{Schema: schema, Table: name, Func: true}); !slices.Contains(*funcs, f) {
			*funcs = append(*funcs, f)
		}
		switch name := funcName(v); {
		case name == "lo_export":
			add(KindLoExport)
		case strings.HasPrefix(name, "dblink"):
			add(KindDblink)
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
			r := Relation{Schema: v.GetSchemaname(), Table: v.GetRelname()}
			if !slices.Contains(*rels, r) {
				*rels = append(*rels, r)
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
					scanCalls(list.Get(i).Message(), add, rels, funcs, ctes)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			scanCalls(val.Message(), add, rels, funcs, ctes)
		}
		return true
	})
}

// EstimableQuery returns the query whose row count a planner estimate
// tells, for a text that is one SELECT, a DECLARE of a cursor, or a COPY
// TO STDOUT of a query or a table; ok is false for anything else. params
// is set when the query holds parameters ($1): it can be planned only
// with the values an Execute binds.
func EstimableQuery(sql string) (query string, params, ok bool) {
	tree, err := pg_query.Parse(sql)
	if err != nil || len(tree.GetStmts()) != 1 {
		return "", false, false
	}
	query, ok = estimable(tree, sql)
	return query, ok && hasParam(tree), ok
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
