package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/pgwarden/pgwarden/internal/shardlru"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/proxy"
)

// Function is one function of a name, as the classifier needs it to trace
// what a call returns.
type Function struct {
	Schema, Name string
	// Language is pg_language.lanname: "sql", "plpgsql", "internal", "c", ...
	Language string
	// Body is the SQL of a LANGUAGE sql function: prosrc, or for a
	// SQL-standard body the text of pg_get_function_sqlbody. Empty for other
	// languages.
	Body string
	// OutNames names the function's output columns (OUT, INOUT and TABLE
	// arguments), in order; empty when it returns an unnamed value or type.
	OutNames []string
}

// named caches answers keyed by name for TTL, and until Invalidate.
type named[T any] struct {
	cache *shardlru.Cache[string, namedEntry[T]]
}

type namedEntry[T any] struct {
	v    T
	read time.Time
}

func newNamed[T any](size int) (named[T], error) {
	c, err := shardlru.New[string, namedEntry[T]](size)
	if err != nil {
		return named[T]{}, fmt.Errorf("catalog: %w", err)
	}
	return named[T]{cache: c}, nil
}

const functionsQuery = `SELECT n.nspname, p.proname, l.lanname,
  CASE WHEN l.lanname <> 'sql' THEN ''
       WHEN p.prosqlbody IS NOT NULL THEN pg_get_function_sqlbody(p.oid)
       ELSE p.prosrc END,
  coalesce(p.proargnames, '{}'::text[]), coalesce(p.proargmodes::text[], '{}'::text[])
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE p.proname = $1 AND ($2 = '' OR n.nspname = $2)`

// functionsQueryPre14 is functionsQuery for servers without SQL-standard
// function bodies (before PostgreSQL 14).
const functionsQueryPre14 = `SELECT n.nspname, p.proname, l.lanname,
  CASE WHEN l.lanname <> 'sql' THEN '' ELSE p.prosrc END,
  coalesce(p.proargnames, '{}'::text[]), coalesce(p.proargmodes::text[], '{}'::text[])
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE p.proname = $1 AND ($2 = '' OR n.nspname = $2)`

// Functions returns every function called name, in schema if it is not
// empty, else in any schema (the caller applies its search_path). Overloads
// are all returned. Cached like tables.
func (r *Resolver) Functions(ctx context.Context, schema, name string) ([]Function, error) {
	key := schema + "\x00" + name
	if e, ok := r.funcs.cache.Get(key); ok && r.now().Sub(e.read) < r.ttl {
		return e.v, nil
	}
	fns, err := r.queryFunctions(ctx, functionsQuery, schema, name)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42703" { // undefined_column: prosqlbody
		fns, err = r.queryFunctions(ctx, functionsQueryPre14, schema, name)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: functions named %q: %w", name, err)
	}
	r.funcs.cache.Add(key, namedEntry[[]Function]{v: fns, read: r.now()})
	return fns, nil
}

func (r *Resolver) queryFunctions(ctx context.Context, q, schema, name string) ([]Function, error) {
	rows, err := r.pool.Query(ctx, q, name, schema)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var fns []Function
	for rows.Next() {
		var f Function
		var argNames, argModes []string
		if err := rows.Scan(&f.Schema, &f.Name, &f.Language, &f.Body, &argNames, &argModes); err != nil {
			return nil, err
		}
		for i, n := range argNames {
			if i < len(argModes) && (argModes[i] == "o" || argModes[i] == "b" || argModes[i] == "t") {
				f.OutNames = append(f.OutNames, n)
			}
		}
		fns = append(fns, f)
	}
	return fns, rows.Err()
}

// RelationSchemas returns the schemas holding a relation (table, view,
// materialized view, foreign table) called name, so that an unqualified
// name in a statement can be resolved along the session's search_path.
// Cached like tables.
func (r *Resolver) RelationSchemas(ctx context.Context, name string) ([]string, error) {
	if v, ok := r.CachedRelationSchemas(name); ok {
		return v, nil
	}
	rows, err := r.pool.Query(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`, name)
	if err != nil {
		return nil, fmt.Errorf("catalog: relations named %q: %w", name, err)
	}
	defer rows.Close()
	var schemas []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("catalog: relations named %q: %w", name, err)
		}
		schemas = append(schemas, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: relations named %q: %w", name, err)
	}
	r.rels.cache.Add(name, namedEntry[[]string]{v: schemas, read: r.now()})
	return schemas, nil
}

// roleTTL bounds how long a role's facts (its search_path setting, its
// memberships) are reused by new sessions: a change made outside pgwarden
// (ALTER ROLE, REVOKE on the server) applies to sessions begun after it
// at most this late; one made through pgwarden invalidates them at once.
const roleTTL = 30 * time.Second

// searchPathSetting is a cached RoleSearchPath.
type searchPathSetting struct {
	path string
	set  bool
}

// CachedRelationSchemas is RelationSchemas answered from the cache alone:
// false when the name is not cached (or no longer fresh).
func (r *Resolver) CachedRelationSchemas(name string) ([]string, bool) {
	if e, ok := r.rels.cache.Get(name); ok && r.now().Sub(e.read) < r.ttl {
		return e.v, true
	}
	return nil, false
}

// RoleSearchPath returns the search_path a new session of role in database
// starts with, as ALTER ROLE ... [IN DATABASE ...] SET and ALTER DATABASE
// ... SET configure it (most specific first), and false when none is set.
// Cached for roleTTL (a session reads it once, when first needed).
func (r *Resolver) RoleSearchPath(ctx context.Context, role, database string) (string, bool, error) {
	key := role + "\x00" + database
	if e, ok := r.paths.cache.Get(key); ok && r.now().Sub(e.read) < min(r.ttl, roleTTL) {
		return e.v.path, e.v.set, nil
	}
	gen := r.generation()
	path, set, err := r.roleSearchPath(ctx, role, database)
	if err == nil {
		r.keep(gen, func() {
			r.paths.cache.Add(key, namedEntry[searchPathSetting]{v: searchPathSetting{path, set}, read: r.now()})
		})
	}
	return path, set, err
}

// generation is the count of invalidations so far; keep adds what a read
// begun at gen found only when no invalidation came since.
func (r *Resolver) generation() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen
}

func (r *Resolver) keep(gen uint64, add func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen == gen {
		add()
	}
}

func (r *Resolver) roleSearchPath(ctx context.Context, role, database string) (string, bool, error) {
	rows, err := r.pool.Query(ctx, `SELECT cfg FROM pg_db_role_setting s,
  unnest(s.setconfig) cfg
WHERE s.setrole IN (0, coalesce((SELECT oid FROM pg_roles WHERE rolname = $1), 0))
  AND s.setdatabase IN (0, coalesce((SELECT oid FROM pg_database WHERE datname = $2), 0))
  AND cfg LIKE 'search\_path=%'
ORDER BY s.setrole <> 0 AND s.setdatabase <> 0 DESC, s.setrole <> 0 DESC, s.setdatabase <> 0 DESC
LIMIT 1`, role, database)
	if err != nil {
		return "", false, fmt.Errorf("catalog: search_path of role %q: %w", role, err)
	}
	defer rows.Close()
	var cfg string
	found := false
	for rows.Next() {
		if err := rows.Scan(&cfg); err != nil {
			return "", false, fmt.Errorf("catalog: search_path of role %q: %w", role, err)
		}
		found = true
	}
	if err := rows.Err(); err != nil {
		return "", false, fmt.Errorf("catalog: search_path of role %q: %w", role, err)
	}
	if !found {
		return "", false, nil
	}
	return cfg[len("search_path="):], true, nil
}

// RoleMemberships returns which of roles the user is a member of, granted
// directly or through other roles, the user's own name included when
// listed. Membership follows the grants in pg_auth_members only: a
// superuser, to whom pg_has_role answers true for every role, is a member
// of the roles granted to them and no other. Cached for roleTTL.
func (r *Resolver) RoleMemberships(ctx context.Context, user string, roles []string) ([]string, error) {
	if len(roles) == 0 {
		return nil, nil
	}
	key := user + "\x00" + strings.Join(roles, "\x00")
	if e, ok := r.members.cache.Get(key); ok && r.now().Sub(e.read) < min(r.ttl, roleTTL) {
		return slices.Clone(e.v), nil
	}
	gen := r.generation()
	out, err := r.roleMemberships(ctx, user, roles)
	if err == nil {
		r.keep(gen, func() { r.members.cache.Add(key, namedEntry[[]string]{v: slices.Clone(out), read: r.now()}) })
	}
	return out, err
}

func (r *Resolver) roleMemberships(ctx context.Context, user string, roles []string) ([]string, error) {
	rows, err := r.pool.Query(ctx, membershipQuery, user, roles)
	if err != nil {
		return nil, fmt.Errorf("catalog: roles of %q: %w", user, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("catalog: roles of %q: %w", user, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: roles of %q: %w", user, err)
	}
	return out, nil
}

// membershipQuery follows the grants from the user up: the user, the roles
// granted to them, the roles granted to those, and so on (UNION ends a
// cycle, which PostgreSQL refuses to create anyway).
const membershipQuery = `WITH RECURSIVE granted(oid) AS (
	SELECT oid FROM pg_roles WHERE rolname = $1
	UNION
	SELECT m.roleid FROM pg_auth_members m JOIN granted ON m.member = granted.oid
)
SELECT g.rolname FROM pg_roles g JOIN granted ON g.oid = granted.oid WHERE g.rolname = ANY($2)`

// acquirer is what Estimate needs of the pool beyond Querier;
// *pgxpool.Pool is one.
type acquirer interface {
	Acquire(ctx context.Context) (*pgxpool.Conn, error)
}

// quotedPath quotes each schema of a search_path as an identifier, for
// set_config('search_path', ...).
func quotedPath(searchPath []string) []string {
	path := make([]string, len(searchPath))
	for i, s := range searchPath {
		path[i] = pgx.Identifier{s}.Sanitize()
	}
	return path
}

// ErrNoEstimate is returned when the planner cannot be asked.
var ErrNoEstimate = errors.New("catalog: no estimate")

// Estimate asks the planner how many rows query returns (EXPLAIN, which
// runs nothing but planning). It plans as role (SET LOCAL ROLE), so that
// whatever planning evaluates runs with the employee's privileges, not
// pgwarden's, along searchPath, within a short statement timeout and the
// Resolver's lock timeout. A query whose planning outlasted ctx or the
// statement timeout is not planned again for TTL (PostgreSQL may not heed
// the cancel while it plans); one that met a lock, for a moment. query
// must be a single SELECT; when it holds parameters, params are the values
// an Execute binds, and the plan is the one those values get. The whole
// exchange is one round trip. Answers are cached for TTL, keyed on a
// digest of the values (the values themselves are not kept).
func (r *Resolver) Estimate(ctx context.Context, role string, searchPath []string, query string, params *proxy.Params) (int64, error) {
	key := role + "\x00" + strings.Join(searchPath, ",") + "\x00" + query
	if params != nil {
		key += "\x00" + paramsDigest(params)
	}
	if e, ok := r.estimates.cache.Get(key); ok {
		switch age := r.now().Sub(e.read); {
		case e.v == estimateLocked && age < lockedTTL:
			return 0, fmt.Errorf("%w: %w", ErrNoEstimate, errLocked)
		case e.v == estimateTimedOut && age < r.ttl:
			return 0, fmt.Errorf("%w: planning timed out a moment ago", ErrNoEstimate)
		case e.v >= 0 && age < r.ttl:
			return e.v, nil
		}
	}
	a, ok := r.pool.(acquirer)
	if !ok {
		return 0, ErrNoEstimate
	}
	conn, err := a.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("catalog: estimate: %w", err)
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	path := quotedPath(searchPath)
	// One pipeline: the transaction, its settings, the EXPLAIN and the
	// rollback. A step that fails skips the rest until the Sync.
	var b pgconn.Batch
	b.ExecParams("BEGIN", nil, nil, nil, nil)
	b.ExecParams("SET LOCAL statement_timeout = 1000", nil, nil, nil, nil)
	b.ExecParams(r.setLockTimeout(), nil, nil, nil, nil)
	b.ExecParams("SET LOCAL ROLE "+pgx.Identifier{role}.Sanitize(), nil, nil, nil, nil)
	const roleStep = 3
	// Always set: an empty path (pg_dump's) is not the catalog role's default.
	b.ExecParams("SELECT set_config('search_path', $1, true)", [][]byte{[]byte(strings.Join(path, ", "))}, nil, nil, nil)
	if params != nil {
		b.ExecParams("EXPLAIN (FORMAT JSON) "+query, params.Values, params.OIDs, params.Formats, nil)
	} else {
		b.ExecParams("EXPLAIN (FORMAT JSON) "+query, nil, nil, nil, nil)
	}
	b.ExecParams("ROLLBACK", nil, nil, nil, nil)
	results, err := pc.ExecBatch(ctx, &b).ReadAll()
	if err != nil {
		endFailed(pc)
		switch {
		case timedOut(err):
			// Planning that outlasts the deadline may not heed the
			// cancel: the same query is not planned again for a while.
			r.estimates.cache.Add(key, namedEntry[int64]{v: estimateTimedOut, read: r.now()})
		case isLockTimeout(err):
			r.estimates.cache.Add(key, namedEntry[int64]{v: estimateLocked, read: r.now()})
		}
		if len(results) > roleStep && results[roleStep].Err != nil {
			return 0, fmt.Errorf("catalog: estimate as %q: %w", role, err)
		}
		return 0, fmt.Errorf("catalog: estimate: %w", err)
	}
	step := roleStep + 2
	if len(results) <= step || len(results[step].Rows) != 1 || len(results[step].Rows[0]) != 1 {
		return 0, fmt.Errorf("catalog: estimate: unexpected EXPLAIN output")
	}
	var out []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	if err := json.Unmarshal(results[step].Rows[0][0], &out); err != nil || len(out) != 1 {
		return 0, fmt.Errorf("catalog: estimate: unexpected EXPLAIN output")
	}
	n := int64(out[0].Plan.Rows)
	r.estimates.cache.Add(key, namedEntry[int64]{v: n, read: r.now()})
	return n, nil
}

// Cached estimates that are failures.
const (
	estimateTimedOut = -1 // for TTL
	estimateLocked   = -2 // for lockedTTL
)

// timedOut reports whether an estimate failed for its deadline or its
// statement_timeout.
func timedOut(err error) bool {
	var pgErr *pgconn.PgError
	return errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) ||
		errors.As(err, &pgErr) && pgErr.Code == "57014"
}

// paramsDigest is a cache key for parameter values that does not keep them.
func paramsDigest(p *proxy.Params) string {
	h := sha256.New()
	var n [4]byte
	word := func(v uint32) {
		binary.BigEndian.PutUint32(n[:], v)
		h.Write(n[:])
	}
	word(uint32(len(p.OIDs)))
	for _, o := range p.OIDs {
		word(o)
	}
	word(uint32(len(p.Formats)))
	for _, f := range p.Formats {
		word(uint32(f))
	}
	word(uint32(len(p.Values)))
	for _, v := range p.Values {
		if v == nil {
			word(^uint32(0))
			continue
		}
		word(uint32(len(v)))
		h.Write(v)
	}
	return string(h.Sum(nil))
}

// ExplainedKeys runs a policy's explained_access query with the employee
// as $1 and returns the keys it lists, as text. The query is the DBA's,
// run with pgwarden's catalog role; it must return one column.
func (r *Resolver) ExplainedKeys(ctx context.Context, query, employee string) ([]string, error) {
	rows, err := r.lockBounded(ctx, "SELECT k::text FROM ("+query+") AS explained(k)", employee)
	if err != nil {
		return nil, fmt.Errorf("catalog: explained_access query: %w", err)
	}
	var keys []string
	for _, row := range rows {
		if row[0] != nil {
			keys = append(keys, string(row[0]))
		}
	}
	return keys, nil
}

// lockBounded runs query, which returns text columns, in a read-only
// transaction whose lock_timeout is the Resolver's, in one round trip:
// a lock held by a session of the proxy fails it at once (SQLSTATE 55P03)
// instead of holding the lookup, and the session behind it. Values are
// the parameters, in text format. Without a pool to take a connection
// from, the query runs as it is.
func (r *Resolver) lockBounded(ctx context.Context, query string, values ...string) ([][][]byte, error) {
	a, ok := r.pool.(acquirer)
	if !ok {
		return r.plainQuery(ctx, query, values)
	}
	conn, err := a.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	params := make([][]byte, len(values))
	for i, v := range values {
		params[i] = []byte(v)
	}
	var b pgconn.Batch
	b.ExecParams("BEGIN READ ONLY", nil, nil, nil, nil)
	b.ExecParams(r.setLockTimeout(), nil, nil, nil, nil)
	b.ExecParams(query, params, nil, nil, nil)
	b.ExecParams("COMMIT", nil, nil, nil, nil)
	results, err := pc.ExecBatch(ctx, &b).ReadAll()
	if err != nil {
		endFailed(pc)
		return nil, err
	}
	if len(results) != 4 {
		return nil, fmt.Errorf("catalog: %d results for 4 statements", len(results))
	}
	return results[2].Rows, nil
}

// plainQuery runs query on a Querier that is not a pool, with text
// values and results (the simple protocol).
func (r *Resolver) plainQuery(ctx context.Context, query string, values []string) ([][][]byte, error) {
	args := make([]any, 0, len(values)+1)
	args = append(args, pgx.QueryExecModeSimpleProtocol)
	for _, v := range values {
		args = append(args, v)
	}
	rows, err := r.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][][]byte
	for rows.Next() {
		raw := rows.RawValues()
		row := make([][]byte, len(raw))
		for i, v := range raw {
			if v != nil {
				row[i] = append([]byte{}, v...)
			}
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// setLockTimeout is the SET LOCAL of the Resolver's lock_timeout.
func (r *Resolver) setLockTimeout() string {
	return fmt.Sprintf("SET LOCAL lock_timeout = %d", max(r.lockWait.Milliseconds(), 1))
}

// endFailed ends the transaction a failed pipeline left open, within a
// second, so that the connection goes back to the pool clean; a
// connection that cannot is closed (and the pool drops it). A connection
// whose context expired is closed already: pgconn sent the server a
// CancelRequest and a Terminate.
func endFailed(pc *pgconn.PgConn) {
	if pc.IsClosed() || pc.TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := pc.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		pc.Close(ctx)
	}
}

// Describe returns the result columns of query as a RowDescription
// carries them (table OID, attribute number, type; text format), without
// running it: the query is only parsed and analysed (Parse and Describe of
// an unnamed statement), along searchPath, in a read-only transaction
// with a short statement_timeout and the Resolver's lock_timeout. It tells which columns a COPY of a
// query or of a table sends, which COPY's own CopyOutResponse does not.
func (r *Resolver) Describe(ctx context.Context, searchPath []string, query string) ([]pgproto3.FieldDescription, error) {
	a, ok := r.pool.(acquirer)
	if !ok {
		return nil, errors.New("catalog: describe: no connection pool")
	}
	conn, err := a.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalog: describe: %w", err)
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	path := quotedPath(searchPath)
	var b pgconn.Batch
	b.ExecParams("BEGIN READ ONLY", nil, nil, nil, nil)
	b.ExecParams("SET LOCAL statement_timeout = 1000", nil, nil, nil, nil)
	b.ExecParams(r.setLockTimeout(), nil, nil, nil, nil)
	b.ExecParams("SELECT set_config('search_path', $1, true)", [][]byte{[]byte(strings.Join(path, ", "))}, nil, nil, nil)
	if _, err := pc.ExecBatch(ctx, &b).ReadAll(); err != nil {
		endFailed(pc)
		return nil, fmt.Errorf("catalog: describe: %w", err)
	}
	sd, err := pc.Prepare(ctx, "", query, nil)
	if err != nil {
		endFailed(pc)
		return nil, fmt.Errorf("catalog: describe: %w", err)
	}
	if _, err := pc.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		endFailed(pc)
		return nil, fmt.Errorf("catalog: describe: %w", err)
	}
	fields := make([]pgproto3.FieldDescription, len(sd.Fields))
	for i, f := range sd.Fields {
		fields[i] = pgproto3.FieldDescription{Name: []byte(f.Name), TableOID: f.TableOID, TableAttributeNumber: f.TableAttributeNumber,
			DataTypeOID: f.DataTypeOID, DataTypeSize: f.DataTypeSize, TypeModifier: f.TypeModifier}
	}
	return fields, nil
}

// GeneratedColumns returns the attribute numbers of a table's generated
// columns, which COPY of the table leaves out.
func (r *Resolver) GeneratedColumns(ctx context.Context, tableOID uint32) ([]int16, error) {
	rows, err := r.lockBounded(ctx, "SELECT attnum::text FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped AND attgenerated <> ''",
		strconv.FormatUint(uint64(tableOID), 10))
	if err != nil {
		return nil, fmt.Errorf("catalog: generated columns: %w", err)
	}
	var out []int16
	for _, row := range rows {
		n, err := strconv.ParseInt(string(row[0]), 10, 16)
		if err != nil {
			return nil, fmt.Errorf("catalog: generated columns: %w", err)
		}
		out = append(out, int16(n))
	}
	return out, nil
}
