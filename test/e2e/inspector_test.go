package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// recorder is an Inspector that writes down what each session shows it, to
// check what the proxy reports against what the client received.
type recorder struct {
	mu       sync.Mutex
	sessions []*recordedSession
}

func (r *recorder) StartSession(_ context.Context, info *proxy.SessionInfo) (proxy.SessionInspector, error) {
	s := &recordedSession{info: *info}
	r.mu.Lock()
	r.sessions = append(r.sessions, s)
	r.mu.Unlock()
	return s, nil
}

// session returns the recording of the session whose application_name is app.
func (r *recorder) session(t *testing.T, app string) *recordedSession {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sessions {
		if s.info.ApplicationName == app {
			return s
		}
	}
	t.Fatalf("no session with application_name %q", app)
	return nil
}

type recordedSession struct {
	info   proxy.SessionInfo
	mu     sync.Mutex
	events []string
}

func (s *recordedSession) add(format string, args ...any) {
	s.mu.Lock()
	s.events = append(s.events, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// take returns the events so far and forgets them.
func (s *recordedSession) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := s.events
	s.events = nil
	return ev
}

func stmtName(st *proxy.Statement) string {
	if st == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s#%d", st.Kind, st.Seq)
}

func (s *recordedSession) Statement(st *proxy.Statement) proxy.Verdict {
	s.add("statement %s %q max_rows=%d", stmtName(st), st.SQL, st.MaxRows)
	return proxy.Verdict{}
}

func (s *recordedSession) RowDescription(st *proxy.Statement, fields []pgproto3.FieldDescription) {
	var names []string
	for _, f := range fields {
		names = append(names, fmt.Sprintf("%s/%d/%d", f.Name, f.DataTypeOID, f.Format))
	}
	s.add("describe %s %s", stmtName(st), strings.Join(names, ","))
}

func (s *recordedSession) DataRow(st *proxy.Statement, values [][]byte) proxy.Verdict {
	var b bytes.Buffer
	for i, v := range values {
		if i > 0 {
			b.WriteByte('|')
		}
		if v == nil {
			b.WriteString("NULL")
		} else {
			fmt.Fprintf(&b, "%x", v)
		}
	}
	s.add("row %s %s", stmtName(st), b.String())
	return proxy.Verdict{}
}

func (s *recordedSession) CopyOut(st *proxy.Statement, resp *pgproto3.CopyOutResponse) {
	s.add("copy_out %s format=%d", stmtName(st), resp.OverallFormat)
}

func (s *recordedSession) CopyData(st *proxy.Statement, data []byte) proxy.Verdict {
	s.add("copy_data %s %q", stmtName(st), data)
	return proxy.Verdict{}
}

func (s *recordedSession) CommandComplete(st *proxy.Statement, tag []byte) {
	s.add("complete %s %s", stmtName(st), tag)
}

func (s *recordedSession) Error(st *proxy.Statement, err *pgproto3.ErrorResponse) proxy.Verdict {
	s.add("error %s %s", stmtName(st), err.Code)
	return proxy.Verdict{}
}

func (s *recordedSession) ReadyForQuery(status byte) proxy.Verdict {
	s.add("ready %c", status)
	return proxy.Verdict{}
}

func (s *recordedSession) Blocked(st *proxy.Statement, v proxy.Verdict) {
	s.add("blocked %s", stmtName(st))
}

func (s *recordedSession) Notice(st *proxy.Statement, n *pgproto3.NoticeResponse) proxy.Verdict {
	s.add("notice %s %s", stmtName(st), n.Message)
	return proxy.Verdict{}
}

func (s *recordedSession) Notification(_ *proxy.Statement, n *pgproto3.NotificationResponse) proxy.Verdict {
	s.add("notification %s %s", n.Channel, n.Payload)
	return proxy.Verdict{}
}

func (s *recordedSession) FunctionResult(st *proxy.Statement, result []byte) proxy.Verdict {
	s.add("function_result %s %q", stmtName(st), result)
	return proxy.Verdict{}
}

func (s *recordedSession) EndSession(error) {}

// only keeps the events whose kind is one of kinds.
func only(events []string, kinds ...string) []string {
	var out []string
	for _, e := range events {
		for _, k := range kinds {
			if strings.HasPrefix(e, k+" ") {
				out = append(out, e)
			}
		}
	}
	return out
}

// TestInspectorEvents runs queries through a recording inspector in every
// exec mode and checks that what it was shown matches what the client got:
// each statement with its SQL, a description of the rows in the format they
// were sent in, every row, the command tags, errors and ReadyForQuery.
func TestInspectorEvents(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	p := proxytest.Start(t, proxytest.WithInspector(rec))
	const sql = "SELECT i, md5(i::text) AS h, i % 2 = 0 AS even FROM generate_series(1, 3) i"
	for _, mode := range execModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			app := proxytest.UniqueName(t)
			conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "default_query_exec_mode="+mode, "application_name="+app))
			sess := rec.session(t, app)
			sess.take()

			for round := range 2 {
				rows, err := conn.Query(ctx, sql)
				if err != nil {
					t.Fatal(err)
				}
				var raw []string
				for rows.Next() {
					var b bytes.Buffer
					for i, v := range rows.RawValues() {
						if i > 0 {
							b.WriteByte('|')
						}
						fmt.Fprintf(&b, "%x", v)
					}
					raw = append(raw, b.String())
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				var fields []string
				for _, f := range rows.FieldDescriptions() {
					fields = append(fields, fmt.Sprintf("%s/%d/%d", f.Name, f.DataTypeOID, f.Format))
				}
				events := only(sess.take(), "statement", "describe", "row", "complete", "ready", "error")
				t.Logf("round %d: %q", round, events)

				var st string
				for _, e := range events {
					if strings.HasPrefix(e, "statement ") && strings.Contains(e, "generate_series") {
						st = strings.Fields(e)[1]
					}
				}
				if st == "" {
					t.Fatalf("round %d: no statement event with the query's SQL: %q", round, events)
				}
				want := []string{"describe " + st + " " + strings.Join(fields, ",")}
				for _, r := range raw {
					want = append(want, "row "+st+" "+r)
				}
				want = append(want, "complete "+st+" SELECT 3")
				var got []string
				for _, e := range events {
					if f := strings.Fields(e); len(f) > 1 && f[1] == st && f[0] != "statement" {
						got = append(got, e)
					}
				}
				proxytest.WantEqual(t, fmt.Sprintf("round %d events of %s", round, st), want, got)
				if last := events[len(events)-1]; last != "ready I" {
					t.Errorf("round %d: last event %q, want ready I", round, last)
				}
			}

			// An error is reported for its statement.
			if _, err := conn.Exec(ctx, "SELECT 1/0"); err == nil {
				t.Fatal("no error")
			}
			events := only(sess.take(), "error")
			if len(events) != 1 || !strings.HasSuffix(events[0], " 22012") {
				t.Errorf("error events %q", events)
			}
		})
	}
}

// TestInspectorCopyOut checks the events of COPY TO STDOUT.
func TestInspectorCopyOut(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	p := proxytest.Start(t, proxytest.WithInspector(rec))
	ctx := proxytest.Ctx(t, 0)
	app := proxytest.UniqueName(t)
	conn := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser, "application_name="+app))
	sess := rec.session(t, app)
	sess.take()
	var buf bytes.Buffer
	if _, err := conn.CopyTo(ctx, &buf, "COPY (SELECT generate_series(1, 3)) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	events := only(sess.take(), "statement", "copy_out", "copy_data", "complete", "ready")
	want := []string{
		`statement query#2 "COPY (SELECT generate_series(1, 3)) TO STDOUT" max_rows=0`,
		"copy_out query#2 format=0",
		`copy_data query#2 "1\n"`,
		`copy_data query#2 "2\n"`,
		`copy_data query#2 "3\n"`,
		"complete query#2 COPY 3",
		"ready I",
	}
	// Statement numbers depend on what pgx ran at connect; renumber.
	if len(events) > 0 {
		f := strings.Fields(events[0])
		if len(f) > 1 {
			for i := range want {
				want[i] = strings.ReplaceAll(want[i], "query#2", f[1])
			}
		}
	}
	proxytest.WantEqual(t, "events", want, events)
}

// TestInspectedRelay runs the comparison suites through a proxy whose
// inspector decodes everything (a recorder), so that the inspected code
// path keeps the protocol as sound as the plain relay.
func TestInspectedRelay(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	p := proxytest.Start(t, proxytest.WithInspector(rec))
	c := pgtest.Shared(t)
	for _, mode := range execModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			direct, proxied := endpoints(t, ctx, p, pgtest.ScramUser, mode)
			for _, q := range typeQueries {
				want := runQuery(ctx, direct, q.sql, q.args...)
				got := runQuery(ctx, proxied, q.sql, q.args...)
				proxytest.WantEqual(t, q.name, want, got)
			}
			for _, sql := range []string{"SELECT 1/0", "SELECT nosuch", "BEGIN", "SELECT 1", "SELECT 1/0", "SELECT 2", "ROLLBACK"} {
				proxytest.WantEqual(t, sql, runQuery(ctx, direct, sql), runQuery(ctx, proxied, sql))
			}
			batch := []string{"SELECT 1", "SELECT generate_series(1, 5)", "SELECT 1/0", "SELECT 4"}
			proxytest.WantEqual(t, "batch", batchOutcome(ctx, direct, batch), batchOutcome(ctx, proxied, batch))
			proxytest.CheckUsable(t, ctx, proxied)
		})
	}
	t.Run("pipeline", func(t *testing.T) {
		t.Parallel()
		ctx := proxytest.Ctx(t, 0)
		q := func(sql string) pipelineStep { return pipelineStep{sql: sql} }
		sync := pipelineStep{sync: true}
		steps := []pipelineStep{q("SELECT 1"), sync, q("SELECT 2"), q("SELECT 1/0"), q("SELECT 3"), sync, q("SELECT generate_series(1, 4)"), sync}
		direct := proxytest.ConnectPg(t, ctx, c.DSN(pgtest.TrustUser))
		proxied := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))
		proxytest.WantEqual(t, "pipeline", pipelineOutcome(ctx, direct, steps), pipelineOutcome(ctx, proxied, steps))
	})
	t.Run("portals", func(t *testing.T) {
		t.Parallel()
		ctx := proxytest.Ctx(t, 0)
		direct := proxytest.RawStartup(t, ctx, c.Addr(), nil)
		proxied := proxytest.RawStartup(t, ctx, p.Addr, nil)
		msgs := []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "s", Query: "SELECT generate_series(1, 5)"},
			&pgproto3.Describe{ObjectType: 'S', Name: "s"},
			&pgproto3.Bind{PreparedStatement: "s", ResultFormatCodes: []int16{1}},
			&pgproto3.Execute{MaxRows: 2},
			&pgproto3.Execute{},
			&pgproto3.Close{ObjectType: 'S', Name: "s"},
			&pgproto3.Sync{},
		}
		proxytest.WantEqual(t, "portal transcript", direct.Transcript(msgs...), proxied.Transcript(msgs...))
	})
	t.Run("copy", func(t *testing.T) {
		t.Parallel()
		ctx := proxytest.Ctx(t, 0)
		direct := proxytest.ConnectPg(t, ctx, c.DSN(pgtest.TrustUser))
		proxied := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))
		var dumps [2]string
		for i, conn := range []*pgconn.PgConn{direct, proxied} {
			if _, err := conn.Exec(ctx, "CREATE TEMP TABLE ic (x int, y text)").ReadAll(); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.CopyFrom(ctx, strings.NewReader(strings.Repeat("1\tone\n2\ttwo\n", 5000)), "COPY ic FROM STDIN"); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := conn.CopyTo(ctx, &buf, "COPY (SELECT x, y, count(*) FROM ic GROUP BY 1, 2 ORDER BY 1) TO STDOUT"); err != nil {
				t.Fatal(err)
			}
			dumps[i] = buf.String()
		}
		proxytest.WantEqual(t, "copy", dumps[0], dumps[1])
	})
}

func (s *recordedSession) ParameterStatus(st *proxy.Statement, p *pgproto3.ParameterStatus) proxy.Verdict {
	s.add("parameter_status %s %s", p.Name, p.Value)
	return proxy.Verdict{}
}
