package tag

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

var (
	key   = []byte("0123456789abcdef0123456789abcdef")
	other = []byte("fedcba9876543210fedcba9876543210")
	at    = time.Unix(1767225600, 0) // 2026-01-01T00:00:00Z
)

// conn is the backend process id the tags are signed for.
const conn uint32 = 4242

// TestVectors pins the format, for implementations in other languages.
func TestVectors(t *testing.T) {
	tests := []struct{ name, got, want string }{
		{"comment", Sign(key, "alice", conn, at, "SELECT email FROM customers WHERE id = $1"),
			"SELECT email FROM customers WHERE id = $1 /*pgwarden_sig='6c6e3d4d87e47a80f8b8e5c5bdd17a1d8ad1c7e0e2b1b5a7d2c7d4f2b3a30a8e'," +
				"pgwarden_ts='1767225600',pgwarden_user='alice'*/"},
		{"semicolon stays last", Sign(key, "alice", conn, at, "SELECT 1;"),
			"SELECT 1 /*pgwarden_sig='',pgwarden_ts='1767225600',pgwarden_user='alice'*/;"},
		{"user escaped", Sign(key, "o'brien@example.com", conn, at, "SELECT 1"),
			"SELECT 1 /*pgwarden_sig='',pgwarden_ts='1767225600',pgwarden_user='o%27brien%40example.com'*/"},
		{"application_name", ApplicationName(key, "alice", conn, at), "pgwarden:alice:1767225600:"},
	}
	for _, tt := range tests {
		if got := blankSig(tt.got); got != blankSig(tt.want) {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, tt.got, tt.want)
		}
	}
	// The signatures themselves, computed independently of Sign.
	if got := Sign(key, "alice", conn, at, "SELECT 1"); !strings.Contains(got, "pgwarden_sig='"+hexMAC(key, "pgwarden_tag_v2\x00alice\x004242\x001767225600\x00SELECT 1")+"'") {
		t.Errorf("comment signature: %s", got)
	}
	if got := ApplicationName(key, "alice", conn, at); got != "pgwarden:alice:1767225600:"+hexMAC(key, "pgwarden_application_name_v2\x00alice\x004242\x001767225600") {
		t.Errorf("application_name signature: %s", got)
	}
}

// blankSig removes signatures, which TestVectors checks apart.
func blankSig(s string) string {
	if i := strings.Index(s, "pgwarden_sig='"); i >= 0 {
		j := strings.IndexByte(s[i+len("pgwarden_sig='"):], '\'')
		s = s[:i+len("pgwarden_sig='")] + s[i+len("pgwarden_sig='")+j:]
	}
	if strings.HasPrefix(s, Prefix) {
		s = s[:strings.LastIndexByte(s, ':')+1]
	}
	return s
}

func TestSignedStatementVerifies(t *testing.T) {
	for _, sql := range []string{
		"SELECT 1",
		"  SELECT 1 ;  ",
		"SELECT 1; SELECT 2;",
		"SELECT 1 -- a line comment",
		"SELECT 1 -- a line comment;",
		"SELECT '/*pgwarden_user=''bob''*/' AS x",
		"SELECT $$ -- $$ /* a comment */",
		"/* a leading comment */ SELECT 1",
		"SELECT 1 /* a comment */",
	} {
		for _, user := range []string{"alice", "o'brien@example.com", "José Ñúñez", "a,b='c'*/d"} {
			tagged := Sign(key, user, conn, at, sql)
			tg, err := Find(tagged)
			if err != nil || tg == nil {
				t.Errorf("%q as %q: Find(%q) = %v, %v", sql, user, tagged, tg, err)
				continue
			}
			if tg.User != user || tg.Time != at.Unix() {
				t.Errorf("%q: user %q time %d", tagged, tg.User, tg.Time)
			}
			if err := tg.Verify(key, conn, at.Add(time.Minute), 0); err != nil {
				t.Errorf("%q: %v", tagged, err)
			}
			if err := tg.Verify(other, conn, at, 0); !errors.Is(err, ErrSignature) {
				t.Errorf("%q under another key: %v", tagged, err)
			}
			if err := tg.Verify(key, conn+1, at, 0); !errors.Is(err, ErrSignature) {
				t.Errorf("%q on another connection: %v", tagged, err)
			}
			if _, err := pg_query.Parse(tagged); err != nil {
				t.Errorf("%q no longer parses: %v", tagged, err)
			}
		}
	}
}

func TestLeadingTag(t *testing.T) {
	body := "SELECT email FROM customers"
	sql := "  " + Comment(key, "alice", conn, at, body) + "\n" + body
	tg, err := Find(sql)
	if err != nil || tg == nil || tg.Body != body {
		t.Fatalf("Find = %+v, %v", tg, err)
	}
	if err := tg.Verify(key, conn, at, 0); err != nil {
		t.Fatal(err)
	}
}

func TestRejected(t *testing.T) {
	good := Sign(key, "alice", conn, at, "SELECT email FROM customers WHERE id = 1")
	comment := good[strings.Index(good, "/*"):]
	tests := []struct {
		name string
		sql  string
		now  time.Time
		key  []byte
		want error // nil: no tag at all
	}{
		{"wrong key", good, at, other, ErrSignature},
		{"lifted onto another statement", "SELECT email FROM customers " + comment, at, key, ErrSignature},
		{"statement edited", strings.Replace(good, "id = 1", "id > 1", 1), at, key, ErrSignature},
		{"expired", good, at.Add(DefaultSkew + time.Second), key, ErrExpired},
		{"from the future", good, at.Add(-DefaultSkew - time.Second), key, ErrExpired},
		{"user changed", strings.Replace(good, "'alice'", "'bob'", 1), at, key, ErrSignature},
		{"time changed", strings.Replace(good, "1767225600", "1767225601", 1), at, key, ErrSignature},
		{"signature truncated", strings.Replace(good, "pgwarden_sig='", "pgwarden_sig='0", 1), at, key, ErrMalformed},
		{"signature not hex", good[:sigAt(good)] + "zz" + good[sigAt(good)+2:], at, key, ErrMalformed},
		{"no signature", "SELECT 1 /*pgwarden_user='alice',pgwarden_ts='1767225600'*/", at, key, ErrMalformed},
		{"empty user", "SELECT 1 /*pgwarden_sig='" + strings.Repeat("0", 64) + "',pgwarden_ts='1',pgwarden_user=''*/", at, key, ErrMalformed},
		{"key repeated", "SELECT 1 /*pgwarden_user='a',pgwarden_user='b',pgwarden_ts='1',pgwarden_sig='" + strings.Repeat("0", 64) + "'*/", at, key, ErrMalformed},
		{"value not quoted", "SELECT 1 /*pgwarden_user=alice,pgwarden_ts='1',pgwarden_sig='" + strings.Repeat("0", 64) + "'*/", at, key, ErrMalformed},
		{"value not closed", "SELECT 1 /*pgwarden_user='alice*/", at, key, ErrMalformed},
		{"negative time", "SELECT 1 /*pgwarden_user='a',pgwarden_ts='-1',pgwarden_sig='" + strings.Repeat("0", 64) + "'*/", at, key, ErrMalformed},
		{"control character", "SELECT 1 /*pgwarden_user='a%0Ab',pgwarden_ts='1',pgwarden_sig='" + strings.Repeat("0", 64) + "'*/", at, key, ErrMalformed},
		{"bad escape", "SELECT 1 /*pgwarden_user='a%zz',pgwarden_ts='1',pgwarden_sig='" + strings.Repeat("0", 64) + "'*/", at, key, ErrMalformed},
		{"nested comment", "SELECT 1 /*pgwarden_user='a' /* x */ */", at, key, ErrMalformed},
		{"tags at both ends", comment + " SELECT 1 " + comment, at, key, ErrMalformed},
		{"not sqlcommenter", "SELECT 1 /* pgwarden_user alice */", at, key, ErrMalformed},

		// Only a comment at the start or the end counts.
		{"in a string literal", "SELECT '" + strings.ReplaceAll(comment, "'", "''") + "'", at, key, nil},
		{"in an E string", "SELECT E'\\' " + strings.ReplaceAll(comment, "'", "\\'") + "'", at, key, nil},
		{"in a dollar-quoted string", "SELECT $q$ " + comment + "$q$", at, key, nil},
		{"in a quoted identifier", `SELECT 1 AS "` + comment + `"`, at, key, nil},
		{"in a line comment", "SELECT 1 -- " + comment, at, key, nil},
		{"in the middle", "SELECT 1 " + comment + " + 2", at, key, nil},
		{"after a second statement", "SELECT 1 " + comment + "; SELECT 2", at, key, nil},
		{"two semicolons after", "SELECT 1 " + comment + ";;", at, key, nil},
		{"followed by a line comment", "SELECT 1 " + comment + " -- x", at, key, nil},
		{"unterminated string", "SELECT 'abc " + comment, at, key, nil},
		{"an ordinary comment", "SELECT 1 /* hello */", at, key, nil},
		{"no comment", "SELECT 1", at, key, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := Find(tt.sql)
			if err == nil && tg != nil {
				err = tg.Verify(tt.key, conn, tt.now, 0)
			}
			switch {
			case tt.want == nil && (tg != nil || err != nil):
				t.Errorf("Find(%q) = %+v, %v; want no tag", tt.sql, tg, err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Errorf("Find(%q): %v, want %v", tt.sql, err, tt.want)
			}
		})
	}
}

func TestApplicationName(t *testing.T) {
	v := ApplicationName(key, "o'brien", conn, at)
	tg, err := ParseApplicationName(v)
	if err != nil || tg == nil || tg.User != "o'brien" {
		t.Fatalf("%q: %+v, %v", v, tg, err)
	}
	if err := tg.Verify(key, conn, at, 0); err != nil {
		t.Fatal(err)
	}
	if err := tg.Verify(other, conn, at, 0); !errors.Is(err, ErrSignature) {
		t.Errorf("other key: %v", err)
	}
	if err := tg.Verify(key, conn+1, at, 0); !errors.Is(err, ErrSignature) {
		t.Errorf("another connection: %v", err)
	}
	if err := tg.Verify(key, conn, at.Add(time.Hour), time.Minute); !errors.Is(err, ErrExpired) {
		t.Errorf("an hour later: %v", err)
	}
	// A comment's signature is not an application_name's.
	c := Sign(key, "alice", conn, at, "")
	ct, err := Find(c)
	if err != nil || ct == nil {
		t.Fatalf("%q: %v", c, err)
	}
	forged := Prefix + "alice:1767225600:" + hexOf(ct.sig)
	if tg, err := ParseApplicationName(forged); err != nil || tg.Verify(key, conn, at, 0) == nil {
		t.Errorf("a comment's signature accepted as an application_name's: %v", err)
	}
	for _, v := range []string{"pgwarden:alice", "pgwarden:alice:1:2:3", "pgwarden::1767225600:" + strings.Repeat("0", 64), "pgwarden:alice:x:" + strings.Repeat("0", 64)} {
		if _, err := ParseApplicationName(v); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want malformed", v, err)
		}
	}
	if tg, err := ParseApplicationName("crm-web"); tg != nil || err != nil {
		t.Errorf("an ordinary application_name: %v %v", tg, err)
	}
}

// TestEdgesAgreeWithPostgres compares the lexer with PostgreSQL's own
// (pg_query's scanner): a comment is found at an edge exactly when the
// server's first or last token (before a final semicolon) is that comment.
func TestEdgesAgreeWithPostgres(t *testing.T) {
	for _, sql := range edgeCorpus {
		checkEdges(t, sql)
	}
}

var edgeCorpus = []string{
	"SELECT 1 /* c */",
	"/* c */ SELECT 1",
	"/* a /* nested */ comment */ SELECT 1 /* b */;",
	"SELECT '/* not */'",
	"SELECT 'it''s /* x */'",
	"SELECT E'\\'/* x */'",
	"SELECT e'\\\\' /* c */",
	"SELECT xe'a' /* c */",
	"SELECT $$ /* x */ $$",
	"SELECT $a$ $$ /* x */ $a$ /* c */",
	"SELECT $1 /* c */",
	"SELECT a$b /* c */",
	`SELECT "a /* x */ b" /* c */`,
	`SELECT U&"d\0061t\+000061" /* c */`,
	"SELECT U&'d\\0061t' /* c */",
	"SELECT 1 -- /* c */",
	"SELECT 1 -- x\n/* c */",
	"SELECT 1 /* c */ -- x",
	"SELECT 1+/* c */2",
	"SELECT 1 /* c */;",
	"SELECT 1; /* c */",
	"SELECT 1 /* c */;;",
	"SELECT 2 */ 3 /* c */",
	"SELECT B'101' /* c */",
	"SELECT X'1F' /* c */",
	"/* only a comment */",
	"SELECT 'a' 'b' /* c */",
}

func checkEdges(t *testing.T, sql string) {
	t.Helper()
	res, err := pg_query.Scan(sql)
	if err != nil {
		return // the server would not run it
	}
	toks := res.GetTokens()
	lead, trail, ok := edgeComments(sql)
	if !ok {
		if len(toks) > 0 {
			t.Errorf("%q: does not lex, PostgreSQL scans %d tokens", sql, len(toks))
		}
		return
	}
	var wantLead, wantTrail span
	if len(toks) > 0 && toks[0].Token == pg_query.Token_C_COMMENT {
		wantLead = span{int(toks[0].Start), int(toks[0].End)}
	}
	last := len(toks) - 1
	if last >= 0 && toks[last].Token == pg_query.Token_ASCII_59 && last > 0 {
		last--
	}
	if last >= 0 && toks[last].Token == pg_query.Token_C_COMMENT {
		wantTrail = span{int(toks[last].Start), int(toks[last].End)}
	}
	if lead != wantLead || trail != wantTrail {
		t.Errorf("%q: lead %v trail %v, PostgreSQL: lead %v trail %v", sql, lead, trail, wantLead, wantTrail)
	}
}

// FuzzEdges checks the lexer against PostgreSQL's on any text.
func FuzzEdges(f *testing.F) {
	for _, s := range edgeCorpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if strings.IndexByte(sql, 0) >= 0 {
			return // not a valid query string
		}
		checkEdges(t, sql)
		if tg, err := Find(sql); err == nil && tg != nil {
			// A tag found is at an edge PostgreSQL agrees on.
			if !strings.Contains(sql, "pgwarden_") {
				t.Errorf("%q: a tag without pgwarden keys", sql)
			}
		}
	})
}

func BenchmarkFindAndVerify(b *testing.B) {
	sql := Sign(key, "alice", conn, at, "SELECT id, full_name, email FROM customers WHERE id = $1 AND status = 'open'")
	b.ReportAllocs()
	for b.Loop() {
		tg, err := Find(sql)
		if err != nil || tg == nil {
			b.Fatal(err)
		}
		if err := tg.Verify(key, conn, at, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFindUntagged(b *testing.B) {
	sql := "SELECT id, full_name, email FROM customers WHERE id = $1 AND status = 'open'"
	b.ReportAllocs()
	for b.Loop() {
		if tg, err := Find(sql); tg != nil || err != nil {
			b.Fatal(err)
		}
	}
}

func hexMAC(key []byte, msg string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

// sigAt is where the signature's value starts in a tagged statement.
func sigAt(s string) int { return strings.Index(s, "pgwarden_sig='") + len("pgwarden_sig='") }

// TestUnicodeSpaceIsSigned: a Unicode space is part of an identifier to
// PostgreSQL, so it stays in the text the signature covers.
func TestUnicodeSpaceIsSigned(t *testing.T) {
	body := "SELECT email FROM public.customers\u00a0"
	tg, err := Find(body + " " + Comment(key, "alice", conn, at, "SELECT email FROM public.customers"))
	if err != nil || tg == nil {
		t.Fatalf("Find: %+v, %v", tg, err)
	}
	if tg.Body != body {
		t.Errorf("body %q, want %q", tg.Body, body)
	}
	if err := tg.Verify(key, conn, at, 0); !errors.Is(err, ErrSignature) {
		t.Errorf("a tag signed without the U+00A0 verifies on the text with it: %v", err)
	}
}
