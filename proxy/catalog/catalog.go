package catalog

import (
	"context"
	"errors"
	"fmt"
	"github.com/pgwarden/pgwarden/internal/shardlru"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Defaults for Config.
const (
	DefaultTTL         = 5 * time.Minute
	DefaultSize        = 10000
	DefaultLockTimeout = 100 * time.Millisecond
)

// lockedTTL is how long a lookup that failed on a lock is not tried again:
// the statements of a transaction that holds the lock do not each wait for
// it.
const lockedTTL = 2 * time.Second

// errLocked is returned, wrapped, for a lookup that failed on a lock
// within lockedTTL.
var errLocked = errors.New("locked (lock_timeout) a moment ago")

// isLockTimeout reports whether err is PostgreSQL's lock_not_available.
func isLockTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// ErrNotFound reports a table OID that names no relation, or an attribute
// number that names no live column of it.
var ErrNotFound = errors.New("catalog: not found")

// Column is one result column resolved to the catalog.
type Column struct {
	Schema string // pg_namespace.nspname, unquoted
	Table  string // pg_class.relname, unquoted
	Name   string // pg_attribute.attname, unquoted; "*" for the whole row (AttNum 0)

	TableOID uint32
	AttNum   int16 // 0 for a whole-row reference, negative for system columns
	RelKind  byte  // pg_class.relkind: 'r' table, 'v' view, 'm' materialized view, 'p' partitioned table, 'f' foreign table, ...
}

// Table is a relation and its live user columns (pg_attribute rows with
// attnum > 0 that are not dropped). A *Table returned by Resolver is shared by
// every caller and must not be modified.
type Table struct {
	OID     uint32
	Schema  string
	Name    string
	RelKind byte
	Columns map[int16]string // attnum -> attname
}

var errReadPanicked = errors.New("catalog: catalog read panicked")

// Querier runs the catalog query. *pgxpool.Pool satisfies it. It must be safe
// for concurrent use, which a single *pgx.Conn is not.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Config configures a Resolver. New fills zero fields with defaults.
type Config struct {
	// Pool is pgwarden's own connection pool to the upstream database,
	// normally a *pgxpool.Pool. Required.
	Pool Querier
	// TTL is how long a cached table, or the absence of one, is trusted
	// before it is read again. Default DefaultTTL.
	TTL time.Duration
	// Size is the most tables cached; the least recently used go first.
	// Default DefaultSize.
	Size int
	// Now is the clock that ages entries. Default time.Now.
	Now func() time.Time
	// Logger receives debug records of catalog reads. Default slog.Default().
	Logger *slog.Logger
	// LockTimeout bounds how long a lookup that locks the database's
	// relations (a view's definition, a planner estimate, the
	// explained_access query) waits for a lock. The statement a lookup is
	// for may come from a session holding that very lock (LOCK TABLE in a
	// transaction, or DDL not yet committed): the lookup would wait on the
	// session, and the session on the lookup. Past it the lookup fails
	// with SQLSTATE 55P03 and its caller does without. Default
	// DefaultLockTimeout.
	LockTimeout time.Duration
}

func (c *Config) validate() error {
	if c.Pool == nil {
		return errors.New("catalog: Config.Pool is required")
	}
	if c.TTL < 0 {
		return fmt.Errorf("catalog: negative Config.TTL %v", c.TTL)
	}
	if c.Size < 0 {
		return fmt.Errorf("catalog: negative Config.Size %d", c.Size)
	}
	if c.LockTimeout < 0 {
		return fmt.Errorf("catalog: negative Config.LockTimeout %v", c.LockTimeout)
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = DefaultLockTimeout
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Resolver maps table OIDs and attribute numbers, as RowDescription carries
// them, to schema, table and column names. It is safe for concurrent use by
// every session of the proxy.
type Resolver struct {
	pool      Querier
	ttl       time.Duration
	lockWait  time.Duration
	now       func() time.Time
	log       *slog.Logger
	cache     *shardlru.Cache[uint32, entry]
	views     *shardlru.Cache[uint32, viewDef] // pg_get_viewdef by OID
	funcs     named[[]Function]                // functions by schema and name
	rels      named[[]string]                  // schemas of relations by name
	estimates named[int64]                     // planner estimates by role, path and query
	paths     named[searchPathSetting]         // search_path settings by role and database
	members   named[[]string]                  // memberships by user and roles asked

	hits, misses atomic.Uint64

	mu       sync.Mutex
	gen      uint64            // bumped by Invalidate; a read started before it is not cached
	inflight map[uint32]*fetch // the one catalog read running per OID
}

// entry is a cached read: a table, or nil when the OID names no relation.
type entry struct {
	table  *Table
	loaded time.Time
}

// fetch is a catalog read that concurrent misses for the same OID share.
type fetch struct {
	done  chan struct{} // closed when table and err are set
	table *Table
	err   error
}

// New returns a Resolver with an empty cache.
func New(cfg Config) (*Resolver, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cache, err := shardlru.New[uint32, entry](cfg.Size)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	views, err := shardlru.New[uint32, viewDef](cfg.Size)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	funcs, err := newNamed[[]Function](cfg.Size)
	if err != nil {
		return nil, err
	}
	rels, err := newNamed[[]string](cfg.Size)
	if err != nil {
		return nil, err
	}
	estimates, err := newNamed[int64](cfg.Size)
	if err != nil {
		return nil, err
	}
	paths, err := newNamed[searchPathSetting](cfg.Size)
	if err != nil {
		return nil, err
	}
	members, err := newNamed[[]string](cfg.Size)
	if err != nil {
		return nil, err
	}
	return &Resolver{
		funcs:     funcs,
		rels:      rels,
		estimates: estimates,
		paths:     paths,
		members:   members,
		pool:      cfg.Pool,
		ttl:       cfg.TTL,
		lockWait:  cfg.LockTimeout,
		now:       cfg.Now,
		log:       cfg.Logger,
		cache:     cache,
		views:     views,
		inflight:  make(map[uint32]*fetch),
	}, nil
}

// viewDef is a cached view definition, or a lookup that failed on a lock.
type viewDef struct {
	sql    string
	read   time.Time
	locked bool
}

// ViewDefinition returns the SELECT that defines the view or materialized
// view oid (pg_get_viewdef), cached like tables: for TTL, and until
// Invalidate. The text is what the classifier traces a view column through
// to the base columns it exposes.
func (r *Resolver) ViewDefinition(ctx context.Context, oid uint32) (string, error) {
	if v, ok := r.views.Get(oid); ok {
		switch age := r.now().Sub(v.read); {
		case v.locked && age < lockedTTL:
			return "", fmt.Errorf("catalog: view definition of %d: %w", oid, errLocked)
		case !v.locked && age < r.ttl:
			return v.sql, nil
		}
	}
	// pg_get_viewdef locks the view.
	rows, err := r.lockBounded(ctx, "SELECT pg_get_viewdef($1::oid)", strconv.FormatUint(uint64(oid), 10))
	if err != nil {
		if isLockTimeout(err) {
			r.views.Add(oid, viewDef{locked: true, read: r.now()})
		}
		return "", fmt.Errorf("catalog: view definition of %d: %w", oid, err)
	}
	if len(rows) != 1 || rows[0][0] == nil {
		return "", ErrNotFound
	}
	def := string(rows[0][0])
	r.views.Add(oid, viewDef{sql: def, read: r.now()})
	return def, nil
}

// Table returns the relation with the given OID, from the cache when it was
// read less than TTL ago, else with one catalog query shared by all callers
// asking for the same OID at that time. It returns ErrNotFound when no
// relation has the OID (OID 0 included, which RowDescription uses for columns
// that are not a table's), and caches that answer for TTL as well.
func (r *Resolver) Table(ctx context.Context, oid uint32) (*Table, error) {
	if oid == 0 {
		return nil, ErrNotFound
	}
	if e, ok := r.cache.Get(oid); ok && r.fresh(e) {
		r.hits.Add(1)
		return e.result()
	}
	r.misses.Add(1)
	return r.load(ctx, oid, nil)
}

// Column resolves one RowDescription field. AttNum 0 (a whole-row reference
// such as SELECT c FROM customers c) resolves to Name "*", and negative
// attribute numbers to the system column names of PostgreSQL 12 and later.
// A positive attribute number that the cached table lacks makes that lookup
// read the table again, since a column may have been added by a session
// pgwarden does not see; if it is still missing, the error wraps ErrNotFound.
func (r *Resolver) Column(ctx context.Context, tableOID uint32, attNum int16) (Column, error) {
	t, err := r.Table(ctx, tableOID)
	if err != nil {
		return Column{}, err
	}
	name, ok := columnName(t, attNum)
	if !ok && attNum > 0 {
		r.misses.Add(1)
		if t, err = r.load(ctx, tableOID, t); err != nil {
			return Column{}, err
		}
		name, ok = columnName(t, attNum)
	}
	if !ok {
		return Column{}, fmt.Errorf("catalog: column %d of %s.%s (oid %d): %w", attNum, t.Schema, t.Name, t.OID, ErrNotFound)
	}
	return Column{
		Schema:   t.Schema,
		Table:    t.Name,
		Name:     name,
		TableOID: t.OID,
		AttNum:   attNum,
		RelKind:  t.RelKind,
	}, nil
}

// CachedColumn is Column answered from the cache alone: false when the
// table is not cached (or no longer fresh), or lacks the column (it may
// have been added since), and Column must read the catalog.
func (r *Resolver) CachedColumn(tableOID uint32, attNum int16) (Column, bool) {
	e, ok := r.cache.Get(tableOID)
	if !ok || !r.fresh(e) {
		return Column{}, false
	}
	t, err := e.result()
	if err != nil {
		return Column{}, false
	}
	name, ok := columnName(t, attNum)
	if !ok {
		return Column{}, false
	}
	r.hits.Add(1)
	return Column{Schema: t.Schema, Table: t.Name, Name: name, TableOID: t.OID, AttNum: attNum, RelKind: t.RelKind}, true
}

// systemColumns are the names of attribute numbers -1 to -6 (PostgreSQL 12+,
// src/include/access/sysattr.h).
var systemColumns = [...]string{"ctid", "xmin", "cmin", "xmax", "cmax", "tableoid"}

func columnName(t *Table, attNum int16) (string, bool) {
	switch {
	case attNum == 0:
		return "*", true
	case attNum < 0:
		if i := -int(attNum) - 1; i < len(systemColumns) {
			return systemColumns[i], true
		}
		return "", false
	}
	name, ok := t.Columns[attNum]
	return name, ok
}

// Invalidate drops every cached entry, so that each table is read again on
// its next lookup. Reads in flight when it is called are not cached. The proxy
// calls it when a CommandComplete tag satisfies IsDDLTag.
func (r *Resolver) Invalidate() {
	r.mu.Lock()
	r.gen++
	r.inflight = make(map[uint32]*fetch)
	r.cache.Purge()
	r.views.Purge()
	r.funcs.cache.Purge()
	r.rels.cache.Purge()
	r.estimates.cache.Purge()
	r.paths.cache.Purge()
	r.members.cache.Purge()
	r.mu.Unlock()
	r.log.Debug("catalog_invalidated")
}

// Stats returns how many lookups the cache answered and how many needed a
// catalog read (concurrent misses that shared one read count once each).
func (r *Resolver) Stats() (hits, misses uint64) {
	return r.hits.Load(), r.misses.Load()
}

func (r *Resolver) fresh(e entry) bool {
	return r.now().Sub(e.loaded) < r.ttl
}

func (e entry) result() (*Table, error) {
	if e.table == nil {
		return nil, ErrNotFound
	}
	return e.table, nil
}

// load reads oid from the catalog, or waits for the read another caller has
// started. A fresh cache entry is used instead, unless it holds stale, the
// table the caller found wanting.
func (r *Resolver) load(ctx context.Context, oid uint32, stale *Table) (*Table, error) {
	for {
		r.mu.Lock()
		if e, ok := r.cache.Peek(oid); ok && r.fresh(e) && (stale == nil || e.table != stale) {
			r.mu.Unlock()
			return e.result()
		}
		f, running := r.inflight[oid]
		if !running {
			f = &fetch{done: make(chan struct{})}
			r.inflight[oid] = f
			gen := r.gen
			r.mu.Unlock()
			r.run(ctx, oid, f, gen)
			return f.table, f.err
		}
		r.mu.Unlock()

		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		// The caller that ran the read gave up; this one has not, so it
		// reads for itself.
		if f.err != nil && ctx.Err() == nil &&
			(errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) {
			continue
		}
		return f.table, f.err
	}
}

// run performs the read for f and publishes the result.
func (r *Resolver) run(ctx context.Context, oid uint32, f *fetch, gen uint64) {
	loaded := r.now()
	defer func() {
		r.mu.Lock()
		if r.inflight[oid] == f {
			delete(r.inflight, oid)
		}
		if (f.err == nil || errors.Is(f.err, ErrNotFound)) && gen == r.gen {
			r.cache.Add(oid, entry{table: f.table, loaded: loaded})
		}
		r.mu.Unlock()
		close(f.done)
	}()
	f.err = errReadPanicked // what waiters see if query panics
	f.table, f.err = r.query(ctx, oid)
}

// tableQuery reads a relation and its live columns in one round trip; a
// relation without columns (CREATE TABLE t ()) yields one row with NULLs.
const tableQuery = `SELECT n.nspname, c.relname, c.relkind, a.attnum, a.attname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.oid = $1`

func (r *Resolver) query(ctx context.Context, oid uint32) (*Table, error) {
	start := time.Now()
	rows, err := r.pool.Query(ctx, tableQuery, oid)
	if err != nil {
		return nil, fmt.Errorf("catalog: read relation %d: %w", oid, err)
	}
	defer rows.Close()

	var t *Table
	for rows.Next() {
		var (
			schema, name string
			kind         byte
			attNum       *int16
			attName      *string
		)
		if err := rows.Scan(&schema, &name, &kind, &attNum, &attName); err != nil {
			return nil, fmt.Errorf("catalog: read relation %d: %w", oid, err)
		}
		if t == nil {
			t = &Table{OID: oid, Schema: schema, Name: name, RelKind: kind, Columns: make(map[int16]string)}
		}
		if attNum != nil && attName != nil {
			t.Columns[*attNum] = *attName
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: read relation %d: %w", oid, err)
	}
	if t == nil {
		r.log.Debug("catalog_read", "oid", oid, "found", false, "duration", time.Since(start))
		return nil, ErrNotFound
	}
	r.log.Debug("catalog_read", "oid", oid, "found", true, "columns", len(t.Columns), "duration", time.Since(start))
	return t, nil
}
