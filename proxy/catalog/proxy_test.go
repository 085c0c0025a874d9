package catalog_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/proxy/catalog"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// namer is an inspector that resolves every result column through the
// catalog, as the policy's classifier does.
type namer struct {
	r     *catalog.Resolver
	mu    sync.Mutex
	names []string
}

func (n *namer) StartSession(context.Context, *proxy.SessionInfo) (proxy.SessionInspector, error) {
	return &namerSession{n: n}, nil
}

type namerSession struct {
	proxy.NopSessionInspector
	n *namer
}

func (s *namerSession) RowDescription(_ *proxy.Statement, fields []pgproto3.FieldDescription) {
	var names []string
	for _, f := range fields {
		col, err := s.n.r.Column(context.Background(), f.TableOID, int16(f.TableAttributeNumber))
		if err != nil {
			names = append(names, "?"+string(f.Name))
			continue
		}
		names = append(names, fmt.Sprintf("%s.%s.%s", col.Schema, col.Table, col.Name))
	}
	s.n.mu.Lock()
	s.n.names = names
	s.n.mu.Unlock()
}

func (n *namer) last() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.names)
}

// TestDDLThroughProxyInvalidates renames a column through pgwarden and
// checks that the very next result is resolved with the new name, long
// before the TTL would have refreshed it; DDL inside a transaction is seen
// after the commit.
func TestDDLThroughProxyInvalidates(t *testing.T) {
	db := pgtest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := db.Pool(t, pgtest.SuperUser)
	r, err := catalog.New(catalog.Config{Pool: pool, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	n := &namer{r: r}
	srv, err := proxy.NewServer(proxy.Config{UpstreamAddr: db.Addr(), Inspector: n,
		OnDDL: r.Invalidate, IsDDLTag: catalog.IsDDLTag})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	_, port, _ := net.SplitHostPort(ln.Addr().String())
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@127.0.0.1:%s/%s?sslmode=disable", pgtest.SuperUser, port, db.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	query := func(sql string, want ...string) {
		t.Helper()
		rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if got := n.last(); !slices.Equal(got, want) {
			t.Errorf("%s: columns resolved to %v, want %v", sql, got, want)
		}
	}
	exec("DROP SCHEMA IF EXISTS ddl_proxy CASCADE; CREATE SCHEMA ddl_proxy; CREATE TABLE ddl_proxy.c (id int, email text)")
	defer db.Exec(t, "DROP SCHEMA IF EXISTS ddl_proxy CASCADE")
	query("SELECT id, email FROM ddl_proxy.c", "ddl_proxy.c.id", "ddl_proxy.c.email")

	exec("ALTER TABLE ddl_proxy.c RENAME COLUMN email TO mail")
	query("SELECT id, mail FROM ddl_proxy.c", "ddl_proxy.c.id", "ddl_proxy.c.mail")

	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "ALTER TABLE ddl_proxy.c RENAME COLUMN mail TO contact"); err != nil {
		t.Fatal(err)
	}
	// The resolver's own connection cannot see the rename before the
	// commit, so it caches the old name; it must look again after it.
	rows, err := tx.Query(ctx, "SELECT id, contact FROM ddl_proxy.c", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if got := n.last(); !slices.Equal(got, []string{"ddl_proxy.c.id", "ddl_proxy.c.mail"}) {
		t.Errorf("inside the transaction: columns resolved to %v, want the committed names", got)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	query("SELECT id, contact FROM ddl_proxy.c", "ddl_proxy.c.id", "ddl_proxy.c.contact")
}
