package schema_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/state/adminlog"
	"github.com/pgwarden/pgwarden/state/cluster/normshare"
	"github.com/pgwarden/pgwarden/state/cluster/share"
	"github.com/pgwarden/pgwarden/state/pgstate"
	"github.com/pgwarden/pgwarden/state/quarantine"
	"github.com/pgwarden/pgwarden/state/schema"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// stores opens every store that keeps tables in pgwarden's own
// databases, as serve and the commands open them.
var stores = []struct {
	name string
	open func(ctx context.Context, pool *pgxpool.Pool) error
}{
	{"pgstate", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pgstate.Open(ctx, pool)
		return err
	}},
	{"quarantine", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := quarantine.OpenPG(ctx, pool)
		return err
	}},
	{"adminlog", func(ctx context.Context, pool *pgxpool.Pool) error {
		if err := adminlog.WritePG(ctx, pool, adminlog.Action{Action: "quarantine_released", By: "test"}); err != nil {
			return err
		}
		return adminlog.DrainPG(ctx, pool, func(adminlog.Action) error { return nil })
	}},
	{"share", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := share.New(ctx, share.Config{Pool: pool, Instance: "a"})
		return err
	}},
	{"normshare", func(ctx context.Context, pool *pgxpool.Pool) error {
		m, err := norm.New(norm.Config{})
		if err != nil {
			return err
		}
		_, err = normshare.New(ctx, normshare.Config{Pool: pool, Instance: "a", Model: m})
		return err
	}},
	{"notify", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := notify.New(notify.Config{Pool: pool, Instance: "a"})
		return err
	}},
	{"stream", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := notify.NewStream(notify.StreamConfig{Pool: pool, Instance: "a", Trail: emptyTrail{}})
		return err
	}},
	{"audit", func(ctx context.Context, pool *pgxpool.Pool) error {
		s, err := audit.NewPGSink(ctx, audit.PGSinkConfig{Pool: pool})
		if err != nil {
			return err
		}
		return s.Close()
	}},
}

type emptyTrail struct{}

func (emptyTrail) LastSeq() uint64                               { return 0 }
func (emptyTrail) ReadFrom(uint64, int) ([]notify.Record, error) { return nil, nil }

// freshDatabase creates an empty database and returns a pool on it as
// user; the superuser owns it.
func freshDatabase(t *testing.T, c *pgtest.Cluster, name, user string) *pgxpool.Pool {
	t.Helper()
	c.Exec(t, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	c.Exec(t, "CREATE DATABASE "+name)
	return poolOn(t, c, name, user)
}

// catalog describes the pgwarden_* tables of a database: their columns
// with types, nullability and defaults, and their indexes.
func catalog(t *testing.T, pool *pgxpool.Pool) []string {
	return texts(t, pool, `
SELECT format('%s.%s %s %s %s', table_name, column_name, data_type, is_nullable, coalesce(column_default, ''))
FROM information_schema.columns WHERE table_schema = 'public' AND table_name LIKE 'pgwarden\_%'
UNION ALL
SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename LIKE 'pgwarden\_%'
ORDER BY 1`)
}

// tables lists the pgwarden_* tables of a database.
func tables(t *testing.T, pool *pgxpool.Pool) []string {
	return texts(t, pool, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'pgwarden\_%' ORDER BY 1`)
}

// texts runs a query of one text column and returns its rows.
func texts(t *testing.T, pool *pgxpool.Pool, sql string) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), sql)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSchemaIsWhatStoresCreate: the stores, started on an empty database,
// create exactly the tables of schema.sql, and applying schema.sql to
// another empty database makes the same tables, columns and indexes.
func TestSchemaIsWhatStoresCreate(t *testing.T) {
	c := pgtest.Shared(t)
	byStores := freshDatabase(t, c, "schema_by_stores", pgtest.SuperUser)
	for _, s := range stores {
		if err := s.open(t.Context(), byStores); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	want := schema.Tables()
	slices.Sort(want)
	if got := tables(t, byStores); !slices.Equal(got, want) {
		t.Errorf("the stores create %v, schema.sql %v", got, want)
	}

	byFile := freshDatabase(t, c, "schema_by_file", pgtest.SuperUser)
	if _, err := byFile.Exec(t.Context(), schema.SQL); err != nil {
		t.Fatalf("applying schema.sql: %v", err)
	}
	if got, want := catalog(t, byFile), catalog(t, byStores); !slices.Equal(got, want) {
		t.Errorf("schema.sql makes\n%s\nthe stores make\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSchemaAheadOfTime: with the tables created from schema.sql by a
// privileged role, every store starts as a role that may not create
// tables; without them, the first store says what is missing.
func TestSchemaAheadOfTime(t *testing.T) {
	c := pgtest.Shared(t)
	const role = pgtest.ScramUser
	pool := freshDatabase(t, c, "schema_ahead", role)
	var canCreate bool
	if err := pool.QueryRow(t.Context(), `SELECT has_schema_privilege('public', 'CREATE')`).Scan(&canCreate); err != nil {
		t.Fatal(err)
	}
	if canCreate {
		t.Fatalf("%s may create tables in a new database: the test needs a role that may not", role)
	}
	err := stores[0].open(t.Context(), pool)
	if err == nil || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), "pgwarden config schema") {
		t.Fatalf("without the tables: %v, want an error naming what is missing", err)
	}

	super := poolOn(t, c, "schema_ahead", pgtest.SuperUser)
	if _, err := super.Exec(t.Context(), schema.SQL+fmt.Sprintf(`;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %[1]s;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %[1]s`, role)); err != nil {
		t.Fatal(err)
	}
	pool = poolOn(t, c, "schema_ahead", role)
	for _, s := range stores {
		if err := s.open(t.Context(), pool); err != nil {
			t.Errorf("%s as %s on tables made ahead of time: %v", s.name, role, err)
		}
	}
}

// poolOn returns a pool on database name as user.
func poolOn(t *testing.T, c *pgtest.Cluster, name, user string) *pgxpool.Pool {
	t.Helper()
	u, err := url.Parse(c.DSN(user))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	pool, err := pgxpool.New(t.Context(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestNoDDLElsewhere: no Go file but this package's creates a pgwarden_*
// table or index: schema.sql is the one place.
func TestNoDDLElsewhere(t *testing.T) {
	ddl := regexp.MustCompile(`(?i)CREATE (TABLE|INDEX)( IF NOT EXISTS)? "?pgwarden_`)
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if ddl.Match(b) {
			t.Errorf("%s creates a pgwarden_* table or index: put it in state/schema/schema.sql", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAudit: the audit table's statements for another name, or a
// schema-qualified one, quote it and name the indexes after it.
func TestAudit(t *testing.T) {
	got := schema.Audit("ops.Trail")
	for _, want := range []string{`CREATE TABLE IF NOT EXISTS "ops"."Trail" (`, `CREATE INDEX IF NOT EXISTS "Trail_employee_time_idx" ON "ops"."Trail" (employee, time)`,
		`CREATE INDEX IF NOT EXISTS "Trail_time_idx" ON "ops"."Trail" (time)`} {
		if !strings.Contains(got, want) {
			t.Errorf("Audit(ops.Trail) lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, schema.AuditTable) {
		t.Errorf("Audit(ops.Trail) still names %s:\n%s", schema.AuditTable, got)
	}
}
