package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/identity/userstore"
	"github.com/pgwarden/pgwarden/internal/scram"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// fastThrottle lets tests fail logins without waiting or locking out.
var fastThrottle = userstore.Throttle{MaxFailures: 100, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond}

// loginSetup is a pgwarden with its own login in front of the shared
// cluster: logins in a fresh users file, and a database role made for the
// test whose password only pgwarden's credentials know.
type loginSetup struct {
	p     *proxytest.Proxy
	store *userstore.Store
	rec   *recorder
	// role is the test's upstream role and rolePassword its password.
	role, rolePassword string
	// identified is what Identify saw of each session, by employee.
	mu         sync.Mutex
	identified map[string]proxy.SessionInfo
}

// startLoginProxy starts pgwarden with Login; method nil is SCRAM for all.
func startLoginProxy(t *testing.T, th userstore.Throttle, method func(*proxy.SessionInfo) proxy.LoginMethod, opts ...proxytest.Option) *loginSetup {
	t.Helper()
	ls := &loginSetup{rec: &recorder{}, identified: make(map[string]proxy.SessionInfo)}
	ls.role = "pgw_login_" + strings.TrimPrefix(proxytest.UniqueName(t), "e2e_")
	if len(ls.role) > 63 {
		ls.role = ls.role[len(ls.role)-63:]
	}
	ls.rolePassword = "upstream-" + randomHex(t, 16)
	pgtest.Shared(t).Exec(t, fmt.Sprintf(`SET password_encryption = 'scram-sha-256';
		CREATE ROLE %s LOGIN PASSWORD '%s'`, pgx.Identifier{ls.role}.Sanitize(), ls.rolePassword))

	logs := proxytest.NewLogCapture(t)
	store, err := userstore.Open(filepath.Join(t.TempDir(), "users.json"), userstore.Options{
		Throttle: th,
		Recheck:  -1,
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ls.store = store
	creds := map[string]string{
		ls.role:          ls.rolePassword,
		pgtest.PlainUser: pgtest.Password,
		pgtest.MD5User:   pgtest.Password,
		pgtest.ScramUser: pgtest.Password,
		"pgw_wrong_cred": "not-the-password",
	}
	login := &proxy.Login{
		Method:   method,
		Accounts: store,
		Credentials: func(_ context.Context, role string) (string, error) {
			pw, ok := creds[role]
			if !ok {
				return "", fmt.Errorf("no password configured for role %q", role)
			}
			return pw, nil
		},
	}
	all := append([]proxytest.Option{proxytest.WithInspector(ls.rec), proxytest.WithConfig(func(c *proxy.Config) {
		c.Login = login
		c.Identify = func(_ context.Context, info *proxy.SessionInfo) error {
			ls.mu.Lock()
			ls.identified[info.Employee] = *info
			ls.mu.Unlock()
			return nil
		}
	})}, opts...)
	ls.p = proxytest.Start(t, all...)
	return ls
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// addLogin adds a login with a random password and returns the password.
func (ls *loginSetup) addLogin(t *testing.T, name, role string) string {
	t.Helper()
	pw := "employee-" + randomHex(t, 8)
	if err := ls.store.Add(name, role, pw); err != nil {
		t.Fatal(err)
	}
	return pw
}

// dsn is a URL that logs in to pgwarden as login with password.
func (ls *loginSetup) dsn(login, password string, params ...string) string {
	u, err := url.Parse(ls.p.DSN(pgtest.TrustUser, params...))
	if err != nil {
		panic(err)
	}
	u.User = url.UserPassword(login, password)
	return u.String()
}

// tap records what a client receives, after TLS.
type tap struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

type tapConn struct {
	net.Conn
	tap *tap
}

func (c tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.tap.mu.Lock()
	c.tap.buf.Write(p[:n])
	c.tap.mu.Unlock()
	return n, err
}

func (tp *tap) install(cfg *pgx.ConnConfig) {
	cfg.AfterNetConnect = func(_ context.Context, _ *pgconn.Config, conn net.Conn) (net.Conn, error) {
		return tapConn{Conn: conn, tap: tp}, nil
	}
}

func (tp *tap) bytes() []byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return bytes.Clone(tp.buf.Bytes())
}

// authRequest is the AuthenticationRequest frame with code.
func authRequest(code uint32) []byte {
	b := []byte{'R', 0, 0, 0, 8, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[5:], code)
	return b
}

func withApp(app string) func(*pgx.ConnConfig) {
	return func(cfg *pgx.ConnConfig) { cfg.RuntimeParams["application_name"] = app }
}

// TestLoginSCRAM: an employee logs in to pgwarden with SCRAM-SHA-256 and
// reaches the database as the role the login maps to; the guard sees the
// login name as the employee, and the client never sees the role's password.
func TestLoginSCRAM(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, func(info *proxy.SessionInfo) proxy.LoginMethod {
		if info.User == pgtest.TrustUser {
			return proxy.LoginRelay
		}
		return proxy.LoginSCRAM
	})
	pw := ls.addLogin(t, "alice@example.com", ls.role)
	ctx := proxytest.Ctx(t, 0)

	var received tap
	conn := proxytest.Connect(t, ctx, ls.dsn("alice@example.com", pw), received.install, withApp("login-scram"))
	var currentUser, sessionUser string
	if err := conn.QueryRow(ctx, "SELECT current_user, session_user").Scan(&currentUser, &sessionUser); err != nil {
		t.Fatal(err)
	}
	if currentUser != ls.role || sessionUser != ls.role {
		t.Errorf("current_user %q, session_user %q; want the mapped role %q", currentUser, sessionUser, ls.role)
	}
	info := ls.rec.session(t, "login-scram").info
	if info.Employee != "alice@example.com" || info.IdentifiedBy != proxy.IdentifiedByLogin || info.User != ls.role || info.Database != pgtest.Shared(t).Database {
		t.Errorf("inspector saw employee %q identified by %q, role %q, database %q", info.Employee, info.IdentifiedBy, info.User, info.Database)
	}
	if info.Parameters["user"] != "alice@example.com" {
		t.Errorf("SessionInfo.Parameters[user] = %q, want what the client sent", info.Parameters["user"])
	}
	ls.mu.Lock()
	id, ok := ls.identified["alice@example.com"]
	ls.mu.Unlock()
	if !ok || id.User != ls.role || id.IdentifiedBy != proxy.IdentifiedByLogin {
		t.Errorf("Identify did not run after the login: %+v", id)
	}

	got := received.bytes()
	if !bytes.Contains(got, []byte(scram.SHA256)) || !bytes.Contains(got, authRequest(0)) || !bytes.Contains(got, []byte("server_version")) {
		t.Fatalf("the tap did not record the startup (%d bytes)", len(got))
	}
	if bytes.Contains(got, authRequest(3)) || bytes.Contains(got, authRequest(5)) {
		t.Error("the client was asked for a password in cleartext or md5")
	}
	for _, secret := range []string{ls.rolePassword, pw} {
		if bytes.Contains(got, []byte(secret)) {
			t.Errorf("the client received the password %q", secret)
		}
		if ls.p.Logs.Contains(secret) {
			t.Errorf("the logs hold the password %q", secret)
		}
	}
	if !ls.p.Logs.Contains("login_succeeded", "alice@example.com") {
		t.Error("no login_succeeded log line")
	}

	// Startups the method leaves alone still authenticate upstream.
	relayed := proxytest.Connect(t, ctx, ls.p.DSN(pgtest.TrustUser), withApp("login-relay"))
	proxytest.CheckUsable(t, ctx, relayed)
	if info := ls.rec.session(t, "login-relay").info; info.IdentifiedBy != proxy.IdentifiedByRole || info.Employee != pgtest.TrustUser {
		t.Errorf("relayed session identified as %q by %q", info.Employee, info.IdentifiedBy)
	}
}

// TestLoginRefused: a wrong password, an unknown name and a disabled login
// all get the same FATAL 28P01, and no session starts.
func TestLoginRefused(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil)
	pw := ls.addLogin(t, "bob", ls.role)
	disabledPW := ls.addLogin(t, "carol", ls.role)
	if err := ls.store.SetDisabled("carol", true); err != nil {
		t.Fatal(err)
	}
	ctx := proxytest.Ctx(t, 0)
	for _, tc := range []struct{ name, login, password string }{
		{"wrong password", "bob", pw + "x"},
		{"empty password", "bob", ""},
		{"unknown login", "mallory", pw},
		{"disabled login", "carol", disabledPW},
		{"role name as login", ls.role, ls.rolePassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := proxytest.TryConnect(ctx, ls.dsn(tc.login, tc.password))
			pgErr := proxytest.WantCode(t, err, "28P01")
			want := fmt.Sprintf("pgwarden: password authentication failed for user %q", tc.login)
			if pgErr.Severity != "FATAL" || pgErr.Message != want {
				t.Errorf("%s %q, want FATAL %q", pgErr.Severity, pgErr.Message, want)
			}
		})
	}
	ls.rec.mu.Lock()
	n := len(ls.rec.sessions)
	ls.rec.mu.Unlock()
	if n != 0 {
		t.Errorf("%d sessions started after refused logins", n)
	}
	if !ls.p.Logs.Contains("login_failed", "mallory", "no such login") || !ls.p.Logs.Contains("login_failed", "carol", "disabled") {
		t.Error("the logs do not say why logins failed")
	}
}

// scramStart starts a SCRAM exchange with pgwarden as login, by hand, and
// returns the client and the server-first-message.
func scramStart(t *testing.T, ctx context.Context, ls *loginSetup, login string) (*proxytest.RawConn, *scram.Client, string) {
	t.Helper()
	rc := proxytest.DialRaw(t, ctx, ls.p.Addr)
	rc.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": login, "database": pgtest.Shared(t).Database}})
	sasl, ok := rc.Receive().(*pgproto3.AuthenticationSASL)
	if !ok || !slices.Equal(sasl.AuthMechanisms, []string{scram.SHA256}) {
		t.Fatalf("first answer %+v, want AuthenticationSASL offering SCRAM-SHA-256 only", sasl)
	}
	sc, err := scram.NewClient(sasl.AuthMechanisms, "guess", nil)
	if err != nil {
		t.Fatal(err)
	}
	rc.Send(&pgproto3.SASLInitialResponse{AuthMechanism: sc.Mechanism(), Data: sc.ClientFirst()})
	cont, ok := rc.Receive().(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		t.Fatalf("second answer %T, want AuthenticationSASLContinue", cont)
	}
	return rc, sc, string(cont.Data)
}

// saltAndIterations are the s= and i= of a server-first-message.
func saltAndIterations(t *testing.T, serverFirst string) (salt []byte, iter string) {
	t.Helper()
	attrs := strings.Split(serverFirst, ",")
	if len(attrs) != 3 || !strings.HasPrefix(attrs[1], "s=") || !strings.HasPrefix(attrs[2], "i=") {
		t.Fatalf("server-first %q", serverFirst)
	}
	salt, err := base64.StdEncoding.DecodeString(attrs[1][2:])
	if err != nil {
		t.Fatal(err)
	}
	return salt, attrs[2][2:]
}

// TestLoginUnknownNameLooksReal: for a name with no login, pgwarden runs
// the same exchange as for a real one, with a salt that stays the same, and
// fails it only at the proof, with the same error.
func TestLoginUnknownNameLooksReal(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil)
	ls.addLogin(t, "dave", ls.role)
	ctx := proxytest.Ctx(t, 0)
	u, err := ls.store.Get("dave")
	if err != nil {
		t.Fatal(err)
	}
	v, err := scram.ParseVerifier(u.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	var salts [][]byte
	var errs []string
	for _, login := range []string{"dave", "ghost", "ghost"} {
		rc, sc, first := scramStart(t, ctx, ls, login)
		salt, iter := saltAndIterations(t, first)
		if iter != "4096" || len(salt) != 16 {
			t.Errorf("%s: salt of %d bytes, %s iterations", login, len(salt), iter)
		}
		salts = append(salts, salt)
		final, err := sc.ServerFirst([]byte(first))
		if err != nil {
			t.Fatal(err)
		}
		rc.Send(&pgproto3.SASLResponse{Data: final})
		e := rc.ReadError()
		errs = append(errs, e.Severity+" "+e.Code+" "+strings.Replace(e.Message, login, "NAME", 1))
	}
	if !bytes.Equal(salts[0], v.Salt) {
		t.Error("the real login's exchange does not use its salt")
	}
	if !bytes.Equal(salts[1], salts[2]) {
		t.Error("an unknown name's salt changes from one attempt to the next")
	}
	if errs[0] != errs[1] || errs[1] != errs[2] || !strings.Contains(errs[0], "28P01") {
		t.Errorf("errors differ: %q", errs)
	}
}

// TestLoginUpstreamMethods: pgwarden logs in upstream with the configured
// password whatever method the server asks for.
func TestLoginUpstreamMethods(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil)
	ctx := proxytest.Ctx(t, 0)
	// The role's password goes in cleartext only to a verified server.
	login := "emp-plain-unverified"
	pw := ls.addLogin(t, login, pgtest.PlainUser)
	var received tap
	_, err := proxytest.TryConnect(ctx, ls.dsn(login, pw), received.install)
	if pgErr := proxytest.WantCode(t, err, "28000"); !strings.Contains(pgErr.Message, "cleartext") {
		t.Errorf("cleartext upstream without verify-full: %q", pgErr.Message)
	}
	if bytes.Contains(received.bytes(), []byte(pgtest.Password)) {
		t.Error("the client received the upstream password")
	}
	verified := startLoginProxy(t, fastThrottle, nil, proxytest.WithUpstreamTLS(t, proxy.TLSVerifyFull, "localhost"))
	for _, tc := range []struct {
		ls   *loginSetup
		role string
	}{{verified, pgtest.PlainUser}, {ls, pgtest.MD5User}, {ls, pgtest.ScramUser}} {
		ls, role := tc.ls, tc.role
		t.Run(role, func(t *testing.T) {
			login := "emp-" + role
			pw := ls.addLogin(t, login, role)
			var received tap
			conn := proxytest.Connect(t, ctx, ls.dsn(login, pw), received.install)
			var user string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != role {
				t.Fatalf("current_user %q, %v; want %q", user, err, role)
			}
			if bytes.Contains(received.bytes(), []byte(pgtest.Password)) {
				t.Error("the client received the upstream password")
			}
		})
	}
	if ls.p.Logs.Contains(pgtest.Password) {
		t.Error("the logs hold the upstream password")
	}
}

// TestLoginUpstreamRefuses: an employee with the right password whose role
// pgwarden cannot log in as is told so, without the configured password.
func TestLoginUpstreamRefuses(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil)
	ctx := proxytest.Ctx(t, 0)
	wrong := ls.addLogin(t, "erin", pgtest.ScramUser)
	// The role exists, the configured password is not its own.
	if err := ls.store.SetRole("erin", "pgw_wrong_cred"); err != nil {
		t.Fatal(err)
	}
	pgtest.Shared(t).Exec(t, `SET password_encryption = 'scram-sha-256';
		DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgw_wrong_cred') THEN CREATE ROLE pgw_wrong_cred LOGIN PASSWORD 'something-else'; END IF; END $$`)
	missing := ls.addLogin(t, "frank", "pgw_no_such_role_configured")

	_, err := proxytest.TryConnect(ctx, ls.dsn("erin", wrong))
	pgErr := proxytest.WantCode(t, err, "28000")
	if !strings.Contains(pgErr.Message, `could not log in upstream as role "pgw_wrong_cred"`) || strings.Contains(pgErr.Message+pgErr.Detail, "not-the-password") {
		t.Errorf("upstream refusal: %q (detail %q)", pgErr.Message, pgErr.Detail)
	}
	_, err = proxytest.TryConnect(ctx, ls.dsn("frank", missing))
	pgErr = proxytest.WantCode(t, err, "28000")
	if !strings.Contains(pgErr.Message, `no credentials for role "pgw_no_such_role_configured"`) {
		t.Errorf("missing credentials: %q", pgErr.Message)
	}
	if ls.p.Logs.Contains("not-the-password") {
		t.Error("the logs hold the configured password")
	}
}

// TestLoginPsql: psql (libpq) logs in with SCRAM through pgwarden.
func TestLoginPsql(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil)
	pw := ls.addLogin(t, "grace", ls.role)
	ctx := proxytest.Ctx(t, 0)
	res := runPsql(t, ctx, ls.dsn("grace", pw), "", "SELECT current_user")
	if res.Exit != 0 || strings.TrimSpace(res.Stdout) != ls.role {
		t.Fatalf("psql with the right password: exit %d, stdout %q, stderr %q", res.Exit, res.Stdout, res.Stderr)
	}
	res = runPsql(t, ctx, ls.dsn("grace", "not-"+pw), "", "SELECT current_user")
	if res.Exit != 2 || !strings.Contains(res.Stderr, `FATAL:  pgwarden: password authentication failed for user "grace"`) {
		t.Errorf("psql with a wrong password: exit %d, stderr %q", res.Exit, res.Stderr)
	}
	if strings.Contains(res.Stdout+res.Stderr, ls.rolePassword) {
		t.Error("psql printed the upstream password")
	}
}

// TestLoginCleartextOverTLS: for clients that cannot do SCRAM, pgwarden
// asks for the password in cleartext, only over TLS, and checks it against
// the same verifier.
func TestLoginCleartextOverTLS(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, func(info *proxy.SessionInfo) proxy.LoginMethod {
		if info.ApplicationName == "legacy" {
			return proxy.LoginPassword
		}
		return proxy.LoginSCRAM
	}, proxytest.WithClientTLS(t))
	pw := ls.addLogin(t, "heidi", ls.role)
	ctx := proxytest.Ctx(t, 0)

	var received tap
	conn := proxytest.Connect(t, ctx, ls.dsn("heidi", pw, "sslmode=require"), received.install, withApp("legacy"))
	proxytest.CheckUsable(t, ctx, conn)
	if got := received.bytes(); !bytes.Contains(got, authRequest(3)) || bytes.Contains(got, []byte(scram.SHA256)) {
		t.Error("the client was not asked for a cleartext password")
	}
	if info := ls.rec.session(t, "legacy").info; info.Employee != "heidi" || !info.ClientTLS {
		t.Errorf("employee %q, client TLS %v", info.Employee, info.ClientTLS)
	}

	_, err := proxytest.TryConnect(ctx, ls.dsn("heidi", "wrong", "sslmode=require"), withApp("legacy"))
	proxytest.WantCode(t, err, "28P01")

	_, err = proxytest.TryConnect(ctx, ls.dsn("heidi", pw, "sslmode=disable"), withApp("legacy"))
	pgErr := proxytest.WantCode(t, err, "28000")
	if !strings.Contains(pgErr.Message, "only allowed over TLS") {
		t.Errorf("cleartext without TLS: %q", pgErr.Message)
	}
}

// TestLoginMD5Refused: a client that answers with an md5 hash is told that
// md5 cannot be checked against pgwarden's SCRAM verifiers.
func TestLoginMD5Refused(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil)
	ls.addLogin(t, "ivan", ls.role)
	ctx := proxytest.Ctx(t, 0)
	rc := proxytest.DialRaw(t, ctx, ls.p.Addr)
	rc.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "ivan", "database": pgtest.Shared(t).Database}})
	if _, ok := rc.Receive().(*pgproto3.AuthenticationSASL); !ok {
		t.Fatal("no AuthenticationSASL")
	}
	rc.Send(&pgproto3.PasswordMessage{Password: "md5" + strings.Repeat("0123456789abcdef", 2)})
	e := rc.ReadError()
	if e.Code != "28000" || !strings.Contains(e.Message, "md5 password authentication is not supported") || !strings.Contains(e.Message, "SCRAM-SHA-256") {
		t.Errorf("md5 answer: %s %q", e.Code, e.Message)
	}
}

// TestLoginLockout: repeated failures lock the employee out with a clear
// message, even with the right password, until an administrator unlocks.
func TestLoginLockout(t *testing.T) {
	t.Parallel()
	th := fastThrottle
	th.MaxFailures = 3
	ls := startLoginProxy(t, th, nil)
	pw := ls.addLogin(t, "judy", ls.role)
	ctx := proxytest.Ctx(t, 0)
	for _, login := range []string{"judy", "nobody"} {
		for range 3 {
			_, err := proxytest.TryConnect(ctx, ls.dsn(login, "guess"))
			proxytest.WantCode(t, err, "28P01")
		}
		_, err := proxytest.TryConnect(ctx, ls.dsn(login, pw))
		pgErr := proxytest.WantCode(t, err, "28000")
		want := fmt.Sprintf("pgwarden: too many failed login attempts for user %q: locked out until ", login)
		if pgErr.Severity != "FATAL" || !strings.HasPrefix(pgErr.Message, want) || !strings.Contains(pgErr.Message, "pgwarden users unlock "+login) {
			t.Errorf("%s locked out: %s %q", login, pgErr.Severity, pgErr.Message)
		}
	}
	// psql shows the message too.
	res := runPsql(t, ctx, ls.dsn("judy", pw), "", "SELECT 1")
	if res.Exit != 2 || !strings.Contains(res.Stderr, "too many failed login attempts") {
		t.Errorf("psql while locked out: exit %d, stderr %q", res.Exit, res.Stderr)
	}

	// An administrator unlocks, from another process.
	cli, err := userstore.Open(ls.store.Path(), userstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if was, err := cli.Unlock("judy"); err != nil || !was {
		t.Fatalf("Unlock = %v, %v", was, err)
	}
	conn := proxytest.Connect(t, ctx, ls.dsn("judy", pw))
	proxytest.CheckUsable(t, ctx, conn)
}

// BenchmarkLogin compares a SCRAM login to PostgreSQL with one through
// pgwarden's own login (SCRAM with the client, then SCRAM upstream), and
// one that reuses a parked upstream connection instead.
func BenchmarkLogin(b *testing.B) {
	c := pgtest.Shared(b)
	store, err := userstore.Open(filepath.Join(b.TempDir(), "users.json"), userstore.Options{Throttle: fastThrottle})
	if err != nil {
		b.Fatal(err)
	}
	if err := store.Add("bench", pgtest.ScramUser, "bench-password"); err != nil {
		b.Fatal(err)
	}
	login := func(reuse *proxy.Reuse) string {
		p := proxytest.Start(b, proxytest.WithConfig(func(cfg *proxy.Config) {
			cfg.Logger = slog.New(slog.DiscardHandler)
			cfg.Login = &proxy.Login{Accounts: store, Credentials: func(context.Context, string) (string, error) {
				return pgtest.Password, nil
			}}
			cfg.Reuse = reuse
		}))
		u, _ := url.Parse(p.DSN(pgtest.TrustUser))
		u.User = url.UserPassword("bench", "bench-password")
		return u.String()
	}
	ctx := context.Background()
	for name, dsn := range map[string]string{"direct": c.DSN(pgtest.ScramUser), "pgwarden": login(nil), "pgwarden-reuse": login(&proxy.Reuse{})} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				conn, err := pgconn.Connect(ctx, dsn)
				if err != nil {
					b.Fatal(err)
				}
				conn.Close(ctx)
			}
		})
	}
}

// TestLoginChannelBinding: over TLS pgwarden's own login offers
// SCRAM-SHA-256-PLUS bound to its certificate, so that libpq with
// channel_binding=require connects; without TLS such a client is refused
// by libpq itself, as PostgreSQL's would be.
func TestLoginChannelBinding(t *testing.T) {
	t.Parallel()
	ls := startLoginProxy(t, fastThrottle, nil, proxytest.WithClientTLS(t))
	pw := ls.addLogin(t, "judy", ls.role)
	ctx := proxytest.Ctx(t, 0)
	res := runPsql(t, ctx, ls.dsn("judy", pw, "sslmode=require", "channel_binding=require"), "", "SELECT current_user")
	if res.Exit != 0 || strings.TrimSpace(res.Stdout) != ls.role {
		t.Fatalf("psql with channel_binding=require: exit %d, stdout %q, stderr %q", res.Exit, res.Stdout, res.Stderr)
	}
	ls.p.Logs.WaitFor(t, 5*time.Second, "login_succeeded", "login=judy", "channel_binding=true")
	proxytest.CheckUsable(t, ctx, proxytest.Connect(t, ctx, ls.dsn("judy", pw, "sslmode=require", "channel_binding=require")))
	res = runPsql(t, ctx, ls.dsn("judy", "not-"+pw, "sslmode=require", "channel_binding=require"), "", "SELECT 1")
	if res.Exit != 2 || !strings.Contains(res.Stderr, `password authentication failed for user "judy"`) {
		t.Errorf("wrong password, bound: exit %d, stderr %q", res.Exit, res.Stderr)
	}
	res = runPsql(t, ctx, ls.dsn("judy", pw, "sslmode=disable", "channel_binding=require"), "", "SELECT 1")
	if res.Exit != 2 || !strings.Contains(res.Stderr, "channel binding") {
		t.Errorf("bound without TLS: exit %d, stderr %q", res.Exit, res.Stderr)
	}
	// A client that prefers binding binds; one that disables it does not.
	res = runPsql(t, ctx, ls.dsn("judy", pw, "sslmode=require", "channel_binding=disable", "application_name=unbound"), "", "SELECT 1")
	if res.Exit != 0 {
		t.Fatalf("channel_binding=disable: exit %d, stderr %q", res.Exit, res.Stderr)
	}
}
