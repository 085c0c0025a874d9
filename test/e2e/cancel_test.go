package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// TestCancelViaContext cancels a long pg_sleep by its context, which makes
// pgconn send a CancelRequest, and checks the query ends quickly with 57014
// and the session stays usable.
func TestCancelViaContext(t *testing.T) {
	t.Parallel()
	c := pgtest.Shared(t)
	plain := proxytest.Start(t)
	tlsProxy := proxytest.Start(t, proxytest.WithClientTLS(t))
	cases := []struct{ name, dsn string }{
		{"direct", c.DSN(pgtest.TrustUser)},
		{"proxied", plain.DSN(pgtest.TrustUser)},
		{"proxied over TLS", tlsProxy.DSN(pgtest.TrustUser, "sslmode=verify-full")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			conn := proxytest.ConnectPg(t, ctx, tc.dsn, proxytest.CancelOnContext)
			qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := conn.Exec(qctx, "SELECT pg_sleep(30)").ReadAll()
			elapsed := time.Since(start)
			proxytest.WantCode(t, err, "57014")
			if elapsed > 5*time.Second {
				t.Errorf("cancel took %v", elapsed)
			}
			if conn.IsClosed() {
				t.Fatal("connection closed by the cancel")
			}
			if _, err := conn.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
				t.Fatalf("session not usable after cancel: %v", err)
			}
		})
	}
}

// TestCancelRequest sends a CancelRequest with PgConn.CancelRequest while
// another goroutine waits on the query, in the simple and extended protocol.
func TestCancelRequest(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	for _, extended := range []bool{false, true} {
		name := map[bool]string{false: "simple", true: "extended"}[extended]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := proxytest.Ctx(t, 0)
			conn := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.ScramUser))
			marker := proxytest.UniqueName(t)
			sql := "SELECT pg_sleep(30) /* " + marker + " */"
			done := make(chan error, 1)
			go func() {
				if extended {
					done <- conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err
				} else {
					_, err := conn.Exec(ctx, sql).ReadAll()
					done <- err
				}
			}()
			proxytest.WaitRunning(t, ctx, proxytest.SuperConn(t, ctx), marker, 1)
			if err := conn.CancelRequest(ctx); err != nil {
				t.Fatalf("CancelRequest: %v", err)
			}
			select {
			case err := <-done:
				proxytest.WantCode(t, err, "57014")
			case <-time.After(5 * time.Second):
				t.Fatal("query not cancelled within 5s")
			}
			if _, err := conn.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
				t.Fatalf("session not usable after cancel: %v", err)
			}
		})
	}
}

// sendCancel sends a raw CancelRequest to addr and waits for the proxy to
// close the connection, as it does after handling one.
func sendCancel(t *testing.T, ctx context.Context, addr string, pid uint32, secret []byte) {
	t.Helper()
	rc := proxytest.DialRaw(t, ctx, addr)
	req := make([]byte, 12+len(secret))
	binary.BigEndian.PutUint32(req, uint32(len(req)))
	binary.BigEndian.PutUint32(req[4:], 80877102)
	binary.BigEndian.PutUint32(req[8:], pid)
	copy(req[12:], secret)
	if _, err := rc.Write(req); err != nil {
		t.Fatal(err)
	}
	rc.WaitClosed(5 * time.Second)
}

// TestCancelWrongKey sends CancelRequests that must cancel nothing: the
// session's pid with a wrong secret, the upstream backend's pid with the
// session's secret, and another session's secret. The running query
// completes.
func TestCancelWrongKey(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	victim := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))
	other := proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))

	res, err := victim.Exec(ctx, "SELECT pg_backend_pid()").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var upstreamPID uint32
	for _, b := range res[0].Rows[0][0] {
		upstreamPID = upstreamPID*10 + uint32(b-'0')
	}

	marker := proxytest.UniqueName(t)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := victim.Exec(ctx, "SELECT pg_sleep(1) /* "+marker+" */").ReadAll()
		done <- err
	}()
	proxytest.WaitRunning(t, ctx, proxytest.SuperConn(t, ctx), marker, 1)

	wrong := append([]byte(nil), victim.SecretKey()...)
	wrong[0] ^= 0xff
	sendCancel(t, ctx, p.Addr, victim.PID(), wrong)
	if upstreamPID != victim.PID() {
		// The proxy may hand out the upstream pid; when it does not, that
		// pid names no session of the proxy's.
		sendCancel(t, ctx, p.Addr, upstreamPID, victim.SecretKey())
	}
	sendCancel(t, ctx, p.Addr, victim.PID(), other.SecretKey())
	sendCancel(t, ctx, p.Addr, other.PID(), victim.SecretKey())
	sendCancel(t, ctx, p.Addr, victim.PID(), victim.SecretKey()[:1]) // short key

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("query was disturbed by a wrong cancel key: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("query did not complete")
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("pg_sleep(1) returned after %v", d)
	}
	var pgErr *pgconn.PgError
	if _, err := other.Exec(ctx, "SELECT 1").ReadAll(); errors.As(err, &pgErr) || err != nil {
		t.Fatalf("other session: %v", err)
	}
	p.Logs.WaitFor(t, 3*time.Second, "cancel_request_unmatched")
}

// TestCancelOnlyTarget runs the same long query in several sessions and
// cancels one: only that one ends early.
func TestCancelOnlyTarget(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t)
	ctx := proxytest.Ctx(t, 0)
	const n = 4
	conns := make([]*pgconn.PgConn, n)
	for i := range conns {
		conns[i] = proxytest.ConnectPg(t, ctx, p.DSN(pgtest.TrustUser))
	}
	results := make(chan struct {
		i   int
		err error
		d   time.Duration
	}, n)
	marker := proxytest.UniqueName(t)
	start := time.Now()
	for i, conn := range conns {
		go func() {
			_, err := conn.Exec(ctx, "SELECT pg_sleep(1.5) /* "+marker+" */").ReadAll()
			results <- struct {
				i   int
				err error
				d   time.Duration
			}{i, err, time.Since(start)}
		}()
	}
	proxytest.WaitRunning(t, ctx, proxytest.SuperConn(t, ctx), marker, n)
	const target = 2
	if err := conns[target].CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	for range n {
		r := <-results
		if r.i == target {
			proxytest.WantCode(t, r.err, "57014")
			if r.d > time.Second {
				t.Errorf("cancelled query ended after %v", r.d)
			}
		} else if r.err != nil {
			t.Errorf("session %d was disturbed by another session's cancel: %v", r.i, r.err)
		}
	}
}
