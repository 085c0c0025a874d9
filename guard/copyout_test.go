package guard_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// copyPolicy declares people's name, email and ssn; phones are found by
// the detectors, notes are not PII.
const copyPolicy = `version: 1
pii:
  columns:
    - match: public.people.full_name
      category: name
    - match: public.people.email
      category: email
    - match: public.people.ssn
      category: national_id
masking:
  national_id: last4
rules:
  - name: mask-support
    subjects: [` + pgtest.TrustUser + `]
    when:
      tables: [public.people]
    action: redact
`

// setupCopy starts a guard with copyPolicy over a people table whose
// values hold delimiters, quotes, backslashes, newlines and NULLs, with a
// generated column (which COPY of the table leaves out), and
// returns the connection through it and one straight to PostgreSQL.
func setupCopy(t *testing.T) (through, direct *pgx.Conn) {
	t.Helper()
	_, conn := setup(t, func(c *guard.Config) {
		p, err := policy.Parse("copy.yaml", []byte(copyPolicy))
		if err != nil {
			t.Fatal(err)
		}
		c.Policy = p
	})
	db := pgtest.Shared(t)
	db.Exec(t, `DROP TABLE IF EXISTS people, people_masked;
CREATE TABLE people (id int PRIMARY KEY, full_name text, name_len int GENERATED ALWAYS AS (length(full_name)) STORED,
  email text, phone text, ssn text, note text);
INSERT INTO people (id, full_name, email, phone, ssn, note) VALUES
  (1, 'Ann Smith', 'ann@example.com', '+14155550001', '123-45-6789', 'plain'),
  (2, E'Bob, "the builder"\nJr', 'bob@example.com', NULL, '987-65-4321', E'tab\there, back\\slash; "q"'),
  (3, NULL, NULL, NULL, NULL, NULL),
  (4, E'\u00c9mile Zola', 'emile@example.org', '+33 1 23 45 67 89', '111-22-3333', E',;"\r\n'),
  (5, '', 'x@example.net', '', '000-00-0000', '\N');
GRANT SELECT ON people TO `+pgtest.TrustUser)
	ctx := context.Background()
	direct, err := pgx.Connect(ctx, db.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close(context.Background()) })
	return conn, direct
}

// maskedCopy is what PostgreSQL itself sends for sql, a COPY of people,
// once people's values are those a SELECT through the guard receives:
// the masked rows are copied into people_masked, and sql run on it
// straight.
func maskedCopy(t *testing.T, ctx context.Context, through, direct *pgx.Conn, sql string) string {
	t.Helper()
	rows, err := through.Query(ctx, "SELECT id, full_name, email, phone, ssn, note FROM people ORDER BY id", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var masked [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		masked = append(masked, v)
	}
	if err := rows.Err(); err != nil || len(masked) != 5 {
		t.Fatalf("SELECT through the guard: %d rows, %v", len(masked), err)
	}
	if masked[0][2] != "a***@example.com" || masked[0][4] != "***-**-6789" {
		t.Fatalf("SELECT through the guard: %v, want masked", masked[0])
	}
	if _, err := direct.Exec(ctx, "DROP TABLE IF EXISTS people_masked; CREATE TABLE people_masked (LIKE people INCLUDING GENERATED)"); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.CopyFrom(ctx, pgx.Identifier{"people_masked"}, []string{"id", "full_name", "email", "phone", "ssn", "note"}, pgx.CopyFromRows(masked)); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if _, err := direct.PgConn().CopyTo(ctx, &writerFunc{&sb}, strings.ReplaceAll(sql, "people", "people_masked")); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// TestCopyOfMaskedResultIsMasked: COPY TO STDOUT of a result a redact rule
// masks sends, line by line, what PostgreSQL would send if the values were
// those a SELECT through the same rule receives, in text and CSV, with the
// COPY's own delimiter, quote, escape and NULL; fields that hold no PII
// are unchanged byte for byte.
func TestCopyOfMaskedResultIsMasked(t *testing.T) {
	through, direct := setupCopy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, sql := range []string{
		"COPY people TO STDOUT",
		"COPY people (full_name, email, phone, ssn) TO STDOUT",
		"COPY people (note, email) TO STDOUT WITH (DELIMITER '|', NULL 'nil')",
		"COPY people TO STDOUT WITH (FORMAT csv, HEADER)",
		"COPY people TO STDOUT WITH (FORMAT csv, DELIMITER ';', QUOTE '''', ESCAPE '\\', NULL 'NULL')",
		"COPY people TO STDOUT WITH (FORMAT csv, FORCE_QUOTE *)",
		"COPY people TO STDOUT CSV HEADER",
		"COPY (SELECT full_name, email, phone, ssn, note FROM people WHERE id > 1 ORDER BY id) TO STDOUT",
	} {
		want := maskedCopy(t, ctx, through, direct, sql)
		var got strings.Builder
		tag, err := through.PgConn().CopyTo(ctx, &writerFunc{&got}, sql)
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		if got.String() != want {
			t.Errorf("%s:\n got %q\nwant %q", sql, got.String(), want)
		}
		if strings.Contains(got.String(), "ann@") || strings.Contains(got.String(), "6789") && !strings.Contains(got.String(), "***-**-6789") {
			t.Errorf("%s: PII in clear: %q", sql, got.String())
		}
		if tag.RowsAffected() == 0 {
			t.Errorf("%s: tag %q", sql, tag)
		}
	}
}

// TestCopyOfMaskedExpressions: a COPY of a query whose columns are
// computed from declared ones sends what a SELECT of the same query
// receives.
func TestCopyOfMaskedExpressions(t *testing.T) {
	through, _ := setupCopy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const query = "SELECT upper(full_name), email AS e, lower(phone) FROM people ORDER BY id"
	rows, err := through.Query(ctx, query, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]string
	for rows.Next() {
		var a, b, c *string
		if err := rows.Scan(&a, &b, &c); err != nil {
			t.Fatal(err)
		}
		line := []string{}
		for _, v := range []*string{a, b, c} {
			if v == nil {
				line = append(line, "")
			} else {
				line = append(line, *v)
			}
		}
		want = append(want, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if _, err := through.PgConn().CopyTo(ctx, &writerFunc{&sb}, "COPY ("+query+") TO STDOUT (FORMAT csv)"); err != nil {
		t.Fatal(err)
	}
	got, err := csv.NewReader(strings.NewReader(sb.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || !strings.Contains(sb.String(), "A***") {
		t.Errorf("COPY sent %q, want %q as the SELECT", got, want)
	}
}

// TestCopyOfMaskedResultThroughPsql: psql's \copy of a masked result to
// stdout prints the masked lines.
func TestCopyOfMaskedResultThroughPsql(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql not installed")
	}
	through, direct := setupCopy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, cmd := range []string{
		`\copy (select id, full_name, email, phone, ssn from people order by id) to stdout`,
		`\copy people to stdout with (format csv, header)`,
	} {
		want := maskedCopy(t, ctx, through, direct, strings.Replace(cmd, `\copy`, "COPY", 1))
		cfg := through.Config()
		c := exec.CommandContext(ctx, psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", cfg.Host, "-p", fmt.Sprint(cfg.Port), "-U", cfg.User, "-d", cfg.Database, "-c", cmd)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		c.Env = append(os.Environ(), "PGSSLMODE=disable")
		if err := c.Run(); err != nil {
			t.Fatalf("%s: %v, %s", cmd, err, errb.String())
		}
		if out.String() != want {
			t.Errorf("%s:\n got %q\nwant %q", cmd, out.String(), want)
		}
	}
}

// TestBinaryCopyOfMaskedResultRefused: binary COPY cannot be cut into
// values without their types, nor COPY data in an encoding whose
// characters hold ASCII bytes: refused with 42501, saying why, and the
// session goes on.
func TestBinaryCopyOfMaskedResultRefused(t *testing.T) {
	through, _ := setupCopy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sql := range []string{
		"COPY people TO STDOUT (FORMAT binary)",
		"COPY (SELECT email FROM people) TO STDOUT WITH BINARY",
	} {
		var got strings.Builder
		_, err := through.PgConn().CopyTo(ctx, &writerFunc{&got}, sql)
		var pgErr *pgconn.PgError
		if !asPgError(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, "binary COPY cannot be masked in place") ||
			!strings.Contains(pgErr.Message, "rule mask-support") {
			t.Errorf("%s: %v, want refused saying why", sql, err)
		}
		if strings.Contains(got.String(), "example.com") {
			t.Errorf("%s: received %q", sql, got.String())
		}
	}
	// A client encoding whose characters can hold a backslash's byte
	// cannot be cut into fields byte by byte.
	if _, err := through.Exec(ctx, "SET client_encoding = 'SJIS'"); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	_, err := through.PgConn().CopyTo(ctx, &writerFunc{&got}, "COPY people TO STDOUT")
	var pgErr *pgconn.PgError
	if !asPgError(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, "client encoding SJIS cannot be masked") {
		t.Errorf("COPY in SJIS: %v, want refused saying why", err)
	}
	if _, err := through.Exec(ctx, "RESET client_encoding"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := through.QueryRow(ctx, "SELECT count(*) FROM people").Scan(&n); err != nil || n != 5 {
		t.Errorf("session after the refusal: %d, %v", n, err)
	}
}

// TestCopyLinesAcrossMessages: lines split across CopyData messages, or
// several in one, are masked whole; a last line that never ends is sent
// at CopyDone, masked.
func TestCopyLinesAcrossMessages(t *testing.T) {
	setupCopy(t)
	_, _, g := setupGuard(t, func(c *guard.Config) {
		p, err := policy.Parse("copy.yaml", []byte(copyPolicy))
		if err != nil {
			t.Fatal(err)
		}
		c.Policy = p
	})
	done := make(chan struct{})
	si, err := g.StartSession(context.Background(), &proxy.SessionInfo{ID: "copy-lines", User: pgtest.TrustUser,
		Employee: pgtest.TrustUser, Database: "app", StartedAt: time.Now(), Done: done})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { close(done); si.EndSession(nil) }()
	ender, ok := si.(proxy.CopyEnder)
	if !ok {
		t.Fatal("the guard's session is no proxy.CopyEnder")
	}
	const sql = "COPY people (id, email, note) TO STDOUT (FORMAT csv)"
	for _, chunks := range [][]string{
		{"1,ann@example.com,\"a\nb\"\n2,bob@example.com,x\n"},
		{"1,ann@exa", "mple.com,\"a", "\nb\"\n2,bob@example.com,x\n"},
		{"1,ann@example.com,\"a\nb\"\n2,bob@exam", "ple.com,x"},
	} {
		st := &proxy.Statement{Seq: 1, Kind: proxy.SimpleQuery, SQL: sql}
		if v := si.Statement(st); v.Action != proxy.Continue {
			t.Fatalf("statement: %+v", v)
		}
		si.CopyOut(st, &pgproto3.CopyOutResponse{})
		var got []byte
		forward := func(v proxy.Verdict, data []byte) {
			switch v.Action {
			case proxy.Continue:
				got = append(got, data...)
			case proxy.Rewrite:
				if len(v.Values) > 0 {
					got = append(got, v.Values[0]...)
				}
			default:
				t.Fatalf("%q: %+v", chunks, v)
			}
		}
		for _, c := range chunks {
			forward(si.CopyData(st, []byte(c)), []byte(c))
		}
		forward(ender.CopyDone(st), nil)
		si.CommandComplete(st, []byte("COPY 2"))
		si.ReadyForQuery('I')
		want := "1,a***@example.com,\"a\nb\"\n2,b***@example.com,x"
		if strings.Join(chunks, "") != strings.TrimSuffix(strings.Join(chunks, ""), "\n") {
			want += "\n"
		}
		if string(got) != want {
			t.Errorf("%q: sent %q, want %q", chunks, got, want)
		}
	}
}

// TestCopyRedactPastTheLimit: a threshold redact masks a COPY's lines
// from the one past its limit on, as it does a SELECT's rows, and the
// statement counts what the client received in clear.
func TestCopyRedactPastTheLimit(t *testing.T) {
	ev, conn := setup(t, withRules(t, `rules:
  - name: mask-after-5
    when:
      pii_rows: 5
    action: redact
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sb strings.Builder
	if _, err := conn.PgConn().CopyTo(ctx, &writerFunc{&sb}, "COPY (SELECT id, email, full_name, support_note FROM customers WHERE id <= 8 ORDER BY id) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 1; i <= 8; i++ {
		if i <= 5 {
			fmt.Fprintf(&want, "%d\tcustomer%d@example.com\tCustomer %d\tcontact help@example.org\n", i, i, i)
		} else {
			fmt.Fprintf(&want, "%d\tc***@example.com\tC***\tcontact help@example.org\n", i)
		}
	}
	if sb.String() != want.String() {
		t.Errorf("COPY sent %q, want %q", sb.String(), want.String())
	}
	// (COPY's values are counted by the detectors over the whole line.)
	if got := ev.last(t); got.Rows != 8 || got.PIIRows != 5 {
		t.Errorf("counted %+v, want 8 rows of which 5 with PII received", got)
	}
}
