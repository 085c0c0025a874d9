package tools

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/proxytest"
)

const rowLimit = 1000

// limitMessage is how pgwarden refuses a statement past --max-rows-per-statement.
var limitMessage = fmt.Sprintf("pgwarden: statement returned more than %d rows (limit max_rows_per_statement)", rowLimit)

// TestRowLimitSparesCatalogs runs pg_dump through a pgwarden that limits
// statements to 1000 rows. pg_dump reads more than that from the system
// catalogs (pg_depend), which carry no user data: a schema-only dump
// passes, and equals a direct one, as do psql's \dfS and pg_dumpall
// --globals-only. The customers' 2000 rows are refused, in a full dump as
// in a plain SELECT, also when read through a cursor in pieces smaller
// than the limit, and each refusal is a decision: logged, alerted and
// counted.
func TestRowLimitSparesCatalogs(t *testing.T) {
	ctx := testCtx(t)
	src := source(t)
	w := startWarden(t, "--max-rows-per-statement", fmt.Sprint(rowLimit))
	dir := t.TempDir()

	schema := map[string]string{}
	for _, e := range []endpoint{direct(t), w.endpoint} {
		schema[e.name] = unrestricted(mustRun(t, ctx, e, "pg_dump", "--schema-only", "-d", src).stdout)
	}
	if schema["pgwarden"] != schema["direct"] || !strings.Contains(schema["direct"], "CREATE VIEW app.customer_totals") {
		t.Errorf("schema-only dump through pgwarden differs from a direct one:\n%s\ndirect:\n%s", schema["pgwarden"], schema["direct"])
	}
	mustRun(t, ctx, w.endpoint, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", src, "-c", "SELECT * FROM pg_catalog.pg_depend")
	// psql's description of the system functions is some 3000 rows.
	if r := mustRun(t, ctx, w.endpoint, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", src, "-c", `\dfS`); strings.Count(r.stdout, "\n") < rowLimit {
		t.Errorf("\\dfS printed %d lines, want more than the row limit", strings.Count(r.stdout, "\n"))
	}
	mustRun(t, ctx, w.endpoint, "pg_dumpall", "--globals-only", "-f", filepath.Join(dir, "globals.sql"))
	// A table with fewer rows than the limit dumps.
	mustRun(t, ctx, w.endpoint, "pg_dump", "-t", "app.products", "-f", filepath.Join(dir, "products.sql"), "-d", src)
	if len(w.decisions(t)) != 0 {
		t.Fatalf("decisions before any limit was passed: %v", w.decisions(t))
	}

	full := run(t, ctx, w.endpoint, "pg_dump", "-f", filepath.Join(dir, "full.sql"), "-d", src)
	if full.err == nil || !strings.Contains(full.stderr, limitMessage) || !strings.Contains(full.stderr, "COPY app.orders") {
		t.Errorf("full dump through pgwarden with a row limit: want the first table past it (orders) refused, got %s", full)
	}
	customers := run(t, ctx, w.endpoint, "pg_dump", "-t", "public.customers", "-f", filepath.Join(dir, "customers.sql"), "-d", src)
	if customers.err == nil || !strings.Contains(customers.stderr, limitMessage) || !strings.Contains(customers.stderr, "COPY public.customers") {
		t.Errorf("dump of the customers through pgwarden with a row limit: want them refused, got %s", customers)
	}
	sel := run(t, ctx, w.endpoint, "psql", "-X", "-d", src, "-c", "SELECT * FROM public.customers")
	if sel.err == nil || !strings.Contains(sel.stderr, limitMessage) {
		t.Errorf("SELECT * FROM customers through pgwarden with a row limit: %s", sel)
	}
	mixed := run(t, ctx, w.endpoint, "psql", "-X", "-d", src, "-c",
		"SELECT a.attname, x.email FROM pg_catalog.pg_attribute a, (SELECT email FROM public.customers LIMIT 1) x")
	if mixed.err == nil || !strings.Contains(mixed.stderr, limitMessage) {
		t.Errorf("a catalog joined with customers is not catalog-only: %s", mixed)
	}

	// A cursor's FETCHes add up: 500 rows a FETCH do not pass the limit.
	fetched := run(t, ctx, w.endpoint, "psql", "-X", "-v", "FETCH_COUNT=500", "-d", src, "-c", "SELECT * FROM public.customers")
	if fetched.err == nil || !strings.Contains(fetched.stderr, limitMessage) {
		t.Errorf("SELECT * FROM customers with FETCH_COUNT through pgwarden with a row limit: %s", fetched)
	}
	inserts := run(t, ctx, w.endpoint, "pg_dump", "--inserts", "-t", "public.customers", "-f", filepath.Join(dir, "inserts.sql"), "-d", src)
	if inserts.err == nil || !strings.Contains(inserts.stderr, limitMessage) {
		t.Errorf("pg_dump --inserts of the customers (FETCH 100 at a time) through pgwarden with a row limit: %s", inserts)
	}
	mustRun(t, ctx, w.endpoint, "pg_dump", "--inserts", "-t", "app.products", "-f", filepath.Join(dir, "products-inserts.sql"), "-d", src)

	var blocks []map[string]any
	proxytest.Eventually(t, 10*time.Second, "six row-limit decisions in the decision log", func() (bool, string) {
		blocks = blocks[:0]
		for _, d := range w.decisions(t) {
			if d["rule"] == "max_rows_per_statement" {
				blocks = append(blocks, d)
			}
		}
		return len(blocks) == 6, fmt.Sprint(w.decisions(t))
	})
	for _, d := range blocks {
		if d["action"] != "block" || d["limit"] != float64(rowLimit) || d["measure"] != "rows" || d["employee"] != "postgres" {
			t.Errorf("decision %v", d)
		}
	}
	proxytest.Eventually(t, 10*time.Second, "an alert for the row limit", func() (bool, string) {
		a, ok := w.alerts.find("max_rows_per_statement")
		return ok && a.Action == "block" && a.Limit == rowLimit, fmt.Sprintf("%+v", a)
	})
	if m := w.metrics(t); !strings.Contains(m, `pgwarden_decisions_total{action="block",rule="max_rows_per_statement",source="limit"} 6`) {
		t.Errorf("/metrics does not count the six row-limit blocks:\n%s", grepLines(m, "pgwarden_decisions_total"))
	}
}

// unrestricted drops the \restrict and \unrestrict lines of a plain dump,
// whose key pg_dump draws at random each time (since 15.14).
func unrestricted(dump string) string {
	lines := strings.Split(dump, "\n")
	lines = slices.DeleteFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, `\restrict `) || strings.HasPrefix(l, `\unrestrict `)
	})
	return strings.Join(lines, "\n")
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
