package sqltext

import "testing"

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
