package e2e

import (
	"context"
	"github.com/pgwarden/pgwarden/test/proxytest"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/identity/oidc"
	"github.com/pgwarden/pgwarden/identity/oidc/oidctest"
	"github.com/pgwarden/pgwarden/identity/userstore"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// startOIDCProxy starts pgwarden with its own login over TLS, tokens of
// idp signing in every startup but those of application "scram", which use
// the logins file.
func startOIDCProxy(t *testing.T, idp *oidctest.IdP, edit func(*oidc.Config), opts ...proxytest.Option) *loginSetup {
	t.Helper()
	var v *oidc.Verifier
	all := append([]proxytest.Option{proxytest.WithClientTLS(t), proxytest.WithConfig(func(c *proxy.Config) {
		c.Login.Token = func(ctx context.Context, info *proxy.SessionInfo, token string) (*proxy.TokenIdentity, error) {
			return v.Token(ctx, info, token)
		}
	})}, opts...)
	ls := startLoginProxy(t, fastThrottle, func(info *proxy.SessionInfo) proxy.LoginMethod {
		if info.ApplicationName == "scram" {
			return proxy.LoginSCRAM
		}
		return proxy.LoginToken
	}, all...)
	cfg := oidc.Config{Issuer: idp.Issuer(), Audience: oidctest.ClientID, DefaultRole: ls.role,
		MinRefreshInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(ls.p.Logs, nil))}
	if edit != nil {
		edit(&cfg)
	}
	var err error
	if v, err = oidc.New(cfg); err != nil {
		t.Fatal(err)
	}
	return ls
}

// TestOIDCLogin: a token of the identity provider as the password signs
// the employee in (pgx and psql); pgwarden logs in upstream as the mapped
// role, and the session knows the employee, issuer, subject and groups.
func TestOIDCLogin(t *testing.T) {
	t.Parallel()
	idp := oidctest.New(t)
	ls := startOIDCProxy(t, idp, nil)
	ctx := proxytest.Ctx(t, 0)
	token := idp.Token(t, "Alice@Example.com", "support")

	conn := proxytest.Connect(t, ctx, ls.dsn("alice", token, "sslmode=require"), withApp("oidc-pgx"))
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != ls.role {
		t.Fatalf("current_user %q, %v; want %q", user, err, ls.role)
	}
	info := ls.rec.session(t, "oidc-pgx").info
	if info.Employee != "alice@example.com" || info.IdentifiedBy != proxy.IdentifiedByOIDC || info.Issuer != idp.Issuer() ||
		info.Subject != "sub-Alice@Example.com" || strings.Join(info.Groups, ",") != "support" || info.SessionEnd.IsZero() {
		t.Errorf("session identity %+v", info)
	}

	var listed bool
	for _, snap := range ls.p.Server.List() {
		if snap.Application == "oidc-pgx" {
			listed = snap.IdentifiedBy == "oidc" && snap.Issuer == idp.Issuer() && snap.Subject == "sub-Alice@Example.com" &&
				strings.Join(snap.Groups, ",") == "support"
		}
	}
	if !listed {
		t.Errorf("the sessions list does not show the token's identity: %+v", ls.p.Server.List())
	}

	res := runPsql(t, ctx, ls.dsn("alice@example.com", token, "sslmode=require"), "", "SELECT current_user")
	if res.Exit != 0 || strings.TrimSpace(res.Stdout) != ls.role {
		t.Fatalf("psql with a token: exit %d, stdout %q, stderr %q", res.Exit, res.Stdout, res.Stderr)
	}
	expired := idp.Claims("alice@example.com")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	res = runPsql(t, ctx, ls.dsn("alice@example.com", idp.Sign(t, expired), "sslmode=require"), "", "SELECT 1")
	if res.Exit != 2 || !strings.Contains(res.Stderr, `FATAL:  pgwarden: password authentication failed for user "alice@example.com"`) {
		t.Errorf("psql with an expired token: exit %d, stderr %q", res.Exit, res.Stderr)
	}

	// A token is cleartext: never without TLS.
	_, err := proxytest.TryConnect(ctx, ls.dsn("alice", token, "sslmode=disable"))
	if e := proxytest.WantCode(t, err, "28000"); !strings.Contains(e.Message, "only allowed over TLS") {
		t.Errorf("token without TLS: %q", e.Message)
	}

	// The logins file still serves the startups it is configured for.
	pw := ls.addLogin(t, "bob", ls.role)
	proxytest.CheckUsable(t, ctx, proxytest.Connect(t, ctx, ls.dsn("bob", pw, "sslmode=require"), withApp("scram")))
	if ls.p.Logs.Contains(token) {
		t.Error("the token is in the log")
	}
}

// TestOIDCRefused: every bad token gets the same FATAL 28P01 as a wrong
// password, and the server log says which check failed; the token is
// never logged.
func TestOIDCRefused(t *testing.T) {
	t.Parallel()
	idp := oidctest.New(t)
	other := oidctest.New(t)
	ls := startOIDCProxy(t, idp, nil)
	ctx := proxytest.Ctx(t, 0)
	now := time.Now()
	with := func(edit func(map[string]any)) string {
		c := idp.Claims("mallory@example.com")
		edit(c)
		return idp.Sign(t, c)
	}
	_, err := proxytest.TryConnect(ctx, ls.dsn("nobody", "wrong-password", "sslmode=require"), withApp("scram"))
	want := proxytest.WantCode(t, err, "28P01").Message
	if want != `pgwarden: password authentication failed for user "nobody"` {
		t.Fatalf("wrong password: %q", want)
	}
	for _, tc := range []struct{ name, token, reason string }{
		{"wrong audience", with(func(c map[string]any) { c["aud"] = "another-app" }), oidc.ReasonWrongAudience},
		{"wrong issuer", with(func(c map[string]any) { c["iss"] = other.Issuer() }), oidc.ReasonWrongIssuer},
		{"expired", with(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }), oidc.ReasonExpired},
		{"not yet valid", with(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }), oidc.ReasonNotYetValid},
		{"bad signature", other.Token(t, "mallory@example.com"), oidc.ReasonBadSignature},
		{"unknown kid", oidctest.SignWith(t, oidctest.Unpublished(t, "kid-nobody-has"), idp.Claims("mallory@example.com"), nil), oidc.ReasonUnknownKey},
		{"alg none", oidctest.Unsigned(idp.Claims("mallory@example.com")), oidc.ReasonMalformed},
		{"ES256 not accepted", oidctest.SignWith(t, oidctest.ECKey(t, "ec"), idp.Claims("mallory@example.com"), map[jose.HeaderKey]any{}), oidc.ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := proxytest.TryConnect(ctx, ls.dsn("nobody", tc.token, "sslmode=require"))
			if e := proxytest.WantCode(t, err, "28P01"); e.Message != want {
				t.Errorf("message %q, want %q", e.Message, want)
			}
			ls.p.Logs.WaitFor(t, 5*time.Second, "login_failed", "method=token", "reason=\""+tc.reason)
			if ls.p.Logs.Contains(tc.token) {
				t.Error("the token is in the log")
			}
		})
	}
}

// TestOIDCKeyRotationAndOutage: a token signed with a new key is accepted
// (the keys are fetched again), and while the identity provider is down
// tokens signed with a cached key still are.
func TestOIDCKeyRotationAndOutage(t *testing.T) {
	t.Parallel()
	idp := oidctest.New(t)
	ls := startOIDCProxy(t, idp, nil)
	ctx := proxytest.Ctx(t, 0)
	proxytest.CheckUsable(t, ctx, proxytest.Connect(t, ctx, ls.dsn("carol", idp.Token(t, "carol@example.com"), "sslmode=require")))
	fetches := idp.JWKSFetches.Load()
	idp.Rotate(t)
	proxytest.Eventually(t, 5*time.Second, "a token of the new key accepted", func() (bool, string) {
		conn, err := proxytest.TryConnect(ctx, ls.dsn("carol", idp.Token(t, "carol@example.com"), "sslmode=require"))
		if err != nil {
			return false, err.Error()
		}
		conn.Close(ctx)
		return true, ""
	})
	if idp.JWKSFetches.Load() == fetches {
		t.Error("the keys were not fetched again after the rotation")
	}
	idp.SetDown(true)
	proxytest.CheckUsable(t, ctx, proxytest.Connect(t, ctx, ls.dsn("carol", idp.Token(t, "carol@example.com"), "sslmode=require")))
	_, err := proxytest.TryConnect(ctx, ls.dsn("carol", oidctest.SignWith(t, oidctest.Unpublished(t, "new"), idp.Claims("carol@example.com"), nil), "sslmode=require"))
	proxytest.WantCode(t, err, "28P01")
}

// TestOIDCSessionEnd: a session that outlives its sign-in ends at its next
// clean point with a FATAL asking to sign in again: a statement running
// at the deadline completes first; an idle session ends at the deadline.
func TestOIDCSessionEnd(t *testing.T) {
	t.Parallel()
	idp := oidctest.New(t)
	ls := startOIDCProxy(t, idp, nil)
	ctx := proxytest.Ctx(t, 0)
	short := func(d time.Duration) string {
		c := idp.Claims("dora@example.com")
		c["exp"] = time.Now().Add(d).Unix()
		return idp.Sign(t, c)
	}

	busy := proxytest.Connect(t, ctx, ls.dsn("dora", short(4*time.Second), "sslmode=require"), withApp("busy"))
	end := ls.rec.session(t, "busy").info.SessionEnd
	if d := time.Until(end); d <= 0 || d > 4*time.Second {
		t.Fatalf("session end in %v", d)
	}
	// The statement runs across the session's end.
	if _, err := busy.Exec(ctx, "SELECT pg_sleep(greatest(1, extract(epoch FROM $1::timestamptz - now()) + 1))", end); err != nil {
		t.Fatalf("statement across the deadline: %v", err)
	}
	_, err := busy.Exec(ctx, "SELECT 1")
	if e := proxytest.WantCode(t, err, "28000"); !strings.Contains(e.Message, "sign in again") {
		t.Errorf("after the deadline: %q", e.Message)
	}

	idle := proxytest.Connect(t, ctx, ls.dsn("dora", short(2*time.Second), "sslmode=require"), withApp("idle"))
	ls.p.Logs.WaitFor(t, 10*time.Second, "session_sign_in_expired", "employee=dora@example.com")
	_, err = idle.Exec(ctx, "SELECT 1")
	if e := proxytest.WantCode(t, err, "28000"); !strings.Contains(e.Message, "sign in again") {
		t.Errorf("idle session after the deadline: %q", e.Message)
	}

	// allow: the session runs on.
	ls2 := startOIDCProxy(t, idp, func(c *oidc.Config) { c.OnExpiry = oidc.ExpiryAllow })
	conn := proxytest.Connect(t, ctx, ls2.dsn("dora", short(time.Second), "sslmode=require"), withApp("allow"))
	if !ls2.rec.session(t, "allow").info.SessionEnd.IsZero() {
		t.Fatal("on_expiry allow set a session end")
	}
	if _, err := conn.Exec(ctx, "SELECT pg_sleep(2)"); err != nil {
		t.Fatal(err)
	}
	proxytest.CheckUsable(t, ctx, conn)
}

// BenchmarkLoginMethods compares the time to connect over TLS directly to
// PostgreSQL (SCRAM), through pgwarden's own SCRAM login, and through
// pgwarden with a token of the identity provider (keys cached), in the
// same run.
func BenchmarkLoginMethods(b *testing.B) {
	c := pgtest.Shared(b)
	idp := oidctest.New(b)
	store, err := userstore.Open(filepath.Join(b.TempDir(), "users.json"), userstore.Options{Throttle: fastThrottle})
	if err != nil {
		b.Fatal(err)
	}
	if err := store.Add("bench", pgtest.ScramUser, "bench-password"); err != nil {
		b.Fatal(err)
	}
	v, err := oidc.New(oidc.Config{Issuer: idp.Issuer(), Audience: oidctest.ClientID, DefaultRole: pgtest.ScramUser,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	p := proxytest.Start(b, proxytest.WithClientTLS(b), proxytest.WithConfig(func(cfg *proxy.Config) {
		cfg.Logger = slog.New(slog.DiscardHandler)
		cfg.Login = &proxy.Login{Accounts: store, Token: v.Token,
			Method: func(info *proxy.SessionInfo) proxy.LoginMethod {
				if info.User == "bench" {
					return proxy.LoginSCRAM
				}
				return proxy.LoginToken
			},
			Credentials: func(context.Context, string) (string, error) { return pgtest.Password, nil }}
	}))
	ctx := context.Background()
	via := func(user, password string) string {
		u, _ := url.Parse(p.DSN(pgtest.TrustUser, "sslmode=require"))
		u.User = url.UserPassword(user, password)
		return u.String()
	}
	token := idp.Token(b, "bench@example.com")
	for _, m := range []struct{ name, dsn string }{
		{"direct", c.DSN(pgtest.ScramUser, "sslmode=require")},
		{"pgwarden-scram", via("bench", "bench-password")},
		{"pgwarden-oidc", via("bench@example.com", token)},
	} {
		b.Run(m.name, func(b *testing.B) {
			for b.Loop() {
				conn, err := pgconn.Connect(ctx, m.dsn)
				if err != nil {
					b.Fatal(err)
				}
				conn.Close(ctx)
			}
		})
	}
}
