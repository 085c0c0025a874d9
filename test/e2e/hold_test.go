package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// wireSummary sends msgs in one write on a fresh session and summarises
// what comes back until ready ReadyForQuery messages have arrived, or the
// peer is silent for quiet: one line per message, with the SQLSTATE of
// errors and the tag of CommandComplete (the texts of errors differ between
// PostgreSQL and pgwarden only where pgwarden speaks for itself).
func wireSummary(t *testing.T, ctx context.Context, addr, app string, ready int, quiet time.Duration, msgs ...pgproto3.FrontendMessage) []string {
	t.Helper()
	rc := proxytest.RawStartup(t, ctx, addr, map[string]string{"application_name": app})
	defer rc.Close()
	var buf []byte
	for _, m := range msgs {
		var err error
		if buf, err = m.Encode(buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rc.Write(buf); err != nil {
		t.Fatal(err)
	}
	var out []string
	rows := 0
	flushRows := func() {
		if rows > 0 {
			out = append(out, fmt.Sprintf("DataRow x%d", rows))
			rows = 0
		}
	}
	defer func() { flushRows() }()
	for ready > 0 {
		rc.SetReadDeadline(time.Now().Add(quiet))
		m, err := rc.FE.Receive()
		if err != nil {
			var ne net.Error
			flushRows()
			if errors.As(err, &ne) && ne.Timeout() {
				return append(out, "(silence)")
			}
			return append(out, "(closed)")
		}
		if _, ok := m.(*pgproto3.DataRow); ok {
			rows++
			continue
		}
		flushRows()
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			out = append(out, "ErrorResponse "+m.Code)
		case *pgproto3.CommandComplete:
			out = append(out, "CommandComplete "+string(m.CommandTag))
		case *pgproto3.ReadyForQuery:
			out = append(out, fmt.Sprintf("ReadyForQuery %c", m.TxStatus))
			ready--
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			out = append(out, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
		}
	}
	return out
}

// scratchTable creates a table of one int column that the trust user may
// read and write, and returns its name (also the application_name the
// test's sessions use) and a superuser connection.
func scratchTable(t *testing.T, ctx context.Context) (string, *pgx.Conn) {
	t.Helper()
	table := proxytest.UniqueName(t)
	super := proxytest.SuperConn(t, ctx)
	proxytest.MustExec(t, ctx, super, "CREATE TABLE "+table+" (n int)")
	proxytest.MustExec(t, ctx, super, "GRANT ALL ON "+table+" TO "+pgtest.TrustUser)
	return table, super
}

// TestHostileOrdersAnsweredAsPostgreSQL: message orders that the server
// answers in its own way (skipping to a Sync, ending a COPY with an
// error, a Query inside an extended-protocol batch) get the same answer
// through an inspecting pgwarden as from PostgreSQL, and never leave the
// session waiting.
func TestHostileOrdersAnsweredAsPostgreSQL(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(1_000_000))
	ctx := proxytest.Ctx(t, 60*time.Second)
	c := pgtest.Shared(t)
	table, super := scratchTable(t, ctx)

	cases := []struct {
		name  string
		ready int
		msgs  []pgproto3.FrontendMessage
	}{
		{"a Query while the server skips to the Sync", 2, []pgproto3.FrontendMessage{
			&pgproto3.Execute{Portal: "nosuch"},
			&pgproto3.Query{String: "select 2"},
			&pgproto3.Parse{Query: "select 3"},
			&pgproto3.Bind{},
			&pgproto3.Sync{},
			&pgproto3.Query{String: "select 'after'"},
		}},
		{"a Query during COPY FROM STDIN", 2, []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "copy " + table + " from stdin"},
			&pgproto3.CopyData{Data: []byte("1\n")},
			&pgproto3.Query{String: "select 2"},
			&pgproto3.CopyDone{},
			&pgproto3.Query{String: "select 'after'"},
		}},
		{"a Query inside an extended batch", 3, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "select 1"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Query{String: "select 2"},
			&pgproto3.Sync{},
			&pgproto3.Query{String: "select 'after'"},
		}},
		{"a Sync and a Flush during COPY FROM STDIN", 2, []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "copy " + table + " from stdin"},
			&pgproto3.CopyData{Data: []byte("1\n")},
			&pgproto3.Sync{},
			&pgproto3.Flush{},
			&pgproto3.CopyDone{},
			&pgproto3.Query{String: "select 'after'"},
		}},
		{"an extended-protocol COPY FROM STDIN with its Sync sent ahead", 2, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "copy " + table + " from stdin"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
			&pgproto3.CopyData{Data: []byte("1\n")},
			&pgproto3.CopyDone{},
			&pgproto3.Sync{},
			&pgproto3.Query{String: "select 'after'"},
		}},
		{"a Parse during an extended-protocol COPY FROM STDIN", 2, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "copy " + table + " from stdin"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.CopyData{Data: []byte("1\n")},
			&pgproto3.Parse{Query: "select 1"},
			&pgproto3.CopyDone{},
			&pgproto3.Sync{},
			&pgproto3.Query{String: "select 'after'"},
		}},
		{"a Sync after bad COPY data, then a batch", 2, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "copy " + table + " from stdin"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.CopyData{Data: []byte("bad\n")},
			&pgproto3.Sync{},
			&pgproto3.Parse{Query: "select 1"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		}},
		{"a Sync after bad COPY data, then a Query", 3, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "copy " + table + " from stdin"},
			&pgproto3.Bind{},
			&pgproto3.Execute{MaxRows: 2},
			&pgproto3.CopyData{Data: []byte("bad\n")},
			&pgproto3.Sync{},
			&pgproto3.Query{String: "select g from generate_series(1, 3000) g"},
			&pgproto3.Sync{},
		}},
		{"Syncs between good and bad COPY data", 3, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "copy " + table + " from stdin"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.CopyData{Data: []byte("1\n")},
			&pgproto3.CopyData{Data: []byte("bad\n")},
			&pgproto3.CopyData{Data: []byte("2\n")},
			&pgproto3.Sync{},
			&pgproto3.CopyDone{},
			&pgproto3.Sync{},
			&pgproto3.Bind{DestinationPortal: "p9", PreparedStatement: "s9"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Query{String: "copy " + table + " from stdin"},
			&pgproto3.CopyFail{Message: "end"},
			&pgproto3.Sync{},
		}},
		{"a Sync after bad data in a simple COPY, answered without more input", 2, []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "copy " + table + " from stdin"},
			&pgproto3.CopyData{Data: []byte("bad\n")},
			&pgproto3.Sync{},
		}},
		{"a Sync between halves of a line that fails at CopyDone", 2, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "copy " + table + " from stdin"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.CopyData{Data: []byte("3\t")},
			&pgproto3.CopyData{Data: []byte("3\t")},
			&pgproto3.Sync{},
			&pgproto3.CopyDone{},
			&pgproto3.Sync{},
			&pgproto3.Query{String: "select 1"},
		}},
		{"a Sync after a whole line, before a last line that fails at CopyDone", 2, []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "copy " + table + " from stdin"},
			&pgproto3.CopyData{Data: []byte("1\n")},
			&pgproto3.CopyData{Data: []byte("3\t")},
			&pgproto3.CopyData{Data: []byte("3\t")},
			&pgproto3.Sync{},
			&pgproto3.CopyDone{},
			&pgproto3.Query{String: "select 'after'"},
		}},
		{"a Sync inside a line after a failing line", 2, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "copy " + table + " from stdin"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.CopyData{Data: []byte("3\t")},
			&pgproto3.CopyData{Data: []byte("2\tx\n")},
			&pgproto3.CopyData{Data: []byte("3\t")},
			&pgproto3.Sync{},
			&pgproto3.Query{String: "select 1"},
		}},
		{"a Sync and a Parse during COPY FROM STDIN", 1, []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "copy " + table + " from stdin"},
			&pgproto3.Sync{},
			&pgproto3.Parse{Query: "select 1"},
		}},
		{"a Sync after an incomplete line, then a CopyFail", 2, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "copy " + table + " from stdin"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.CopyData{Data: []byte("3\t")},
			&pgproto3.Sync{},
			&pgproto3.CopyFail{Message: "no"},
			&pgproto3.Sync{},
			&pgproto3.Query{String: "select 1"},
		}},
		{"a Sync before the CopyFail of a simple COPY", 3, []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "copy " + table + " from stdin"},
			&pgproto3.Sync{},
			&pgproto3.CopyFail{Message: "no"},
			&pgproto3.Sync{},
			&pgproto3.Query{String: "select 1"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			direct := wireSummary(t, ctx, c.Addr(), table, tc.ready, 3*time.Second, tc.msgs...)
			directTook := time.Since(start)
			start = time.Now()
			proxied := wireSummary(t, ctx, p.Addr, table, tc.ready, 3*time.Second, tc.msgs...)
			if took := time.Since(start); took > directTook+time.Second {
				t.Errorf("answered in %v through pgwarden, %v direct", took, directTook)
			}
			if strings.Join(direct, "\n") != strings.Join(proxied, "\n") {
				t.Errorf("through pgwarden:\n  %s\nPostgreSQL:\n  %s", strings.Join(proxied, "\n  "), strings.Join(direct, "\n  "))
			}
			// The client has gone: so have its session and its backend.
			proxytest.Eventually(t, 5*time.Second, "the session and its backend end", func() (bool, string) {
				n, err := proxytest.BackendsOf(ctx, super, table)
				return err == nil && n == 0 && p.Server.Sessions() == 0, fmt.Sprintf("%d backends, %d sessions", n, p.Server.Sessions())
			})
		})
	}
}

// TestBlockedExecuteSkipsTheQueryAfterIt: a Query pipelined after a blocked
// Execute with no Sync between is skipped to the Sync, as PostgreSQL skips
// it after an Execute that fails, whether or not the cancel reached the
// server before it ran the Query.
func TestBlockedExecuteSkipsTheQueryAfterIt(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(1000))
	ctx := proxytest.Ctx(t, 60*time.Second)
	table, super := scratchTable(t, ctx)
	for i := range 5 {
		got := wireSummary(t, ctx, p.Addr, table, 1, 5*time.Second,
			&pgproto3.Parse{Query: "select g from generate_series(1, 3000) g"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Query{String: fmt.Sprintf("insert into %s values (%d)", table, i)},
			&pgproto3.Sync{},
		)
		want := []string{"ParseComplete", "BindComplete", "DataRow x1000", "ErrorResponse 42501", "ReadyForQuery I"}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("run %d:\n  %s\nwant:\n  %s", i, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
	var n int
	if err := super.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d of the Queries after the blocked Execute ran, want none", n)
	}
}

// TestBlockedQueryEndsItsCopyIn: a Query blocked on its first statement
// whose server had moved on to a COPY FROM STDIN in it before the cancel
// landed ends with its ReadyForQuery: pgwarden fails that COPY, as the
// client, told of the block, sends it no data.
func TestBlockedQueryEndsItsCopyIn(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(1000))
	ctx := proxytest.Ctx(t, 60*time.Second)
	table, super := scratchTable(t, ctx)
	proxytest.MustExec(t, ctx, super, "INSERT INTO "+table+" SELECT generate_series(1, 3000)")
	for i := range 5 {
		got := wireSummary(t, ctx, p.Addr, table, 2, 5*time.Second,
			&pgproto3.Query{String: "copy " + table + " to stdout; copy " + table + " from stdin"},
			&pgproto3.Query{String: "select 1"},
		)
		got = slices.DeleteFunc(got, func(l string) bool { return l == "CopyData" })
		want := []string{"CopyOutResponse", "ErrorResponse 42501", "ReadyForQuery I",
			"RowDescription", "DataRow x1", "CommandComplete SELECT 1", "ReadyForQuery I"}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("run %d:\n  %s\nwant:\n  %s", i, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
}

// TestBlockInOneBatchSparesTheNext: the block of an Execute in one batch
// does not fail the next batch, whose Query after an Execute settles it.
func TestBlockInOneBatchSparesTheNext(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithRowLimit(1000))
	ctx := proxytest.Ctx(t, 60*time.Second)
	table, _ := scratchTable(t, ctx)
	got := wireSummary(t, ctx, p.Addr, table, 2, 5*time.Second,
		&pgproto3.Parse{Name: "s2", Query: "copy (select g from generate_series(1, 2000) g) to stdout"},
		&pgproto3.Bind{DestinationPortal: "p2", PreparedStatement: "s2"},
		&pgproto3.Execute{Portal: "p2", MaxRows: 1},
		&pgproto3.Sync{},
		&pgproto3.Parse{Query: "begin"},
		&pgproto3.Bind{DestinationPortal: "p2"},
		&pgproto3.Execute{Portal: "p2"},
		&pgproto3.Query{String: "copy " + table + " from stdin"},
		&pgproto3.CopyDone{},
	)
	got = slices.DeleteFunc(got, func(l string) bool { return l == "CopyData" })
	want := []string{"ParseComplete", "BindComplete", "CopyOutResponse", "ErrorResponse 42501", "ReadyForQuery I",
		"ParseComplete", "BindComplete", "CommandComplete BEGIN", "CopyInResponse", "CommandComplete COPY 0", "ReadyForQuery T"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
