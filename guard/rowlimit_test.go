package guard_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// TestRowLimitSparesCatalogs: the row limit leaves results read only from
// the system catalogs alone and stops everything else that passes it,
// whatever the protocol; a refusal is a decision, logged and alerted.
func TestRowLimitSparesCatalogs(t *testing.T) {
	al := &alerts{}
	dl := &syncBuffer{}
	db := pgtest.Shared(t)
	_, conn, _ := setupGuard(t, func(c *guard.Config) { c.MaxRowsPerStatement, c.Alerts, c.DecisionLog = 5, al, dl })
	db.Exec(t, `DROP TABLE IF EXISTS public.pg_class; DROP FUNCTION IF EXISTS public.leak(oid);
CREATE TABLE public.pg_class AS SELECT 'shadow ' || i AS relname FROM generate_series(1, 20) i;
GRANT SELECT ON public.pg_class TO `+pgtest.TrustUser+`;
CREATE FUNCTION public.leak(oid) RETURNS text LANGUAGE sql AS 'SELECT email FROM customers WHERE id = 1';`)
	defer db.Exec(t, "DROP TABLE public.pg_class; DROP FUNCTION public.leak(oid)")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tests := []struct {
		name, sql string
		limited   bool
		path      string // the session's search_path, when not the default
	}{
		{"a catalog", "SELECT * FROM pg_catalog.pg_class", false, ""},
		{"a catalog on the search_path", "SELECT c.relname, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace", false, ""},
		{"information_schema", "SELECT table_name, column_name FROM information_schema.columns", false, ""},
		{"catalog functions", "SELECT pg_catalog.format_type(atttypid, atttypmod), upper(attname) FROM pg_attribute", false, ""},
		{"COPY of a catalog", "COPY (SELECT oid, relname FROM pg_catalog.pg_class) TO STDOUT", false, ""},
		{"no relation", "SELECT generate_series(1, 6)", true, ""},
		{"a user table", "SELECT email FROM customers WHERE id <= 6", true, ""},
		{"a catalog joined with a user table", "SELECT c.relname, x.email FROM pg_class c, (SELECT email FROM customers LIMIT 1) x", true, ""},
		{"a user function", "SELECT relname, leak(oid) FROM pg_catalog.pg_class", true, ""},
		{"a query run by a catalog function", "SELECT relname, query_to_xml('SELECT 1', true, true, '') FROM pg_catalog.pg_class", true, ""},
		{"a catalog of user data", "SELECT a.pid, c.relname FROM pg_catalog.pg_stat_activity a, pg_catalog.pg_class c", true, ""},
		{"a user table shadowing a catalog", "SELECT relname FROM pg_class", true, "public, pg_catalog"},
		{"a catalog after a user table", "SELECT email FROM customers LIMIT 1; SELECT relname FROM pg_catalog.pg_class", true, ""},
	}
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement}
	for _, tt := range tests {
		for _, mode := range modes {
			if strings.Contains(tt.sql, ";") || strings.HasPrefix(tt.sql, "COPY") {
				if mode != pgx.QueryExecModeSimpleProtocol {
					continue
				}
			}
			t.Run(tt.name+"/"+mode.String(), func(t *testing.T) {
				if tt.path != "" {
					if _, err := conn.Exec(ctx, "SET search_path = "+tt.path); err != nil {
						t.Fatal(err)
					}
				}
				var err error
				if strings.HasPrefix(tt.sql, "COPY") {
					_, err = conn.PgConn().CopyTo(ctx, discard{}, tt.sql)
				} else {
					_, err = conn.Exec(ctx, tt.sql, mode)
				}
				conn.Exec(ctx, "RESET search_path")
				blocked := err != nil && strings.Contains(err.Error(), "pgwarden: statement returned more than 5 rows (limit max_rows_per_statement)")
				if err != nil && !blocked {
					t.Fatalf("%s: %v", tt.sql, err)
				}
				if blocked != tt.limited {
					t.Errorf("%s: limited %v, want %v", tt.sql, blocked, tt.limited)
				}
				ds := dl.decisions(t)
				if !tt.limited {
					if len(ds) != 0 {
						t.Errorf("decisions for a result not limited: %+v", ds)
					}
					return
				}
				if len(ds) != 1 || ds[0].Rule != "max_rows_per_statement" || ds[0].Action != "block" || ds[0].Source != "limit" ||
					ds[0].Measure != "rows" || ds[0].Observed != 6 || ds[0].Limit != 5 {
					t.Errorf("decisions %+v, want one block by max_rows_per_statement at 6 rows of 5", ds)
				}
			})
		}
	}
	n := 0
	for _, a := range al.take() {
		if a.Rule == "max_rows_per_statement" && a.Action == "block" && a.Limit == 5 {
			n++
		}
	}
	if n == 0 {
		t.Error("no alert for the row limit")
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestRowLimitAddsUpCursors: the FETCHes from a cursor count together
// against the row limit, until the transaction ends; a cursor over the
// catalogs is exempt like its query.
func TestRowLimitAddsUpCursors(t *testing.T) {
	dl := &syncBuffer{}
	_, conn, _ := setupGuard(t, func(c *guard.Config) { c.MaxRowsPerStatement, c.DecisionLog = 5, dl })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fetch := func(sql string) (int, error) {
		rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			return 0, err
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		return n, rows.Err()
	}
	mustExec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for round := range 2 {
		mustExec("BEGIN")
		mustExec("DECLARE c CURSOR FOR SELECT email FROM customers ORDER BY id")
		mustExec("DECLARE k CURSOR FOR SELECT relname FROM pg_catalog.pg_class")
		if n, err := fetch("FETCH 3 FROM c"); n != 3 || err != nil {
			t.Fatalf("round %d: first FETCH 3: %d rows, %v", round, n, err)
		}
		for range 3 {
			if n, err := fetch("FETCH 4 FROM k"); n != 4 || err != nil {
				t.Fatalf("round %d: FETCH 4 from a cursor over pg_class: %d rows, %v", round, n, err)
			}
		}
		n, err := fetch("FETCH 3 FROM c")
		if err == nil || !strings.Contains(err.Error(), "statement returned more than 5 rows") || n != 2 {
			t.Fatalf("round %d: second FETCH 3 (rows 4 to 6 of the cursor): %d rows, %v; want 2 and the limit", round, n, err)
		}
		mustExec("ROLLBACK")
		ds := dl.decisions(t)
		if len(ds) != 1 || ds[0].Rule != "max_rows_per_statement" || ds[0].Observed != 6 {
			t.Errorf("round %d: decisions %+v, want one at the cursor's 6th row", round, ds)
		}
	}
}
