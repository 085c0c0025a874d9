package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// TestCopyFrom loads rows with pgx CopyFrom (binary COPY) and with pgconn
// CopyFrom (text), direct and proxied, and compares the loaded tables.
func TestCopyFrom(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	direct, proxied := endpoints(t, ctx, p, pgtest.ScramUser, "cache_statement")

	const create = `CREATE TEMP TABLE cp (id int8, name text, amount numeric, at timestamptz, tags text[], raw bytea, flag bool)`
	rows := make([][]any, 5000)
	for i := range rows {
		var flag any = i%2 == 0
		if i%7 == 0 {
			flag = nil
		}
		rows[i] = []any{int64(i), fmt.Sprintf("name %d\twith tab", i), fmt.Sprintf("%d.%02d", i, i%100),
			time.Date(2020, 1, 1, 0, 0, i, 0, time.UTC), []string{"a", fmt.Sprint(i)}, []byte{byte(i), byte(i >> 8)}, flag}
	}
	// A text COPY big enough to span several of the proxy's buffers, with
	// escapes and NULLs.
	var text strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&text, "%d\tline\\t%d\\nsecond\t\\N\t2021-06-0%d 10:00:00+00\t{x,y}\t\\\\x00ff\tt\n", 100000+i, i, 1+i%9)
	}

	var dumps [2]string
	for i, conn := range []*pgx.Conn{direct, proxied} {
		proxytest.MustExec(t, ctx, conn, create)
		n, err := conn.CopyFrom(ctx, pgx.Identifier{"cp"}, []string{"id", "name", "amount", "at", "tags", "raw", "flag"}, pgx.CopyFromRows(rows))
		if err != nil || n != int64(len(rows)) {
			t.Fatalf("CopyFrom: %d rows, %v", n, err)
		}
		tag, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(text.String()), "COPY cp FROM STDIN")
		if err != nil || tag.RowsAffected() != 20000 {
			t.Fatalf("pgconn CopyFrom: %v, %v", tag, err)
		}
		var buf bytes.Buffer
		if _, err := conn.PgConn().CopyTo(ctx, &buf, "COPY (SELECT * FROM cp ORDER BY id) TO STDOUT"); err != nil {
			t.Fatalf("CopyTo: %v", err)
		}
		dumps[i] = buf.String()
	}
	if dumps[0] != dumps[1] {
		t.Errorf("tables loaded direct and proxied differ (%d and %d bytes)", len(dumps[0]), len(dumps[1]))
	}
	proxytest.CheckUsable(t, ctx, proxied)
}

// TestCopyFromErrors checks a COPY that fails on bad data, one the client
// aborts, and one into a missing table, each leaving the session usable.
func TestCopyFromErrors(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	c := pgtest.Shared(t)
	direct := proxytest.ConnectPg(t, ctx, c.DSN(pgtest.TrustUser))
	proxied := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))

	type outcome struct {
		Tag  string
		Err  string
		Code string
	}
	run := func(conn *pgconn.PgConn, r io.Reader, sql string) outcome {
		tag, err := conn.CopyFrom(ctx, r, sql)
		o := outcome{Tag: tag.String()}
		if err != nil {
			o.Err = errString(err)
			if pe, ok := err.(*pgconn.PgError); ok {
				o.Code = pe.Code
			}
		}
		return o
	}
	for _, conn := range []*pgconn.PgConn{direct, proxied} {
		if _, err := conn.Exec(ctx, "CREATE TEMP TABLE ce (x int, y text)").ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		sql  string
		data func() io.Reader
	}{
		{"bad data", "COPY ce FROM STDIN", func() io.Reader { return strings.NewReader("1\tok\nnot a number\tbad\n") }},
		{"client aborts", "COPY ce FROM STDIN", func() io.Reader {
			return io.MultiReader(strings.NewReader("1\tok\n"), errReader{io.ErrClosedPipe})
		}},
		{"missing table", "COPY nosuch FROM STDIN", func() io.Reader { return strings.NewReader("1\n") }},
		{"good", "COPY ce FROM STDIN", func() io.Reader { return strings.NewReader("1\tone\n2\ttwo\n") }},
	}
	for _, tc := range cases {
		want := run(direct, tc.data(), tc.sql)
		got := run(proxied, tc.data(), tc.sql)
		// The client-side abort message names the local error; compare codes.
		if tc.name == "client aborts" {
			want.Err, got.Err = "", ""
		}
		proxytest.WantEqual(t, tc.name, want, got)
		if _, err := proxied.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Fatalf("%s: session not usable: %v", tc.name, err)
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// TestCopyTo compares COPY TO STDOUT output in text, CSV and binary format.
func TestCopyTo(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	c := pgtest.Shared(t)
	direct := proxytest.ConnectPg(t, ctx, c.DSN(pgtest.MD5User))
	proxied := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.MD5User))
	for _, sql := range []string{
		"COPY (SELECT i, md5(i::text), NULLIF(i % 4, 0), now()::date FROM generate_series(1, 50000) i) TO STDOUT",
		"COPY (SELECT i, 'a,\"b\"' FROM generate_series(1, 100) i) TO STDOUT WITH (FORMAT csv, HEADER)",
		"COPY (SELECT i, i::float8 / 3 FROM generate_series(1, 100) i) TO STDOUT WITH (FORMAT binary)",
		"COPY (SELECT 1 WHERE false) TO STDOUT",
		"COPY (SELECT 1/0) TO STDOUT",
		"COPY (SELECT 10 / (5 - i) FROM generate_series(1, 10) i) TO STDOUT",
	} {
		var wantBuf, gotBuf bytes.Buffer
		wantTag, wantErr := direct.CopyTo(ctx, &wantBuf, sql)
		gotTag, gotErr := proxied.CopyTo(ctx, &gotBuf, sql)
		proxytest.WantEqual(t, sql+": tag", wantTag.String(), gotTag.String())
		proxytest.WantEqual(t, sql+": error", errOrNil(wantErr), errOrNil(gotErr))
		if !bytes.Equal(wantBuf.Bytes(), gotBuf.Bytes()) {
			t.Errorf("%s: output differs (%d and %d bytes)", sql, wantBuf.Len(), gotBuf.Len())
		}
		if _, err := proxied.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Fatalf("session not usable: %v", err)
		}
	}
}

// TestListenNotify sends notifications between two proxied sessions.
func TestListenNotify(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	channel := proxytest.UniqueName(t)
	listener := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
	notifier := proxytest.Connect(t, ctx, p.DSN(pgtest.ScramUser))
	proxytest.MustExec(t, ctx, listener, "LISTEN "+channel)

	var notifierPID uint32
	if err := notifier.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&notifierPID); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		proxytest.MustExec(t, ctx, notifier, "SELECT pg_notify($1, $2)", channel, fmt.Sprint("payload ", i))
	}
	for i := range 3 {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
		if n.Channel != channel || n.Payload != fmt.Sprint("payload ", i) {
			t.Errorf("notification %d = %q %q", i, n.Channel, n.Payload)
		}
		if n.PID != notifierPID {
			t.Errorf("notification %d from pid %d, want the notifier's backend %d", i, n.PID, notifierPID)
		}
	}
	// A notification that arrives while the listener runs a query is
	// delivered with that query's results.
	proxytest.MustExec(t, ctx, notifier, "NOTIFY "+channel+", 'during'")
	time.Sleep(100 * time.Millisecond)
	proxytest.CheckUsable(t, ctx, listener)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil || n.Payload != "during" {
		t.Fatalf("notification during a query: %v, %v", n, err)
	}
	proxytest.MustExec(t, ctx, listener, "UNLISTEN *")
}

// TestNotifySelfPID checks the common idiom of ignoring one's own
// notifications by comparing their process id with the session's
// BackendKeyData process id (PQbackendPID in libpq, PgConn.PID in pgx).
func TestNotifySelfPID(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	c := pgtest.Shared(t)
	ctx := proxytest.Ctx(t, 0)
	for _, ep := range []struct{ name, dsn string }{
		{"direct", c.DSN(pgtest.TrustUser)},
		{"proxied", p.DSN(pgtest.TrustUser)},
	} {
		t.Run(ep.name, func(t *testing.T) {
			channel := proxytest.UniqueName(t)
			conn := proxytest.Connect(t, ctx, ep.dsn)
			proxytest.MustExec(t, ctx, conn, "LISTEN "+channel)
			proxytest.MustExec(t, ctx, conn, "NOTIFY "+channel+", 'self'")
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			n, err := conn.WaitForNotification(wctx)
			if err != nil {
				t.Fatal(err)
			}
			if n.PID != conn.PgConn().PID() {
				t.Errorf("own notification carries pid %d, but PgConn.PID() = %d: a client cannot recognise its own notifications", n.PID, conn.PgConn().PID())
			}
			var backend uint32
			if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
				t.Fatal(err)
			}
			if backend != conn.PgConn().PID() {
				t.Errorf("pg_backend_pid() = %d, but PgConn.PID() = %d", backend, conn.PgConn().PID())
			}
		})
	}
}

// TestCursors declares a server-side cursor in a transaction and fetches
// from it in pieces, direct and proxied.
func TestCursors(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	for _, mode := range []string{"simple_protocol", "cache_statement"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			direct, proxied := endpoints(t, ctx, p, pgtest.PlainUser, mode)
			for _, sql := range []string{
				"BEGIN",
				"DECLARE cur SCROLL CURSOR FOR SELECT i, md5(i::text) FROM generate_series(1, 100) i",
				"FETCH 3 FROM cur",
				"FETCH FORWARD 10 FROM cur",
				"MOVE 50 IN cur",
				"FETCH BACKWARD 2 FROM cur",
				"FETCH ALL FROM cur",
				"FETCH 1 FROM cur",
				"CLOSE cur",
				"FETCH 1 FROM cur",
				"ROLLBACK",
				"DECLARE cur2 CURSOR FOR SELECT 1",
			} {
				want := runQuery(ctx, direct, sql)
				got := runQuery(ctx, proxied, sql)
				proxytest.WantEqual(t, sql, want, got)
			}
			proxytest.CheckUsable(t, ctx, proxied)
		})
	}
}

// TestLargeResult streams a million rows through the proxy, with and
// without an inspector decoding them, and checks count and checksum against
// the server's.
func TestLargeResult(t *testing.T) {
	if testing.Short() {
		t.Skip("large result skipped in -short mode")
	}
	t.Parallel()
	const sql = `SELECT i, md5(i::text) FROM generate_series(1, 1000000) i`
	c := pgtest.Shared(t)
	ctx := proxytest.Ctx(t, 2*time.Minute)

	// The server's own checksum over the same rows.
	var wantSum int64
	var wantHash string
	direct := proxytest.Connect(t, ctx, c.DSN(pgtest.TrustUser))
	err := direct.QueryRow(ctx, `SELECT sum(i), md5(string_agg(md5(i::text), '' ORDER BY i)) FROM generate_series(1, 1000000) i`).Scan(&wantSum, &wantHash)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		mode string
		opts []proxytest.Option
	}{
		{"relay only", "simple_protocol", nil},
		{"inspected", "cache_statement", []proxytest.Option{proxytest.WithRowLimit(2_000_000)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := proxytest.Start(t, tc.opts...)
			for _, mode := range []string{tc.mode} {
				conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "default_query_exec_mode="+mode))
				start := time.Now()
				rows, err := conn.Query(ctx, sql)
				if err != nil {
					t.Fatal(err)
				}
				var n, sum int64
				h := md5Concat()
				for rows.Next() {
					var i int64
					var s string
					if err := rows.Scan(&i, &s); err != nil {
						t.Fatal(err)
					}
					n++
					sum += i
					h.add(s)
				}
				if err := rows.Err(); err != nil {
					t.Fatalf("%s: %v after %d rows", mode, err, n)
				}
				if n != 1_000_000 || sum != wantSum || h.sum() != wantHash {
					t.Errorf("%s: %d rows, sum %d, hash %s; want 1000000, %d, %s", mode, n, sum, h.sum(), wantSum, wantHash)
				}
				t.Logf("%s: %d rows in %v", mode, n, time.Since(start))
			}
		})
	}
}

// md5Hasher computes md5 of the concatenation of strings, as
// md5(string_agg(s, ”)) does on the server.
type md5Hasher struct{ h hash.Hash }

func md5Concat() *md5Hasher { return &md5Hasher{h: md5.New()} }

func (m *md5Hasher) add(s string) { m.h.Write([]byte(s)) }

func (m *md5Hasher) sum() string { return hex.EncodeToString(m.h.Sum(nil)) }
