package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/detect"
)

const discoverUsage = `Usage: pgwarden discover --dsn URL [flags]

Proposes a PII classification for a database: lists the columns of its
tables, views and materialized views, guesses a category from each column's
name, samples the values of text and JSON columns with pgwarden's content
detectors, and prints a policy YAML fragment (version: 1, pii: columns:) with
the evidence for each entry as a comment. Review it before use: names are
guesses and shares come from a sample.

A column is proposed when the share of its sampled non-null values that a
detector recognises is at least --min-share, or when its name matches a
known PII name (marked "name only" when no value confirms it). Relations the
role may not read are skipped with a warning. Progress goes to stderr.

Environment:
  PGPASSWORD   password, when the URL has none (as libpq)

Flags:
`

// discoverMaxValue bounds the bytes of one sampled value that are fetched and
// scanned, so one huge JSON document does not dominate the run.
const discoverMaxValue = 64 << 10

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	*s = append(*s, v)
	return nil
}

// discoverOptions are the parsed flags of pgwarden discover.
type discoverOptions struct {
	dsn      string
	schemas  []string
	sample   int
	minShare float64
	timeout  time.Duration
}

// runDiscover runs pgwarden discover: it prints the proposed policy to
// stdout and progress and warnings to stderr.
func runDiscover(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("discover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, discoverUsage); fs.PrintDefaults() }
	var (
		opts    discoverOptions
		schemas stringList
	)
	fs.StringVar(&opts.dsn, "dsn", "", "PostgreSQL `URL` to scan, postgres://user@host:port/db")
	fs.Var(&schemas, "schema", "scan only this `schema` (repeatable; default: all but the system schemas)")
	fs.IntVar(&opts.sample, "sample", 1000, "sample at most this many `rows` per relation")
	fs.Float64Var(&opts.minShare, "min-share", 0.5, "propose a column when at least this `share` (0-1] of its sampled values match")
	fs.DurationVar(&opts.timeout, "timeout", 10*time.Minute, "give up when the whole scan takes longer than this")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	opts.schemas = schemas
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "pgwarden discover: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	case opts.dsn == "":
		fmt.Fprintln(stderr, "pgwarden discover: --dsn is required")
		return errUsage
	case opts.sample < 1:
		fmt.Fprintln(stderr, "pgwarden discover: --sample must be at least 1")
		return errUsage
	case !(opts.minShare > 0 && opts.minShare <= 1):
		fmt.Fprintln(stderr, "pgwarden discover: --min-share must be in (0, 1]")
		return errUsage
	case opts.timeout <= 0:
		fmt.Fprintln(stderr, "pgwarden discover: --timeout must be positive")
		return errUsage
	}

	ctx, cancel := context.WithTimeout(context.Background(), opts.timeout)
	defer cancel()
	start := time.Now()
	res, err := discover(ctx, opts, stderr)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return fmt.Errorf("discover: timed out after %v (raise --timeout, narrow --schema or lower --sample): %w", opts.timeout, err)
		}
		return fmt.Errorf("discover: %w", err)
	}
	writeProposal(stdout, res, opts)
	fmt.Fprintf(stderr, "pgwarden discover: scanned %d relations (%d skipped), %d columns, %d rows sampled; proposed %d columns in %v\n",
		res.scanned, res.skipped, res.columns, res.rows, res.proposed(), time.Since(start).Round(time.Millisecond))
	return nil
}

// discColumn is one column of a scanned relation and the evidence gathered
// for it.
type discColumn struct {
	schema, table, name string
	typ                 string // base type name
	readable            bool   // the role may SELECT it
	sampled             bool   // its values were sampled
	nonNull             int    // sampled non-null values
	hits                map[policy.Category]int
	nameCat             policy.Category // "" when the name suggests nothing

	proposal policy.Category // "" when not proposed
	byValue  bool            // proposal rests on the sampled values
}

// discRelation is one table, view or materialized view.
type discRelation struct {
	schema, name string
	kind         byte // pg_class.relkind
	reltuples    float64
	cols         []*discColumn
}

// discoverResult is what a scan found.
type discoverResult struct {
	database string
	rels     []*discRelation
	scanned  int
	skipped  int
	columns  int
	rows     int
}

func (r *discoverResult) proposed() int {
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

// discoverCatalogSQL lists the columns of user relations: ordinary and
// partitioned tables (not their partitions), views and materialized views.
const discoverCatalogSQL = `
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

// discover connects, lists the relations and samples each one, skipping
// those the server refuses to read.
func discover(ctx context.Context, opts discoverOptions, stderr io.Writer) (*discoverResult, error) {
	cfg, err := pgx.ParseConfig(opts.dsn)
	if err != nil {
		return nil, fmt.Errorf("bad --dsn: %w", err)
	}
	// Sampling only reads; a view over a function that writes fails and is
	// skipped rather than changing the database.
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "pgwarden discover"
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	res := &discoverResult{database: cfg.Database}
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&res.database); err != nil {
		return nil, err
	}
	if res.rels, err = listRelations(ctx, conn, opts.schemas); err != nil {
		return nil, fmt.Errorf("reading the catalog: %w", err)
	}
	seen := map[string]bool{}
	for _, rel := range res.rels {
		seen[rel.schema] = true
		res.columns += len(rel.cols)
	}
	for _, s := range opts.schemas {
		if !seen[s] {
			fmt.Fprintf(stderr, "pgwarden discover: warning: no tables or views in schema %q\n", s)
		}
	}
	fmt.Fprintf(stderr, "pgwarden discover: database %s: %d relations, %d columns\n", res.database, len(res.rels), res.columns)

	start, last := time.Now(), time.Now()
	for i, rel := range res.rels {
		rows, err := sampleRelation(ctx, conn, rel, opts.sample)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			res.scanned++
			res.rows += rows
		case errors.As(err, &pgErr) && ctx.Err() == nil:
			// Permission denied, an unpopulated materialized view, a view
			// over a broken function: skip the relation, keep going.
			res.skipped++
			fmt.Fprintf(stderr, "pgwarden discover: warning: skipping %s: %s (SQLSTATE %s)\n",
				qualified(rel.schema, rel.name), pgErr.Message, pgErr.Code)
		case errors.Is(err, errNoReadableColumns):
			res.skipped++
			fmt.Fprintf(stderr, "pgwarden discover: warning: skipping %s: permission denied on every text column\n",
				qualified(rel.schema, rel.name))
		default:
			return nil, fmt.Errorf("sampling %s: %w", qualified(rel.schema, rel.name), err)
		}
		for _, c := range rel.cols {
			c.proposal, c.byValue = propose(c, opts.minShare)
		}
		if time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(stderr, "pgwarden discover: %d/%d relations scanned (%v)\n",
				i+1, len(res.rels), time.Since(start).Round(time.Millisecond))
		}
	}
	return res, nil
}

// listRelations reads the catalog into relations with their columns, in
// schema, name and column order.
func listRelations(ctx context.Context, conn *pgx.Conn, schemas []string) ([]*discRelation, error) {
	if schemas == nil {
		schemas = []string{}
	}
	rows, err := conn.Query(ctx, discoverCatalogSQL, schemas)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var rels []*discRelation
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
			rels = append(rels, &discRelation{schema: schema, name: table, kind: kind[0], reltuples: reltuples})
		}
		rel := rels[len(rels)-1]
		rel.cols = append(rel.cols, &discColumn{
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
func sampleRelation(ctx context.Context, conn *pgx.Conn, rel *discRelation, n int) (int, error) {
	var cols []*discColumn
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
		exprs = append(exprs, fmt.Sprintf("left(%s::text, %d)", pgx.Identifier{c.name}.Sanitize(), discoverMaxValue))
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
		query, _ = sampleQuery(&discRelation{schema: rel.schema, name: rel.name, kind: rel.kind}, exprs, n)
		got, err = scanSample(ctx, conn, query, cols)
	}
	return got, err
}

// sampleQuery returns the query that reads up to n rows of exprs from rel,
// and whether it samples with TABLESAMPLE SYSTEM: only tables and
// materialized views whose pg_class.reltuples is over ten times n, where
// reading the first n rows would see only the oldest pages.
func sampleQuery(rel *discRelation, exprs []string, n int) (string, bool) {
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
func scanSample(ctx context.Context, conn *pgx.Conn, query string, cols []*discColumn) (int, error) {
	for _, c := range cols {
		c.sampled, c.nonNull, c.hits = true, 0, map[policy.Category]int{}
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
func readSample(ctx context.Context, conn *pgx.Conn, query string, cols []*discColumn) (int, error) {
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
			counts.Each(func(cat detect.Category, k int) {
				if k > 0 {
					c.hits[policy.Category(cat)]++
				}
			})
		}
	}
	return n, rows.Err()
}

// propose picks the category to declare for c, or "" for none: the detector
// category with the largest share at or above minShare, else the category the
// name suggests.
func propose(c *discColumn, minShare float64) (policy.Category, bool) {
	var best policy.Category
	bestHits := 0
	for cat, k := range c.hits {
		if float64(k) >= minShare*float64(c.nonNull) && (k > bestHits || k == bestHits && cat < best) {
			best, bestHits = cat, k
		}
	}
	if best != "" {
		return best, true
	}
	return c.nameCat, false
}

// evidence describes why c was (or was not) proposed, for a YAML comment.
func evidence(c *discColumn) string {
	var parts []string
	if c.sampled {
		switch {
		case c.nonNull == 0:
			parts = append(parts, "no non-null values sampled")
		case len(c.hits) == 0:
			parts = append(parts, fmt.Sprintf("0/%d sampled values match a detector", c.nonNull))
		default:
			// The proposed category first, then the others by count.
			cats := make([]policy.Category, 0, len(c.hits))
			for cat := range c.hits {
				cats = append(cats, cat)
			}
			slices.SortFunc(cats, func(x, y policy.Category) int {
				if (x == c.proposal) != (y == c.proposal) {
					if x == c.proposal {
						return -1
					}
					return 1
				}
				if d := c.hits[y] - c.hits[x]; d != 0 {
					return d
				}
				return strings.Compare(string(x), string(y))
			})
			for _, cat := range cats {
				parts = append(parts, fmt.Sprintf("%d/%d sampled values look like %s", c.hits[cat], c.nonNull, cat))
			}
		}
	} else if !sampledTypes[c.typ] {
		parts = append(parts, "not sampled (type "+c.typ+")")
	} else if !c.readable {
		parts = append(parts, "not sampled (no SELECT privilege)")
	} else {
		parts = append(parts, "not sampled (relation skipped)")
	}
	switch {
	case c.nameCat == "":
	case c.proposal == c.nameCat && !c.byValue:
		parts = append(parts, "name only: name matches "+string(c.nameCat))
	default:
		parts = append(parts, "name matches "+string(c.nameCat))
	}
	return strings.Join(parts, "; ")
}

func writeProposal(w io.Writer, res *discoverResult, opts discoverOptions) {
	fmt.Fprintf(w, "# pgwarden discover: database %s, %d relations scanned, up to %d rows sampled per relation, --min-share %g.\n",
		yamlComment(res.database), res.scanned, opts.sample, opts.minShare)
	fmt.Fprintln(w, "# Review every entry before use: names are guesses and shares come from a sample.")
	fmt.Fprintln(w, "version: 1")
	fmt.Fprintln(w, "pii:")
	if res.proposed() == 0 {
		fmt.Fprintln(w, "  columns: []")
	} else {
		fmt.Fprintln(w, "  columns:")
	}
	var below []*discColumn
	for _, rel := range res.rels {
		for _, c := range rel.cols {
			if c.proposal == "" {
				if len(c.hits) > 0 {
					below = append(below, c)
				}
				continue
			}
			fmt.Fprintf(w, "    # %s\n", yamlComment(evidence(c)))
			fmt.Fprintf(w, "    - match: %s\n", yamlScalar(matchString(c.schema, c.table, c.name)))
			fmt.Fprintf(w, "      category: %s\n", c.proposal)
		}
	}
	if len(below) > 0 {
		fmt.Fprintf(w, "# Not proposed, some values matched but fewer than --min-share %g:\n", opts.minShare)
		for _, c := range below {
			fmt.Fprintf(w, "#   %s: %s\n", yamlComment(matchString(c.schema, c.table, c.name)), yamlComment(evidence(c)))
		}
	}
}

// matchString writes schema.table.column in the policy's match syntax:
// parts other than plain lower-case identifiers are double-quoted, so that
// dots, glob characters and case are taken literally.
func matchString(schema, table, column string) string {
	return matchPart(schema) + "." + matchPart(table) + "." + matchPart(column)
}

func matchPart(s string) string {
	plain := s != ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '$') {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// yamlScalar returns s as a YAML plain scalar when that reads back as the
// same string, single-quoted when it is printable, else double-quoted.
func yamlScalar(s string) string {
	plain, printable := s != "" && s[0] != '"', true
	for _, r := range s {
		plain = plain && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '$' || r == '.' || r == '"')
		printable = printable && unicode.IsPrint(r)
	}
	switch {
	case plain:
		return s
	case printable:
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	default:
		return strconv.Quote(s) // Go's escapes are all valid in a YAML double-quoted scalar
	}
}

// yamlComment makes s safe to follow '#' on one line.
func yamlComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
}

// qualified names a relation for messages.
func qualified(schema, name string) string {
	return pgx.Identifier{schema, name}.Sanitize()
}

// nameRules map the words of a column name to a category, most specific
// first: email_address is an email, ip_address an ip. A rule matches when
// its words appear consecutively among the name's words, or, with whole,
// when they are all of them.
var nameRules = []struct {
	words string
	cat   policy.Category
	whole bool
}{
	{"email", policy.CategoryEmail, false},
	{"e mail", policy.CategoryEmail, false},
	{"mail", policy.CategoryEmail, false},
	{"ip", policy.CategoryIP, false},
	{"card number", policy.CategoryCard, false},
	{"cc number", policy.CategoryCard, false},
	{"credit card", policy.CategoryCard, false},
	{"pan", policy.CategoryCard, false},
	{"ssn", policy.CategoryNationalID, false},
	{"social security", policy.CategoryNationalID, false},
	{"iban", policy.CategoryIBAN, false},
	{"phone", policy.CategoryPhone, false},
	{"mobile", policy.CategoryPhone, false},
	{"tel", policy.CategoryPhone, false},
	{"telephone", policy.CategoryPhone, false},
	{"dob", policy.CategoryDateOfBirth, false},
	{"birth date", policy.CategoryDateOfBirth, false},
	{"date of birth", policy.CategoryDateOfBirth, false},
	{"birthdate", policy.CategoryDateOfBirth, false},
	{"birthday", policy.CategoryDateOfBirth, false},
	{"first name", policy.CategoryName, false},
	{"last name", policy.CategoryName, false},
	{"full name", policy.CategoryName, false},
	{"given name", policy.CategoryName, false},
	{"family name", policy.CategoryName, false},
	{"customer name", policy.CategoryName, false},
	{"contact name", policy.CategoryName, false},
	{"firstname", policy.CategoryName, false},
	{"lastname", policy.CategoryName, false},
	{"fullname", policy.CategoryName, false},
	{"surname", policy.CategoryName, false},
	{"name", policy.CategoryName, true},
	{"address", policy.CategoryAddress, false},
	{"street", policy.CategoryAddress, false},
	{"city", policy.CategoryAddress, false},
	{"zip", policy.CategoryAddress, false},
	{"zipcode", policy.CategoryAddress, false},
	{"postcode", policy.CategoryAddress, false},
	{"postal code", policy.CategoryAddress, false},
}

// nameCategory returns the category a column name suggests, or "".
func nameCategory(name string) policy.Category {
	words := nameWords(name)
	for _, r := range nameRules {
		rw := strings.Fields(r.words)
		if r.whole {
			if strings.Join(words, " ") == r.words {
				return r.cat
			}
			continue
		}
		for i := 0; i+len(rw) <= len(words); i++ {
			if strings.Join(words[i:i+len(rw)], " ") == r.words {
				return r.cat
			}
		}
	}
	return ""
}

// nameWords splits a column name into lower-case words at non-alphanumeric
// characters, lower-to-upper case changes (camelCase) and letter-digit
// boundaries: "billingEMail2" -> billing, e, mail, 2.
func nameWords(name string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(name)
	for i, r := range rs {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush()
			continue
		}
		if i > 0 && len(cur) > 0 {
			p := rs[i-1]
			if unicode.IsLower(p) && unicode.IsUpper(r) || unicode.IsDigit(p) != unicode.IsDigit(r) ||
				// "EMail": an upper-case run followed by lower case starts a new word at its last letter.
				unicode.IsUpper(p) && unicode.IsUpper(r) && i+1 < len(rs) && unicode.IsLower(rs[i+1]) {
				flush()
			}
		}
		cur = append(cur, r)
	}
	flush()
	return words
}
