package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// TestIdentify: the Identify hook names the employee behind a session
// before anything goes upstream, and its error refuses the session with
// FATAL 28000 and its text.
func TestIdentify(t *testing.T) {
	rec := &recorder{}
	p := proxytest.Start(t, proxytest.WithInspector(rec), proxytest.WithConfig(func(c *proxy.Config) {
		c.Identify = func(_ context.Context, info *proxy.SessionInfo) error {
			switch info.ApplicationName {
			case "refused":
				return errors.New("no employee is known for this connection")
			case "named":
				info.Employee, info.IdentifiedBy = "alice@example.com", proxy.IdentifiedByCertificate
			}
			return nil
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dsn := proxytest.ViaAddr(p.Cluster.DSN(pgtest.TrustUser), p.Addr)
	connect := func(app string) (*pgx.Conn, error) {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["application_name"] = app
		return pgx.ConnectConfig(ctx, cfg)
	}
	_, err := connect("refused")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28000" || pgErr.Severity != "FATAL" || !strings.Contains(pgErr.Message, "no employee is known") {
		t.Fatalf("refused by Identify: %v", err)
	}
	for app, want := range map[string][2]string{
		"named":   {"alice@example.com", "certificate"},
		"default": {pgtest.TrustUser, "role"},
	} {
		conn, err := connect(app)
		if err != nil {
			t.Fatalf("%s: %v", app, err)
		}
		conn.Close(ctx)
		info := rec.session(t, app).info
		if info.Employee != want[0] || info.IdentifiedBy != want[1] || info.User != pgtest.TrustUser {
			t.Errorf("%s: employee %q identified by %q, role %q; want %q by %q", app, info.Employee, info.IdentifiedBy, info.User, want[0], want[1])
		}
	}
	if len(rec.sessions) != 2 {
		t.Errorf("%d sessions reached the inspector, want 2 (the refused one never started)", len(rec.sessions))
	}
}
