package tools

import (
	"fmt"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/proxytest"
)

// TestCatalogOfEachDatabase: table OIDs are per database, so the columns
// of a session on another database than the catalog URL's (a copy just
// restored, a second application database) are resolved in that
// database. The customers' declared names count there too, and pgwarden's
// catalog connection to it does not stop dropdb.
func TestCatalogOfEachDatabase(t *testing.T) {
	ctx := testCtx(t)
	src := source(t)
	w := startWarden(t)
	admin := connect(t, ctx, direct(t), src)
	const db = "second_app"
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, w.endpoint, "createdb", db)
	other := connect(t, ctx, direct(t), db)
	// Other tables first: the customers' OID here is not theirs in src.
	if _, err := other.Exec(ctx, `CREATE TABLE filler_a (a int); CREATE TABLE filler_b (b text);
CREATE TABLE public.customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL);
INSERT INTO public.customers SELECT i, 'Customer ' || i, 'customer' || i || '@example.com' FROM generate_series(1, 600) i`); err != nil {
		t.Fatal(err)
	}
	var here, there uint32
	other.QueryRow(ctx, "SELECT 'public.customers'::regclass::oid").Scan(&here)
	admin.QueryRow(ctx, "SELECT 'public.customers'::regclass::oid").Scan(&there)
	if here == there {
		t.Fatalf("customers has OID %d in both databases: the test cannot tell them apart", here)
	}
	other.Close(ctx)

	// 600 names and 600 emails: past statement-pii-alert's 1000 only when
	// the declared names are recognised (no detector finds a name).
	mustRun(t, ctx, w.endpoint, "psql", "-X", "-d", db, "-c", "SELECT name, email FROM public.customers")
	proxytest.Eventually(t, 10*time.Second, "statement-pii-alert on the second database", func() (bool, string) {
		for _, d := range w.decisions(t) {
			if d["rule"] == "statement-pii-alert" {
				return true, ""
			}
		}
		return false, fmt.Sprint(w.decisions(t))
	})
	mustRun(t, ctx, w.endpoint, "dropdb", db)
}
