package proxytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// Connect opens a pgx connection that is closed when the test ends.
func Connect(t testing.TB, ctx context.Context, dsn string, opts ...func(*pgx.ConnConfig)) *pgx.Conn {
	t.Helper()
	conn, err := TryConnect(ctx, dsn, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", Redact(dsn), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

// TryConnect opens a pgx connection; the caller closes it.
func TryConnect(ctx context.Context, dsn string, opts ...func(*pgx.ConnConfig)) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = 5 * time.Second
	for _, o := range opts {
		o(cfg)
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// ConnectPg opens a pgconn connection that is closed when the test ends.
func ConnectPg(t testing.TB, ctx context.Context, dsn string, opts ...func(*pgconn.Config)) *pgconn.PgConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnectTimeout = 5 * time.Second
	for _, o := range opts {
		o(cfg)
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect %s: %v", Redact(dsn), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

// CancelOnContext makes a context cancellation send a CancelRequest, as
// libpq-based clients do, instead of pgx's default of closing the socket.
func CancelOnContext(cfg *pgconn.Config) {
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 5 * time.Second}
	}
}

// Redact returns dsn without its password, for messages.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}

// SuperConn opens a direct superuser connection, for looking at the server
// from outside the proxy.
func SuperConn(t testing.TB, ctx context.Context) *pgx.Conn {
	t.Helper()
	return Connect(t, ctx, pgtest.Shared(t).DSN(pgtest.SuperUser))
}

// MustExec runs sql and fails the test on error.
func MustExec(t testing.TB, ctx context.Context, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// CheckUsable fails the test unless SELECT 1 works on conn.
func CheckUsable(t testing.TB, ctx context.Context, conn *pgx.Conn) {
	t.Helper()
	var n int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("session not usable: SELECT 1 = %d, %v", n, err)
	}
}

// PgError returns err's *pgconn.PgError, failing the test when there is none.
func PgError(t testing.TB, err error) *pgconn.PgError {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("err = %v (%T), want a *pgconn.PgError", err, err)
	}
	return pgErr
}

// WantCode fails the test unless err is a *pgconn.PgError with code.
func WantCode(t testing.TB, err error, code string) *pgconn.PgError {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want SQLSTATE %s", code)
	}
	pgErr := PgError(t, err)
	if pgErr.Code != code {
		t.Fatalf("err = %v (SQLSTATE %s), want SQLSTATE %s", err, pgErr.Code, code)
	}
	return pgErr
}

// WantEqual fails the test unless direct and proxied are deeply equal.
func WantEqual(t testing.TB, what string, direct, proxied any) {
	t.Helper()
	if !reflect.DeepEqual(direct, proxied) {
		t.Errorf("%s differs\n direct:  %s\n proxied: %s", what, Show(direct), Show(proxied))
	}
}

// Show renders v for a failure message: JSON when it can.
func Show(v any) string {
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprintf("%#v", v)
}

// Eventually polls cond every 50ms until it returns true or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v: %s", what, d, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ActiveQueries counts the backends other than conn's own that are running
// a query containing marker.
func ActiveQueries(ctx context.Context, conn *pgx.Conn, marker string) (int, error) {
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%' || $1 || '%'`, marker).Scan(&n)
	return n, err
}

// BackendsOf counts the backends whose application_name is app.
func BackendsOf(ctx context.Context, conn *pgx.Conn, app string) (int, error) {
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n)
	return n, err
}

// UniqueName returns a name no other test uses, for markers, tables and
// application names.
func UniqueName(t testing.TB) string {
	t.Helper()
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, t.Name())
	return fmt.Sprintf("e2e_%s_%d", name, time.Now().UnixNano()%1e6)
}

// Code returns err's SQLSTATE, or "" when err is not a *pgconn.PgError.
func Code(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// WaitRunning waits until n backends other than conn's run a query
// containing marker: the moment to cancel it, signal the server or shut the
// proxy down. conn is a direct connection (SuperConn).
func WaitRunning(t testing.TB, ctx context.Context, conn *pgx.Conn, marker string, n int) {
	t.Helper()
	Eventually(t, 10*time.Second, fmt.Sprintf("%d queries containing %s running", n, marker), func() (bool, string) {
		got, err := ActiveQueries(ctx, conn, marker)
		return err == nil && got >= n, fmt.Sprintf("%d running, %v", got, err)
	})
}

// WaitListening waits until something accepts TCP connections at addr: a
// pgwarden binary the test started, for one.
func WaitListening(t testing.TB, addr string, d time.Duration) {
	t.Helper()
	Eventually(t, d, "listening at "+addr, func() (bool, string) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})
}
