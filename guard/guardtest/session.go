package guardtest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/proxy"
)

var sessionIDs atomic.Uint64

// Session drives one session of an inspector the way the proxy's relay
// does, message by message, with no network and no PostgreSQL: the test
// plays the server's part by giving each statement's rows.
type Session struct {
	t     testing.TB
	si    proxy.SessionInspector
	seq   uint64
	done  chan struct{}
	ended bool
}

// Start starts a session of insp (a *guard.Guard) for info, filling in an
// id, the database "app", the start time and the Done channel when info
// leaves them empty; it fails the test if the session is refused. The
// session ends when the test does, unless it ended before.
func Start(t testing.TB, insp proxy.Inspector, info proxy.SessionInfo) *Session {
	t.Helper()
	s, err := TryStart(t, insp, info)
	if err != nil {
		t.Fatalf("session of %s refused: %v", info.User, err)
	}
	return s
}

// TryStart is Start returning the refusal instead of failing the test.
func TryStart(t testing.TB, insp proxy.Inspector, info proxy.SessionInfo) (*Session, error) {
	t.Helper()
	s := &Session{t: t, done: make(chan struct{})}
	if info.ID == "" {
		info.ID = fmt.Sprintf("test-%d", sessionIDs.Add(1))
	}
	if info.Database == "" {
		info.Database = "app"
	}
	if info.StartedAt.IsZero() {
		info.StartedAt = time.Now()
	}
	info.Done = s.done
	si, err := insp.StartSession(context.Background(), &info)
	if err != nil {
		return nil, err
	}
	s.si = si
	t.Cleanup(func() { s.End(nil) })
	return s, nil
}

// End ends the session (EndSession), once.
func (s *Session) End(err error) {
	if s.ended {
		return
	}
	s.ended = true
	close(s.done)
	s.si.EndSession(err)
}

// Result is what the client of a statement received.
type Result struct {
	// Verdict is the verdict the proxy acted on: the zero Verdict when the
	// whole result was forwarded, else a Block or Kill (from Statement, a
	// row, or ReadyForQuery).
	Verdict proxy.Verdict
	// At says where Verdict came from: "statement", "row N" (from 1),
	// "ready", or "" when the statement ran to its end.
	At string
	// Rows are the rows the client received, as rewritten (redaction).
	Rows [][]string
	// Rewritten counts the rows the inspector rewrote.
	Rewritten int
}

// Blocked reports whether the statement was refused or stopped.
func (r Result) Blocked() bool {
	return r.Verdict.Action == proxy.Block || r.Verdict.Action == proxy.Kill
}

// Query runs sql as a simple query whose server answers with fields and
// rows (nil fields: a statement returning no rows), as the relay would:
// Statement, then RowDescription, a DataRow per row until a verdict stops
// the result, CommandComplete and ReadyForQuery ('I'). A blocked result
// is reported to Blocked and the rest dropped; a kill ends the session.
func (s *Session) Query(sql string, fields []pgproto3.FieldDescription, rows ...[]string) Result {
	s.t.Helper()
	return s.run(&proxy.Statement{Kind: proxy.SimpleQuery, SQL: sql}, fields, rows, false)
}

// Execute is Query for an extended-protocol Execute of sql.
func (s *Session) Execute(sql string, fields []pgproto3.FieldDescription, rows ...[]string) Result {
	s.t.Helper()
	return s.run(&proxy.Statement{Kind: proxy.ExtendedExecute, SQL: sql}, fields, rows, false)
}

// Copy runs sql, a COPY ... TO STDOUT, whose server sends lines, one
// CopyData each.
func (s *Session) Copy(sql string, lines ...string) Result {
	s.t.Helper()
	rows := make([][]string, len(lines))
	for i, l := range lines {
		rows[i] = []string{l}
	}
	return s.run(&proxy.Statement{Kind: proxy.SimpleQuery, SQL: sql}, nil, rows, true)
}

func (s *Session) run(st *proxy.Statement, fields []pgproto3.FieldDescription, rows [][]string, copyOut bool) Result {
	s.t.Helper()
	if s.ended {
		s.t.Fatalf("statement %q on an ended session", st.SQL)
	}
	s.seq++
	st.Seq = s.seq
	var res Result
	if v := s.si.Statement(st); v.Action == proxy.Block || v.Action == proxy.Kill {
		res.Verdict, res.At = v, "statement"
		return s.stop(st, res)
	}
	switch {
	case copyOut:
		s.si.CopyOut(st, &pgproto3.CopyOutResponse{})
	case fields != nil:
		s.si.RowDescription(st, fields)
	}
	for i, r := range rows {
		var v proxy.Verdict
		if copyOut {
			v = s.si.CopyData(st, []byte(r[0]+"\n"))
		} else {
			vals := make([][]byte, len(r))
			for j, x := range r {
				vals[j] = []byte(x)
			}
			v = s.si.DataRow(st, vals)
			if v.Action == proxy.Rewrite {
				res.Rewritten++
				r = make([]string, len(v.Values))
				for j, x := range v.Values {
					r[j] = string(x)
				}
				v = proxy.Verdict{}
			}
		}
		if v.Action == proxy.Block || v.Action == proxy.Kill {
			res.Verdict, res.At = v, fmt.Sprintf("row %d", i+1)
			return s.stop(st, res)
		}
		res.Rows = append(res.Rows, r)
	}
	tag := fmt.Sprintf("SELECT %d", len(rows))
	if copyOut {
		tag = fmt.Sprintf("COPY %d", len(rows))
	} else if fields == nil {
		tag = "SET"
	}
	s.si.CommandComplete(st, []byte(tag))
	if v := s.si.ReadyForQuery('I'); v.Action == proxy.Kill {
		res.Verdict, res.At = v, "ready"
		s.End(fmt.Errorf("killed: %s", v.Reason))
	}
	return res
}

// stop carries out a Block or Kill as the relay does: Blocked, then for a
// block the ReadyForQuery that ends the batch, for a kill the session's end.
func (s *Session) stop(st *proxy.Statement, res Result) Result {
	s.si.Blocked(st, res.Verdict)
	if res.Verdict.Action == proxy.Kill {
		s.End(fmt.Errorf("killed: %s", res.Verdict.Reason))
		return res
	}
	if v := s.si.ReadyForQuery('I'); v.Action == proxy.Kill {
		res.Verdict, res.At = v, "ready"
		s.End(fmt.Errorf("killed: %s", v.Reason))
	}
	return res
}
