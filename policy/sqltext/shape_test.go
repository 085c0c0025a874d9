package sqltext

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// shapeCorpus holds statements of the kinds pgwarden sees: pgbench's,
// psql's \d queries, pg_dump's catalog queries, and texts written to trip
// a scanner.
var shapeCorpus = []string{
	// pgbench
	"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
	"UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 77812;",
	"UPDATE pgbench_tellers SET tbalance = tbalance + 4321 WHERE tid = 7;",
	"UPDATE pgbench_branches SET bbalance = bbalance + 4321 WHERE bid = 1;",
	"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 77812, -4321, CURRENT_TIMESTAMP);",
	"BEGIN;", "END;",
	"select count(*) from pgbench_branches",
	// psql \d and friends
	`SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(customers)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3;`,
	`SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity, c.relforcerowsecurity,
false AS relhasoids, c.relispartition, pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', '),
c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence, c.relreplident, am.amname
FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid) LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)
WHERE c.oid = '16384';`,
	`SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull, (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity, a.attgenerated
FROM pg_catalog.pg_attribute a WHERE a.attrelid = '16384' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum;`,
	`SELECT n.nspname as "Schema", c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index'
  WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table'
  WHEN 'I' THEN 'partitioned index' END as "Type", pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','v','m','S','f','')
  AND n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast' AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2;`,
	`SELECT pol.polname, pol.polpermissive, CASE WHEN pol.polroles = '{0}' THEN NULL ELSE pg_catalog.array_to_string(array(select rolname from pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,
pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' END AS cmd
FROM pg_catalog.pg_policy pol WHERE pol.polrelid = '16384' ORDER BY 1;`,
	// pg_dump
	`SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'`,
	`SELECT pg_catalog.set_config('search_path', '', false);`,
	`SET statement_timeout = 0;`,
	`SET client_encoding = 'UTF8';`,
	`SELECT c.tableoid, c.oid, c.relname, c.relnamespace, c.relkind, c.reltype, c.relowner, c.relchecks, (c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x))::text[] AS toast_reloptions
FROM pg_class c LEFT JOIN pg_depend d ON (c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.objsubid = 0 AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
LEFT JOIN pg_class tc ON (c.reltoastrelid = tc.oid AND c.relkind <> 'p') WHERE c.relkind IN ('r', 'S', 'v', 'c', 'm', 'f', 'p') ORDER BY c.oid`,
	`COPY public.customers (id, email) TO stdout;`,
	`SELECT pg_catalog.pg_get_viewdef('16390'::pg_catalog.oid) AS viewdef`,
	`SELECT last_value, is_called FROM public.orders_id_seq`,
	`SELECT tableoid, oid, nspname, nspowner FROM pg_namespace WHERE nspname NOT LIKE E'pg\\_temp\\_%' ESCAPE E'\\'`,
	// application queries
	"SELECT id, email FROM customers WHERE email = 'ann@example.com' AND id > 100 LIMIT 10",
	"SELECT * FROM customers WHERE id BETWEEN 10 AND 20 AND state IN ('CA', 'NY', 'TX')",
	"SELECT * FROM customers WHERE id = -7 OR id = - /* minus */ 8.5",
	"SELECT * FROM customers c WHERE 42 < c.id AND c.email LIKE 'a%' AND lower(c.name) = 'bob'",
	"SELECT * FROM t WHERE id = $1 AND note = 'x' AND n = $2 + 19",
	"SELECT split_part(email, '@', 2) FROM customers WHERE id = 3",
	"SELECT split_part(email, '@', 1), left(name, 3), substr(ssn, 1, 9), substring(ssn from 6 for 4) FROM customers",
	"SELECT md5(email || encode(gen_random_bytes(16), 'hex')), md5(email || gen_random_uuid()::text) FROM customers",
	"SELECT email || 'x', upper(name), 42 AS answer, 'const' AS label FROM customers c LEFT JOIN orders o ON o.cid = c.id",
	"DELETE FROM sessions WHERE expires < now() - interval '30 days'",
	"INSERT INTO notes (id, body) VALUES (1, 'hello'), (2, 'world') ON CONFLICT (id) DO UPDATE SET body = 'x'",
	"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = 'merged' WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'new')",
	"WITH recent AS (SELECT * FROM orders WHERE created > '2024-01-01') SELECT count(*) FROM recent",
	"SELECT * FROM customers WHERE ssn = '123-45-6789'; SELECT 1",
	"SELECT lo_export(42, '/tmp/x')",
	"SELECT * FROM dblink('host=remote', 'SELECT email FROM customers') AS t(email text)",
	"DECLARE c1 CURSOR FOR SELECT * FROM customers WHERE id > 5",
	"FETCH 100 FROM c1",
	"COPY (SELECT * FROM customers WHERE id > 5) TO STDOUT",
	"COPY customers TO '/tmp/customers.csv'",
	"SET search_path = 'app', public",
	"SELECT set_config('search_path', 'evil', false)",
	"EXPLAIN SELECT * FROM customers WHERE id = 5",
	// hostile
	"SELECT 1 -- 'ann@example.com' 2\n, 'secret-1' /* 'x' /* nested 'y' */ still a comment 99 */ FROM t1",
	"SELECT E'it\\'s', E'a\\\\b', E'tab\\there', 'it''s' FROM t",
	"SELECT E'\\101', E'\\x41', E'\\u0041' FROM t",
	"SELECT $body$ it's $1 a 'string' $body$, $$x$$, $a$ $ab$ $a$ FROM t WHERE x = $b$y$b$",
	`SELECT "123", "t""1", "select" FROM "0x1F" WHERE "42" = 42`,
	"SELECT t1.c2, t2.c3 FROM t1 JOIN t2 ON t1.id = t2.id WHERE t1.x = 5",
	"SELECT U&'d\\0061t\\+000061', U&\"d\\0061t\" FROM t",
	"SELECT U&'d!0061t' UESCAPE '!' FROM t",
	"SELECT 1.e5, .5, 5., 1e-3, 1.5E+10, 0x1F, 0o17, 0b101, 1_000, 1_000.5, 0xFFFF_FFFF_FF, 2147483647, 2147483648, 007",
	"SELECT x'1F', X'ff', b'0101', B'1', N'national' FROM t",
	"SELECT B, X",
	"SELECT * FROM t WHERE a = $1 AND b = 5 AND c = $2::int + 1",
	"SELECT 'a'\n'b' FROM t",
	"SELECT 'a' 'b' FROM t",
	"SELECT 'a' -- comment\n'b' FROM t",
	"SELECT x::float(10), y::float(30), z::int[5], current_time(3), localtimestamp(2), (ARRAY[1, 2])[1] FROM t",
	"SELECT x::float(0) FROM t",
	"SELECT x::int ARRAY[5], x::int ARRAY[6], ARRAY[1, 2], (ARRAY['a'])[1:2] FROM t",
	"SELECT 123abc FROM t",
	"SELECT 1..5",
	"SELECT 0x FROM t",
	"SELECT 'unterminated",
	"SELECT /* unterminated",
	"SELECT $1abc",
	"SELECT * FROM t WHERE id = -2147483648 AND n = -0 AND m = - -3",
	"SELECT interval '1 day' + date '2024-01-01', timestamp with time zone '2024-01-01 00:00:00+00', int '5', 'x'::text",
	"SELECT * FROM t WHERE a IN (1, 2.5, 'three', -4, $1)",
	"SELECT * FROM t WHERE a = 1_000.5 AND b = -0x1F AND c = 1_000 AND d = 0o17 AND e = -1.e5 AND f = 007 AND g = 0xFFFFFFFFFF",
	"SELECT * FROM t WHERE a = E'x\\\\y\\'z' AND b = $q$it's$q$ AND c = N'n' AND d = B'1' AND e = 'x'::text AND f = int '5'",
	"SELECT * FROM t WHERE name = 'Zoë' AND city = 'Kraków'",
	"SELECT * FROM t WHERE n = 'a\x00b'",
	"SELECT * FROM t WHERE n = '\xff\xfe'",
	"select abalance from pgbench_accounts where aid = 1 for update",
	"SELECT * FROM t TABLESAMPLE system (10) REPEATABLE (42) WHERE v > 3 ORDER BY 1 LIMIT 5 OFFSET 10",
	"SELECT * FROM t WHERE v ~ '^a.*$' AND w ILIKE '%b%' AND x SIMILAR TO 'c%' AND y = ANY('{1,2}')",
	"SELECT json_value(doc, '$.a' RETURNING int), doc->>'email', doc #>> '{a,b}' FROM t WHERE doc @> '{\"k\": 1}'",
	"SELECT * FROM JSON_TABLE('[1,2]'::jsonb, '$[*]' COLUMNS (a int PATH '$')) jt",
	"SELECT 'search_path', 1",
	"SELECT * FROM t WHERE a = 'SEARCH_PATH'",
}

// testStatements returns the string constants of the package's other
// tests that look like SQL.
func testStatements(t testing.TB) []string {
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []string
	for _, name := range files {
		if name == "shape_test.go" {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && len(s) > 6 && strings.ContainsAny(s, " \n") {
					out = append(out, s)
				}
			}
			return true
		})
	}
	return out
}

// variant returns sql with each literal replaced by another of its token
// class: a text of the same shape. Integers the key holds are kept.
func variant(sql string, sh shape, alt int) string {
	var b strings.Builder
	last := 0
	for _, l := range sh.lits {
		tok := sql[l.pos:l.end]
		b.WriteString(sql[last:l.pos])
		last = l.end
		var r string
		dot := l.end < len(sql) && sql[l.end] == '.' // 0x1F. is 0x1F and '.'
		switch l.kind {
		case litInt:
			r = [...]string{"7", "2147483647", "0x7f", "1_234"}[alt%4]
			if dot {
				r = "0x7"
			}
			if strings.Contains(sh.key, "\x00k"+tok+"\x00") {
				r = tok
			}
		case litNum:
			r = [...]string{"1.5", "9e9", "99999999999", "3.25e-2"}[alt%4]
			if dot {
				r = "1.5"
			}
			if tok[0] == '.' {
				r = ".25" // after a name: t.5
			}
		case litString:
			r = [...]string{"'v'", "'it''s'", "''", "'Zoë 2'"}[alt%4]
		case litEscape:
			r = [...]string{`E'w'`, `E'\'\n'`, `e'\\'`, `E'q''r'`}[alt%4]
		case litDollar:
			r = [...]string{"$$d$$", "$t$'$t$", "$$$$", "$x$a$b$x$"}[alt%4]
		case litBit:
			r = "B'10'"
		case litHex:
			r = "X'AB'"
		}
		b.WriteString(r)
	}
	b.WriteString(sql[last:])
	return b.String()
}

// checkShaped checks that sql, analyzed after a text of its shape primed
// the shape cache, reads as it does on its own, and that its Normalized
// holds none of its literals.
func checkShaped(t testing.TB, sql string, alt int) (hit bool) {
	sh := scanShape(sql)
	v := variant(sql, sh, alt)
	if sv := scanShape(v); sh.ok && sv.key != sh.key {
		t.Fatalf("variant %q of %q: shape %q, want %q", v, sql, sv.key, sh.key)
	}
	a := New(0)
	a.Analyze(v)
	a.Probes(v)
	e, _ := a.shapes.Get(sh.key)
	hit = e != nil && e.info != nil
	got, want := a.Analyze(sql), analyze(sql)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q after %q (shape hit %v):\n got %+v\nwant %+v", sql, v, hit, got, want)
	}
	if got, want := a.Probes(sql), probesOf(sql); !reflect.DeepEqual(got, want) {
		t.Errorf("Probes(%q) after %q: got %+v, want %+v", sql, v, got, want)
	}
	a.Lineage(v)
	if got, want := a.Lineage(sql), lineageOf(sql); !reflect.DeepEqual(got, want) {
		t.Errorf("Lineage(%q) after %q: got %+v, want %+v", sql, v, got, want)
	}
	return hit
}

func TestShapeDifferential(t *testing.T) {
	corpus := append(testStatements(t), shapeCorpus...)
	hits := 0
	for _, sql := range corpus {
		for alt := 0; alt < 4; alt++ {
			if checkShaped(t, sql, alt) && alt == 0 {
				hits++
			}
		}
		// A shape's Normalized holds no literal of its texts. (A text
		// analyzed on its own keeps what pg_query's normalization keeps:
		// a COPY's file name, a FETCH's count.)
		info := analyze(sql)
		if e, _, _ := New(0).entry(sql); e == nil {
			continue
		}
		sh := scanShape(sql)
		for _, l := range sh.lits {
			v, ok := l.value(sql, false)
			if !ok {
				v = sql[l.pos:l.end]
			}
			if len(v) >= 3 && strings.Contains(info.Normalized, v) && !strings.Contains(sh.key, v) {
				t.Errorf("Normalized %q of %q holds the literal %q", info.Normalized, sql, v)
			}
		}
	}
	t.Logf("%d texts, %d shape-cached", len(corpus), hits)
}

// TestShapeCached checks which texts share their shape's analysis.
func TestShapeCached(t *testing.T) {
	tests := []struct {
		sql    string
		cached bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;", true},
		{"UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 77812;", true},
		{"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 77812, -4321, CURRENT_TIMESTAMP);", true},
		{"SELECT * FROM t WHERE a IN (1, 2.5, 'three', -4, $1) AND b = - /* c */ 5", true},
		{"SELECT x::float(10), z::int[5], current_time(3) FROM t", true},
		{"SELECT split_part(email, '@', 2) FROM customers WHERE id = 3", true},
		{"SELECT * FROM t WHERE id = $1 + 19", false},           // the sum is the literal's
		{"SELECT * FROM t WHERE m = - -3", false},               // two signs folded
		{"SELECT * FROM t WHERE a = 'search_path'", false},      // may change it
		{"SELECT set_config('search_path', 'x', false)", false}, // changes it
		{"COPY t TO '/tmp/x'", false},                           // a utility statement
		{"FETCH 100 FROM c1", false},
		{"SELECT E'\\101' FROM t", false}, // an escape the scanner leaves to the parser
		{"SELECT * FROM t WHERE a = 'a\x00b'", false},
		{"SELECT x::float(0) FROM t", false}, // does not parse
	}
	for _, tt := range tests {
		e, _, _ := New(0).entry(tt.sql)
		if (e != nil) != tt.cached {
			t.Errorf("%q: shape-cached %v, want %v", tt.sql, e != nil, tt.cached)
		}
	}
}

func TestScanShape(t *testing.T) {
	tests := []struct {
		sql, canonical string
		ok             bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;", "SELECT abalance FROM pgbench_accounts WHERE aid = 0;", true},
		{"select  1 /* a /* b */ c */,\n\t'x' -- 'y'\n", "select 0 , ''", true},
		{"SELECT $1, 'a', $3", "SELECT $1, '', $3", true},
		{"SELECT E'it\\'s', $q$x$q$, N'n', B'1', X'1F'", "SELECT '', '', N'', B'', X''", true},
		{"SELECT t1.c2 FROM \"0x1F\" WHERE \"a'b\" = 1.e5", "SELECT t1.c2 FROM \"0x1F\" WHERE \"a'b\" = .0", true},
		{"SELECT 0x1F, 1_000, .5, 1e5, 2147483648, 0x1F.5", "SELECT 0, 0, .0, .0, .0, 0x0.0", true},
		{"SELECT x::float(10), y::int[3], current_time(2), ARRAY[4, 5]", "SELECT x::float(10), y::int[3], current_time(2), ARRAY[4, 0]", true},
		{"SELECT a/**/b", "SELECT a b", true},
		{"SELECT 'a'\n'b'", "SELECT '' ''", false},
		{"SELECT U&'x'", "SELECT U&''", false},
		{"SELECT E'\\101'", "SELECT ''", false},
		{"SELECT 12abc", "SELECT 0abc", false},
		{"SELECT 1e", "SELECT .0", false},
		{"SELECT 'open", "SELECT ''", false},
		{"SELECT /* open", "SELECT", false},
		{"SELECT $$ open", "SELECT ''", false},
	}
	for _, tt := range tests {
		sh := scanShape(tt.sql)
		if got := sh.canonical(); got != tt.canonical || sh.ok != tt.ok {
			t.Errorf("scanShape(%q): %q ok %v; want %q ok %v", tt.sql, got, sh.ok, tt.canonical, tt.ok)
		}
	}
	for _, pair := range [][2]string{
		{"SELECT x::float(10)", "SELECT x::float(30)"},
		{"SELECT x::int[3]", "SELECT x::int[4]"},
		{"SELECT x::int ARRAY[3]", "SELECT x::int ARRAY[4]"},
		{"SELECT localtime(3)", "SELECT localtime(4)"},
	} {
		if scanShape(pair[0]).key == scanShape(pair[1]).key {
			t.Errorf("%q and %q share a shape", pair[0], pair[1])
		}
	}
}

func FuzzShape(f *testing.F) {
	for _, sql := range shapeCorpus {
		f.Add(sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > 2000 {
			return
		}
		sh := scanShape(sql)
		for i, l := range sh.lits {
			if l.pos < 0 || l.end > len(sql) || l.pos >= l.end || i > 0 && l.pos < sh.lits[i-1].end {
				t.Fatalf("literal %d of %q at %d:%d", i, sql, l.pos, l.end)
			}
		}
		if !sh.ok {
			return
		}
		// The key holds nothing of the literals: replacing them leaves it.
		v := variant(sql, sh, 0)
		if vs := scanShape(v); vs.key != sh.key || !vs.ok {
			t.Fatalf("variant %q of %q: key %q ok %v, want %q", v, sql, vs.key, vs.ok, sh.key)
		}
		checkShaped(t, sql, 1)
	})
}

// BenchmarkAnalyzeDistinctLiterals analyzes pgbench -S statements, each
// with its own literal, as pgbench sends them in simple-protocol mode.
func BenchmarkAnalyzeDistinctLiterals(b *testing.B) {
	a := New(0)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		sql := "SELECT abalance FROM pgbench_accounts WHERE aid = " + strconv.Itoa(i%10_000_000) + ";"
		a.Analyze(sql)
		a.Probes(sql)
	}
}

// BenchmarkAnalyzeProbesDistinctLiterals is BenchmarkAnalyzeDistinctLiterals
// through AnalyzeProbes, as the guard asks.
func BenchmarkAnalyzeProbesDistinctLiterals(b *testing.B) {
	a := New(0)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		sql := "SELECT abalance FROM pgbench_accounts WHERE aid = " + strconv.Itoa(i%10_000_000) + ";"
		if _, _, ok := a.AnalyzeProbes(sql); !ok && i > 0 {
			b.Fatal("probes not known from the shape")
		}
	}
}

// TestDistinctLiteralsParseOnce checks that statements differing only in
// their literals are not parsed one by one: a parse costs a hundred and
// more allocations, a shape hit a dozen.
func TestDistinctLiteralsParseOnce(t *testing.T) {
	a := New(0)
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		i++
		sql := "SELECT abalance FROM pgbench_accounts WHERE aid = " + strconv.Itoa(i) + ";"
		a.Analyze(sql)
		a.Probes(sql)
		a.Lineage(sql)
	})
	if allocs > 40 {
		t.Errorf("%.0f allocations per statement; want a shape hit's (at most 40)", allocs)
	}
	if a.shapes.Len() != 1 {
		t.Errorf("%d shapes; want 1", a.shapes.Len())
	}
}
