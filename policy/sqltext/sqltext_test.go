package sqltext

import (
	"strings"
	"testing"
)

func TestAnalyze(t *testing.T) {
	a := New(0)
	tests := []struct {
		sql, normalized, cursor, op string
	}{
		{"SELECT * FROM customers WHERE email = 'ann@example.com'", "SELECT * FROM customers WHERE email = $1", "", ""},
		{"select 1 /* note */", "select $1 /* note */", "", ""},
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
		{"SELECT md5(email), id FROM customers", "email | id"},
		{"SELECT reverse(c.email) AS r FROM public.customers c", "c.email"},
		{"SELECT encode(convert_to(email, 'UTF8'), 'base64') FROM customers", "email"},
		{"SELECT length(email), count(DISTINCT email), email IS NULL FROM customers", " |  | "},
		{"SELECT split_part(email, '@', 2) FROM customers", ""},
		{"SELECT split_part(email, '@', 1) FROM customers", "email"},
		{"SELECT a.full_name || ' ' || b.email FROM customers a JOIN customers b ON a.id = b.id", "a.full_name,b.email"},
		{"SELECT md5(email) FROM customers UNION ALL SELECT 'x' FROM generate_series(1, 3)", "email"},
		{"SELECT id, 'x' FROM t UNION SELECT 1, reverse(email) FROM customers", "id | email"},
		{"WITH x AS (SELECT md5(email) AS h, id FROM customers) SELECT h, id FROM x", "email | id"},
		{"WITH x(a) AS (SELECT reverse(email) FROM customers) SELECT upper(x.a) FROM x", "email"},
		{"SELECT s.e FROM (SELECT encode(convert_to(email, 'UTF8'), 'base64') AS e FROM customers) s", "email"},
		{"WITH x AS (SELECT email FROM customers), y AS (SELECT email AS m FROM x) SELECT md5(m) FROM y", "email"},
		{"SELECT * FROM customers", "nil"},
		{"SELECT c.* FROM customers c", "nil"},
		{"SELECT 1; SELECT 2", "nil"},
		{"UPDATE customers SET email = 'x'", "nil"},
	}
	for _, tt := range tests {
		l := a.Lineage(tt.sql)
		got := "nil"
		if l != nil {
			var targets []string
			for _, tg := range l.Targets {
				var refs []string
				for _, r := range tg.Refs {
					if r.Qualifier != "" {
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
