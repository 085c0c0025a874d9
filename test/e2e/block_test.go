package e2e

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// blockLimit is the RowLimit of the block tests: small enough that any
// result past it is blocked after a few rows.
const blockLimit = 10

// bigQuery returns a query whose result would take minutes to stream, so
// that it ends quickly only if the upstream query is cancelled. The marker
// finds it in pg_stat_activity. (generate_series in the target list streams;
// in FROM it would be materialized first.)
func bigQuery(marker string) string {
	return fmt.Sprintf("SELECT generate_series(1, 100000000) AS i /* %s */", marker)
}

// wantBlocked fails the test unless err is pgwarden's block: SQLSTATE
// 42501, severity ERROR, a message that starts "pgwarden:" and names the limit.
func wantBlocked(t testing.TB, err error) {
	t.Helper()
	pgErr := proxytest.WantCode(t, err, "42501")
	if pgErr.Severity != "ERROR" {
		t.Errorf("block severity %q, want ERROR", pgErr.Severity)
	}
	if !strings.HasPrefix(pgErr.Message, "pgwarden:") || !strings.Contains(pgErr.Message, fmt.Sprintf("more than %d rows", blockLimit)) {
		t.Errorf("block message %q, want it to start with pgwarden: and name the limit", pgErr.Message)
	}
}

// wantCancelled fails the test unless no backend runs the marked query a
// moment after a block: the proxy cancelled it upstream.
func wantCancelled(t testing.TB, ctx context.Context, super *pgx.Conn, marker string) {
	t.Helper()
	proxytest.Eventually(t, 3*time.Second, "upstream query cancelled", func() (bool, string) {
		n, err := proxytest.ActiveQueries(ctx, super, marker)
		if err != nil {
			t.Fatal(err)
		}
		return n == 0, fmt.Sprintf("%d backends still run %s", n, marker)
	})
}

// queryCount runs sql and returns how many rows reached the client and the error.
func queryCount(ctx context.Context, conn *pgx.Conn, sql string) (int, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return 0, err
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	return n, rows.Err()
}

// TestBlockQuery blocks a big result mid-stream in every exec mode; the
// client gets at most blockLimit rows and the 42501, the upstream query is
// cancelled, and the session stays usable without the cancel hitting the
// next statement.
func TestBlockQuery(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(blockLimit))
	for _, mode := range execModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			super := proxytest.SuperConn(t, ctx)
			conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "default_query_exec_mode="+mode))
			for i := range 2 {
				marker := proxytest.UniqueName(t)
				start := time.Now()
				n, err := queryCount(ctx, conn, bigQuery(marker))
				wantBlocked(t, err)
				if n > blockLimit {
					t.Errorf("%d rows reached the client, limit %d", n, blockLimit)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("block took %v", d)
				}
				wantCancelled(t, ctx, super, marker)
				proxytest.CheckUsable(t, ctx, conn)
				// A statement right after the block is not hit by its cancel.
				if _, err := conn.Exec(ctx, "SELECT pg_sleep(0.2)"); err != nil {
					t.Fatalf("round %d: statement after the block: %v", i, err)
				}
			}
			p.Logs.WaitFor(t, 3*time.Second, "statement_blocked")
		})
	}
}

// TestBlockSmallResult blocks results just over the limit, which the server
// has finished sending before the cancel can land: the cancel must not hit
// the statements that follow.
func TestBlockSmallResult(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(blockLimit))
	for _, mode := range []string{"simple_protocol", "cache_statement"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "default_query_exec_mode="+mode))
			for i := range 10 {
				_, err := queryCount(ctx, conn, fmt.Sprintf("SELECT generate_series(1, %d)", blockLimit+1+i))
				wantBlocked(t, err)
				if _, err := conn.Exec(ctx, "SELECT pg_sleep(0.05)"); err != nil {
					t.Fatalf("round %d: statement after the block: %v", i, err)
				}
			}
		})
	}
}

// normalizeErrors replaces SQLSTATEs and messages in outcome strings, so a
// batch with a blocked statement compares with one where the same statement
// fails on the server.
// Rows before the error are dropped too: a simple Query is one statement
// for the row limit, so the rows of earlier statements in it count.
var (
	errPattern     = regexp.MustCompile(`(error|close): [0-9A-Z]{5} .*$`)
	rowsErrPattern = regexp.MustCompile(`^rows \[.*\] then error`)
)

func normalizeErrors(out []string) []string {
	res := make([]string, len(out))
	for i, s := range out {
		s = rowsErrPattern.ReplaceAllString(s, "rows then error")
		res[i] = errPattern.ReplaceAllString(s, "$1: (some error)")
	}
	return res
}

// failingAfter returns a query that returns rows 1..n and then fails on the
// server, as a blocked query looks to the client.
func failingAfter(n int) string {
	return fmt.Sprintf("SELECT CASE WHEN i > %d THEN 1/(i-i) ELSE i END FROM generate_series(1, %d) i", n, n+5)
}

// TestBlockInBatch blocks the middle statement of a pgx batch: statements
// before it deliver their results, it gets the 42501, the ones after it are
// skipped as after a server error, and the next batch works.
func TestBlockInBatch(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(blockLimit))
	c := pgtest.Shared(t)
	for _, mode := range execModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			super := proxytest.SuperConn(t, ctx)
			marker := proxytest.UniqueName(t)
			param := "default_query_exec_mode=" + mode
			direct := proxytest.Connect(t, ctx, c.DSN(pgtest.TrustUser, param))
			proxied := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, param))

			// Direct, the middle statement fails after blockLimit rows.
			want := batchOutcome(ctx, direct, []string{"SELECT 1", "SELECT 'before'", failingAfter(blockLimit), "SELECT 'after'", "SELECT 5"})
			got := batchOutcome(ctx, proxied, []string{"SELECT 1", "SELECT 'before'", bigQuery(marker), "SELECT 'after'", "SELECT 5"})
			t.Logf("direct:  %q", want)
			t.Logf("proxied: %q", got)
			if !strings.Contains(got[2], "42501 pgwarden:") {
				t.Errorf("blocked statement: %s, want the 42501 from pgwarden", got[2])
			}
			proxytest.WantEqual(t, "batch outcome", normalizeErrors(want), normalizeErrors(got))
			wantCancelled(t, ctx, super, marker)

			next := []string{"SELECT 1", "SELECT generate_series(1, 3)"}
			proxytest.WantEqual(t, "next batch", batchOutcome(ctx, direct, next), batchOutcome(ctx, proxied, next))
			proxytest.CheckUsable(t, ctx, proxied)
		})
	}
}

// TestBlockSkipsLaterStatementsInBatch checks that statements queued after
// a blocked one in the same Sync batch do not take effect, as after any
// error: the client is told the batch failed, so the server must not commit
// them. The blocked result is small, so the server finishes it before the
// cancel can arrive: pgwarden must make the server fail the batch itself.
//
// The simple protocol is left out: a multi-statement Query commits on the
// server without waiting for anything more from the client, so when the
// cancel comes too late pgwarden cannot undo it (see docs/protocol.md, known limits).
func TestBlockSkipsLaterStatementsInBatch(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(blockLimit))
	c := pgtest.Shared(t)
	ctx := proxytest.Ctx(t, 0)
	table := proxytest.UniqueName(t)
	admin := proxytest.Connect(t, ctx, c.DSN(pgtest.TrustUser))
	proxytest.MustExec(t, ctx, admin, "CREATE TABLE "+table+" (x int)")
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP TABLE "+table) })

	for _, mode := range []string{"cache_statement", "cache_describe", "describe_exec", "exec"} {
		conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "default_query_exec_mode="+mode))
		out := batchOutcome(ctx, conn, []string{
			fmt.Sprintf("SELECT generate_series(1, %d)", blockLimit+1),
			"INSERT INTO " + table + " VALUES (1)",
		})
		if !strings.Contains(out[0], "42501") {
			t.Errorf("%s: first statement not blocked: %q", mode, out)
		}
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s: the INSERT after the blocked statement in the same batch was committed (%d rows), though the client got %q", mode, n, out)
			proxytest.MustExec(t, ctx, admin, "TRUNCATE "+table)
		}
	}
}

// TestBlockInPipeline blocks a statement in the middle sync batch of a pgconn
// pipeline whose later batch is already sent: the batches before and after
// it run, its own batch is skipped, and the upstream query is cancelled
// rather than streamed to its end.
func TestBlockInPipeline(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(blockLimit))
	c := pgtest.Shared(t)
	ctx := proxytest.Ctx(t, 0)
	super := proxytest.SuperConn(t, ctx)
	marker := proxytest.UniqueName(t)
	q := func(sql string) pipelineStep { return pipelineStep{sql: sql} }
	sync := pipelineStep{sync: true}
	steps := func(middle string) []pipelineStep {
		return []pipelineStep{q("SELECT 1"), sync, q("SELECT 2"), q(middle), q("SELECT 3"), sync, q("SELECT 4"), sync}
	}
	direct := proxytest.ConnectPg(t, ctx, c.DSN(pgtest.TrustUser))
	proxied := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))
	want := pipelineOutcome(ctx, direct, steps(failingAfter(blockLimit)))

	// Without a cancel the proxy would drain 100M rows: give it 8 seconds.
	pctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	start := time.Now()
	// Three seconds in, is the blocked query still running upstream?
	probe := make(chan int, 1)
	finished := make(chan struct{})
	go func() {
		select {
		case <-time.After(3 * time.Second):
			n, _ := proxytest.ActiveQueries(ctx, super, marker)
			probe <- n
		case <-finished:
			probe <- 0
		}
	}()
	got := pipelineOutcome(pctx, proxied, steps(bigQuery(marker)))
	close(finished)
	running := <-probe
	t.Logf("direct:  %q", want)
	t.Logf("proxied: %q", got)
	if pctx.Err() != nil {
		t.Fatalf("the pipeline did not finish within %v; 3s in, %d backends still ran the blocked query: it was not cancelled upstream", time.Since(start).Round(time.Second), running)
	}
	blocked := false
	for _, s := range got {
		blocked = blocked || strings.Contains(s, "42501 pgwarden:")
	}
	if !blocked {
		t.Error("no 42501 from pgwarden in the pipeline results")
	}
	proxytest.WantEqual(t, "pipeline outcome", shape(want), shape(got))
	if _, err := proxied.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatalf("session not usable: %v", err)
	}
	wantCancelled(t, ctx, super, marker)
}

// TestBlockInPipelineLastBatch is TestBlockInPipeline with the blocked
// statement in the last sync batch, where the proxy can cancel safely.
func TestBlockInPipelineLastBatch(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(blockLimit))
	ctx := proxytest.Ctx(t, 0)
	super := proxytest.SuperConn(t, ctx)
	marker := proxytest.UniqueName(t)
	q := func(sql string) pipelineStep { return pipelineStep{sql: sql} }
	sync := pipelineStep{sync: true}
	proxied := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))
	got := pipelineOutcome(ctx, proxied, []pipelineStep{q("SELECT 1"), sync, q("SELECT 2"), q(bigQuery(marker)), q("SELECT 3"), sync})
	t.Logf("proxied: %q", got)
	proxytest.WantEqual(t, "pipeline outcome", []string{"rows [[\"1\"]] tag SELECT 1 err nil", "sync", "rows [[\"2\"]] tag SELECT 1 err nil", "error", "sync"}, shape(got))
	if _, err := proxied.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatalf("session not usable: %v", err)
	}
	wantCancelled(t, ctx, super, marker)
}

// shape reduces pipeline outcome lines to their kind.
func shape(out []string) []string {
	res := make([]string, len(out))
	for i, s := range out {
		switch {
		case strings.HasPrefix(s, "error:"), strings.Contains(s, "err ") && !strings.HasSuffix(s, "err nil"):
			res[i] = "error"
		case strings.HasPrefix(s, "rows"):
			res[i] = s
		default:
			res[i] = s
		}
	}
	return res
}

// TestBlockInTransaction blocks a statement inside an explicit transaction:
// afterwards the transaction is aborted or not exactly as the ReadyForQuery
// status says, and ROLLBACK works.
func TestBlockInTransaction(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(blockLimit))
	for _, mode := range []string{"simple_protocol", "cache_statement", "exec"} {
		for _, big := range []bool{true, false} {
			name := fmt.Sprintf("%s/big=%v", mode, big)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ctx := proxytest.Ctx(t, 0)
				conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "default_query_exec_mode="+mode))
				proxytest.MustExec(t, ctx, conn, "BEGIN")
				proxytest.MustExec(t, ctx, conn, "CREATE TEMP TABLE tb (x int)")
				proxytest.MustExec(t, ctx, conn, "INSERT INTO tb VALUES (1)")
				sql := fmt.Sprintf("SELECT generate_series(1, %d)", blockLimit+1)
				if big {
					sql = bigQuery(proxytest.UniqueName(t))
				}
				_, err := queryCount(ctx, conn, sql)
				wantBlocked(t, err)
				status := conn.PgConn().TxStatus()
				var n int
				err = conn.QueryRow(ctx, "SELECT count(*) FROM tb").Scan(&n)
				switch status {
				case 'E':
					proxytest.WantCode(t, err, "25P02")
				case 'T':
					if err != nil || n != 1 {
						t.Errorf("status 'T' after the block, but the transaction is not usable: %d, %v", n, err)
					}
				default:
					t.Errorf("transaction status %q after a block inside a transaction", status)
				}
				t.Logf("transaction status after the block: %q", status)
				proxytest.MustExec(t, ctx, conn, "ROLLBACK")
				if s := conn.PgConn().TxStatus(); s != 'I' {
					t.Errorf("status %q after ROLLBACK", s)
				}
				proxytest.CheckUsable(t, ctx, conn)
			})
		}
	}
}

// lineCounter counts the lines written to it.
type lineCounter struct{ n int }

func (w *lineCounter) Write(p []byte) (int, error) {
	w.n += bytes.Count(p, []byte("\n"))
	return len(p), nil
}

// TestBlockCopyTo blocks COPY TO STDOUT mid-stream.
func TestBlockCopyTo(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(blockLimit))
	ctx := proxytest.Ctx(t, 0)
	super := proxytest.SuperConn(t, ctx)
	conn := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.ScramUser))
	for _, format := range []string{"text", "csv"} {
		marker := proxytest.UniqueName(t)
		var w lineCounter
		start := time.Now()
		_, err := conn.CopyTo(ctx, &w, fmt.Sprintf("COPY (SELECT generate_series(1, 100000000) /* %s */) TO STDOUT WITH (FORMAT %s)", marker, format))
		wantBlocked(t, err)
		if w.n > blockLimit {
			t.Errorf("%s: %d rows reached the writer, limit %d", format, w.n, blockLimit)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: block took %v", format, d)
		}
		wantCancelled(t, ctx, super, marker)
		if _, err := conn.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Fatalf("%s: session not usable: %v", format, err)
		}
	}
}

// TestBlockKill ends the session with FATAL 42501 when the limit says kill.
func TestBlockKill(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithInspector(&proxytest.RowLimit{Max: blockLimit, Kill: true}))
	for _, mode := range []string{"simple_protocol", "cache_statement"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			super := proxytest.SuperConn(t, ctx)
			marker := proxytest.UniqueName(t)
			conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "default_query_exec_mode="+mode))
			proxytest.CheckUsable(t, ctx, conn)
			_, err := queryCount(ctx, conn, bigQuery(marker))
			pgErr := proxytest.WantCode(t, err, "42501")
			if pgErr.Severity != "FATAL" || !strings.HasPrefix(pgErr.Message, "pgwarden:") {
				t.Errorf("kill error %s %q, want FATAL from pgwarden", pgErr.Severity, pgErr.Message)
			}
			if !conn.IsClosed() {
				if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
					t.Error("session still works after a kill")
				}
			}
			wantCancelled(t, ctx, super, marker)
			proxytest.CheckUsable(t, ctx, proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser)))
		})
	}
}

// TestBlockPortalFetchedInChunks reads one portal's result in pieces with
// Execute max_rows, as JDBC does with a fetch size: the statement's result
// passes the limit across Executes and must be blocked.
func TestBlockPortalFetchedInChunks(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(blockLimit))
	ctx := proxytest.Ctx(t, 0)
	rc := proxytest.RawStartup(t, ctx, p.Addr, nil)
	msgs := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "SELECT generate_series(1, 100)"},
		&pgproto3.Bind{},
	}
	for range 10 {
		msgs = append(msgs, &pgproto3.Execute{MaxRows: 3})
	}
	msgs = append(msgs, &pgproto3.Sync{})
	rc.Send(msgs...)
	rows := 0
	var blockErr *pgproto3.ErrorResponse
	for {
		m := rc.Receive()
		switch m := m.(type) {
		case *pgproto3.DataRow:
			rows++
		case *pgproto3.ErrorResponse:
			cp := *m
			blockErr = &cp
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if blockErr == nil || blockErr.Code != "42501" {
		t.Errorf("a portal fetched 3 rows at a time delivered %d rows with no block (limit %d rows per statement)", rows, blockLimit)
	} else if rows > blockLimit {
		t.Errorf("%d rows delivered before the block, limit %d", rows, blockLimit)
	}
}

// TestBlockOverTLS blocks with TLS on both sides: the proxy's cancel goes
// to the upstream server over TLS too.
func TestBlockOverTLS(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(blockLimit), proxytest.WithClientTLS(t), proxytest.WithUpstreamTLS(t, proxy.TLSVerifyFull, "localhost"))
	for _, mode := range []string{"simple_protocol", "cache_statement"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			super := proxytest.SuperConn(t, ctx)
			marker := proxytest.UniqueName(t)
			conn := proxytest.Connect(t, ctx, p.DSN(pgtest.ScramUser, "sslmode=verify-full", "default_query_exec_mode="+mode))
			n, err := queryCount(ctx, conn, bigQuery(marker))
			wantBlocked(t, err)
			if n > blockLimit {
				t.Errorf("%d rows reached the client", n)
			}
			wantCancelled(t, ctx, super, marker)
			proxytest.CheckUsable(t, ctx, conn)
		})
	}
}

// TestBlockFailsTransactionBlock: a block inside a transaction block fails
// the transaction even when the server finished the statement before the
// cancel landed: the client sees 'E', the server agrees, and a COMMIT rolls
// back what the transaction did.
func TestBlockFailsTransactionBlock(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(blockLimit))
	for _, mode := range execModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			super := proxytest.SuperConn(t, ctx)
			table := proxytest.UniqueName(t)
			proxytest.MustExec(t, ctx, super, "CREATE TABLE "+table+" (n int)")
			proxytest.MustExec(t, ctx, super, "GRANT INSERT, SELECT ON "+table+" TO "+pgtest.TrustUser)
			t.Cleanup(func() { super.Exec(context.Background(), "DROP TABLE "+table) })
			conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "default_query_exec_mode="+mode))
			proxytest.MustExec(t, ctx, conn, "BEGIN")
			proxytest.MustExec(t, ctx, conn, "INSERT INTO "+table+" VALUES (1)")
			// Small enough to complete on the server before any cancel.
			_, err := queryCount(ctx, conn, "SELECT generate_series(1, 20)")
			wantBlocked(t, err)
			if st := conn.PgConn().TxStatus(); st != 'E' {
				t.Errorf("transaction status after the block %q, want E", st)
			}
			_, err = conn.Exec(ctx, "SELECT 1")
			proxytest.WantCode(t, err, "25P02")
			tag, err := conn.Exec(ctx, "COMMIT")
			if err != nil || tag.String() != "ROLLBACK" {
				t.Errorf("COMMIT: %q, %v; want ROLLBACK", tag.String(), err)
			}
			var n int
			if err := super.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
				t.Errorf("%d rows committed after a blocked transaction (%v)", n, err)
			}
			proxytest.CheckUsable(t, ctx, conn)
		})
	}
}
