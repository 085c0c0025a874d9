// Package sqltext reads what pgwarden needs from a statement's text with
// PostgreSQL's own parser (pg_query): a fingerprint that groups statements
// differing only in their literals, the text with literals replaced by
// placeholders (so that the audit trail records what was asked without the
// values typed into it), and the cursor a DECLARE, FETCH, MOVE or CLOSE
// names. Results are cached by text: prepared statements and repeated
// queries are parsed once; and by shape (shape.go): queries that differ
// only in their literals are parsed once too.
package sqltext

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pgwarden/pgwarden/internal/shardlru"
)

// Info is what the text of one Query or Parse message says.
type Info struct {
	// Fingerprint is pg_query's fingerprint, hex; "" when the text does not
	// parse.
	Fingerprint string
	// Normalized is the text with every literal replaced by $n (pg_query's
	// normalization; for a query, of its shape: comments dropped,
	// whitespace runs collapsed, and a literal the normalization keeps,
	// such as a typmod, replaced by a fixed one); "" when the text does
	// not parse (the raw text is then never recorded).
	Normalized string
	// Cursor is the cursor a DECLARE, FETCH, MOVE or CLOSE statement names
	// (the first such statement of the text), and CursorOp which of them.
	Cursor   string
	CursorOp string
	// SearchPath is the last change of search_path the text makes, if any.
	SearchPath *PathChange
	// Kinds are the kinds of the text's statements (KindSelect, ...), each
	// once, in order; nil when the text does not parse.
	Kinds []string
	// Relations are the tables and views the text names (CTEs excepted),
	// each once, schema empty when unqualified.
	Relations []Relation
	// Functions are the functions the text calls, each once, Func set,
	// Table the function's name and Schema empty when unqualified.
	Functions []Relation
	// Estimable is the query a planner estimate of the text's result
	// would be asked about (EstimableQuery), "" when none.
	Estimable string
	// EstimableParams is set when Estimable holds parameters: it can be
	// planned only with an Execute's values.
	EstimableParams bool
	// Predicates are the comparisons of a single SELECT's WHERE clause
	// with constants and parameters (see Predicate).
	Predicates []Predicate
	// Skipped is why the text was not analyzed (SkippedSize,
	// SkippedTokens, SkippedRelations: past MaxAnalyzedBytes,
	// MaxAnalyzedTokens or MaxAnalyzedRelations), "" when it was. Kinds
	// then lists every kind the text's words allow, Words holds those
	// words, and the other fields are empty.
	Skipped string
	// Words are the distinct words of a skipped text that may be names,
	// lower-cased, and AnyWord is set when they do not tell (see skim):
	// any name may be in the text.
	Words   []string
	AnyWord bool
}

// Analyzer caches Info by statement text, and by shape: texts that
// differ only in their literals (pgbench's SELECT ... WHERE aid = 12345)
// share one parse. Safe for concurrent use.
type Analyzer struct {
	cache   *shardlru.Cache[string, *Info]
	lineage *shardlru.Cache[string, *Lineage]
	// bigInfo and bigLineage hold the few latest texts longer than
	// maxCachedText: a statement is read several times as it runs.
	bigInfo    *shardlru.Cache[string, *Info]
	bigLineage *shardlru.Cache[string, *Lineage]
	// shapes holds what texts of one shape share (see scanShape).
	shapes *shardlru.Cache[string, *shapeEntry]
}

// maxCachedText bounds the texts kept as keys of the main caches;
// bigCacheSize is how many longer ones are kept.
const (
	maxCachedText = 16 << 10
	bigCacheSize  = 8
)

// New returns an Analyzer caching up to size texts (default 4096).
func New(size int) *Analyzer {
	if size <= 0 {
		size = 4096
	}
	c, err := shardlru.New[string, *Info](size)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	l, err := shardlru.New[string, *Lineage](size)
	if err != nil {
		panic(err)
	}
	bi, _ := shardlru.New[string, *Info](bigCacheSize)
	bl, _ := shardlru.New[string, *Lineage](bigCacheSize)
	sh, _ := shardlru.New[string, *shapeEntry](size)
	return &Analyzer{cache: c, lineage: l, bigInfo: bi, bigLineage: bl, shapes: sh}
}

// Analyze returns what sql says. The result is shared: do not modify it.
func (a *Analyzer) Analyze(sql string) *Info {
	info, _ := a.analyze(sql)
	return info
}

// AnalyzeProbes is Analyze and, when its shape tells them without a
// parse, Probes (ok set): the two a statement of a known shape asks for,
// from one scan of its text.
func (a *Analyzer) AnalyzeProbes(sql string) (info *Info, probes *Lineage, ok bool) {
	info, e := a.analyze(sql)
	if e != nil {
		return info, e.probes, true
	}
	return info, nil, false
}

// analyze is Analyze, and the shape entry the Info comes from, if any.
//
// An Info made from its shape's entry is not cached by its text: making
// it again costs a scan of the text, and texts that differ only in their
// literals (pgbench's, an application's that inlines its values) would
// otherwise push out of the cache the texts that needed a parse of their
// own.
func (a *Analyzer) analyze(sql string) (*Info, *shapeEntry) {
	c := a.cache
	if len(sql) > maxCachedText {
		c = a.bigInfo
	}
	if info, ok := c.Get(sql); ok {
		return info, nil
	}
	e, sh, built := a.entry(sql)
	if built == nil && e != nil {
		if info := e.instance(sql, &sh); info != nil {
			return info, e
		}
	}
	info := built
	if info == nil {
		info = analyze(sql)
	}
	c.Add(sql, info)
	if e != nil && e.info == nil {
		e = nil
	}
	return info, e
}

// analyze is the analysis of sql on its own.
func analyze(sql string) *Info {
	if why := overLimits(sql); why != "" {
		return skimmed(sql, why)
	}
	sh := scanShape(sql)
	info, _, _ := analyzeParsed(sql, &sh)
	return info
}

// analyzeParsed analyzes a text within the limits, sh its shape, and
// returns its parse tree too, nil when it does not parse or is skimmed,
// and whether Normalized is the shape's.
func analyzeParsed(sql string, sh *shape) (*Info, *pg_query.ParseResult, bool) {
	info := &Info{}
	fp, err := pg_query.Fingerprint(sql)
	if err != nil {
		return info, nil, false
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return info, nil, false
	}
	norm, shaped, err := normalize(sql, sh, tree)
	if err != nil {
		return info, nil, false
	}
	info.Fingerprint, info.Normalized = fp, norm
	info.Kinds, info.Relations, info.Functions = classify(tree)
	if len(info.Relations) > MaxAnalyzedRelations {
		return skimmed(sql, SkippedRelations), nil, false
	}
	info.Estimable, info.EstimableParams, _ = estimableOf(tree, sql)
	info.Predicates = predicatesOf(tree)
	if mayNameCursor(sql) {
		info.Cursor, info.CursorOp = cursorOf(tree)
	}
	if containsFold(sql, "search_path") {
		info.SearchPath = searchPathChange(tree)
	}
	return info, tree, shaped
}

// normalize returns pg_query's normalization of a parsed text: for a
// query the scanner reads, of its shape's canonical text (the same for
// every text of the shape, comments dropped, whitespace collapsed; shaped
// is then set), else of the text itself.
func normalize(sql string, sh *shape, tree *pg_query.ParseResult) (n string, shaped bool, err error) {
	if sh.ok && queriesOnly(tree) {
		if n, err := pg_query.Normalize(sh.canonical()); err == nil {
			return n, true, nil
		}
	}
	n, err = pg_query.Normalize(sql)
	return n, false, err
}

// skimmed is the Info of a text not analyzed, for the reason why.
func skimmed(sql, why string) *Info {
	info := &Info{Skipped: why}
	info.Kinds, info.Words, info.AnyWord = skim(sql)
	return info
}

// mayNameCursor is a cheap test that spares the full parse for statements
// that cannot be cursor commands.
func mayNameCursor(sql string) bool {
	u := strings.ToUpper(sql)
	return strings.Contains(u, "FETCH") || strings.Contains(u, "MOVE") ||
		strings.Contains(u, "DECLARE") || strings.Contains(u, "CLOSE")
}

// cursorOf returns the cursor the first cursor command of a text names.
func cursorOf(tree *pg_query.ParseResult) (name, op string) {
	for _, raw := range tree.GetStmts() {
		n := raw.GetStmt()
		switch {
		case n.GetDeclareCursorStmt() != nil:
			return n.GetDeclareCursorStmt().GetPortalname(), "declare"
		case n.GetFetchStmt() != nil:
			f := n.GetFetchStmt()
			if f.GetIsmove() {
				return f.GetPortalname(), "move"
			}
			return f.GetPortalname(), "fetch"
		case n.GetClosePortalStmt() != nil:
			return n.GetClosePortalStmt().GetPortalname(), "close"
		}
	}
	return "", ""
}
