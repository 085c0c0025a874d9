package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// withReuse turns on the reuse of upstream connections.
func withReuse() proxytest.Option {
	return proxytest.WithConfig(func(c *proxy.Config) { c.Reuse = &proxy.Reuse{} })
}

// relayTrustUser relays the trust user's startups and logs in the others.
func relayTrustUser(info *proxy.SessionInfo) proxy.LoginMethod {
	if info.User == pgtest.TrustUser {
		return proxy.LoginRelay
	}
	return proxy.LoginSCRAM
}

// settled waits until every client connection of the proxy has ended,
// its server connection parked or closed.
func (ls *loginSetup) settled(t *testing.T) proxy.ReuseStats {
	t.Helper()
	proxytest.Eventually(t, 5*time.Second, "sessions ended", func() (bool, string) {
		n := ls.p.Server.Sessions()
		return n == 0, fmt.Sprintf("%d open", n)
	})
	return ls.p.Server.ReuseStats()
}

// backendPID connects with dsn, runs f, closes, and returns the session's
// pg_backend_pid() once the session has ended.
func (ls *loginSetup) backendPID(t *testing.T, ctx context.Context, dsn string, f func(*pgx.Conn)) int32 {
	t.Helper()
	conn := proxytest.Connect(t, ctx, dsn)
	var pid int32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if f != nil {
		f(conn)
	}
	conn.Close(ctx)
	ls.settled(t)
	return pid
}

// withDatabase is dsn with another database.
func withDatabase(t *testing.T, dsn, db string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	return u.String()
}

// withParam is dsn with one more parameter.
func withParam(t *testing.T, dsn, name, value string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(name, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestReuseSameBackend: with reuse on, sequential sessions of one login,
// and of two logins mapped to one role, run on the same server backend,
// and each client sees a normal startup; with it off, or for relayed
// sessions, every session gets a backend of its own.
func TestReuseSameBackend(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, relayTrustUser, withReuse())
	alicePW := ls.addLogin(t, "alice", ls.role)
	bobPW := ls.addLogin(t, "bob", ls.role)
	ctx := proxytest.Ctx(t, 0)
	app := proxytest.UniqueName(t)

	first := ls.backendPID(t, ctx, ls.dsn("alice", alicePW), func(conn *pgx.Conn) {
		proxytest.MustExec(t, ctx, conn, "SET application_name = 'changed'")
	})
	if st := ls.p.Server.ReuseStats(); st.Parked != 1 || st.Opened != 1 {
		t.Fatalf("after one session: %+v, want one connection opened and parked", st)
	}
	conn := proxytest.Connect(t, ctx, ls.dsn("alice", alicePW), withApp(app))
	conn.Close(ctx)
	ls.settled(t)

	conn = proxytest.Connect(t, ctx, ls.dsn("alice", alicePW))
	var pid int32
	var user, appName string
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid(), current_user, current_setting('application_name')").Scan(&pid, &user, &appName); err != nil {
		t.Fatal(err)
	}
	if pid != first {
		t.Fatalf("second session of alice on backend %d, want the first's, %d", pid, first)
	}
	if got := conn.PgConn().PID(); got != uint32(pid) {
		t.Errorf("BackendKeyData pid %d, pg_backend_pid() %d", got, pid)
	}
	if user != ls.role || appName != "" {
		t.Errorf("reused session: current_user %q, application_name %q; want %q and the startup's, empty", user, appName, ls.role)
	}
	pgc := conn.PgConn()
	if v := pgc.ParameterStatus("application_name"); v != "" {
		t.Errorf("ParameterStatus application_name %q, want the value after the reset, empty", v)
	}
	for _, name := range []string{"server_version", "client_encoding", "DateStyle", "integer_datetimes", "session_authorization"} {
		if pgc.ParameterStatus(name) == "" {
			t.Errorf("reused session: no ParameterStatus %s", name)
		}
	}
	if v := pgc.ParameterStatus("session_authorization"); v != ls.role {
		t.Errorf("ParameterStatus session_authorization %q, want %q", v, ls.role)
	}
	conn.Close(ctx)
	ls.settled(t)

	if got := ls.backendPID(t, ctx, ls.dsn("bob", bobPW), nil); got != first {
		t.Errorf("bob, mapped to alice's role, on backend %d, want %d", got, first)
	}
	if st := ls.settled(t); st.Reused != 2 || st.Opened != 2 || st.Parked != 2 {
		t.Errorf("stats %+v, want 2 reused, 2 opened (one for the other application_name), 2 parked", st)
	}

	relayed := ls.backendPID(t, ctx, ls.p.DSN(pgtest.TrustUser), nil)
	if again := ls.backendPID(t, ctx, ls.p.DSN(pgtest.TrustUser), nil); again == relayed {
		t.Errorf("two relayed sessions on one backend, %d", again)
	}

	off := startLoginProxy(t, fastThrottle, nil)
	pw := off.addLogin(t, "carol", off.role)
	a := off.backendPID(t, ctx, off.dsn("carol", pw), nil)
	if b := off.backendPID(t, ctx, off.dsn("carol", pw), nil); a == b {
		t.Errorf("reuse off: two sessions on one backend, %d", a)
	}
	if st := off.p.Server.ReuseStats(); st != (proxy.ReuseStats{}) {
		t.Errorf("reuse off: stats %+v", st)
	}
}

// TestReuseLeavesNothing: what a session leaves on its backend (temporary
// table, settings, prepared statement, LISTEN, advisory lock, WITH HOLD
// cursor) is gone for the next session on it.
func TestReuseLeavesNothing(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil, withReuse())
	pw := ls.addLogin(t, "alice", ls.role)
	ctx := proxytest.Ctx(t, 0)

	first := ls.backendPID(t, ctx, ls.dsn("alice", pw), func(conn *pgx.Conn) {
		for _, sql := range []string{
			"CREATE TEMP TABLE leak_tmp (secret text)",
			"INSERT INTO leak_tmp VALUES ('previous session')",
			"SET work_mem = '77MB'",
			"SELECT set_config('pgw.secret', 'previous session', false)",
			"PREPARE leak_stmt AS SELECT 1",
			"LISTEN leak_channel",
			"SELECT pg_advisory_lock(4242)",
			"BEGIN",
			"DECLARE leak_cursor CURSOR WITH HOLD FOR SELECT 1",
			"COMMIT",
		} {
			if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
	})

	conn := proxytest.Connect(t, ctx, ls.dsn("alice", pw))
	var pid int32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if pid != first {
		t.Fatalf("second session on backend %d, want the first's, %d: nothing tested", pid, first)
	}
	for _, c := range []struct{ what, sql string }{
		{"temporary table", "SELECT to_regclass('pg_temp.leak_tmp') IS NULL"},
		{"SET", "SELECT current_setting('work_mem') <> '77MB'"},
		{"set_config", "SELECT current_setting('pgw.secret', true) IS DISTINCT FROM 'previous session'"},
		{"prepared statement", "SELECT NOT EXISTS (SELECT FROM pg_prepared_statements WHERE name = 'leak_stmt')"},
		{"LISTEN", "SELECT NOT EXISTS (SELECT FROM pg_listening_channels() c WHERE c = 'leak_channel')"},
		{"advisory lock", "SELECT NOT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())"},
		{"WITH HOLD cursor", "SELECT NOT EXISTS (SELECT FROM pg_cursors WHERE name = 'leak_cursor')"},
	} {
		var gone bool
		if err := conn.QueryRow(ctx, c.sql, pgx.QueryExecModeSimpleProtocol).Scan(&gone); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if !gone {
			t.Errorf("the previous session's %s is still there", c.what)
		}
	}
}

// TestReuseNotAfterUncleanEnd: a backend whose session ended inside a
// transaction, a failed transaction or a COPY, or whose statement the
// guard blocked, is not given to the next session.
func TestReuseNotAfterUncleanEnd(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil, withReuse(), proxytest.WithRowLimit(5))
	pw := ls.addLogin(t, "alice", ls.role)
	ctx := proxytest.Ctx(t, 0)
	dsn := ls.dsn("alice", pw)
	table := proxytest.UniqueName(t)
	pgtest.Shared(t).Exec(t, fmt.Sprintf("CREATE TABLE %s (n int); GRANT INSERT ON %[1]s TO %s", table, pgx.Identifier{ls.role}.Sanitize()))
	super := proxytest.SuperConn(t, ctx)

	for _, tc := range []struct {
		name string
		end  func(t *testing.T, conn *pgx.Conn)
	}{
		{"in a transaction", func(t *testing.T, conn *pgx.Conn) {
			proxytest.MustExec(t, ctx, conn, "BEGIN")
		}},
		{"in a failed transaction", func(t *testing.T, conn *pgx.Conn) {
			proxytest.MustExec(t, ctx, conn, "BEGIN")
			if _, err := conn.Exec(ctx, "SELECT 1/0"); err == nil {
				t.Fatal("1/0 did not fail")
			}
		}},
		{"in COPY FROM STDIN", func(t *testing.T, conn *pgx.Conn) {
			r, w := io.Pipe()
			defer w.Close()
			done := make(chan error, 1)
			go func() {
				_, err := conn.PgConn().CopyFrom(ctx, r, "COPY "+table+" FROM STDIN")
				done <- err
			}()
			w.Write([]byte("1\n"))
			proxytest.WaitRunning(t, ctx, super, "COPY "+table, 1)
			conn.PgConn().Conn().Close()
			w.CloseWithError(errors.New("the client went away"))
			if err := <-done; err == nil {
				t.Error("COPY succeeded after its connection closed")
			}
		}},
		{"in an extended-protocol batch without Sync", func(t *testing.T, conn *pgx.Conn) {
			// The INSERT runs in the batch's implicit transaction, which
			// the server rolls back when the client leaves without Sync.
			fe := conn.PgConn().Frontend()
			fe.Send(&pgproto3.Parse{Query: "INSERT INTO " + table + " VALUES (42)"})
			fe.Send(&pgproto3.Bind{})
			fe.Send(&pgproto3.Execute{})
			fe.Send(&pgproto3.Flush{})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			for {
				msg, err := fe.Receive()
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := msg.(*pgproto3.CommandComplete); ok {
					break
				}
			}
		}},
		{"after a block", func(t *testing.T, conn *pgx.Conn) {
			_, err := conn.Exec(ctx, "SELECT generate_series(1, 100)")
			proxytest.WantCode(t, err, "42501")
			proxytest.CheckUsable(t, ctx, conn)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A key of its own: what an earlier case parked is not in play.
			dsn := withParam(t, dsn, "application_name", proxytest.UniqueName(t))
			before := ls.settled(t).Parked
			first := ls.backendPID(t, ctx, dsn, func(conn *pgx.Conn) { tc.end(t, conn) })
			if st := ls.settled(t); st.Parked != before {
				t.Fatalf("%d connections parked, want %d", st.Parked, before)
			}
			if again := ls.backendPID(t, ctx, dsn, nil); again == first {
				t.Errorf("the next session got the backend, %d", first)
			}
			var uncommitted int
			if err := super.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE n = 42").Scan(&uncommitted); err != nil || uncommitted != 0 {
				t.Errorf("%d rows the client never committed are in the table (%v)", uncommitted, err)
			}
			// The clean session that followed did park its backend.
			if st := ls.settled(t); st.Parked != before+1 {
				t.Fatalf("a clean session left %d connections parked, want %d", st.Parked, before+1)
			}
		})
	}
}

// TestReuseStaleCancelKey: the previous client's cancel key cancels
// nothing of the next client on the same backend; the next client's own
// key does, and that backend is not reused after.
func TestReuseStaleCancelKey(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil, withReuse())
	pw := ls.addLogin(t, "alice", ls.role)
	ctx := proxytest.Ctx(t, 0)
	super := proxytest.SuperConn(t, ctx)

	var oldPID uint32
	var oldSecret []byte
	first := ls.backendPID(t, ctx, ls.dsn("alice", pw), func(conn *pgx.Conn) {
		oldPID, oldSecret = conn.PgConn().PID(), conn.PgConn().SecretKey()
	})

	conn := proxytest.Connect(t, ctx, ls.dsn("alice", pw))
	marker := proxytest.UniqueName(t)
	run := func(seconds int) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := conn.Exec(ctx, fmt.Sprintf("SELECT pg_sleep(%d) /* %s */", seconds, marker))
			done <- err
		}()
		proxytest.WaitRunning(t, ctx, super, marker, 1)
		return done
	}
	done := run(1)
	var pid int32
	sendCancel(t, ctx, ls.p.Addr, oldPID, oldSecret)
	if err := <-done; err != nil {
		t.Fatalf("the previous client's cancel key reached the next client's query: %v", err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil || pid != first {
		t.Fatalf("second session on backend %d (%v), want the first's, %d: nothing tested", pid, err, first)
	}

	done = run(10)
	sendCancel(t, ctx, ls.p.Addr, conn.PgConn().PID(), conn.PgConn().SecretKey())
	proxytest.WantCode(t, <-done, "57014")
	conn.Close(ctx)
	if st := ls.settled(t); st.Parked != 0 {
		t.Errorf("a backend that was sent a cancel was parked: %+v", st)
	}
}

// TestReuseKilledBackendReplaced: a parked backend that the server ended
// is not handed out; the next session gets a fresh one and works.
func TestReuseKilledBackendReplaced(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil, withReuse())
	pw := ls.addLogin(t, "alice", ls.role)
	ctx := proxytest.Ctx(t, 0)
	super := proxytest.SuperConn(t, ctx)

	first := ls.backendPID(t, ctx, ls.dsn("alice", pw), nil)
	proxytest.MustExec(t, ctx, super, "SELECT pg_terminate_backend($1)", first)
	proxytest.Eventually(t, 5*time.Second, "backend gone", func() (bool, string) {
		var n int
		err := super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", first).Scan(&n)
		return err == nil && n == 0, fmt.Sprintf("%d, %v", n, err)
	})
	conn := proxytest.Connect(t, ctx, ls.dsn("alice", pw))
	var pid int32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatalf("the session after a killed parked backend: %v", err)
	}
	if pid == first {
		t.Errorf("backend %d again", pid)
	}
}

// TestReuseKeys: sessions of different roles, databases or startup
// parameters never share a backend.
func TestReuseKeys(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil, withReuse())
	alicePW := ls.addLogin(t, "alice", ls.role)
	bobPW := ls.addLogin(t, "bob", pgtest.ScramUser)
	ctx := proxytest.Ctx(t, 0)
	dsn := ls.dsn("alice", alicePW)

	pid := ls.backendPID(t, ctx, dsn, nil)
	for _, other := range []struct{ name, dsn string }{
		{"other role", ls.dsn("bob", bobPW)},
		{"other database", withDatabase(t, dsn, "postgres")},
		{"other parameters", withParam(t, dsn, "application_name", proxytest.UniqueName(t))},
	} {
		if got := ls.backendPID(t, ctx, other.dsn, nil); got == pid {
			t.Errorf("%s: the backend of the first session, %d", other.name, pid)
		}
	}
	if got := ls.backendPID(t, ctx, dsn, nil); got != pid {
		t.Errorf("the first session's parameters again: backend %d, want %d", got, pid)
	}
}

// TestReuseShutdownClosesParked: a graceful shutdown ends the parked
// backends.
func TestReuseShutdownClosesParked(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil, withReuse())
	pw := ls.addLogin(t, "alice", ls.role)
	ctx := proxytest.Ctx(t, 0)
	super := proxytest.SuperConn(t, ctx)

	pid := ls.backendPID(t, ctx, ls.dsn("alice", pw), nil)
	if st := ls.p.Server.ReuseStats(); st.Parked != 1 {
		t.Fatalf("stats %+v, want one parked", st)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := ls.p.Server.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if st := ls.p.Server.ReuseStats(); st.Parked != 0 {
		t.Errorf("after shutdown: %+v", st)
	}
	proxytest.Eventually(t, 5*time.Second, "parked backend ended", func() (bool, string) {
		var n int
		err := super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n)
		return err == nil && n == 0, fmt.Sprintf("%d, %v", n, err)
	})
}

// TestReuseOverUpstreamTLS: over verified TLS to the server, a parked
// connection serves the next session, reset, and one the server ended
// while parked is replaced.
func TestReuseOverUpstreamTLS(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil, withReuse(), proxytest.WithUpstreamTLS(t, proxy.TLSVerifyFull, "localhost"))
	pw := ls.addLogin(t, "alice", ls.role)
	ctx := proxytest.Ctx(t, 0)
	super := proxytest.SuperConn(t, ctx)

	first := ls.backendPID(t, ctx, ls.dsn("alice", pw), func(conn *pgx.Conn) {
		proxytest.MustExec(t, ctx, conn, "SET work_mem = '77MB'")
	})
	conn := proxytest.Connect(t, ctx, ls.dsn("alice", pw))
	var pid int32
	var ssl bool
	var workMem string
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid(), ssl, current_setting('work_mem') FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&pid, &ssl, &workMem); err != nil {
		t.Fatal(err)
	}
	if pid != first || !ssl || workMem == "77MB" {
		t.Errorf("second session: backend %d (want %d), TLS %v, work_mem %s", pid, first, ssl, workMem)
	}
	conn.Close(ctx)
	ls.settled(t)

	proxytest.MustExec(t, ctx, super, "SELECT pg_terminate_backend($1)", first)
	proxytest.Eventually(t, 5*time.Second, "backend gone", func() (bool, string) {
		var n int
		err := super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", first).Scan(&n)
		return err == nil && n == 0, fmt.Sprintf("%d, %v", n, err)
	})
	if again := ls.backendPID(t, ctx, ls.dsn("alice", pw), nil); again == first {
		t.Errorf("backend %d again after it was terminated", again)
	}
}

// TestReusePsql: libpq starts normally on a reused connection, with the
// parameters it reads from the startup (encoding, server version,
// standard_conforming_strings) as after the previous session's reset.
func TestReusePsql(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil, withReuse())
	pw := ls.addLogin(t, "grace", ls.role)
	ctx := proxytest.Ctx(t, 0)
	dsn := ls.dsn("grace", pw)
	first := runPsql(t, ctx, dsn, "", "SET standard_conforming_strings = off", "SET client_encoding = 'LATIN1'", "SELECT pg_backend_pid()")
	if first.Exit != 0 {
		t.Fatalf("psql: exit %d, stderr %q", first.Exit, first.Stderr)
	}
	ls.settled(t)
	// \encoding prints the encoding libpq took from ParameterStatus.
	second := runPsql(t, ctx, dsn, "", "SELECT pg_backend_pid()", `SELECT 'a\b', current_setting('client_encoding'), current_setting('server_version') <> ''`, `\encoding`)
	if second.Exit != 0 {
		t.Fatalf("psql on the reused connection: exit %d, stderr %q", second.Exit, second.Stderr)
	}
	lines := strings.Split(strings.TrimSpace(second.Stdout), "\n")
	firstLines := strings.Split(strings.TrimSpace(first.Stdout), "\n")
	if len(lines) != 3 || len(firstLines) == 0 || lines[0] != firstLines[len(firstLines)-1] {
		t.Fatalf("first psql printed %q, second %q: not one backend", first.Stdout, second.Stdout)
	}
	if !strings.HasPrefix(lines[1], `a\b|`) || strings.Contains(lines[1], "LATIN1") || !strings.HasSuffix(lines[1], "|t") {
		t.Errorf("second psql printed %q: the previous session's settings", lines[1])
	}
	if enc := strings.Split(lines[1], "|")[1]; lines[2] != enc {
		t.Errorf("libpq's client encoding %q, the server's %q", lines[2], enc)
	}
}

// TestReuseNotAfterRefusal: a backend in whose session the guard refused
// a statement is not given to the next session.
func TestReuseNotAfterRefusal(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil, withReuse(), proxytest.WithInspector(refuser{}))
	pw := ls.addLogin(t, "alice", ls.role)
	ctx := proxytest.Ctx(t, 0)
	dsn := ls.dsn("alice", pw)

	clean := ls.backendPID(t, ctx, dsn, nil)
	refused := ls.backendPID(t, ctx, dsn, func(conn *pgx.Conn) {
		_, err := conn.Exec(ctx, "SELECT 'refuse_me'")
		wantRefused(t, err)
		proxytest.CheckUsable(t, ctx, conn)
	})
	if refused != clean {
		t.Fatalf("second session on backend %d, want the first's, %d: nothing tested", refused, clean)
	}
	if st := ls.settled(t); st.Parked != 0 {
		t.Errorf("%d connections parked after a refusal", st.Parked)
	}
	if again := ls.backendPID(t, ctx, dsn, nil); again == refused {
		t.Errorf("the next session got the backend, %d", again)
	}
}
