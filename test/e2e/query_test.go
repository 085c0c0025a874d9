package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// execModes are pgx's ways of running a query, by their connection-string
// names: the simple protocol and the four extended-protocol variants.
var execModes = []string{"simple_protocol", "cache_statement", "cache_describe", "describe_exec", "exec"}

// endpoints opens one connection direct and one through p, both as user with
// default_query_exec_mode set to mode.
func endpoints(t *testing.T, ctx context.Context, p *proxytest.Proxy, user, mode string) (direct, proxied *pgx.Conn) {
	t.Helper()
	c := pgtest.Shared(t)
	param := "default_query_exec_mode=" + mode
	return proxytest.Connect(t, ctx, c.DSN(user, param)), proxytest.Connect(t, ctx, p.DSN(user, param))
}

// queryResult is everything a client learns from one query.
type queryResult struct {
	Fields []pgconn.FieldDescription
	Raw    [][][]byte
	Values [][]any
	Tag    string
	Err    *pgconn.PgError
	Other  string // an error that is not a PgError
}

func runQuery(ctx context.Context, conn *pgx.Conn, sql string, args ...any) queryResult {
	var r queryResult
	rows, err := conn.Query(ctx, sql, args...)
	if err == nil {
		r.Fields = append(r.Fields, rows.FieldDescriptions()...)
		for rows.Next() {
			raw := make([][]byte, 0, len(rows.RawValues()))
			for _, v := range rows.RawValues() {
				raw = append(raw, append([]byte(nil), v...))
			}
			r.Raw = append(r.Raw, raw)
			vals, verr := rows.Values()
			if verr != nil {
				r.Other = verr.Error()
				break
			}
			r.Values = append(r.Values, vals)
		}
		rows.Close()
		err = rows.Err()
		r.Tag = rows.CommandTag().String()
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			r.Err = pgErr
		} else {
			r.Other = err.Error()
		}
	}
	return r
}

// typeQueries cover the common types, NULLs, parameters and a multi-row result.
var typeQueries = []struct {
	name string
	sql  string
	args []any
}{
	{
		name: "literals",
		sql: `SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, 12345.6789::numeric AS num,
			'NaN'::numeric AS nan, 1.5::float8 AS f8, 2.5::float4 AS f4, '-Infinity'::float8 AS ninf,
			'text ☃'::text AS txt, ''::text AS empty, 'x'::varchar(3) AS vc, '\xdeadbeef'::bytea AS ba,
			true AS b, '2024-02-29'::date AS d, '2024-02-29 12:34:56.789+01'::timestamptz AS tz,
			'infinity'::timestamptz AS tzinf, '2001-02-03 04:05:06'::timestamp AS ts,
			'1 year 2 mons 3 days 04:05:06.5'::interval AS iv,
			'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '{"a":[1,2]}'::json AS j,
			'{"b":{"c":null}}'::jsonb AS jb, ARRAY[1,2,NULL]::int4[] AS ai, ARRAY['x','y z']::text[] AS at,
			'{{1,2},{3,4}}'::int8[] AS a2, NULL::text AS nt, NULL::int4 AS ni, NULL::jsonb AS nj`,
	},
	{
		name: "parameters",
		sql: `SELECT $1::int2, $2::int4, $3::int8, $4::numeric, $5::float8, $6::text, $7::bytea, $8::bool,
			$9::date, $10::timestamptz, $11::interval, $12::uuid, $13::json, $14::jsonb, $15::int8[],
			$16::text[], $17::text, $18::int4`,
		args: []any{
			int16(-7), int32(1 << 30), int64(-1 << 60), "98765.4321", 3.25, "héllo\twörld", []byte{0, 1, 2, 255},
			false, time.Date(2001, 2, 3, 0, 0, 0, 0, time.UTC), time.Date(2020, 5, 6, 7, 8, 9, 123456000, time.UTC),
			90 * time.Minute, "6ba7b810-9dad-11d1-80b4-00c04fd430c8", `{"k": "v"}`,
			`[1, "two", null]`, []int64{1, 2, 3}, []string{"a", "b,c", ""}, nil, nil,
		},
	},
	{
		name: "rows",
		sql:  `SELECT i, i::text AS s, md5(i::text) AS h, i % 3 = 0 AS third, NULLIF(i % 5, 0) AS n FROM generate_series(1, 2000) i`,
	},
	{
		name: "big values",
		sql:  `SELECT repeat('x', 3000000) AS big, repeat('y', 70000) AS medium, length($1::text) AS param_len`,
		args: []any{strings.Repeat("z", 200000)},
	},
	{
		name: "no rows",
		sql:  `SELECT 1 AS one WHERE false`,
	},
}

// TestQueryTypes runs the type queries in every exec mode, direct and
// proxied, and compares descriptions, raw values, decoded values and tags.
func TestQueryTypes(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	for _, mode := range execModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			direct, proxied := endpoints(t, ctx, p, pgtest.ScramUser, mode)
			for _, q := range typeQueries {
				want := runQuery(ctx, direct, q.sql, q.args...)
				if want.Err != nil || want.Other != "" {
					t.Fatalf("%s: direct: %v %s", q.name, want.Err, want.Other)
				}
				got := runQuery(ctx, proxied, q.sql, q.args...)
				proxytest.WantEqual(t, q.name+" fields", want.Fields, got.Fields)
				proxytest.WantEqual(t, q.name+" raw values", want.Raw, got.Raw)
				proxytest.WantEqual(t, q.name+" values", want.Values, got.Values)
				proxytest.WantEqual(t, q.name+" tag", want.Tag, got.Tag)
				if got.Err != nil || got.Other != "" {
					t.Errorf("%s: proxied: %v %s", q.name, got.Err, got.Other)
				}
			}
			proxytest.CheckUsable(t, ctx, proxied)
		})
	}
}

// TestPreparedStatements prepares named statements with pgx and with SQL
// PREPARE and runs them repeatedly.
func TestPreparedStatements(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	direct, proxied := endpoints(t, ctx, p, pgtest.MD5User, "cache_statement")

	const sql = `SELECT $1::int8 * 2 AS doubled, $2::text || '!' AS shout, $3::timestamptz AS at`
	var descs [2]*pgconn.StatementDescription
	for i, conn := range []*pgx.Conn{direct, proxied} {
		sd, err := conn.Prepare(ctx, "ps_e2e", sql)
		if err != nil {
			t.Fatalf("prepare: %v", err)
		}
		descs[i] = sd
	}
	proxytest.WantEqual(t, "parameter OIDs", descs[0].ParamOIDs, descs[1].ParamOIDs)
	proxytest.WantEqual(t, "fields", descs[0].Fields, descs[1].Fields)

	for i := range 5 {
		args := []any{int64(i * 1000), fmt.Sprint("run ", i), time.Date(2000+i, 1, 2, 3, 4, 5, 0, time.UTC)}
		want := runQuery(ctx, direct, "ps_e2e", args...)
		got := runQuery(ctx, proxied, "ps_e2e", args...)
		proxytest.WantEqual(t, fmt.Sprint("run ", i), want, got)
	}
	for _, conn := range []*pgx.Conn{direct, proxied} {
		if err := conn.Deallocate(ctx, "ps_e2e"); err != nil {
			t.Fatalf("deallocate: %v", err)
		}
	}

	// SQL-level PREPARE, EXECUTE and DEALLOCATE, with a parse error and an
	// unknown statement name on the way.
	script := []string{
		`PREPARE sq(int) AS SELECT $1 + 1 AS n, repeat('x', $1) AS r`,
		`EXECUTE sq(3)`,
		`EXECUTE sq(40)`,
		`EXECUTE nosuch(1)`,
		`PREPARE bad AS SELEC 1`,
		`DEALLOCATE sq`,
		`EXECUTE sq(1)`,
	}
	for _, sql := range script {
		want := runQuery(ctx, direct, sql, pgx.QueryExecModeSimpleProtocol)
		got := runQuery(ctx, proxied, sql, pgx.QueryExecModeSimpleProtocol)
		proxytest.WantEqual(t, sql, want, got)
	}
	proxytest.CheckUsable(t, ctx, proxied)
}

// resultSummary is a pgconn.Result reduced to comparable fields.
type resultSummary struct {
	Fields []pgconn.FieldDescription
	Rows   [][][]byte
	Tag    string
	Err    string
	Code   string
}

func summarize(results []*pgconn.Result, err error) ([]resultSummary, string) {
	var out []resultSummary
	for _, r := range results {
		s := resultSummary{Fields: r.FieldDescriptions, Rows: r.Rows, Tag: r.CommandTag.String()}
		if r.Err != nil {
			s.Err = r.Err.Error()
			var pgErr *pgconn.PgError
			if errors.As(r.Err, &pgErr) {
				s.Code = pgErr.Code
			}
		}
		out = append(out, s)
	}
	if err != nil {
		return out, err.Error()
	}
	return out, ""
}

// TestMultiStatementQuery sends several statements in one simple Query.
func TestMultiStatementQuery(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	c := pgtest.Shared(t)
	ctx := proxytest.Ctx(t, 0)
	direct := proxytest.ConnectPg(t, ctx, c.DSN(pgtest.TrustUser))
	proxied := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))

	for _, sql := range []string{
		"select 1; select 2",
		"select 1 as a, 'x' as b; select generate_series(1, 3); select 'last'",
		"create temp table m(x int); insert into m select generate_series(1, 10); update m set x = x + 1 where x > 5; select sum(x) from m; drop table m",
		"select 1; select 1/0; select 3",
		"select 1; selec 2",
		"",
		";",
		"select 1;;select 2;",
		"begin; select 1; commit",
		"begin; select 1/0; commit",
	} {
		t.Run(sql, func(t *testing.T) {
			want, wantErr := summarize(direct.Exec(ctx, sql).ReadAll())
			got, gotErr := summarize(proxied.Exec(ctx, sql).ReadAll())
			proxytest.WantEqual(t, "results", want, got)
			proxytest.WantEqual(t, "error", wantErr, gotErr)
			proxytest.WantEqual(t, "transaction status", direct.TxStatus(), proxied.TxStatus())
		})
	}
	if _, err := proxied.Exec(ctx, "rollback; select 1").ReadAll(); err != nil {
		t.Fatalf("session not usable: %v", err)
	}
}

// errorCases fail in different ways; their errors carry detail, hint,
// position, where, schema and constraint fields.
var errorCases = []struct {
	name string
	sql  string
}{
	{"syntax error", `SELECT 1 FROM WHERE`},
	{"undefined column", `SELECT nosuchcolumn FROM pg_class`},
	{"division by zero", `SELECT 1/0`},
	{"bad input", `SELECT 'abc'::int`},
	{"raise with detail", `DO $$ BEGIN RAISE EXCEPTION 'custom failure %', 42 USING DETAIL = 'the detail', HINT = 'the hint', ERRCODE = 'P0042'; END $$`},
	{"unique violation", `INSERT INTO e2e_errors VALUES (1)`},
	{"check violation", `INSERT INTO e2e_errors VALUES (-1)`},
	{"out of range mid-result", `SELECT 10 / (3 - i) FROM generate_series(1, 5) i`},
}

// TestErrors compares every field of the errors direct and proxied, in
// every exec mode, and checks the session stays usable after each.
func TestErrors(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	// A table in schema public, so that the errors name the same schema
	// direct and proxied; the statements that use it all fail.
	setup := proxytest.Connect(t, proxytest.Ctx(t, 0), pgtest.Shared(t).DSN(pgtest.TrustUser))
	proxytest.MustExec(t, t.Context(), setup, `CREATE TABLE IF NOT EXISTS e2e_errors (x int PRIMARY KEY CHECK (x >= 0));
		INSERT INTO e2e_errors VALUES (1) ON CONFLICT DO NOTHING`)
	t.Cleanup(func() { setup.Exec(context.Background(), "DROP TABLE IF EXISTS e2e_errors") })
	for _, mode := range execModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			direct, proxied := endpoints(t, ctx, p, pgtest.TrustUser, mode)
			for _, ec := range errorCases {
				want := runQuery(ctx, direct, ec.sql)
				if want.Err == nil {
					t.Fatalf("%s: direct did not fail", ec.name)
				}
				got := runQuery(ctx, proxied, ec.sql)
				proxytest.WantEqual(t, ec.name, want, got)
				proxytest.CheckUsable(t, ctx, proxied)
			}
		})
	}
}

// TestNotices captures NoticeResponses from a DO block, and notices
// interleaved with rows, through OnNotice.
func TestNotices(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	c := pgtest.Shared(t)
	ctx := proxytest.Ctx(t, 0)

	type notice struct{ Severity, Code, Message, Detail, Hint string }
	run := func(dsn string) ([]notice, queryResult) {
		var got []notice
		conn := proxytest.Connect(t, ctx, dsn, func(cfg *pgx.ConnConfig) {
			cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
				got = append(got, notice{n.Severity, n.Code, n.Message, n.Detail, n.Hint})
			}
		})
		proxytest.MustExec(t, ctx, conn, `DO $$ BEGIN
			RAISE NOTICE 'hello %', 42;
			RAISE WARNING 'careful' USING DETAIL = 'some detail', HINT = 'a hint';
			FOR i IN 1..50 LOOP RAISE NOTICE 'loop %', i; END LOOP;
		END $$`)
		proxytest.MustExec(t, ctx, conn, `CREATE TEMP TABLE IF NOT EXISTS nt (x int)`)
		proxytest.MustExec(t, ctx, conn, `CREATE OR REPLACE FUNCTION pg_temp.noisy(i int) RETURNS int LANGUAGE plpgsql AS
			$$ BEGIN IF i % 10 = 0 THEN RAISE NOTICE 'row %', i; END IF; RETURN i; END $$`)
		r := runQuery(ctx, conn, `SELECT pg_temp.noisy(i) FROM generate_series(1, 30) i`)
		proxytest.CheckUsable(t, ctx, conn)
		return got, r
	}
	wantN, wantR := run(c.DSN(pgtest.TrustUser))
	gotN, gotR := run(p.DSN(pgtest.TrustUser))
	if len(wantN) != 55 {
		t.Fatalf("direct: %d notices, want 55", len(wantN))
	}
	proxytest.WantEqual(t, "notices", wantN, gotN)
	proxytest.WantEqual(t, "rows around notices", wantR, gotR)
}

// TestErrorsInTransaction checks an error aborts the transaction the same
// way through the proxy, that savepoints recover, and that ROLLBACK leaves
// the session usable.
func TestErrorsInTransaction(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	steps := []string{
		"BEGIN",
		"SELECT 1",
		"SELECT 1/0",
		"SELECT 1",
		"ROLLBACK",
		"SELECT 2",
		"BEGIN",
		"CREATE TEMP TABLE sp (x int)",
		"SAVEPOINT s1",
		"INSERT INTO sp VALUES ('oops')",
		"SELECT count(*) FROM sp",
		"ROLLBACK TO SAVEPOINT s1",
		"INSERT INTO sp VALUES (1)",
		"SELECT count(*) FROM sp",
		"COMMIT",
		"SELECT count(*) FROM sp",
	}
	for _, mode := range execModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			direct, proxied := endpoints(t, ctx, p, pgtest.PlainUser, mode)
			for _, sql := range steps {
				want := runQuery(ctx, direct, sql)
				got := runQuery(ctx, proxied, sql)
				proxytest.WantEqual(t, sql, want, got)
				proxytest.WantEqual(t, sql+": transaction status", direct.PgConn().TxStatus(), proxied.PgConn().TxStatus())
			}
			proxytest.CheckUsable(t, ctx, proxied)
		})
	}
}

// batchOutcome runs a pgx batch and describes what each query returned.
func batchOutcome(ctx context.Context, conn *pgx.Conn, queries []string) []string {
	b := &pgx.Batch{}
	for _, q := range queries {
		b.Queue(q)
	}
	br := conn.SendBatch(ctx, b)
	var out []string
	for range queries {
		r := runBatchQuery(br)
		out = append(out, r)
	}
	if err := br.Close(); err != nil {
		out = append(out, "close: "+errString(err))
	}
	return out
}

func runBatchQuery(br pgx.BatchResults) string {
	rows, err := br.Query()
	if err != nil {
		return "error: " + errString(err)
	}
	var vals [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			rows.Close()
			return "values: " + err.Error()
		}
		vals = append(vals, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Sprintf("rows %v then error: %s", vals, errString(err))
	}
	return fmt.Sprintf("rows %v tag %s", vals, rows.CommandTag())
}

// errString renders an error with its SQLSTATE when it has one.
func errString(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code + " " + pgErr.Message
	}
	return err.Error()
}

// TestBatches runs pgx batches in every exec mode, with and without an error
// in the middle, and compares each query's outcome.
func TestBatches(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	batches := map[string][]string{
		"all succeed": {
			"SELECT 1 AS a",
			"CREATE TEMP TABLE IF NOT EXISTS bt (x int)",
			"INSERT INTO bt SELECT generate_series(1, 100)",
			"SELECT count(*), sum(x) FROM bt",
			"SELECT 'x'::text, NULL::int, ARRAY[1,2]",
		},
		"error in the middle": {
			"SELECT 1",
			"SELECT 2",
			"SELECT 1/0",
			"SELECT 4",
			"SELECT 5",
		},
		"error first": {
			"SELECT nosuch",
			"SELECT 2",
		},
	}
	for _, mode := range execModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			direct, proxied := endpoints(t, ctx, p, pgtest.ScramUser, mode)
			for name, queries := range batches {
				want := batchOutcome(ctx, direct, queries)
				got := batchOutcome(ctx, proxied, queries)
				proxytest.WantEqual(t, name, want, got)
				proxytest.CheckUsable(t, ctx, proxied)
			}
			// A following batch works.
			want := batchOutcome(ctx, direct, batches["all succeed"])
			got := batchOutcome(ctx, proxied, batches["all succeed"])
			proxytest.WantEqual(t, "following batch", want, got)
		})
	}
}

// pipelineStep is one request of a pgconn pipeline: a query, or a sync.
type pipelineStep struct {
	sql  string
	sync bool
}

// pipelineOutcome runs steps in one pgconn pipeline, flushing once, and
// describes every result in order.
func pipelineOutcome(ctx context.Context, conn *pgconn.PgConn, steps []pipelineStep) []string {
	pl := conn.StartPipeline(ctx)
	for _, s := range steps {
		if s.sync {
			pl.SendPipelineSync()
		} else {
			pl.SendQueryParams(s.sql, nil, nil, nil, nil)
		}
	}
	var out []string
	if err := pl.Flush(); err != nil {
		return append(out, "flush: "+errString(err))
	}
	syncs := 0
	for _, s := range steps {
		if s.sync {
			syncs++
		}
	}
	for seen := 0; seen < syncs && len(out) < 100; {
		res, err := pl.GetResults()
		switch {
		case err != nil:
			out = append(out, "error: "+errString(err))
		case res == nil:
			out = append(out, "nil")
		default:
			switch r := res.(type) {
			case *pgconn.ResultReader:
				rr := r.Read()
				out = append(out, fmt.Sprintf("rows %q tag %s err %v", rr.Rows, rr.CommandTag, errOrNil(rr.Err)))
			case *pgconn.PipelineSync:
				out = append(out, "sync")
				seen++
			default:
				out = append(out, fmt.Sprintf("%T", r))
			}
		}
		if res == nil && err == nil {
			break
		}
	}
	if err := pl.Close(); err != nil {
		out = append(out, "close: "+errString(err))
	}
	return out
}

func errOrNil(err error) string {
	if err == nil {
		return "nil"
	}
	return errString(err)
}

// TestPipeline runs pgconn pipelines with several syncs, errors inside
// them, and checks later sync batches still run.
func TestPipeline(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	c := pgtest.Shared(t)
	q := func(sql string) pipelineStep { return pipelineStep{sql: sql} }
	sync := pipelineStep{sync: true}
	cases := []struct {
		name  string
		steps []pipelineStep
	}{
		{"one sync", []pipelineStep{q("SELECT 1"), q("SELECT generate_series(1, 3)"), q("SELECT 'x'"), sync}},
		{"three syncs", []pipelineStep{q("SELECT 1"), sync, q("SELECT 2"), q("SELECT 3"), sync, q("SELECT 4"), sync}},
		{"error skips to sync", []pipelineStep{q("SELECT 1"), sync, q("SELECT 2"), q("SELECT 1/0"), q("SELECT 3"), sync, q("SELECT 4"), sync}},
		{"error in transaction", []pipelineStep{q("BEGIN"), q("SELECT 1"), sync, q("SELECT 1/0"), sync, q("SELECT 2"), sync, q("ROLLBACK"), sync, q("SELECT 3"), sync}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			direct := proxytest.ConnectPg(t, ctx, c.DSN(pgtest.TrustUser))
			proxied := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))
			want := pipelineOutcome(ctx, direct, tc.steps)
			got := pipelineOutcome(ctx, proxied, tc.steps)
			t.Logf("direct: %q", want)
			proxytest.WantEqual(t, "pipeline results", want, got)
			proxytest.WantEqual(t, "transaction status", direct.TxStatus(), proxied.TxStatus())
			if _, err := proxied.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
				t.Fatalf("session not usable after the pipeline: %v", err)
			}
		})
	}
}

// TestPortalRowLimit executes portals with a row limit (Execute max_rows),
// which no common driver exposes, as wire transcripts.
func TestPortalRowLimit(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	c := pgtest.Shared(t)
	scripts := map[string][][]pgproto3.FrontendMessage{
		"unnamed portal in one batch": {{
			&pgproto3.Parse{Query: "SELECT i, 'row ' || i FROM generate_series(1, 7) i"},
			&pgproto3.Bind{},
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{MaxRows: 3},
			&pgproto3.Execute{MaxRows: 3},
			&pgproto3.Execute{MaxRows: 3},
			&pgproto3.Sync{},
		}},
		"named portal across syncs": {
			{&pgproto3.Query{String: "BEGIN"}},
			{
				&pgproto3.Parse{Name: "s1", Query: "SELECT generate_series(1, $1::int)"},
				&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "s1", Parameters: [][]byte{[]byte("5")}},
				&pgproto3.Execute{Portal: "p1", MaxRows: 2},
				&pgproto3.Sync{},
			},
			{&pgproto3.Execute{Portal: "p1", MaxRows: 2}, &pgproto3.Sync{}},
			{&pgproto3.Execute{Portal: "p1", MaxRows: 0}, &pgproto3.Sync{}},
			{&pgproto3.Execute{Portal: "p1", MaxRows: 1}, &pgproto3.Sync{}},
			{&pgproto3.Close{ObjectType: 'P', Name: "p1"}, &pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{}},
			{&pgproto3.Query{String: "COMMIT"}},
		},
		"flush without sync": {{
			&pgproto3.Parse{Query: "SELECT 42"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Flush{},
			&pgproto3.Sync{},
		}},
	}
	for name, script := range scripts {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			direct := proxytest.RawStartup(t, ctx, c.Addr(), nil)
			proxied := proxytest.RawStartup(t, ctx, p.Addr, nil)
			for i, msgs := range script {
				want := direct.Transcript(msgs...)
				got := proxied.Transcript(msgs...)
				proxytest.WantEqual(t, fmt.Sprint("step ", i), want, got)
			}
		})
	}
}

// TestParameterStatus compares the ParameterStatus values a client sees at
// startup and after SET, direct and proxied.
func TestParameterStatus(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	direct, proxied := endpoints(t, ctx, p, pgtest.MD5User, "cache_statement")
	keys := []string{"server_version", "server_encoding", "client_encoding", "DateStyle", "TimeZone",
		"integer_datetimes", "standard_conforming_strings", "application_name", "is_superuser",
		"session_authorization", "IntervalStyle"}
	status := func(conn *pgx.Conn) map[string]string {
		m := make(map[string]string)
		for _, k := range keys {
			m[k] = conn.PgConn().ParameterStatus(k)
		}
		return m
	}
	proxytest.WantEqual(t, "at startup", status(direct), status(proxied))
	for _, conn := range []*pgx.Conn{direct, proxied} {
		proxytest.MustExec(t, ctx, conn, "SET TimeZone = 'America/New_York'")
		proxytest.MustExec(t, ctx, conn, "SET application_name = 'changed'")
		proxytest.MustExec(t, ctx, conn, "SET IntervalStyle = 'iso_8601'")
	}
	proxytest.WantEqual(t, "after SET", status(direct), status(proxied))
	if got := proxied.PgConn().ParameterStatus("application_name"); got != "changed" {
		t.Errorf("application_name = %q after SET", got)
	}
}

// TestPipelineFlushWithoutSync asks for results with Flush and no Sync:
// they must arrive through the proxy before any Sync is sent.
func TestPipelineFlushWithoutSync(t *testing.T) {
	t.Parallel()
	for _, inspected := range []bool{false, true} {
		t.Run(fmt.Sprintf("inspected=%v", inspected), func(t *testing.T) {
			t.Parallel()
			var opts []proxytest.Option
			if inspected {
				opts = append(opts, proxytest.WithRowLimit(1000))
			}
			p := proxytest.Start(t, opts...)
			ctx := proxytest.Ctx(t, 0)
			conn := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			pl := conn.StartPipeline(pctx)
			pl.SendQueryParams("SELECT 'flushed'", nil, nil, nil, nil)
			pl.SendFlushRequest()
			if err := pl.Flush(); err != nil {
				t.Fatal(err)
			}
			res, err := pl.GetResults()
			if err != nil {
				t.Fatalf("result before Sync: %v", err)
			}
			rr, ok := res.(*pgconn.ResultReader)
			if !ok {
				t.Fatalf("got %T", res)
			}
			r := rr.Read()
			if r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) != "flushed" {
				t.Fatalf("result %q, %v", r.Rows, r.Err)
			}
			if err := pl.Sync(); err != nil {
				t.Fatal(err)
			}
			if res, err := pl.GetResults(); err != nil {
				t.Fatal(err)
			} else if _, ok := res.(*pgconn.PipelineSync); !ok {
				t.Fatalf("got %T, want the sync", res)
			}
			if err := pl.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestProtocolNegotiation asks for protocol 3.2, which PostgreSQL 15 does
// not speak: the server's NegotiateProtocolVersion passes through and the
// session works, cancel included.
func TestProtocolNegotiation(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	c := pgtest.Shared(t)
	for _, ep := range []struct{ name, dsn string }{
		{"direct", c.DSN(pgtest.ScramUser, "max_protocol_version=3.2")},
		{"proxied", p.DSN(pgtest.ScramUser, "max_protocol_version=3.2")},
	} {
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			conn := proxytest.ConnectPg(t, ctx, ep.dsn, proxytest.CancelOnContext)
			if _, err := conn.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
				t.Fatal(err)
			}
			qctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			_, err := conn.Exec(qctx, "SELECT pg_sleep(10)").ReadAll()
			proxytest.WantCode(t, err, "57014")
		})
	}
}

// TestConcurrentSessions runs many sessions at once through one proxy, each
// checking that it gets its own answers.
func TestConcurrentSessions(t *testing.T) {
	t.Parallel()
	for _, inspected := range []bool{false, true} {
		t.Run(fmt.Sprintf("inspected=%v", inspected), func(t *testing.T) {
			t.Parallel()
			var opts []proxytest.Option
			if inspected {
				opts = append(opts, proxytest.WithRowLimit(1000))
			}
			p := proxytest.Start(t, opts...)
			ctx := proxytest.Ctx(t, 0)
			users := []string{pgtest.TrustUser, pgtest.PlainUser, pgtest.MD5User, pgtest.ScramUser}
			const sessions, rounds = 16, 20
			errc := make(chan error, sessions)
			for i := range sessions {
				mode := execModes[i%len(execModes)]
				conn := proxytest.Connect(t, ctx, p.DSN(users[i%len(users)], "default_query_exec_mode="+mode))
				go func() {
					for r := range rounds {
						want := fmt.Sprintf("session %d round %d", i, r)
						var got string
						var n int
						if err := conn.QueryRow(ctx, "SELECT $1::text, count(*) FROM generate_series(1, $2::int)", want, r+1).Scan(&got, &n); err != nil {
							errc <- fmt.Errorf("session %d (%s): %w", i, mode, err)
							return
						}
						if got != want || n != r+1 {
							errc <- fmt.Errorf("session %d got %q, %d; want %q, %d", i, got, n, want, r+1)
							return
						}
					}
					errc <- nil
				}()
			}
			for range sessions {
				if err := <-errc; err != nil {
					t.Error(err)
				}
			}
		})
	}
}
