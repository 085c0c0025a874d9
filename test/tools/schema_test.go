package tools

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// Rows of the source schema's tables. Customers pass the row limit that
// rowlimit_test.go sets (1000), products do not.
const (
	nCustomers = 2000
	nProducts  = 200
	nOrders    = 3000
	nDocuments = 3
)

// sourceSchema is what the tools dump and read: a PII table, tables in
// another schema with a foreign key, an identity, an index, arrays and
// jsonb, a view, a sequence, a function, a comment and large objects.
var sourceSchema = fmt.Sprintf(`
DROP SCHEMA IF EXISTS app CASCADE;
DROP TABLE IF EXISTS public.customers CASCADE;
SELECT lo_unlink(oid) FROM pg_largeobject_metadata;
CREATE SCHEMA app;
CREATE TABLE public.customers (
  id int PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL UNIQUE,
  signed_up date NOT NULL
);
COMMENT ON TABLE public.customers IS 'people who buy';
INSERT INTO public.customers
  SELECT i, 'Customer ' || i, 'customer' || i || '@example.com', date '2020-01-01' + i
  FROM generate_series(1, %[1]d) i;
CREATE TABLE app.products (
  sku text PRIMARY KEY,
  title text NOT NULL,
  price numeric(10,2) NOT NULL,
  tags text[],
  attrs jsonb
);
INSERT INTO app.products
  SELECT 'SKU-' || lpad(i::text, 4, '0'), 'Product ' || i, (i * 1.25)::numeric(10,2),
    ARRAY['t' || (i %% 7), 't' || (i %% 11)], jsonb_build_object('weight', i %% 13, 'colour', 'c' || (i %% 5))
  FROM generate_series(1, %[2]d) i;
CREATE TABLE app.orders (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id int NOT NULL REFERENCES public.customers,
  sku text NOT NULL REFERENCES app.products,
  quantity int NOT NULL CHECK (quantity > 0),
  placed_at timestamptz NOT NULL,
  note text
);
INSERT INTO app.orders (customer_id, sku, quantity, placed_at, note)
  SELECT 1 + (i * 7) %% %[1]d, 'SKU-' || lpad((1 + i %% %[2]d)::text, 4, '0'), 1 + i %% 5,
    timestamptz '2024-01-01 00:00+00' + i * interval '37 minutes', CASE WHEN i %% 3 = 0 THEN 'note ' || i END
  FROM generate_series(1, %[3]d) i;
CREATE INDEX orders_customer_idx ON app.orders (customer_id, placed_at);
CREATE SEQUENCE app.invoice_no START 1000;
SELECT setval('app.invoice_no', 1234);
CREATE VIEW app.customer_totals AS
  SELECT c.id, c.name, count(o.id) AS orders, coalesce(sum(o.quantity * p.price), 0) AS spent
  FROM public.customers c LEFT JOIN app.orders o ON o.customer_id = c.id LEFT JOIN app.products p ON p.sku = o.sku
  GROUP BY c.id, c.name;
CREATE FUNCTION app.order_value(order_id bigint) RETURNS numeric LANGUAGE sql STABLE
  AS $$ SELECT o.quantity * p.price FROM app.orders o JOIN app.products p USING (sku) WHERE o.id = order_id $$;
CREATE TABLE app.documents (id int PRIMARY KEY, title text NOT NULL, content oid NOT NULL);
INSERT INTO app.documents
  SELECT i, 'doc ' || i, lo_from_bytea(0, convert_to(repeat('page ' || i || ' ', 2000), 'UTF8'))
  FROM generate_series(1, %[4]d) i;
`, nCustomers, nProducts, nOrders, nDocuments)

var schemaOnce sync.Once

// source creates the source schema in the cluster's database, once, and
// returns that database's name.
func source(t *testing.T) string {
	t.Helper()
	c := pgtest.Shared(t)
	schemaOnce.Do(func() {
		c.Exec(t, sourceSchema)
		// Vacuumed now, autovacuum leaves the tables' sizes (psql's \dt+)
		// alone while the tests compare them.
		c.Exec(t, "VACUUM ANALYZE")
	})
	return c.Database
}

// fingerprintQueries compute, for each object of the source schema, a text
// that changes when its contents do.
var fingerprintQueries = map[string]string{
	"customers": `SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY t.id)) FROM public.customers t`,
	"products":  `SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY t.sku)) FROM app.products t`,
	"orders":    `SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY t.id)) FROM app.orders t`,
	"documents": `SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY t.id)) FROM app.documents t`,
	"view":      `SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY t.id)) FROM app.customer_totals t`,
	"function":  `SELECT app.order_value(10)::text || ',' || app.order_value(2999)::text`,
	"sequence":  `SELECT last_value || ',' || is_called FROM app.invoice_no`,
	"identity":  `SELECT last_value || ',' || is_called FROM app.orders_id_seq`,
	"large objects": `SELECT count(*) || ':' || md5(string_agg(m.oid || '=' || md5(lo_get(m.oid)), ',' ORDER BY m.oid))
		FROM pg_largeobject_metadata m`,
	"indexes": `SELECT string_agg(indexdef, E'\n' ORDER BY indexname) FROM pg_indexes WHERE schemaname IN ('public', 'app')`,
	"comment": `SELECT obj_description('public.customers'::regclass, 'pg_class')`,
}

// fingerprint returns the fingerprints of database, read directly.
func fingerprint(t *testing.T, ctx context.Context, database string) map[string]string {
	t.Helper()
	conn := connect(t, ctx, direct(t), database)
	out := make(map[string]string, len(fingerprintQueries))
	for _, name := range slices.Sorted(maps.Keys(fingerprintQueries)) {
		var v *string
		if err := conn.QueryRow(ctx, fingerprintQueries[name]).Scan(&v); err != nil {
			t.Fatalf("fingerprint %s of %s: %v", name, database, err)
		}
		if v == nil {
			out[name] = "NULL"
		} else {
			out[name] = *v
		}
	}
	conn.Close(ctx)
	return out
}

// sourceFingerprint checks that the source schema holds what it should
// before it is compared with a copy.
func sourceFingerprint(t *testing.T, ctx context.Context, database string) map[string]string {
	t.Helper()
	fp := fingerprint(t, ctx, database)
	for name, n := range map[string]int{"customers": nCustomers, "products": nProducts, "orders": nOrders,
		"documents": nDocuments, "view": nCustomers, "large objects": nDocuments} {
		if !strings.HasPrefix(fp[name], fmt.Sprint(n)+":") {
			t.Fatalf("source %s: %q, want %d rows", name, fp[name], n)
		}
	}
	return fp
}

// compareFingerprints fails the test where got differs from want.
func compareFingerprints(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if got[name] != want[name] {
			t.Errorf("%s: %s is %q, want %q", what, name, got[name], want[name])
		}
	}
}

// databaseExists reports whether the cluster has a database of that name.
func databaseExists(t *testing.T, ctx context.Context, conn *pgx.Conn, name string) bool {
	t.Helper()
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}
