package proxy

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/test/pgmock"
)

// TestTerminateIdleEndsAtOnce: a Terminate with nothing in flight ends the
// session without waiting for the server to close its side (PostgreSQL
// answers a Terminate with nothing), and reaches the server first.
func TestTerminateIdleEndsAtOnce(t *testing.T) {
	m := mockUpstream(t)
	addr := startProxy(t, Config{UpstreamAddr: m.Addr()})
	clientDone := make(chan struct{})
	m.Push(append(pgmock.AcceptTrust(),
		pgmock.ExpectType(&pgproto3.Terminate{}),
		// The server keeps its side open until the client has seen the end.
		pgmock.Func(func(*pgproto3.Backend) error {
			select {
			case <-clientDone:
				return nil
			case <-time.After(10 * time.Second):
				return errors.New("the client's session did not end while the server kept its connection")
			}
		}),
		pgmock.WaitClose(),
	))
	c := connect(t, addr)
	start := time.Now()
	c.send(&pgproto3.Terminate{})
	if n, err := c.conn.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after Terminate: read %d bytes, %v; want the end of the connection", n, err)
	}
	// Without the shortcut the session waits up to terminateDrain for the
	// server's close.
	if d := time.Since(start); d >= terminateDrain/2 {
		t.Errorf("the session ended %v after the Terminate; want at once, not after waiting for the server", d)
	}
	close(clientDone)
	waitMock(t, m)
}

// TestTerminateInFlightWaitsForAnswer: a Terminate written behind a query
// still lets the server's answer through before the connection closes.
func TestTerminateInFlightWaitsForAnswer(t *testing.T) {
	m := mockUpstream(t)
	addr := startProxy(t, Config{UpstreamAddr: m.Addr()})
	m.Push(append(pgmock.AcceptTrust(),
		pgmock.Expect(&pgproto3.Query{String: "select 1"}),
		pgmock.ExpectType(&pgproto3.Terminate{}),
		pgmock.Send(&pgproto3.EmptyQueryResponse{}, &pgproto3.ReadyForQuery{TxStatus: 'I'}),
	))
	c := connect(t, addr)
	c.send(&pgproto3.Query{String: "select 1"}, &pgproto3.Terminate{})
	equalLines(t, "client", c.until(1), []string{"EmptyQueryResponse", "ReadyForQuery I"})
	if n, err := c.conn.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after the answer: read %d bytes, %v; want the end of the connection", n, err)
	}
	waitMock(t, m)
}
