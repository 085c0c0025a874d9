package proxytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// RawConn is a client that speaks the protocol message by message, for
// transcripts and for input no driver would send.
type RawConn struct {
	net.Conn
	FE *pgproto3.Frontend
	t  testing.TB
}

// DialRaw connects to addr without sending anything; the connection ends
// with the test or at ctx's deadline.
func DialRaw(t testing.TB, ctx context.Context, addr string) *RawConn {
	t.Helper()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return NewRawConn(t, conn)
}

// NewRawConn speaks the protocol over conn, which is closed when the test
// ends.
func NewRawConn(t testing.TB, conn net.Conn) *RawConn {
	t.Cleanup(func() { conn.Close() })
	return &RawConn{Conn: conn, FE: pgproto3.NewFrontend(conn, conn), t: t}
}

// RawStartup connects to addr as a trust user and reads up to the first
// ReadyForQuery.
func RawStartup(t testing.TB, ctx context.Context, addr string, params map[string]string) *RawConn {
	t.Helper()
	rc := DialRaw(t, ctx, addr)
	p := map[string]string{"user": pgtest.TrustUser, "database": pgtest.Shared(t).Database}
	for k, v := range params {
		p[k] = v
	}
	rc.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: p})
	for {
		switch m := rc.Receive().(type) {
		case *pgproto3.ReadyForQuery:
			return rc
		case *pgproto3.ErrorResponse:
			t.Fatalf("startup: %s %s", m.Code, m.Message)
		}
	}
}

// Send sends msgs and flushes them.
func (rc *RawConn) Send(msgs ...pgproto3.FrontendMessage) {
	rc.t.Helper()
	for _, m := range msgs {
		rc.FE.Send(m)
	}
	if err := rc.FE.Flush(); err != nil {
		rc.t.Fatalf("send: %v", err)
	}
}

// Receive reads one message, failing the test on error.
func (rc *RawConn) Receive() pgproto3.BackendMessage {
	rc.t.Helper()
	m, err := rc.FE.Receive()
	if err != nil {
		rc.t.Fatalf("receive: %v", err)
	}
	return m
}

// transcript sends msgs and renders every message received up to and
// including the next ReadyForQuery.
func (rc *RawConn) Transcript(msgs ...pgproto3.FrontendMessage) []string {
	rc.t.Helper()
	rc.Send(msgs...)
	var out []string
	for {
		m := rc.Receive()
		out = append(out, Render(m))
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			return out
		}
	}
}

// Render is a message as a transcript line.
func Render(m pgproto3.BackendMessage) string {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprintf("%T", m)
	}
	return string(b)
}

// readError reads messages until an ErrorResponse, skipping others, and
// returns it; it fails the test if the connection ends first.
func (rc *RawConn) ReadError() *pgproto3.ErrorResponse {
	rc.t.Helper()
	for {
		m, err := rc.FE.Receive()
		if err != nil {
			rc.t.Fatalf("connection ended without an ErrorResponse: %v", err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			// Copy: the message is valid only until the next Receive.
			cp := *e
			return &cp
		}
	}
}

// waitClosed fails the test unless the peer closes the connection within d;
// anything it sends first is discarded.
func (rc *RawConn) WaitClosed(d time.Duration) {
	rc.t.Helper()
	rc.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := rc.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			rc.t.Fatalf("connection still open after %v", d)
		}
		return
	}
}
