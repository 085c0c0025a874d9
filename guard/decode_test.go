package guard_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// binaryResult runs sql with every result column in binary format, as
// pgx, psycopg's binary cursors or JDBC may ask.
func binaryResult(ctx context.Context, conn *pgx.Conn, sql string) *pgconn.Result {
	return conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, []int16{1}).Read()
}

// TestDecodedValuesCounted: values a client decodes (binary arrays and
// composites, bytea in hex or escape, base64 and hex text, large objects)
// count the PII they hold, as their text would.
func TestDecodedValuesCounted(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pgtest.Shared(t).Exec(t, `DROP TYPE IF EXISTS textrange CASCADE; CREATE TYPE textrange AS RANGE (subtype = text);
DROP DOMAIN IF EXISTS contact CASCADE; CREATE DOMAIN contact AS text;
DROP TYPE IF EXISTS mood CASCADE; CREATE TYPE mood AS ENUM ('ok', 'carol@example.com')`)
	agg := "convert_to(string_agg(email, ','), 'utf8')"
	// The large object is staged by one statement and read by the next:
	// a statement does not see the objects it creates.
	stageLO := "SELECT lo_from_bytea(0, " + agg + ") FROM customers WHERE id <= 300"
	tests := []struct {
		name   string
		sql    string
		binary bool
		setup  string
		email  int
		phone  int
	}{
		{"array_agg in binary", "SELECT array_agg(email) FROM customers WHERE id <= 300", true, "", 300, 0},
		{"array_agg of an undeclared column in binary", "SELECT array_agg(phone) FROM customers WHERE id <= 40", true, "", 0, 40},
		{"two-dimensional array in binary", "SELECT array_agg(ARRAY[email, phone]) FROM customers WHERE id <= 30", true, "", 30, 30},
		{"composite in binary", "SELECT row(full_name, email) FROM customers WHERE id <= 50", true, "", 50, 0},
		{"array of composites in binary", "SELECT array_agg(row(id, email)) FROM customers WHERE id <= 60", true, "", 60, 0},
		{"whole-row value in binary", "SELECT c FROM customers c WHERE id <= 12", true, "", 24, 12},
		{"array of a domain over text in binary", "SELECT array_agg(phone::contact) FROM customers WHERE id <= 33", true, "", 0, 33},
		{"array of an enum in binary", "SELECT array_agg('carol@example.com'::mood) FROM customers WHERE id <= 21", true, "", 21, 0},
		{"range over text in binary", "SELECT textrange(email, email || 'z') FROM customers WHERE id <= 15", true, "", 30, 0},
		{"text array of bytea", "SELECT array_agg(convert_to(email, 'utf8')) FROM customers WHERE id <= 40", false, "", 40, 0},
		{"text composite with bytea", "SELECT row(id, convert_to(phone, 'utf8')) FROM customers WHERE id <= 45", false, "", 0, 45},
		{"json of bytea", "SELECT json_agg(convert_to(email, 'utf8')) FROM customers WHERE id <= 35", false, "", 35, 0},
		{"text array of base64", "SELECT array_agg(encode(convert_to(email, 'utf8'), 'base64')) FROM customers WHERE id <= 55", false, "", 55, 0},
		{"bytea, hex output", "SELECT " + agg + " FROM customers WHERE id <= 300", false, "", 300, 0},
		{"bytea, escape output", "SELECT " + agg + " FROM customers WHERE id <= 300", false, "SET bytea_output = escape", 300, 0},
		{"bytea in binary", "SELECT " + agg + " FROM customers WHERE id <= 300", true, "", 300, 0},
		{"decode()::bytea", "SELECT decode(encode(" + agg + ", 'base64'), 'base64')::bytea FROM customers WHERE id <= 70", false, "", 70, 0},
		{"base64 text", "SELECT encode(" + agg + ", 'base64') FROM customers WHERE id <= 300", false, "", 300, 0},
		{"hex text", "SELECT encode(" + agg + ", 'hex') FROM customers WHERE id <= 300", false, "", 300, 0},
		{"base64 of an undeclared column", "SELECT encode(convert_to(phone, 'utf8'), 'base64') FROM customers WHERE id <= 25", false, "", 0, 25},
		{"lo_get of a staged large object", "SELECT lo_get(%d)", false, stageLO, 300, 0},
		{"lo_get in binary", "SELECT lo_get(%d)", true, stageLO, 300, 0},
		{"loread in SQL", "SELECT loread(lo_open(%d, 262144), 100000)", false, stageLO, 300, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := conn.Exec(ctx, "RESET bytea_output"); err != nil {
				t.Fatal(err)
			}
			sql := tt.sql
			if tt.setup == stageLO {
				var oid uint32
				if err := conn.QueryRow(ctx, stageLO).Scan(&oid); err != nil {
					t.Fatal(err)
				}
				sql = fmt.Sprintf(sql, oid)
			} else if tt.setup != "" {
				if _, err := conn.Exec(ctx, tt.setup); err != nil {
					t.Fatal(err)
				}
			}
			if tt.binary {
				res := binaryResult(ctx, conn, sql)
				if res.Err != nil {
					t.Fatal(res.Err)
				}
				if res.FieldDescriptions[0].Format != 1 {
					t.Fatalf("format %d", res.FieldDescriptions[0].Format)
				}
			} else if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatal(err)
			}
			got := ev.last(t)
			if got.PIIValues["email"] != tt.email || got.PIIValues["phone"] != tt.phone {
				t.Errorf("counted %v, want %d emails and %d phones", got.PIIValues, tt.email, tt.phone)
			}
		})
	}

	t.Run("loread of a large object", func(t *testing.T) {
		var oid uint32
		if err := conn.QueryRow(ctx, "SELECT lo_from_bytea(0, "+agg+") FROM customers WHERE id <= 200").Scan(&oid); err != nil {
			t.Fatal(err)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		los := tx.LargeObjects()
		lo, err := los.Open(ctx, oid, pgx.LargeObjectModeRead)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<16)
		n, err := lo.Read(buf)
		if err != nil && err != io.EOF || n < 200*20 {
			t.Fatalf("read %d bytes: %v", n, err)
		}
		if got := ev.last(t); got.PIIValues["email"] != 200 {
			t.Errorf("loread counted %v, want 200 emails", got.PIIValues)
		}
	})
}

// TestDecodedValuesBlocked: a limit stops a binary array or a large
// object read as it stops the same emails in text.
func TestDecodedValuesBlocked(t *testing.T) {
	_, conn := setup(t, withRules(t, `rules:
  - name: email-limit
    when:
      pii_values: {email: 250}
    action: block
  - name: phone-limit
    when:
      pii_values: {phone: 250}
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Staging the large object counts nothing: its OID is all it returns.
	var oid uint32
	if err := conn.QueryRow(ctx, "SELECT lo_from_bytea(0, convert_to(string_agg(email, ','), 'utf8')) FROM customers WHERE id <= 300").Scan(&oid); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"SELECT array_agg(email) FROM customers WHERE id <= 300",
		fmt.Sprintf("SELECT lo_get(%d)", oid),
		"SELECT encode(convert_to(string_agg(email, ','), 'utf8'), 'base64') FROM customers WHERE id <= 300",
	} {
		res := binaryResult(ctx, conn, sql)
		var pgErr *pgconn.PgError
		if !asPgError(res.Err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, "rule email-limit") {
			t.Errorf("%s: %v, %d rows; want a block by rule email-limit", sql, res.Err, len(res.Rows))
		}
		if len(res.Rows) != 0 {
			t.Errorf("%s: %d rows delivered", sql, len(res.Rows))
		}
	}
	// Row by row, the rows up to the limit are delivered, not one more
	// (phone is not declared: only the decoded values tell).
	res := binaryResult(ctx, conn, "SELECT row(id, phone) FROM customers WHERE id <= 300 ORDER BY id")
	var pgErr *pgconn.PgError
	if !asPgError(res.Err, &pgErr) || !strings.Contains(pgErr.Message, "rule phone-limit") || len(res.Rows) != 250 {
		t.Errorf("binary composites: %v, %d rows; want 250 rows and a block by rule phone-limit", res.Err, len(res.Rows))
	}
	// pgx asks for text[] in binary by itself.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec} {
		var emails []string
		err := conn.QueryRow(ctx, "SELECT array_agg(email) FROM customers WHERE id <= 300", mode).Scan(&emails)
		var pgErr *pgconn.PgError
		if !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "rule email-limit") || len(emails) != 0 {
			t.Errorf("pgx %v: %v, %d emails; want a block by rule email-limit", mode, err, len(emails))
		}
	}
	// Fewer than the limit pass.
	if res := binaryResult(ctx, conn, "SELECT array_agg(email) FROM customers WHERE id <= 200"); res.Err != nil {
		t.Fatal(res.Err)
	}
}

// TestRedactBinaryValues: under a redact rule, a binary array reaches the
// client with each PII element masked, a valid array of the same type and
// dimensions; a composite keeps its fields; a bytea is masked whole.
func TestRedactBinaryValues(t *testing.T) {
	ev, conn := setup(t, withRules(t, `rules:
  - name: mask-bulk
    when:
      pii_values: 10
    action: redact
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := pgtype.NewMap()

	res := binaryResult(ctx, conn, "SELECT array_agg(email ORDER BY id), array_agg(ARRAY[full_name, phone] ORDER BY id) FROM customers WHERE id <= 200")
	if res.Err != nil || len(res.Rows) != 1 {
		t.Fatalf("%v, %d rows", res.Err, len(res.Rows))
	}
	var emails []string
	if err := m.Scan(res.FieldDescriptions[0].DataTypeOID, 1, res.Rows[0][0], &emails); err != nil {
		t.Fatalf("masked array does not decode: %v", err)
	}
	if len(emails) != 200 {
		t.Fatalf("%d elements, want 200", len(emails))
	}
	for _, e := range emails {
		if e != "c***@example.com" {
			t.Fatalf("element %q, want c***@example.com", e)
		}
	}
	var pairs [][]string
	if err := m.Scan(res.FieldDescriptions[1].DataTypeOID, 1, res.Rows[0][1], &pairs); err != nil {
		t.Fatalf("masked 2-D array does not decode: %v", err)
	}
	if len(pairs) != 200 || len(pairs[0]) != 2 || pairs[0][0] != "Customer 1" || pairs[199][1] != "+*******0200" {
		t.Errorf("2-D array: %d rows, first %q, last %q", len(pairs), pairs[0], pairs[len(pairs)-1])
	}
	if got := ev.last(t); got.PIIValues["email"] != 0 {
		t.Errorf("counted %v as received, want the emails redacted", got.PIIValues)
	}

	res = binaryResult(ctx, conn, "SELECT row(id, email, full_name) FROM customers WHERE id <= 20")
	if res.Err != nil || len(res.Rows) != 20 {
		t.Fatalf("%v, %d rows", res.Err, len(res.Rows))
	}
	for i, row := range res.Rows {
		var id int32
		var email, name string
		if err := m.Scan(res.FieldDescriptions[0].DataTypeOID, 1, row[0], pgtype.CompositeFields{&id, &email, &name}); err != nil {
			t.Fatalf("row %d: masked composite does not decode: %v", i+1, err)
		}
		want := fmt.Sprintf("customer%d@example.com", i+1)
		if i >= 10 {
			want = "c***@example.com"
		}
		if id != int32(i+1) || email != want || name != fmt.Sprintf("Customer %d", i+1) {
			t.Errorf("row %d: %d %q %q, want email %s", i+1, id, email, name, want)
		}
	}

	for _, binary := range []bool{false, true} {
		sql := "SELECT convert_to(string_agg(email, ','), 'utf8') FROM customers WHERE id <= 50"
		var v []byte
		if binary {
			res := binaryResult(ctx, conn, sql)
			if res.Err != nil || len(res.Rows) != 1 {
				t.Fatalf("%v, %d rows", res.Err, len(res.Rows))
			}
			v = res.Rows[0][0]
		} else if err := conn.QueryRow(ctx, sql, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if string(v) != "***" {
			t.Errorf("bytea (binary %v): %q, want ***", binary, v)
		}
	}
}

// TestStagingIntoLargeObjectsAndTempTables: writing PII into a large
// object, or into a table by INSERT with VALUES computed by subqueries or
// by an INSERT inside WITH, is staging, refused as CREATE TABLE AS is.
func TestStagingIntoLargeObjectsAndTempTables(t *testing.T) {
	_, conn := setup(t, withRules(t, `rules:
  - name: no-staging
    when:
      statements: [create_table_as, insert_select]
      tables: [public.customers]
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE stash (v text)"); err != nil {
		t.Fatal(err)
	}
	var oid uint32
	if err := conn.QueryRow(ctx, "SELECT lo_from_bytea(0, 'nothing personal')").Scan(&oid); err != nil {
		t.Fatalf("a large object of no table's data: %v", err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		for _, sql := range []string{
			"SELECT lo_from_bytea(0, convert_to(string_agg(email, ','), 'utf8')) FROM customers WHERE id <= 300",
			fmt.Sprintf("SELECT lo_put(%d, 0, convert_to(string_agg(email, ','), 'utf8')) FROM customers WHERE id <= 300", oid),
			"INSERT INTO stash VALUES ((SELECT string_agg(email, ',') FROM customers WHERE id <= 300))",
			"WITH s AS (INSERT INTO stash SELECT email FROM customers WHERE id <= 300 RETURNING 1) SELECT count(*) FROM s",
			"CREATE TEMP TABLE stash2 AS SELECT email FROM customers",
			"INSERT INTO stash SELECT email FROM customers",
		} {
			_, err := conn.Exec(ctx, sql, mode)
			var pgErr *pgconn.PgError
			if !asPgError(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, "rule no-staging") {
				t.Errorf("%s (%v): %v, want refused by rule no-staging", sql, mode, err)
			}
		}
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM stash").Scan(&n); err != nil || n != 0 {
		t.Errorf("stash holds %d rows (%v), want none", n, err)
	}
	var size int
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT length(lo_get(%d))", oid)).Scan(&size); err != nil || size != len("nothing personal") {
		t.Errorf("large object is %d bytes (%v), want unchanged", size, err)
	}
}

// TestFastPathLoRead: a large object read with the fast-path loread, as
// libpq's lo_read does, is raw bytes, counted as the SQL loread is.
func TestFastPathLoRead(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var oid uint32
	if err := conn.QueryRow(ctx, "SELECT lo_from_bytea(0, convert_to(string_agg(email, ','), 'utf8')) FROM customers WHERE id <= 120").Scan(&oid); err != nil {
		t.Fatal(err)
	}
	hc := rawConn(t, ctx, conn)
	roundTrip := func(msg pgproto3.FrontendMessage) []byte {
		t.Helper()
		hc.Frontend.Send(msg)
		if err := hc.Frontend.Flush(); err != nil {
			t.Fatal(err)
		}
		var result []byte
		for {
			m, err := hc.Frontend.Receive()
			if err != nil {
				t.Fatal(err)
			}
			switch m := m.(type) {
			case *pgproto3.FunctionCallResponse:
				result = append([]byte(nil), m.Result...)
			case *pgproto3.ErrorResponse:
				t.Fatalf("%s: %s", m.Code, m.Message)
			case *pgproto3.ReadyForQuery:
				return result
			}
		}
	}
	roundTrip(&pgproto3.Query{String: "BEGIN"})
	const loOpen, loRead = 952, 954
	fd := roundTrip(&pgproto3.FunctionCall{Function: loOpen, ArgFormatCodes: []uint16{0},
		Arguments: [][]byte{[]byte(fmt.Sprint(oid)), []byte("262144")}})
	data := roundTrip(&pgproto3.FunctionCall{Function: loRead, ArgFormatCodes: []uint16{0},
		Arguments: [][]byte{fd, []byte("100000")}, ResultFormatCode: 1})
	if !strings.HasPrefix(string(data), "customer") {
		t.Fatalf("read %q", data)
	}
	if got := ev.last(t); got.PIIValues["email"] != 120 {
		t.Errorf("fast-path loread counted %v, want 120 emails", got.PIIValues)
	}
	roundTrip(&pgproto3.Query{String: "ROLLBACK"})
}

// BenchmarkDataRowDecoded is the guard's cost per row whose value must be
// decoded (a binary text[] of 20 addresses, a hex bytea of the same),
// beside the same addresses in a text-format array.
func BenchmarkDataRowDecoded(b *testing.B) {
	var emails []string
	for i := range 20 {
		emails = append(emails, fmt.Sprintf("customer%d@example.com", i))
	}
	m := pgtype.NewMap()
	bin, err := m.Encode(1009, pgtype.BinaryFormatCode, emails, nil)
	if err != nil {
		b.Fatal(err)
	}
	txt, err := m.Encode(1009, pgtype.TextFormatCode, emails, nil)
	if err != nil {
		b.Fatal(err)
	}
	hexed := []byte(`\x` + hex.EncodeToString([]byte(strings.Join(emails, ","))))
	for _, tc := range []struct {
		name   string
		oid    uint32
		format int16
		v      []byte
	}{
		{"text[] text format", 1009, 0, txt},
		{"text[] binary", 1009, 1, bin},
		{"bytea hex", 17, 0, hexed},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p, err := policy.Parse("bench.yaml", []byte("version: 1\n"))
			if err != nil {
				b.Fatal(err)
			}
			g, err := guard.New(guard.Config{Policy: p, Catalog: fakeCatalog{}})
			if err != nil {
				b.Fatal(err)
			}
			si, err := g.StartSession(context.Background(), &proxy.SessionInfo{ID: "bench", User: "alice"})
			if err != nil {
				b.Fatal(err)
			}
			st := &proxy.Statement{Seq: 1, Kind: proxy.SimpleQuery, SQL: "SELECT array_agg(email) FROM people"}
			si.Statement(st)
			si.RowDescription(st, []pgproto3.FieldDescription{{Name: []byte("a"), DataTypeOID: tc.oid, Format: tc.format}})
			row := [][]byte{tc.v}
			b.ReportAllocs()
			for b.Loop() {
				if v := si.DataRow(st, row); v.Action != proxy.Continue {
					b.Fatal(v.Reason)
				}
			}
		})
	}
}

// TestCanariesInDecodedValues: a canary inside a short binary array, or
// inside a hex text, is found as in its text.
func TestCanariesInDecodedValues(t *testing.T) {
	al := &alerts{}
	_, conn := setup(t, withRules(t, `canaries:
  values: [canary.one@example.com, canary.two@example.com]
`), func(c *guard.Config) { c.Alerts = al })
	pgtest.Shared(t).Exec(t, `INSERT INTO customers VALUES
  (100001, 'Canary One', 'canary.one@example.com', '+14155550001', ''),
  (100002, 'Canary Two', 'canary.two@example.com', '+14155550002', '')`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res := binaryResult(ctx, conn, "SELECT array_agg(email) FROM customers WHERE id = 100002"); res.Err != nil {
		t.Fatal(res.Err)
	}
	if a := al.take(); len(a) != 1 || a[0].Rule != "canary" {
		t.Errorf("alerts after a canary in a binary array: %+v", a)
	}
	_, err := conn.Exec(ctx, "SELECT encode(convert_to(string_agg(email, ','), 'utf8'), 'hex') FROM customers WHERE id > 99000", pgx.QueryExecModeSimpleProtocol)
	var pgErr *pgconn.PgError
	if !asPgError(err, &pgErr) || !strings.Contains(pgErr.Message, "canary") {
		t.Errorf("canaries in hex: %v, want a canary block", err)
	}
}
