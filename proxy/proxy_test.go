package proxy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/test/pgmock"
)

// recorder is an inspector that writes down what it sees, as readable lines.
type recorder struct {
	mu     sync.Mutex
	events []string
	// verdict, if set, is asked about every row and CopyData.
	verdict func(st *Statement, row int) Verdict
	rows    map[*Statement]int
}

func (r *recorder) StartSession(context.Context, *SessionInfo) (SessionInspector, error) {
	return &recorderSession{r: r}, nil
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// lines returns the events of the server -> client direction, in order.
func (r *recorder) lines() []string { return r.filter(false) }

// statements returns the client -> server events, in order. The two
// directions run concurrently, so only each one's own order is defined.
func (r *recorder) statements() []string { return r.filter(true) }

func (r *recorder) filter(statements bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if strings.HasPrefix(e, "statement ") == statements {
			out = append(out, e)
		}
	}
	return out
}

type recorderSession struct {
	NopSessionInspector
	r *recorder
}

func sqlOf(st *Statement) string {
	if st == nil {
		return "<none>"
	}
	return st.SQL
}

func (s *recorderSession) Statement(st *Statement) Verdict {
	s.r.add("statement %s %q", st.Kind, st.SQL)
	return Verdict{}
}
func (s *recorderSession) RowDescription(st *Statement, fields []pgproto3.FieldDescription) {
	var parts []string
	for _, f := range fields {
		parts = append(parts, fmt.Sprintf("%s/%d/%d/fmt%d", f.Name, f.TableOID, f.TableAttributeNumber, f.Format))
	}
	s.r.add("describe %q %s", sqlOf(st), strings.Join(parts, ","))
}
func (s *recorderSession) DataRow(st *Statement, values [][]byte) Verdict {
	var parts []string
	for _, v := range values {
		if v == nil {
			parts = append(parts, "NULL")
		} else {
			parts = append(parts, string(v))
		}
	}
	s.r.add("row %q %s", sqlOf(st), strings.Join(parts, ","))
	return s.judge(st)
}
func (s *recorderSession) judge(st *Statement) Verdict {
	if s.r.verdict == nil {
		return Verdict{}
	}
	s.r.mu.Lock()
	if s.r.rows == nil {
		s.r.rows = make(map[*Statement]int)
	}
	s.r.rows[st]++
	n := s.r.rows[st]
	s.r.mu.Unlock()
	return s.r.verdict(st, n)
}
func (s *recorderSession) CopyOut(st *Statement, _ *pgproto3.CopyOutResponse) {
	s.r.add("copy_out %q", sqlOf(st))
}
func (s *recorderSession) CopyData(st *Statement, data []byte) Verdict {
	s.r.add("copy_data %q %s", sqlOf(st), bytes.TrimSpace(data))
	return s.judge(st)
}
func (s *recorderSession) CommandComplete(st *Statement, tag []byte) {
	s.r.add("complete %q %s", sqlOf(st), tag)
}
func (s *recorderSession) Error(st *Statement, e *pgproto3.ErrorResponse) Verdict {
	s.r.add("error %q %s", sqlOf(st), e.Code)
	return Verdict{}
}
func (s *recorderSession) ReadyForQuery(tx byte) Verdict {
	s.r.add("ready %c", tx)
	return Verdict{}
}
func (s *recorderSession) Blocked(st *Statement, v Verdict) {
	s.r.add("blocked %q %s", sqlOf(st), v.Action)
}

// testLogger sends the proxy's logs to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startProxy serves a proxy in front of upstream until the test ends.
func startProxy(t *testing.T, cfg Config) string {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

// mockUpstream starts a scripted upstream that is closed when the test ends.
func mockUpstream(t *testing.T) *pgmock.Server {
	t.Helper()
	m, err := pgmock.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// client is a raw protocol client of the proxy.
type client struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
	key  pgproto3.BackendKeyData
}

// connect runs the startup of a trust session through the proxy.
func connect(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &client{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	c.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "alice", "database": "app"}})
	if err := c.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg := c.receive()
		switch m := msg.(type) {
		case *pgproto3.BackendKeyData:
			c.key = pgproto3.BackendKeyData{ProcessID: m.ProcessID, SecretKey: bytes.Clone(m.SecretKey)}
		case *pgproto3.ReadyForQuery:
			return c
		case *pgproto3.ErrorResponse:
			t.Fatalf("startup failed: %s", m.Message)
		}
	}
}

func (c *client) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	for _, m := range msgs {
		c.fe.Send(m)
	}
	if err := c.fe.Flush(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) receive() pgproto3.BackendMessage {
	c.t.Helper()
	msg, err := c.fe.Receive()
	if err != nil {
		c.t.Fatalf("receive: %v", err)
	}
	return msg
}

// until receives messages up to and including n ReadyForQuery messages and
// returns them as short strings.
func (c *client) until(n int) []string {
	c.t.Helper()
	var out []string
	for n > 0 {
		msg := c.receive()
		out = append(out, describe(msg))
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			n--
		}
	}
	return out
}

func describe(msg pgproto3.BackendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.DataRow:
		var parts []string
		for _, v := range m.Values {
			parts = append(parts, string(v))
		}
		return "DataRow " + strings.Join(parts, ",")
	case *pgproto3.CommandComplete:
		return "CommandComplete " + string(m.CommandTag)
	case *pgproto3.ErrorResponse:
		return "ErrorResponse " + m.Code + " " + m.Message
	case *pgproto3.ReadyForQuery:
		return "ReadyForQuery " + string(m.TxStatus)
	case *pgproto3.CopyData:
		return "CopyData " + string(bytes.TrimSpace(m.Data))
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3.")
}

func equalLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func intCol(name string) pgproto3.FieldDescription {
	return pgproto3.FieldDescription{Name: []byte(name), TableOID: 16384, TableAttributeNumber: 2, DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}
}

func row(vals ...string) *pgproto3.DataRow {
	r := &pgproto3.DataRow{}
	for _, v := range vals {
		r.Values = append(r.Values, []byte(v))
	}
	return r
}

func waitMock(t *testing.T, m *pgmock.Server) {
	t.Helper()
	if err := m.Err(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestPipelineMatchesResultsToStatements(t *testing.T) {
	m := mockUpstream(t)
	rec := &recorder{}
	addr := startProxy(t, Config{UpstreamAddr: m.Addr(), Inspector: rec})
	// The client pipelines four batches; the proxy forwards each batch once
	// the one before it is answered, and the server answers batch by batch.
	m.Push(append(pgmock.AcceptTrust(),
		pgmock.ExpectType(&pgproto3.Parse{}), pgmock.ExpectType(&pgproto3.Describe{}), pgmock.ExpectType(&pgproto3.Sync{}),
		pgmock.ExpectNothing(50*time.Millisecond),
		pgmock.Send(
			// batch 1: prepare s1 and describe it
			&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{},
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{intCol("a")}},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}),
		pgmock.ExpectType(&pgproto3.Bind{}), pgmock.ExpectType(&pgproto3.Execute{}), pgmock.ExpectType(&pgproto3.Sync{}),
		pgmock.Send(
			// batch 2: execute s1, binary results
			&pgproto3.BindComplete{}, row("\x00\x00\x00\x01"), &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}),
		// batch 3: unnamed statement, portal described, executed in two
		// parts; with two Executes, the proxy holds the Sync until they are
		// answered, asking the server to flush its output meanwhile
		pgmock.ExpectType(&pgproto3.Parse{}), pgmock.ExpectType(&pgproto3.Bind{}), pgmock.ExpectType(&pgproto3.Describe{}),
		pgmock.ExpectType(&pgproto3.Execute{}), pgmock.ExpectType(&pgproto3.Execute{}), pgmock.Expect(&pgproto3.Flush{}),
		pgmock.ExpectNothing(50*time.Millisecond),
		pgmock.Send(
			&pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{intCol("b")}},
			row("1"), &pgproto3.PortalSuspended{}, row("2"), &pgproto3.CommandComplete{CommandTag: []byte("SELECT 2")}),
		pgmock.ExpectType(&pgproto3.Sync{}),
		pgmock.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'}),
		pgmock.ExpectType(&pgproto3.Query{}),
		pgmock.Send(
			// simple query with two statements
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{intCol("c")}}, row("3"),
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
			&pgproto3.EmptyQueryResponse{},
			&pgproto3.ReadyForQuery{TxStatus: 'I'},
		)))
	c := connect(t, addr)
	c.send(
		&pgproto3.Parse{Name: "s1", Query: "select a from t"}, &pgproto3.Describe{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "s1", ResultFormatCodes: []int16{1}}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: "select b from t"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{MaxRows: 1}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Query{String: "select c from t;"},
	)
	c.until(4)
	waitMock(t, m)
	equalLines(t, "statements", rec.statements(), []string{
		`statement execute "select a from t"`,
		`statement execute "select b from t"`, // resuming the portal continues it
		`statement query "select c from t;"`,
	})
	equalLines(t, "results", rec.lines(), []string{
		`ready I`,
		`describe "select a from t" a/16384/2/fmt1`,
		"row \"select a from t\" \x00\x00\x00\x01",
		`complete "select a from t" SELECT 1`,
		`ready I`,
		`describe "select b from t" b/16384/2/fmt0`,
		`row "select b from t" 1`,
		`row "select b from t" 2`,
		`complete "select b from t" SELECT 2`,
		`ready I`,
		`describe "select c from t;" c/16384/2/fmt0`,
		`row "select c from t;" 3`,
		`complete "select c from t;" SELECT 1`,
		`ready I`,
	})
}

func blockAtRow(n int) func(*Statement, int) Verdict {
	return func(st *Statement, row int) Verdict {
		if row >= n {
			return Verdict{Action: Block, Reason: "test limit"}
		}
		return Verdict{}
	}
}

func TestExtendedErrorSkipsToSync(t *testing.T) {
	m := mockUpstream(t)
	rec := &recorder{}
	addr := startProxy(t, Config{UpstreamAddr: m.Addr(), Inspector: rec})
	m.Push(append(pgmock.AcceptTrust(),
		pgmock.ExpectType(&pgproto3.Parse{}), pgmock.ExpectType(&pgproto3.Bind{}),
		pgmock.Expect(&pgproto3.Describe{ObjectType: 'P'}), // pgwarden's own, the client sent none
		pgmock.ExpectType(&pgproto3.Execute{}), pgmock.ExpectType(&pgproto3.Sync{}),
		pgmock.Send(
			&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42601", Message: "syntax error"},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}),
		pgmock.ExpectType(&pgproto3.Query{}),
		pgmock.Send(
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{intCol("x")}}, row("7"),
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
			&pgproto3.ReadyForQuery{TxStatus: 'I'},
		)))
	c := connect(t, addr)
	c.send(&pgproto3.Parse{Query: "selec 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Query{String: "select 7"})
	equalLines(t, "client", c.until(2), []string{
		"ErrorResponse 42601 syntax error", "ReadyForQuery I",
		"RowDescription", "DataRow 7", "CommandComplete SELECT 1", "ReadyForQuery I",
	})
	waitMock(t, m)
	equalLines(t, "results", rec.lines(), []string{
		`error "<none>" 42601`,
		`ready I`,
		`describe "select 7" x/16384/2/fmt0`,
		`row "select 7" 7`,
		`complete "select 7" SELECT 1`,
		`ready I`,
	})
}

func TestBlockCancelsUpstreamAndKeepsSession(t *testing.T) {
	m := mockUpstream(t)
	rec := &recorder{verdict: blockAtRow(2)}
	addr := startProxy(t, Config{UpstreamAddr: m.Addr(), Inspector: rec})
	waitCancel := pgmock.Func(func(*pgproto3.Backend) error {
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if len(m.Cancels()) > 0 {
				return nil
			}
		}
		return fmt.Errorf("no cancel request arrived")
	})
	m.Push(append(pgmock.AcceptTrust(),
		pgmock.Expect(&pgproto3.Query{String: "select * from big"}),
		pgmock.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{intCol("x")}}, row("1"), row("2"), row("3")),
		waitCancel,
		pgmock.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "57014", Message: "canceling statement due to user request"},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}),
		pgmock.Expect(&pgproto3.Query{String: "select 1"}),
		pgmock.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{intCol("x")}}, row("1"),
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'}),
	))
	c := connect(t, addr)
	c.send(&pgproto3.Query{String: "select * from big"})
	equalLines(t, "blocked query", c.until(1), []string{
		"RowDescription", "DataRow 1", "ErrorResponse 42501 pgwarden: test limit", "ReadyForQuery I",
	})
	c.send(&pgproto3.Query{String: "select 1"})
	equalLines(t, "next query", c.until(1), []string{"RowDescription", "DataRow 1", "CommandComplete SELECT 1", "ReadyForQuery I"})
	waitMock(t, m)
	cancels := m.Cancels()
	if len(cancels) != 1 || cancels[0].ProcessID != pgmock.Key.ProcessID || !bytes.Equal(cancels[0].SecretKey, pgmock.Key.SecretKey) {
		t.Errorf("cancels = %+v, want one with the upstream key %+v", cancels, pgmock.Key)
	}
}

// TestLaterBatchWaitsSoBlockCanCancel pipelines a second query behind one
// that gets blocked: the proxy holds the second until the first is answered,
// so the cancel it sends can only hit the blocked query.
func TestLaterBatchWaitsSoBlockCanCancel(t *testing.T) {
	m := mockUpstream(t)
	rec := &recorder{verdict: func(st *Statement, row int) Verdict {
		if st.SQL == "select * from big" && row >= 2 {
			return Verdict{Action: Block, Reason: "test limit"}
		}
		return Verdict{}
	}}
	addr := startProxy(t, Config{UpstreamAddr: m.Addr(), Inspector: rec})
	m.Push(append(pgmock.AcceptTrust(),
		pgmock.Expect(&pgproto3.Query{String: "select * from big"}),
		pgmock.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{intCol("x")}}, row("1"), row("2"), row("3")),
		pgmock.ExpectNothing(100*time.Millisecond),
		pgmock.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "57014", Message: "canceling statement due to user request"},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}),
		pgmock.Expect(&pgproto3.Query{String: "select 1"}),
		pgmock.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{intCol("x")}}, row("1"),
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'}),
	))
	c := connect(t, addr)
	c.send(&pgproto3.Query{String: "select * from big"}, &pgproto3.Query{String: "select 1"})
	equalLines(t, "client", c.until(2), []string{
		"RowDescription", "DataRow 1", "ErrorResponse 42501 pgwarden: test limit", "ReadyForQuery I",
		"RowDescription", "DataRow 1", "CommandComplete SELECT 1", "ReadyForQuery I",
	})
	waitMock(t, m)
	if n := len(m.Cancels()); n != 1 {
		t.Errorf("%d cancel requests sent, want 1", n)
	}
}

func TestBlockInExtendedBatchSkipsRestOfBatch(t *testing.T) {
	m := mockUpstream(t)
	rec := &recorder{verdict: func(st *Statement, row int) Verdict {
		if st.SQL == "select * from big" && row >= 2 {
			return Verdict{Action: Block, Reason: "test limit"}
		}
		return Verdict{}
	}}
	addr := startProxy(t, Config{UpstreamAddr: m.Addr(), Inspector: rec})
	m.Push(append(pgmock.AcceptTrust(),
		pgmock.ExpectType(&pgproto3.Parse{}), pgmock.ExpectType(&pgproto3.Bind{}),
		pgmock.ExpectType(&pgproto3.Describe{}), pgmock.ExpectType(&pgproto3.Execute{}),
		pgmock.ExpectType(&pgproto3.Parse{}), pgmock.ExpectType(&pgproto3.Bind{}),
		pgmock.ExpectType(&pgproto3.Describe{}), pgmock.ExpectType(&pgproto3.Execute{}),
		pgmock.Expect(&pgproto3.Flush{}),
		// The server finishes before the cancel lands: the proxy must drop
		// everything up to the batch's ReadyForQuery, and make the server
		// fail the batch before its Sync so that the second statement,
		// which the client was told did not run, does not commit.
		// The answers to pgwarden's own Describes are not forwarded.
		pgmock.Send(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{intCol("x")}}, row("1"), row("2"), row("3"),
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 3")},
			&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.NoData{}, row("9"),
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}),
		pgmock.Expect(&pgproto3.Execute{Portal: "pgwarden: batch blocked"}),
		pgmock.ExpectType(&pgproto3.Sync{}),
		pgmock.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "34000", Message: `portal "pgwarden: batch blocked" does not exist`},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}),
		pgmock.Expect(&pgproto3.Query{String: "select 1"}),
		pgmock.Send(&pgproto3.EmptyQueryResponse{}, &pgproto3.ReadyForQuery{TxStatus: 'I'}),
	))
	c := connect(t, addr)
	c.send(&pgproto3.Parse{Query: "select * from big"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "select 9"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	equalLines(t, "client", c.until(1), []string{
		"ParseComplete", "BindComplete", "DataRow 1", "ErrorResponse 42501 pgwarden: test limit", "ReadyForQuery I",
	})
	c.send(&pgproto3.Query{String: "select 1"})
	equalLines(t, "next", c.until(1), []string{"EmptyQueryResponse", "ReadyForQuery I"})
	waitMock(t, m)
}

func TestCancelRequestMapsKeys(t *testing.T) {
	m := mockUpstream(t)
	addr := startProxy(t, Config{UpstreamAddr: m.Addr()})
	m.Push(append(pgmock.AcceptTrust(), pgmock.ExpectType(&pgproto3.Terminate{})))
	c := connect(t, addr)
	// The process id is the server's (so that pg_backend_pid() and
	// notifications agree with it); the secret is pgwarden's own.
	if c.key.ProcessID != pgmock.Key.ProcessID || bytes.Equal(c.key.SecretKey, pgmock.Key.SecretKey) {
		t.Fatalf("client got key %+v, want the upstream pid with a secret of pgwarden's own", c.key)
	}
	sendCancel := func(pid uint32, secret []byte) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req, _ := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}).Encode(nil)
		conn.Write(req)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		if n, err := conn.Read(b[:]); n != 0 || err == nil {
			t.Fatalf("proxy answered a cancel request: %d bytes, %v", n, err)
		}
	}
	wrong := bytes.Clone(c.key.SecretKey)
	wrong[0] ^= 0xff
	sendCancel(c.key.ProcessID, wrong)
	sendCancel(pgmock.Key.ProcessID, pgmock.Key.SecretKey) // the upstream secret is no key to pgwarden
	if n := len(m.Cancels()); n != 0 {
		t.Fatalf("wrong keys forwarded %d cancel requests", n)
	}
	sendCancel(c.key.ProcessID, c.key.SecretKey)
	cancels := m.Cancels()
	if len(cancels) != 1 || cancels[0].ProcessID != pgmock.Key.ProcessID || !bytes.Equal(cancels[0].SecretKey, pgmock.Key.SecretKey) {
		t.Fatalf("cancels = %+v, want one with the upstream key", cancels)
	}
	c.send(&pgproto3.Terminate{})
	waitMock(t, m)
}

func TestSASLChannelBindingNotOffered(t *testing.T) {
	m := mockUpstream(t)
	addr := startProxy(t, Config{UpstreamAddr: m.Addr()})
	m.Push(pgmock.Script{
		pgmock.ExpectStartup(),
		pgmock.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}}),
		pgmock.Func(func(b *pgproto3.Backend) error { return b.SetAuthType(pgproto3.AuthTypeSASL) }),
		pgmock.Expect(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abc")}),
		pgmock.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"}),
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u"}})
	fe.Flush()
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	sasl, ok := msg.(*pgproto3.AuthenticationSASL)
	if !ok || strings.Join(sasl.AuthMechanisms, ",") != "SCRAM-SHA-256" {
		t.Fatalf("got %#v, want SASL offering only SCRAM-SHA-256", msg)
	}
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abc")})
	fe.Flush()
	msg, err = fe.Receive()
	if e, ok := msg.(*pgproto3.ErrorResponse); err != nil || !ok || e.Code != "28P01" {
		t.Fatalf("got %#v, %v; want the server's 28P01", msg, err)
	}
	waitMock(t, m)
}

func TestOversizedFrameEndsOnlyThatSession(t *testing.T) {
	m := mockUpstream(t)
	addr := startProxy(t, Config{UpstreamAddr: m.Addr(), MaxMessageSize: 1024})
	m.Push(append(pgmock.AcceptTrust(), pgmock.WaitClose()))
	m.Push(append(pgmock.AcceptTrust(), pgmock.Expect(&pgproto3.Query{String: "select 1"}),
		pgmock.Send(&pgproto3.EmptyQueryResponse{}, &pgproto3.ReadyForQuery{TxStatus: 'I'})))
	bad := connect(t, addr)
	good := connect(t, addr)
	frame := []byte{'Q', 0, 0, 0x10, 0}
	bad.conn.Write(frame)
	msg, err := bad.fe.Receive()
	if e, ok := msg.(*pgproto3.ErrorResponse); err != nil || !ok || e.Code != codeProgramLimitExceeded || e.Severity != "FATAL" {
		t.Fatalf("got %#v, %v; want FATAL %s", msg, err, codeProgramLimitExceeded)
	}
	if _, err := bad.fe.Receive(); err == nil {
		t.Fatal("session still open after an oversized frame")
	}
	waitMock(t, m) // the bad session's upstream saw the connection close
	good.send(&pgproto3.Query{String: "select 1"})
	equalLines(t, "other session", good.until(1), []string{"EmptyQueryResponse", "ReadyForQuery I"})
	waitMock(t, m)
}

// TestQueryAfterUnsyncedErrorIsSkipped sends a Query behind an extended
// batch that fails before its Sync: the server skips the Query too, and the
// session must still serve the batches after the Sync.
func TestQueryAfterUnsyncedErrorIsSkipped(t *testing.T) {
	m := mockUpstream(t)
	addr := startProxy(t, Config{UpstreamAddr: m.Addr(), Inspector: &recorder{}})
	m.Push(append(pgmock.AcceptTrust(),
		pgmock.ExpectType(&pgproto3.Parse{}), pgmock.ExpectType(&pgproto3.Query{}), pgmock.ExpectType(&pgproto3.Sync{}),
		pgmock.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42601", Message: "syntax error"},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}),
		pgmock.ExpectType(&pgproto3.Query{}),
		pgmock.Send(&pgproto3.EmptyQueryResponse{}, &pgproto3.ReadyForQuery{TxStatus: 'I'}),
		pgmock.ExpectType(&pgproto3.Query{}),
		pgmock.Send(&pgproto3.EmptyQueryResponse{}, &pgproto3.ReadyForQuery{TxStatus: 'I'}),
	))
	c := connect(t, addr)
	c.send(&pgproto3.Parse{Query: "selec"}, &pgproto3.Query{String: "skipped"})
	c.send(&pgproto3.Sync{})
	equalLines(t, "batch", c.until(1), []string{"ErrorResponse 42601 syntax error", "ReadyForQuery I"})
	c.send(&pgproto3.Query{String: ""}, &pgproto3.Query{String: ""})
	equalLines(t, "after", c.until(2), []string{"EmptyQueryResponse", "ReadyForQuery I", "EmptyQueryResponse", "ReadyForQuery I"})
	waitMock(t, m)
}

// TestQuerySentAfterUnsyncedErrorIsSkipped sends a Query after the server has
// failed an extended batch and before that batch's Sync: the server skips the
// Query without an answer, so it must not be awaited (an inspected session
// holds the next batch until the ones before it are answered).
func TestQuerySentAfterUnsyncedErrorIsSkipped(t *testing.T) {
	m := mockUpstream(t)
	addr := startProxy(t, Config{UpstreamAddr: m.Addr(), Inspector: &recorder{}})
	m.Push(append(pgmock.AcceptTrust(),
		pgmock.ExpectType(&pgproto3.Parse{}), pgmock.ExpectType(&pgproto3.Bind{}),
		pgmock.ExpectType(&pgproto3.Describe{}), pgmock.ExpectType(&pgproto3.Execute{}),
		pgmock.ExpectType(&pgproto3.Flush{}),
		pgmock.Send(&pgproto3.ParseComplete{}, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "22012", Message: "division by zero"}),
		pgmock.ExpectType(&pgproto3.Query{}), // skipped by the server
		pgmock.ExpectType(&pgproto3.Sync{}),
		pgmock.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'}),
		pgmock.ExpectType(&pgproto3.Query{}),
		pgmock.Send(&pgproto3.EmptyQueryResponse{}, &pgproto3.ReadyForQuery{TxStatus: 'I'}),
	))
	c := connect(t, addr)
	c.send(&pgproto3.Parse{Query: "select 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	equalLines(t, "error", []string{describe(c.receive()), describe(c.receive())},
		[]string{"ParseComplete", "ErrorResponse 22012 division by zero"})
	c.send(&pgproto3.Query{String: "skipped"}, &pgproto3.Sync{})
	equalLines(t, "sync", c.until(1), []string{"ReadyForQuery I"})
	c.send(&pgproto3.Query{String: ""})
	equalLines(t, "after", c.until(1), []string{"EmptyQueryResponse", "ReadyForQuery I"})
	waitMock(t, m)
}

// TestHoldEndsAtItsTimeout: when the server waits for input that pgwarden
// holds back (an order of messages it did not foresee, played here by a
// server that answers the first Query only once the second has come), the
// held request goes on after HoldTimeout instead of never.
func TestHoldEndsAtItsTimeout(t *testing.T) {
	m := mockUpstream(t)
	const hold = 300 * time.Millisecond
	addr := startProxy(t, Config{UpstreamAddr: m.Addr(), Inspector: &recorder{}, HoldTimeout: hold})
	m.Push(append(pgmock.AcceptTrust(),
		pgmock.ExpectType(&pgproto3.Query{}),
		pgmock.ExpectType(&pgproto3.Query{}),
		pgmock.Send(
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")}, &pgproto3.ReadyForQuery{TxStatus: 'I'},
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")}, &pgproto3.ReadyForQuery{TxStatus: 'I'},
		)))
	c := connect(t, addr)
	start := time.Now()
	c.send(&pgproto3.Query{String: "select 1"}, &pgproto3.Query{String: "select 2"})
	equalLines(t, "answers", c.until(2), []string{
		"CommandComplete SELECT 0", "ReadyForQuery I", "CommandComplete SELECT 0", "ReadyForQuery I"})
	if took := time.Since(start); took < hold || took > hold+3*time.Second {
		t.Errorf("answered after %v, want about the hold timeout of %v", took, hold)
	}
	waitMock(t, m)
}
