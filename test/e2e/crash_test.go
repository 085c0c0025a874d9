package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/internal/crash"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// panicky is an Inspector with a bug: it panics where a statement's SQL
// asks it to ("panic in statement", "panic in row", "panic in ready"), and
// at the start of a session whose application_name is "panic in start".
type panicky struct {
	mu    sync.Mutex
	ended []error
}

func (p *panicky) StartSession(_ context.Context, info *proxy.SessionInfo) (proxy.SessionInspector, error) {
	if info.ApplicationName == "panic in start" {
		panic("a bug at the start of a session")
	}
	return &panickySession{p: p}, nil
}

type panickySession struct {
	proxy.NopSessionInspector
	p    *panicky
	last string
}

func (s *panickySession) Statement(st *proxy.Statement) proxy.Verdict {
	s.last = st.SQL
	if strings.Contains(st.SQL, "panic in statement") {
		path := strings.Fields(st.SQL)[:0]
		_ = path[len(path)] // an index out of range, as the empty search_path raised
	}
	return proxy.Verdict{}
}

func (s *panickySession) DataRow(*proxy.Statement, [][]byte) proxy.Verdict {
	if strings.Contains(s.last, "panic in row") {
		panic("a bug while reading a row")
	}
	return proxy.Verdict{}
}

func (s *panickySession) ReadyForQuery(byte) proxy.Verdict {
	if strings.Contains(s.last, "panic in ready") {
		s.last = ""
		panic("a bug at the end of a statement")
	}
	return proxy.Verdict{}
}

func (s *panickySession) EndSession(err error) {
	s.p.mu.Lock()
	s.p.ended = append(s.p.ended, err)
	s.p.mu.Unlock()
}

// TestPanicEndsOnlyItsSession: a panic in the inspector, wherever it is
// called from, ends that session with FATAL XX000 and closes its upstream
// backend; the neighbours' sessions, opened before and after, carry on, and
// the panic is counted.
func TestPanicEndsOnlyItsSession(t *testing.T) {
	t.Parallel()
	insp := &panicky{}
	p := proxytest.Start(t, proxytest.WithInspector(insp))
	ctx := proxytest.Ctx(t, 60*time.Second)
	super := proxytest.SuperConn(t, ctx)

	app := proxytest.UniqueName(t)
	neighbour := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "application_name="+app+"-neighbour"))
	before := crash.Total()
	cases := []struct {
		name string
		sql  string
	}{
		{"in the client to server direction", "select 'panic in statement'"},
		{"in the server to client direction", "select 'panic in row' from generate_series(1, 3)"},
		{"at ReadyForQuery", "select 'panic in ready'"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			victimApp := app + "-victim"
			rc := proxytest.RawStartup(t, ctx, p.Addr, map[string]string{"application_name": victimApp})
			rc.Send(&pgproto3.Query{String: c.sql})
			e := rc.ReadError()
			if e.Severity != "FATAL" || e.Code != "XX000" || e.Message != "pgwarden: internal error, the session was closed" {
				t.Errorf("got %s %s %q, want FATAL XX000 pgwarden: internal error, the session was closed", e.Severity, e.Code, e.Message)
			}
			rc.WaitClosed(5 * time.Second)
			proxytest.Eventually(t, 10*time.Second, "the victim's backend ends", func() (bool, string) {
				n, err := proxytest.BackendsOf(ctx, super, victimApp)
				return err == nil && n == 0, proxytest.Show(n)
			})
			if got := crash.Total(); got < before+uint64(i+1) {
				t.Errorf("crash.Total = %d, want at least %d", got, before+uint64(i+1))
			}
			// The neighbour, whose session was open all along, and a new
			// session both work.
			proxytest.CheckUsable(t, ctx, neighbour)
			proxytest.CheckUsable(t, ctx, proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser, "application_name="+app+"-after")))
		})
	}

	// A panic during startup fails that connection alone.
	rc := proxytest.DialRaw(t, ctx, p.Addr)
	rc.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": pgtest.TrustUser, "database": pgtest.Shared(t).Database, "application_name": "panic in start"}})
	for {
		m := rc.Receive()
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			if e.Code != "XX000" {
				t.Errorf("startup: got %s %q, want XX000", e.Code, e.Message)
			}
			break
		}
	}
	proxytest.CheckUsable(t, ctx, neighbour)

	insp.mu.Lock()
	defer insp.mu.Unlock()
	if len(insp.ended) < len(cases) {
		t.Fatalf("EndSession ran %d times, want at least %d", len(insp.ended), len(cases))
	}
	if !p.Logs.Contains("internal_error", "stack") {
		t.Error("no internal_error with its stack in the log")
	}
}
