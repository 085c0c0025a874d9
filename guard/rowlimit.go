package guard

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/sqltext"
	"github.com/pgwarden/pgwarden/proxy"
)

// rowLimitRule stands for Config.MaxRowsPerStatement in decisions, so
// that a refusal is logged, alerted and counted like a rule's.
var rowLimitRule = &policy.Rule{
	Name:        "max_rows_per_statement",
	Description: "a statement returned more rows than --max-rows-per-statement",
	Action:      policy.ActionBlock,
	Severity:    "high",
	Scope:       policy.ScopeStatement,
}

// rowLimit blocks the row that would pass MaxRowsPerStatement; the figures
// count what the client received. The FETCHes from a cursor add up: the
// cursor's query is the statement (psql's FETCH_COUNT, pg_dump --inserts).
// Results read only from the system catalogs are not limited: tools read
// thousands of catalog rows (pg_dump's pg_depend) and no user data comes
// with them.
func (s *session) rowLimit(st *proxy.Statement, f *Figures) proxy.Verdict {
	max := s.g.cfg.MaxRowsPerStatement
	if max <= 0 {
		return proxy.Verdict{}
	}
	var before int64
	if c := s.fetchedCursor(st); c != nil {
		before = c.rows
	}
	if before+f.Rows < max || s.catalogOnly(st, f) {
		return proxy.Verdict{}
	}
	reason := fmt.Sprintf("statement returned more than %d rows (limit max_rows_per_statement)", max)
	v := s.decideAs(st, rowLimitRule, policy.Breach{Measure: "rows", Observed: before + f.Rows + 1, Limit: max}, reason,
		decisionExtra{source: "limit"})
	if v.Action != proxy.Continue {
		v.Reason = reason
	}
	return v
}

// belowRowLimit reports, without a call, that the next row of f is within
// MaxRowsPerStatement: no need to ask rowLimit.
func (s *session) belowRowLimit(f *Figures) bool {
	max := s.g.cfg.MaxRowsPerStatement
	return max <= 0 || len(s.limited) == 0 && f.Rows < max
}

// limitedCursor is an open cursor as the row limit sees it.
type limitedCursor struct {
	declare string // the DECLARE statement's text
	rows    int64  // returned by the FETCHes recorded so far
}

// maxLimitedCursors bounds the cursors a session's row limit follows; past
// it, a new cursor's FETCHes are limited one by one.
const maxLimitedCursors = 256

// fetchedCursor returns the cursor st fetches from, nil if none or unknown.
func (s *session) fetchedCursor(st *proxy.Statement) *limitedCursor {
	if len(s.limited) == 0 {
		return nil
	}
	info := s.analyze(s.sqlOf(st))
	if info.CursorOp != "fetch" {
		return nil
	}
	return s.limited[info.Cursor]
}

// followCursor keeps, for the row limit, the cursors a recorded statement
// declares, fetches from or closes. Cursors end with their transaction
// (WITH HOLD ones included, as far as the limit knows).
func (s *session) followCursor(info *sqltext.Info, sql string, f *Figures) {
	if s.g.cfg.MaxRowsPerStatement <= 0 || info.Cursor == "" {
		return
	}
	switch info.CursorOp {
	case "declare":
		if s.limited == nil {
			s.limited = make(map[string]*limitedCursor)
		}
		if len(s.limited) < maxLimitedCursors {
			s.limited[info.Cursor] = &limitedCursor{declare: sql}
		}
	case "fetch":
		if c := s.limited[info.Cursor]; c != nil {
			c.rows += f.Rows
		}
	case "close":
		delete(s.limited, info.Cursor)
	}
}

// firstNormalObjectID is PostgreSQL's FirstNormalObjectId: the objects
// initdb creates (the system catalogs and information_schema) have lower
// OIDs, in every database.
const firstNormalObjectID = 16384

// catalogSchemas hold the system catalogs.
var catalogSchemas = []string{"pg_catalog", "information_schema"}

// dataCatalogs are the system catalogs that hold user data: large objects'
// contents and the planner's samples of column values.
var dataCatalogs = []string{
	"pg_largeobject", "pg_statistic", "pg_statistic_ext_data", "pg_stats", "pg_stats_ext", "pg_stats_ext_exprs",
	"pg_stat_activity",
}

// dataFunctions are the prefixes of the names of system functions that
// return user data or run a query given as text: a result calling them is
// not read from the catalogs alone.
var dataFunctions = []string{
	"query_to_xml", "cursor_to_xml", "table_to_xml", "schema_to_xml", "database_to_xml", "ts_stat",
	"lo_", "loread", "pg_read_", "pg_logical_slot_", "pg_stat_get_activity", "dblink",
}

// catalogOnly reports whether st's result is read only from the system
// catalogs: its text (a FETCH's: its cursor's DECLARE) names at least one
// relation, and only relations of
// pg_catalog and information_schema that hold no user data, calls only
// functions of pg_catalog that read none, and no column of the result
// comes from a user relation. Decided once per statement.
func (s *session) catalogOnly(st *proxy.Statement, f *Figures) bool {
	if f.catalogOnly == 0 {
		f.catalogOnly = -1
		if s.readsOnlyCatalogs(st, f) {
			f.catalogOnly = 1
		}
	}
	return f.catalogOnly > 0
}

func (s *session) readsOnlyCatalogs(st *proxy.Statement, f *Figures) bool {
	if f.userColumns {
		return false
	}
	sql := s.sqlOf(st)
	if c := s.fetchedCursor(st); c != nil {
		sql = c.declare
	}
	if sql == "" {
		return false
	}
	info := s.analyze(sql)
	if len(info.Relations) == 0 {
		return false
	}
	for _, k := range info.Kinds {
		declare := k == sqltext.KindOther && info.CursorOp == "declare"
		if k != sqltext.KindSelect && k != sqltext.KindCopyToStdout && !declare {
			return false
		}
	}
	for _, rel := range info.Relations {
		if slices.Contains(dataCatalogs, rel.Table) {
			return false
		}
		for _, schema := range s.resolveSchemas(rel) {
			if !slices.Contains(catalogSchemas, schema) {
				return false
			}
		}
	}
	for _, fn := range info.Functions {
		if !s.catalogFunction(fn) {
			return false
		}
	}
	return true
}

// catalogFunction reports whether a call is to a function of pg_catalog
// that reads no user data. An unqualified name is taken for pg_catalog's
// only when no other schema has a function of that name (an overload on
// the search_path can win over pg_catalog's), or, without the catalog,
// when pg_catalog is all the search_path holds (pg_dump empties it).
func (s *session) catalogFunction(fn sqltext.Relation) bool {
	name := strings.ToLower(fn.Table)
	for _, d := range dataFunctions {
		if strings.HasPrefix(name, d) {
			return false
		}
	}
	switch fn.Schema {
	case "pg_catalog":
		return true
	case "":
	default:
		return false
	}
	if s.cat == nil {
		s.pathMu.Lock()
		defer s.pathMu.Unlock()
		s.resolvePath()
		return !s.path.unknown && slices.Equal(searchOrder(s.path.schemas), []string{"pg_catalog"})
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.CatalogTimeout)
	defer cancel()
	fns, err := s.cat.Functions(ctx, "", fn.Table)
	if err != nil || len(fns) == 0 {
		return false
	}
	for _, f := range fns {
		if f.Schema != "pg_catalog" {
			return false
		}
	}
	return true
}
