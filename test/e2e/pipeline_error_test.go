package e2e

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// TestInspectedPipelineAfterServerError runs, through an inspecting proxy,
// the pipeline of pgx's TestPipelineFlushWithError: an error in an unsynced
// batch makes the server skip everything up to the next Sync, including
// requests sent after the error, and the proxy must not wait for answers
// that will never come.
func TestInspectedPipelineAfterServerError(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(1_000_000))
	ctx := proxytest.Ctx(t, 0)
	conn := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))

	pl := conn.StartPipeline(ctx)
	pl.SendQueryParams(`select 1`, nil, nil, nil, nil)
	pl.SendQueryParams(`select 1/(3-n) from generate_series(1,10) n`, nil, nil, nil, nil)
	pl.SendQueryParams(`select 2`, nil, nil, nil, nil)
	pl.SendFlushRequest()
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}
	next := func() any {
		t.Helper()
		res, err := pl.GetResults()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if rr, ok := next().(*pgconn.ResultReader); !ok || rr.Read().Err != nil {
		t.Fatal("select 1 failed")
	}
	rr, ok := next().(*pgconn.ResultReader)
	var pgErr *pgconn.PgError
	if !ok || !errors.As(rr.Read().Err, &pgErr) || pgErr.Code != "22012" {
		t.Fatal("want division by zero")
	}
	if res := next(); res != nil {
		t.Fatalf("after the error: %#v, want nothing", res)
	}
	// Sent while the server skips to the next Sync: never answered.
	pl.SendQueryParams(`select 3`, nil, nil, nil, nil)
	pl.SendFlushRequest()
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}
	if res := next(); res != nil {
		t.Fatalf("select 3: %#v, want nothing", res)
	}
	pl.SendQueryParams(`select 4`, nil, nil, nil, nil)
	pl.SendPipelineSync()
	pl.SendQueryParams(`select 5`, nil, nil, nil, nil)
	pl.SendFlushRequest()
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, ok := next().(*pgconn.PipelineSync); !ok {
		t.Fatal("want the PipelineSync")
	}
	rr, ok = next().(*pgconn.ResultReader)
	if !ok {
		t.Fatal("want select 5's result")
	}
	if r := rr.Read(); r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) != "5" {
		t.Fatalf("select 5: %v %q", r.Err, r.Rows)
	}
	pl.SendPipelineSync()
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, ok := next().(*pgconn.PipelineSync); !ok {
		t.Fatal("want the last PipelineSync")
	}
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestInspectedBatchWithServerErrorMidway sends multi-statement batches
// whose middle statement fails on the server, in each extended mode, through
// an inspecting proxy: the batch reports the error and the next one works.
func TestInspectedBatchWithServerErrorMidway(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(1_000_000))
	for _, mode := range []string{"cache_statement", "cache_describe", "describe_exec", "exec"} {
		t.Run(mode, func(t *testing.T) {
			ctx := proxytest.Ctx(t, 0)
			conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "default_query_exec_mode="+mode))
			b := &pgx.Batch{}
			b.Queue("select 1")
			b.Queue("select 1/0")
			b.Queue("select 2")
			err := conn.SendBatch(ctx, b).Close()
			proxytest.WantCode(t, err, "22012")
			b = &pgx.Batch{}
			b.Queue("select 1")
			b.Queue("select 2")
			if err := conn.SendBatch(ctx, b).Close(); err != nil {
				t.Fatalf("next batch: %v", err)
			}
			proxytest.CheckUsable(t, ctx, conn)
		})
	}
}
