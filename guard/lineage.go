package guard

import (
	"context"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/policy/sqltext"
	"github.com/pgwarden/pgwarden/proxy"
)

// maxFunctionDepth bounds how deep calls of SQL functions from SQL
// functions are followed.
const maxFunctionDepth = 4

// derive marks the expression columns (no table in RowDescription) whose
// SQL computes them from a declared PII column, directly, through a view or
// through the body of a SQL function.
func (s *session) derive(st *proxy.Statement, sql string, fields []pgproto3.FieldDescription, plan []colPlan) {
	if sql == "" {
		return
	}
	if info := s.analyze(sql); info.Skipped != "" {
		s.deriveSkimmed(info, fields, plan)
		return
	}
	var lin *sqltext.Lineage
	for i, fd := range fields {
		if fd.TableOID != 0 || plan[i].declared != "" {
			continue
		}
		if lin == nil {
			if lin = s.g.cfg.SQL.Lineage(sql); lin == nil {
				return
			}
			if lin.Star {
				// SELECT * FROM f(): column i is f's output column i.
				rel := lin.From[0]
				for j := range fields {
					if fields[j].TableOID == 0 && plan[j].declared == "" {
						plan[j].derived = s.functionColumn(rel.Schema, rel.Table, j, "", 0)
					}
				}
				break
			}
			if len(lin.Targets) != len(fields) {
				return
			}
		}
		plan[i].derived = s.targetCategory(lin, lin.Targets[i], 0)
	}
	// The tables the SQL reads count as touched even when no result column
	// names them (expressions only).
	if lin != nil {
		f := s.lookup(st)
		for _, rel := range lin.From {
			if rel.Func {
				continue
			}
			f.Tables.add(s.qualify(rel))
		}
	}
}

// targetCategory returns the category of the first declared column an
// output column is computed from, or "".
func (s *session) targetCategory(lin *sqltext.Lineage, t sqltext.Target, depth int) pii.Category {
	// Plain references first: they need no catalog read.
	for _, ref := range t.Refs {
		if ref.Func == "" {
			if cat, ok := s.declaredRef(lin, ref, depth); ok {
				return cat
			}
		}
	}
	for _, ref := range t.Refs {
		if ref.Func != "" {
			if cat := s.functionColumn(ref.FuncSchema, ref.Func, 0, "", depth); cat != "" {
				return cat
			}
		}
	}
	return ""
}

// viewColumn traces column attNum of a view through its definition to a
// declared base column, and returns that column's category, or "".
func (s *session) viewColumn(oid uint32, attNum int) pii.Category {
	ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.CatalogTimeout)
	def, err := s.cat.ViewDefinition(ctx, oid)
	cancel()
	if err != nil {
		return ""
	}
	lin := s.g.cfg.SQL.Lineage(def)
	if lin == nil || lin.Star || attNum < 1 || attNum > len(lin.Targets) {
		return ""
	}
	return s.targetCategory(lin, lin.Targets[attNum-1], 0)
}

// viewTables adds the relations a view reads to the tables touched.
func (s *session) viewTables(oid uint32, f *Figures) {
	ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.CatalogTimeout)
	def, err := s.cat.ViewDefinition(ctx, oid)
	cancel()
	if err != nil {
		return
	}
	info := s.analyze(def)
	for _, rel := range info.Relations {
		f.Tables.add(s.qualify(rel))
	}
}

// functionColumn returns the category of a declared column that output
// column index (or the column called name, when set) of the SQL functions
// called schema.name computes, or "". Overloads are not told apart: if any
// of them returns PII, the call is taken to (the side of caution).
func (s *session) functionColumn(schema, name string, index int, column string, depth int) pii.Category {
	if s.cat == nil || depth >= maxFunctionDepth {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.CatalogTimeout)
	fns, err := s.cat.Functions(ctx, schema, name)
	cancel()
	if err != nil {
		s.log.Warn("catalog_lookup_failed", "function", name, "error", err)
		return ""
	}
	for _, fn := range fns {
		if fn.Language != "sql" || fn.Body == "" || schema == "" && !s.onPath(fn.Schema) {
			continue
		}
		lin := s.g.cfg.SQL.FunctionLineage(fn.Body)
		if lin == nil || lin.Star {
			continue
		}
		i := index
		if column != "" {
			i = slices.Index(fn.OutNames, column)
		}
		if i >= 0 && i < len(lin.Targets) {
			if cat := s.targetCategory(lin, lin.Targets[i], depth+1); cat != "" {
				return cat
			}
			continue
		}
		// A column the body does not name in order: any of its outputs.
		for _, t := range lin.Targets {
			if cat := s.targetCategory(lin, t, depth+1); cat != "" {
				return cat
			}
		}
	}
	return ""
}

// declaredRef finds the declared column a reference names among the FROM
// relations, unqualified tables resolved along the session's search_path.
// A reference to a function in FROM is traced through its body.
func (s *session) declaredRef(lin *sqltext.Lineage, ref sqltext.ColumnRef, depth int) (pii.Category, bool) {
	p := s.cc().p
	for _, rel := range lin.From {
		if ref.Qualifier != "" && ref.Qualifier != rel.Alias && (rel.Alias != "" || ref.Qualifier != rel.Table) {
			continue
		}
		if rel.Func {
			if cat := s.functionColumn(rel.Schema, rel.Table, -1, ref.Column, depth); cat != "" {
				return cat, true
			}
			continue
		}
		for _, schema := range s.resolveSchemas(rel) {
			if p.Excluded(schema, rel.Table, ref.Column) {
				continue
			}
			if cat, ok := p.Classify(schema, rel.Table, ref.Column); ok {
				return cat, true
			}
		}
	}
	return "", false
}

// searchPath is a session's search_path as far as pgwarden can follow it.
type searchPath struct {
	resolved bool
	schemas  []string // "$user" expanded
	// saved is the path to return to when a SET LOCAL ends; base the one
	// RESET returns to.
	saved, base []string
	local       bool
	// unknown is set once the session changed its path to a value pgwarden
	// cannot read; unqualified names are then looked for in every schema.
	unknown bool
}

// defaultSearchPath is PostgreSQL's.
var defaultSearchPath = []string{"$user", "public"}

// resolveSchemas returns the schemas an unqualified relation may be in,
// never none: the first schema of the session's search order that holds it
// when the catalog tells, else every schema holding it (a path changed in
// ways pgwarden cannot follow), else the search order itself.
func (s *session) resolveSchemas(rel sqltext.Relation) []string {
	if rel.Schema != "" {
		return []string{rel.Schema}
	}
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	s.resolvePath()
	if s.cat == nil {
		// Without the catalog it is unknown whether the user's own schema
		// exists; it rarely does, so it goes last, and pg_catalog, which
		// PostgreSQL searches first, last of all: a table of the
		// employee's is far likelier than a catalog under a bare name.
		out := make([]string, 0, len(s.path.schemas)+1)
		for _, p := range s.path.schemas {
			if p != s.info.User {
				out = append(out, p)
			}
		}
		if len(out) < len(s.path.schemas) {
			out = append(out, s.info.User)
		}
		if !slices.Contains(out, "pg_catalog") {
			out = append(out, "pg_catalog")
		}
		return out
	}
	if !sameSlice(s.orderOf, s.path.schemas) {
		s.order, s.orderOf = searchOrder(s.path.schemas), s.path.schemas
	}
	order := s.order
	holding, err := s.relationSchemas(rel.Table)
	if err != nil || len(holding) == 0 {
		return order
	}
	if !s.path.unknown {
		for i, p := range order {
			if slices.Contains(holding, p) {
				// Callers only read the schemas returned.
				return order[i : i+1 : i+1]
			}
		}
	}
	return holding
}

// searchOrder is the order in which PostgreSQL looks up an unqualified
// relation on path: pg_catalog first unless the path places it, then the
// path. An empty path (pg_dump sets search_path to "") leaves pg_catalog
// alone. The session's temporary schema, searched before all, holds no
// policy's tables and is left out.
// https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-SEARCH-PATH
// cachedRelations is a Resolver that can answer RelationSchemas from its
// cache without a context: most statements name tables seen before, and
// a context with a deadline costs a timer each.
type cachedRelations interface {
	CachedRelationSchemas(name string) ([]string, bool)
}

// relationSchemas is s.cat.RelationSchemas, from the cache when it can.
func (s *session) relationSchemas(table string) ([]string, error) {
	if c, ok := s.cat.(cachedRelations); ok {
		if holding, ok := c.CachedRelationSchemas(table); ok {
			return holding, nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.CatalogTimeout)
	defer cancel()
	return s.cat.RelationSchemas(ctx, table)
}

func searchOrder(path []string) []string {
	if slices.Contains(path, "pg_catalog") {
		return path
	}
	return append([]string{"pg_catalog"}, path...)
}

// sameSlice reports whether a and b are the same non-empty slice.
func sameSlice(a, b []string) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// onPath reports whether schema is on the session's search_path (always
// true once the path is unknown). pg_catalog always is.
func (s *session) onPath(schema string) bool {
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	s.resolvePath()
	return s.path.unknown || schema == "pg_catalog" || slices.Contains(s.path.schemas, schema)
}

// resolvePath sets the session's starting path: from the startup message
// (search_path, or -c search_path= in options), else from ALTER ROLE /
// ALTER DATABASE settings, else PostgreSQL's default.
func (s *session) resolvePath() {
	if s.path.resolved {
		return
	}
	s.path.resolved = true
	path := defaultSearchPath
	if v, ok := startupSearchPath(s.info.Parameters); ok {
		path = sqltext.ParseSearchPath(v)
	} else if s.cat != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.CatalogTimeout)
		v, ok, err := s.cat.RoleSearchPath(ctx, s.info.User, s.info.Database)
		cancel()
		switch {
		case err != nil:
			s.log.Warn("catalog_lookup_failed", "search_path_of", s.info.User, "error", err)
			s.path.unknown = true
		case ok:
			path = sqltext.ParseSearchPath(v)
		}
	}
	s.path.base = s.expand(path)
	s.path.schemas = s.path.base
}

// startupSearchPath finds search_path among startup parameters.
func startupSearchPath(params map[string]string) (string, bool) {
	if v, ok := params["search_path"]; ok {
		return v, true
	}
	opts := params["options"]
	for _, key := range []string{"-c search_path=", "-csearch_path=", "--search_path="} {
		if i := strings.Index(opts, key); i >= 0 {
			v := opts[i+len(key):]
			// Options are separated by unescaped spaces; "\ " is a space.
			var b strings.Builder
			for j := 0; j < len(v); j++ {
				if v[j] == '\\' && j+1 < len(v) {
					j++
				} else if v[j] == ' ' {
					break
				}
				b.WriteByte(v[j])
			}
			return b.String(), true
		}
	}
	return "", false
}

func (s *session) expand(path []string) []string {
	out := make([]string, 0, len(path))
	for _, p := range path {
		if p == "$user" {
			p = s.info.User
		}
		out = append(out, p)
	}
	return out
}

// followPath applies a statement's change of search_path once the server
// has accepted it.
func (s *session) followPath(st *proxy.Statement) {
	sql := s.sqlOf(st)
	if sql == "" {
		return
	}
	c := s.analyze(sql).SearchPath
	if c == nil {
		return
	}
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	s.resolvePath()
	if c.Local && !s.path.local {
		s.path.saved, s.path.local = s.path.schemas, true
	}
	switch {
	case c.Unknown:
		s.path.unknown = true
	case c.Reset:
		s.path.schemas = s.path.base
	default:
		s.path.schemas = s.expand(c.Schemas)
	}
}

// endTransaction ends SET LOCAL changes of search_path.
func (s *session) endTransaction() {
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	if s.path.local {
		s.path.schemas, s.path.saved, s.path.local = s.path.saved, nil, false
	}
}
