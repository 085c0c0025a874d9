package guard

import "testing"

func TestJustification(t *testing.T) {
	for sql, want := range map[string]string{
		"SELECT * FROM customers /* pgwarden.reason: ticket 4711 */":           "ticket 4711",
		"SELECT 1 -- pgwarden.reason = refund for Mrs Smith\n":                 "refund for Mrs Smith",
		"/* PGWARDEN.REASON: audit request\nfrom legal */ SELECT email FROM c": "audit request from legal",
		"SELECT 'pgwarden.reason: not a comment'":                              "",
		"SELECT 1": "",
	} {
		if got := justificationIn(sql); got != want {
			t.Errorf("justificationIn(%q) = %q, want %q", sql, got, want)
		}
	}
	for sql, want := range map[string]string{
		"SET pgwarden.reason = 'ticket 4711'":            "ticket 4711",
		"set session pgwarden.reason to 'it''s urgent';": "it's urgent",
		"SET LOCAL pgwarden.reason = 'x'":                "x",
	} {
		if got, ok := justificationSet(sql); !ok || got != want {
			t.Errorf("justificationSet(%q) = %q, %v; want %q", sql, got, ok, want)
		}
	}
	if _, ok := justificationSet("SET search_path = public"); ok {
		t.Error("another SET taken for a reason")
	}
}
