package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// refuser refuses statements whose text holds "refuse_me" and fast-path
// calls of btrim (OID 885), and ends sessions whose text holds "kill_me".
type refuser struct{}

func (refuser) StartSession(context.Context, *proxy.SessionInfo) (proxy.SessionInspector, error) {
	return refuserSession{}, nil
}

type refuserSession struct{ proxy.NopSessionInspector }

func (refuserSession) Statement(st *proxy.Statement) proxy.Verdict {
	switch {
	case strings.Contains(st.SQL, "kill_me"):
		return proxy.Verdict{Action: proxy.Kill, Reason: "session ended by test"}
	case strings.Contains(st.SQL, "refuse_me"), st.Kind == proxy.FunctionCall && st.FunctionOID == 885:
		return proxy.Verdict{Action: proxy.Block, Reason: "statement refused by test"}
	}
	return proxy.Verdict{}
}

func wantRefused(t testing.TB, err error) {
	t.Helper()
	pgErr := proxytest.WantCode(t, err, "42501")
	if pgErr.Message != "pgwarden: statement refused by test" {
		t.Errorf("message %q", pgErr.Message)
	}
}

// TestRefusedStatementsNeverRun: a refused statement never reaches the
// server, in every exec mode, inside and outside transactions and pipelines;
// the transaction state the client sees is the server's.
func TestRefusedStatementsNeverRun(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithInspector(refuser{}))
	for _, mode := range execModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			super := proxytest.SuperConn(t, ctx)
			table := proxytest.UniqueName(t)
			proxytest.MustExec(t, ctx, super, "CREATE TABLE "+table+" (n int)")
			proxytest.MustExec(t, ctx, super, "GRANT INSERT, SELECT ON "+table+" TO "+pgtest.TrustUser)
			t.Cleanup(func() { super.Exec(context.Background(), "DROP TABLE "+table) })
			count := func() int {
				var n int
				if err := super.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "default_query_exec_mode="+mode))

			// Alone, twice (the second time from the statement cache).
			for range 2 {
				_, err := conn.Exec(ctx, "INSERT INTO "+table+" VALUES (1) /* refuse_me */")
				wantRefused(t, err)
			}
			if n := count(); n != 0 {
				t.Fatalf("refused INSERT ran: %d rows", n)
			}
			proxytest.CheckUsable(t, ctx, conn)

			// Inside a transaction: the transaction fails, as for a server
			// error, and rolls back what came before.
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES (2)"); err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, "INSERT INTO "+table+" VALUES (3) /* refuse_me */")
			wantRefused(t, err)
			_, err = tx.Exec(ctx, "SELECT 1")
			proxytest.WantCode(t, err, "25P02") // in failed transaction
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if n := count(); n != 0 {
				t.Fatalf("rows after rollback: %d", n)
			}

			// In one pipelined batch: the batch fails at the refused
			// statement, and the statement before it rolls back.
			if mode != "simple_protocol" {
				batch := &pgx.Batch{}
				batch.Queue("INSERT INTO " + table + " VALUES (4)")
				batch.Queue("INSERT INTO " + table + " VALUES (5) /* refuse_me */")
				batch.Queue("INSERT INTO " + table + " VALUES (6)")
				err := conn.SendBatch(ctx, batch).Close()
				wantRefused(t, err)
				if n := count(); n != 0 {
					t.Fatalf("rows after a refused batch: %d", n)
				}
			}
			proxytest.CheckUsable(t, ctx, conn)
		})
	}
}

// TestRefusedPreparedPortalStaysRefused: Parse and Bind go through, the
// Execute is refused, and executing the same portal again is refused too.
func TestRefusedPreparedPortalStaysRefused(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithInspector(refuser{}))
	ctx := proxytest.Ctx(t, 0)
	pc := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))
	if _, err := pc.Prepare(ctx, "s", "SELECT 42 /* refuse_me */", nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		rr := pc.ExecPrepared(ctx, "s", nil, nil, nil).Read()
		wantRefused(t, rr.Err)
		if len(rr.Rows) != 0 {
			t.Fatalf("refused statement returned %d rows", len(rr.Rows))
		}
	}
	if err := pc.Exec(ctx, "SELECT 1").Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRefusedFastPathCall: a fast-path FunctionCall can be refused by OID.
func TestRefusedFastPathCall(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithInspector(refuser{}))
	ctx := proxytest.Ctx(t, 0)
	pc := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Conn.Close()
	// btrim(text) is OID 885.
	for _, msg := range []pgproto3.FrontendMessage{
		&pgproto3.FunctionCall{Function: 885, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("  x  ")}},
		&pgproto3.Query{String: "SELECT 'still here'"},
	} {
		hc.Frontend.Send(msg)
		if err := hc.Frontend.Flush(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			m, err := hc.Frontend.Receive()
			if err != nil {
				t.Fatal(err)
			}
			switch m := m.(type) {
			case *pgproto3.ErrorResponse:
				got = append(got, m.Code+" "+m.Message)
			case *pgproto3.FunctionCallResponse:
				got = append(got, "result "+string(m.Result))
			case *pgproto3.DataRow:
				got = append(got, "row "+string(m.Values[0]))
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		want := "42501 pgwarden: statement refused by test"
		if _, ok := msg.(*pgproto3.Query); ok {
			want = "row still here"
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// TestKillOnStatement: Kill from Statement ends the session with FATAL
// 42501 and the statement never runs.
func TestKillOnStatement(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithInspector(refuser{}))
	ctx := proxytest.Ctx(t, 0)
	conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
	_, err := conn.Exec(ctx, "SELECT 1 /* kill_me */")
	pgErr := proxytest.WantCode(t, err, "42501")
	if pgErr.Severity != "FATAL" {
		t.Errorf("severity %q, want FATAL", pgErr.Severity)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("session still usable after kill")
	}
}

// masker rewrites every value holding '@' to "redacted".
type masker struct{}

func (masker) StartSession(context.Context, *proxy.SessionInfo) (proxy.SessionInspector, error) {
	return maskerSession{}, nil
}

type maskerSession struct{ proxy.NopSessionInspector }

func (maskerSession) DataRow(_ *proxy.Statement, values [][]byte) proxy.Verdict {
	out := make([][]byte, len(values))
	changed := false
	for i, v := range values {
		out[i] = v
		if strings.Contains(string(v), "@") {
			out[i], changed = []byte("redacted"), true
		}
	}
	if !changed {
		return proxy.Verdict{}
	}
	return proxy.Verdict{Action: proxy.Rewrite, Values: out}
}

// TestRewrittenRows: rows rewritten by the inspector are re-framed so that
// every client decodes them, in text and binary formats, NULLs and empty
// strings kept apart.
func TestRewrittenRows(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithInspector(masker{}))
	for _, mode := range execModes {
		t.Run(mode, func(t *testing.T) {
			ctx := proxytest.Ctx(t, 0)
			conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "default_query_exec_mode="+mode))
			rows, err := conn.Query(ctx, "SELECT i, 'user' || i || '@example.com' AS e, NULL::text AS z, '' AS empty FROM generate_series(1, 3) i")
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for rows.Next() {
				var (
					i        int32
					e, empty string
					z        *string
				)
				if err := rows.Scan(&i, &e, &z, &empty); err != nil {
					t.Fatal(err)
				}
				n++
				if i != int32(n) || e != "redacted" || z != nil || empty != "" {
					t.Errorf("row %d: %d %q %v %q", n, i, e, z, empty)
				}
			}
			if err := rows.Err(); err != nil || n != 3 {
				t.Fatalf("%d rows, %v", n, err)
			}
			proxytest.CheckUsable(t, ctx, conn)
		})
	}
}
