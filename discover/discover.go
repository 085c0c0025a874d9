package discover

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/policy/detect"
	"github.com/pgwarden/pgwarden/policy/pii"
)

// Defaults for the Config fields left zero.
const (
	DefaultSample   = 1000
	DefaultMinShare = 0.5
)

// maxValue bounds the bytes of one sampled value that are fetched and
// scanned, so one huge JSON document does not dominate the run.
const maxValue = 64 << 10

// Config says which database to scan and how.
type Config struct {
	// Conn is the database to scan, as parsed by pgx.ParseConfig. Run connects
	// with a copy that sets default_transaction_read_only, and
	// application_name "pgwarden discover" unless Conn sets one.
	Conn *pgx.ConnConfig
	// Schemas limits the scan to these schemas; empty scans all but the
	// system schemas.
	Schemas []string
	// Sample is the most rows read per relation (DefaultSample when 0).
	Sample int
	// MinShare is the share, in (0, 1], of a column's sampled non-null values
	// that one detector must recognise for the column to be proposed by value
	// (DefaultMinShare when 0).
	MinShare float64
	// Logf, when set, receives progress and warnings, one line per call
	// without its newline.
	Logf func(format string, args ...any)
}

// Report is what a scan found. WritePolicy prints it as a policy fragment.
type Report struct {
	// Database is the name of the database scanned.
	Database string
	// Scanned and Skipped count the relations read and those the server
	// refused to read.
	Scanned, Skipped int
	// Columns counts the columns of all relations listed, Rows the rows
	// sampled.
	Columns, Rows int

	rels     []*relation
	sample   int
	minShare float64
}

// Proposed returns the number of columns proposed for the policy.
func (r *Report) Proposed() int {
	n := 0
	for _, rel := range r.rels {
		for _, c := range rel.cols {
			if c.proposal != "" {
				n++
			}
		}
	}
	return n
}

// column is one column of a scanned relation and the evidence gathered for
// it.
type column struct {
	schema, table, name string
	typ                 string // base type name
	readable            bool   // the role may SELECT it
	sampled             bool   // its values were sampled
	nonNull             int    // sampled non-null values
	hits                map[pii.Category]int
	nameCat             pii.Category // "" when the name suggests nothing

	proposal pii.Category // "" when not proposed
	byValue  bool         // proposal rests on the sampled values
}

// relation is one table, view or materialized view.
type relation struct {
	schema, name string
	kind         byte // pg_class.relkind
	reltuples    float64
	cols         []*column
}

// catalogSQL lists the columns of user relations: ordinary and partitioned
// tables (not their partitions), views and materialized views.
const catalogSQL = `
SELECT n.nspname, c.relname, c.relkind::text, c.reltuples::float8, a.attname,
       CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END,
       has_column_privilege(c.oid, a.attnum, 'SELECT')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype
WHERE c.relkind IN ('r', 'p', 'v', 'm')
  AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname !~ '^pg_(toast_)?temp_'
  AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1::text[]))
ORDER BY n.nspname, c.relname, a.attnum`

// sampledTypes are the base types whose values are sampled: text-like and
// JSON. Other columns get name evidence only.
var sampledTypes = map[string]bool{
	"text": true, "varchar": true, "bpchar": true, "json": true, "jsonb": true, "citext": true,
}

// Run connects, lists the relations and samples each one, skipping those the
// server refuses to read, and proposes a category for each column.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Conn == nil {
		return nil, errors.New("no database to scan")
	}
	if cfg.Sample == 0 {
		cfg.Sample = DefaultSample
	}
	if cfg.MinShare == 0 {
		cfg.MinShare = DefaultMinShare
	}
	if cfg.Sample < 1 {
		return nil, fmt.Errorf("sample of %d rows: must be at least 1", cfg.Sample)
	}
	if !(cfg.MinShare > 0 && cfg.MinShare <= 1) {
		return nil, fmt.Errorf("minimum share %g: must be in (0, 1]", cfg.MinShare)
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}

	cc := cfg.Conn.Copy()
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	// Sampling only reads; a view over a function that writes fails and is
	// skipped rather than changing the database.
	cc.RuntimeParams["default_transaction_read_only"] = "on"
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "pgwarden discover"
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("cannot connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	res := &Report{Database: cc.Database, sample: cfg.Sample, minShare: cfg.MinShare}
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&res.Database); err != nil {
		return nil, err
	}
	if res.rels, err = listRelations(ctx, conn, cfg.Schemas); err != nil {
		return nil, fmt.Errorf("reading the catalog: %w", err)
	}
	seen := map[string]bool{}
	for _, rel := range res.rels {
		seen[rel.schema] = true
		res.Columns += len(rel.cols)
	}
	for _, s := range cfg.Schemas {
		if !seen[s] {
			logf("warning: no tables or views in schema %q", s)
		}
	}
	logf("database %s: %d relations, %d columns", res.Database, len(res.rels), res.Columns)

	start, last := time.Now(), time.Now()
	for i, rel := range res.rels {
		rows, err := sampleRelation(ctx, conn, rel, cfg.Sample)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			res.Scanned++
			res.Rows += rows
		case errors.As(err, &pgErr) && ctx.Err() == nil:
			// Permission denied, an unpopulated materialized view, a view
			// over a broken function: skip the relation, keep going.
			res.Skipped++
			logf("warning: skipping %s: %s (SQLSTATE %s)", qualified(rel.schema, rel.name), pgErr.Message, pgErr.Code)
		case errors.Is(err, errNoReadableColumns):
			res.Skipped++
			logf("warning: skipping %s: permission denied on every text column", qualified(rel.schema, rel.name))
		default:
			return nil, fmt.Errorf("sampling %s: %w", qualified(rel.schema, rel.name), err)
		}
		for _, c := range rel.cols {
			c.proposal, c.byValue = propose(c, cfg.MinShare)
		}
		if time.Since(last) >= time.Second {
			last = time.Now()
			logf("%d/%d relations scanned (%v)", i+1, len(res.rels), time.Since(start).Round(time.Millisecond))
		}
	}
	return res, nil
}

// listRelations reads the catalog into relations with their columns, in
// schema, name and column order.
func listRelations(ctx context.Context, conn *pgx.Conn, schemas []string) ([]*relation, error) {
	if schemas == nil {
		schemas = []string{}
	}
	rows, err := conn.Query(ctx, catalogSQL, schemas)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var rels []*relation
	for rows.Next() {
		var (
			schema, table, kind, col, typ string
			reltuples                     float64
			readable                      bool
		)
		if err := rows.Scan(&schema, &table, &kind, &reltuples, &col, &typ, &readable); err != nil {
			return nil, err
		}
		if n := len(rels); n == 0 || rels[n-1].schema != schema || rels[n-1].name != table {
			rels = append(rels, &relation{schema: schema, name: table, kind: kind[0], reltuples: reltuples})
		}
		rel := rels[len(rels)-1]
		rel.cols = append(rel.cols, &column{
			schema: schema, table: table, name: col, typ: typ, readable: readable,
			nameCat: nameCategory(col),
		})
	}
	return rels, rows.Err()
}

// errNoReadableColumns reports a relation with text columns none of which
// the role may read.
var errNoReadableColumns = errors.New("no readable columns")

// sampleRelation reads up to n rows of rel's readable text-like columns and
// records, per column, how many non-null values each detector recognised.
// Large tables and materialized views (by pg_class.reltuples) are sampled
// with TABLESAMPLE SYSTEM, others read with LIMIT.
func sampleRelation(ctx context.Context, conn *pgx.Conn, rel *relation, n int) (int, error) {
	var cols []*column
	var exprs []string
	unreadable := false
	for _, c := range rel.cols {
		if !sampledTypes[c.typ] {
			continue
		}
		if !c.readable {
			unreadable = true
			continue
		}
		cols = append(cols, c)
		exprs = append(exprs, fmt.Sprintf("left(%s::text, %d)", pgx.Identifier{c.name}.Sanitize(), maxValue))
	}
	if len(cols) == 0 {
		if unreadable {
			return 0, errNoReadableColumns
		}
		return 0, nil
	}
	query, sampled := sampleQuery(rel, exprs, n)
	got, err := scanSample(ctx, conn, query, cols)
	if err == nil && got == 0 && sampled {
		// reltuples was stale: the sample found no rows, read from the start.
		query, _ = sampleQuery(&relation{schema: rel.schema, name: rel.name, kind: rel.kind}, exprs, n)
		got, err = scanSample(ctx, conn, query, cols)
	}
	return got, err
}

// sampleQuery returns the query that reads up to n rows of exprs from rel,
// and whether it samples with TABLESAMPLE SYSTEM: only tables and
// materialized views whose pg_class.reltuples is over ten times n, where
// reading the first n rows would see only the oldest pages.
func sampleQuery(rel *relation, exprs []string, n int) (string, bool) {
	from := pgx.Identifier{rel.schema, rel.name}.Sanitize()
	sampled := (rel.kind == 'r' || rel.kind == 'm') && rel.reltuples > float64(10*n)
	if sampled {
		// SYSTEM picks whole pages: ask for three times the rows wanted so
		// that LIMIT, not the sample, usually decides the count.
		pct := min(100, 300*float64(n)/rel.reltuples)
		from += fmt.Sprintf(" TABLESAMPLE SYSTEM (%s) REPEATABLE (0)", strconv.FormatFloat(pct, 'f', -1, 64))
	}
	return fmt.Sprintf("SELECT %s FROM %s LIMIT %d", strings.Join(exprs, ", "), from, n), sampled
}

// scanSample runs query and records its evidence in cols, one per result
// column, leaving none behind when it fails.
func scanSample(ctx context.Context, conn *pgx.Conn, query string, cols []*column) (int, error) {
	for _, c := range cols {
		c.sampled, c.nonNull, c.hits = true, 0, map[pii.Category]int{}
	}
	n, err := readSample(ctx, conn, query, cols)
	if err != nil {
		// The relation is skipped: keep no partial evidence.
		for _, c := range cols {
			c.sampled, c.nonNull, c.hits = false, 0, nil
		}
		return 0, err
	}
	return n, nil
}

// readSample counts, per column, the non-null values and those in which
// each detector finds at least one value.
func readSample(ctx context.Context, conn *pgx.Conn, query string, cols []*column) (int, error) {
	rows, err := conn.Query(ctx, query)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var counts detect.Counts
	set := detect.Default()
	n := 0
	for rows.Next() {
		n++
		for i, v := range rows.RawValues() {
			if v == nil {
				continue
			}
			c := cols[i]
			c.nonNull++
			counts.Reset()
			set.Scan(v, &counts)
			counts.Each(func(cat pii.Category, k int) {
				if k > 0 {
					c.hits[cat]++
				}
			})
		}
	}
	return n, rows.Err()
}

// qualified names a relation for messages.
func qualified(schema, name string) string {
	return pgx.Identifier{schema, name}.Sanitize()
}
