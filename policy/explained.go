package policy

import (
	"strings"
	"time"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"gopkg.in/yaml.v3"
)

// ExplainedAccess says which rows of a table an employee has a reason to
// see: Query, run with the employee's name as $1, returns the keys (for
// example the customers of the open tickets assigned to them). Rows of
// Table whose Key column is not among them are unexplained, a measure
// rules can limit (unexplained_rows) and the norms score apart.
type ExplainedAccess struct {
	Schema, Table, Key string
	Query              string
	Refresh            time.Duration // how long an employee's keys are reused; default 1m
}

// Explained returns the explained_access settings: Table and Key name the
// key space (Schema empty when the policy has none), Query, if set, the
// keys each employee has a reason to see. The key space also feeds
// sequential_rows: rows whose key is next to one the employee read in the
// last hour, a sweep.
func (p *Policy) Explained() ExplainedAccess { return p.explained }

func (ps *parser) explainedConfig(n *yaml.Node) {
	e := ExplainedAccess{Refresh: time.Minute}
	seen := ps.mapping(n, "explained_access", map[string]field{
		"table": func(v *yaml.Node) {
			s, ok := ps.str(v, "explained_access.table")
			if !ok {
				return
			}
			schema, table, found := strings.Cut(s, ".")
			if !found || schema == "" || table == "" || strings.ContainsAny(s, "*?[") {
				ps.errorf(v, "explained_access.table: want schema.table, got %q", s)
				return
			}
			e.Schema, e.Table = schema, table
		},
		"key": func(v *yaml.Node) {
			if s, ok := ps.str(v, "explained_access.key"); ok {
				e.Key = s
			}
		},
		"query": func(v *yaml.Node) {
			s, ok := ps.str(v, "explained_access.query")
			if !ok {
				return
			}
			tree, err := pg_query.Parse(s)
			if err != nil {
				ps.errorf(v, "explained_access.query: %v", err)
				return
			}
			if len(tree.GetStmts()) != 1 || tree.GetStmts()[0].GetStmt().GetSelectStmt() == nil {
				ps.errorf(v, "explained_access.query: want one SELECT")
				return
			}
			if !strings.Contains(s, "$1") {
				ps.errorf(v, "explained_access.query: the employee's name is $1, and the query does not use it")
				return
			}
			e.Query = s
		},
		"refresh": func(v *yaml.Node) {
			s, ok := ps.str(v, "explained_access.refresh")
			if !ok {
				return
			}
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				ps.errorf(v, "explained_access.refresh: want a positive duration such as 1m, got %q", s)
				return
			}
			e.Refresh = d
		},
	})
	if seen != nil && !ps.required(n, seen, "explained_access", "table", "key") {
		return
	}
	ps.p.explained = e
}
