package guard_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/identity/oidc"
	"github.com/pgwarden/pgwarden/identity/oidc/oidctest"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// lockedBuffer is a decision log the test reads while the guard writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// oidcProxy starts pgwarden with the guard g and employees signing in with
// tokens of idp, logging in upstream as the trust user; it returns the
// address.
func oidcProxy(t *testing.T, g *guard.Guard, idp *oidctest.IdP, groupMap map[string]string) string {
	t.Helper()
	db := pgtest.Shared(t)
	v, err := oidc.New(oidc.Config{Issuer: idp.Issuer(), Audience: oidctest.ClientID, DefaultRole: pgtest.TrustUser, GroupMap: groupMap})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := db.IssueCert("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, false)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(proxy.Config{UpstreamAddr: db.Addr(), Inspector: g,
		ClientTLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		Login: &proxy.Login{
			Method:      func(*proxy.SessionInfo) proxy.LoginMethod { return proxy.LoginToken },
			Token:       v.Token,
			Credentials: func(context.Context, string) (string, error) { return "", nil },
		}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

func tokenConn(t *testing.T, ctx context.Context, addr, token string) *pgx.Conn {
	t.Helper()
	u := url.URL{Scheme: "postgres", User: url.UserPassword("employee", token), Host: addr,
		Path: pgtest.Shared(t).Database, RawQuery: "sslmode=require"}
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestOIDCGroups: the identity provider's groups, renamed by the group
// map, put the employee in policy groups: group rules apply to them, the
// first is the peer group of their norms, and a change of groups at the
// provider applies at the next session. Session events and decisions say
// the employee was identified by a token of the issuer, for the subject.
func TestOIDCGroups(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	model, err := norm.New(norm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	decisions := &lockedBuffer{}
	ev, _, g := setupGuard(t, withRules(t, `groups:
  support: []
  analysts: []
norms:
  enabled: true
rules:
  - name: support-limit
    subjects: [group:support]
    when:
      pii_rows: 5
    action: block
`), func(c *guard.Config) {
		c.Norms, c.Now, c.DecisionLog = model, func() time.Time { return now }, decisions
	})
	idp := oidctest.New(t)
	addr := oidcProxy(t, g, idp, map[string]string{"Customer Support": "support"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const q = "SELECT email FROM customers WHERE id <= 10"

	alice := tokenConn(t, ctx, addr, idp.Token(t, "alice@example.com", "Customer Support"))
	_, err = countRows(ctx, alice, q, pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "support-limit")
	if n := model.Norm("alice@example.com", now); n.Peer != "support" {
		t.Errorf("alice's peer group %q, want support", n.Peer)
	}
	var d guard.Decision
	if err := json.Unmarshal([]byte(strings.TrimSpace(decisions.String())), &d); err != nil {
		t.Fatalf("decision log %q: %v", decisions.String(), err)
	}
	if d.Employee != "alice@example.com" || d.IdentifiedBy != "oidc" || d.Issuer != idp.Issuer() || d.Subject != "sub-alice@example.com" {
		t.Errorf("decision %+v", d)
	}
	var start map[string]any
	ev.mu.Lock()
	for _, e := range ev.all {
		if e.Type == audit.TypeSessionStart && e.Employee == "alice@example.com" {
			json.Unmarshal(e.Data, &start)
		}
	}
	ev.mu.Unlock()
	if start["identified_by"] != "oidc" || start["issuer"] != idp.Issuer() || start["subject"] != "sub-alice@example.com" {
		t.Errorf("session_start data %v", start)
	}

	bob := tokenConn(t, ctx, addr, idp.Token(t, "bob@example.com", "analysts"))
	if n, err := countRows(ctx, bob, q, pgx.QueryExecModeSimpleProtocol); err != nil || n != 10 {
		t.Errorf("analyst: %d rows, %v", n, err)
	}
	if n := model.Norm("bob@example.com", now); n.Peer != "analysts" {
		t.Errorf("bob's peer group %q, want analysts", n.Peer)
	}

	// Alice leaves support at the provider: her next session is not
	// under its rule.
	alice2 := tokenConn(t, ctx, addr, idp.Token(t, "alice@example.com", "analysts"))
	if n, err := countRows(ctx, alice2, q, pgx.QueryExecModeSimpleProtocol); err != nil || n != 10 {
		t.Errorf("alice out of support: %d rows, %v", n, err)
	}
}
