package proxy

import (
	"errors"
	"fmt"
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

// sendAndClose is a pgmock step that writes msgs in one write and closes
// the connection at once: the data and the end arrive together.
type sendAndClose []pgproto3.BackendMessage

func (s sendAndClose) Step(b *pgmock.Conn) error {
	for _, m := range s {
		b.Send(m)
	}
	if err := b.Flush(); err != nil {
		return err
	}
	return b.Net.Close()
}

// TestServerCloseDeliversWhatCameBefore: what the server sent before it
// closed reaches the client, however closely the close follows it: a
// terminated backend's last rows and its FATAL error (pg_terminate_backend),
// or a COPY's data ahead of a Terminate.
func TestServerCloseDeliversWhatCameBefore(t *testing.T) {
	const rows = 5000
	msgs := []pgproto3.BackendMessage{&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("g"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}}}
	for i := range rows {
		msgs = append(msgs, &pgproto3.DataRow{Values: [][]byte{fmt.Appendf(nil, "row %d", i)}})
	}
	msgs = append(msgs, &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01",
		Message: "terminating connection due to administrator command"})
	for range 5 {
		m := mockUpstream(t)
		addr := startProxy(t, Config{UpstreamAddr: m.Addr()})
		m.Push(append(pgmock.AcceptTrust(),
			pgmock.Expect(&pgproto3.Query{String: "select g"}),
			sendAndClose(msgs)))
		c := connect(t, addr)
		c.send(&pgproto3.Query{String: "select g"})
		var got []string
		for {
			msg, err := c.fe.Receive()
			if err != nil {
				break
			}
			got = append(got, describe(msg))
		}
		if len(got) != rows+2 || got[rows] != fmt.Sprintf("DataRow row %d", rows-1) ||
			got[rows+1] != "ErrorResponse 57P01 terminating connection due to administrator command" {
			t.Fatalf("the client received %d messages, the last %q; want the %d rows and the FATAL error", len(got), got[max(0, len(got)-2):], rows)
		}
		waitMock(t, m)
	}
}
