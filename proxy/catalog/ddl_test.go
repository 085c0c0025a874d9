package catalog

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestIsDDLTag(t *testing.T) {
	tests := []struct {
		tag  string
		want bool
	}{
		{"CREATE TABLE", true},
		{"ALTER TABLE", true},
		{"DROP TABLE", true},
		{"CREATE VIEW", true},
		{"ALTER VIEW", true},
		{"DROP VIEW", true},
		{"CREATE MATERIALIZED VIEW", true},
		{"ALTER MATERIALIZED VIEW", true},
		{"DROP MATERIALIZED VIEW", true},
		{"CREATE FOREIGN TABLE", true},
		{"ALTER FOREIGN TABLE", true},
		{"DROP FOREIGN TABLE", true},
		{"IMPORT FOREIGN SCHEMA", true},
		{"CREATE SCHEMA", true},
		{"ALTER SCHEMA", true},
		{"DROP SCHEMA", true},
		{"CREATE TYPE", true},
		{"ALTER TYPE", true},
		{"DROP TYPE", true},
		{"DROP OWNED", true},
		{"CREATE EXTENSION", true},
		{"ALTER ROLE", true},
		{"DO", true},

		// CREATE TABLE AS, SELECT INTO and CREATE MATERIALIZED VIEW ... AS
		// report SELECT n: a miss, harmless since they only add relations.
		{"SELECT 1", false},
		{"SELECT 0", false},
		{"INSERT 0 1", false},
		{"UPDATE 3", false},
		{"DELETE 0", false},
		{"MERGE 1", false},
		{"COPY 10", false},
		{"FETCH 5", false},
		{"REFRESH MATERIALIZED VIEW", false},
		{"TRUNCATE TABLE", false},
		{"COMMENT", false},
		// A role's memberships change: the role facts are read again.
		{"GRANT", true},
		{"REVOKE", true},
		{"BEGIN", false},
		{"COMMIT", false},
		{"ROLLBACK", false},
		{"SET", false},
		{"CALL", false},
		{"VACUUM", false},
		{"ANALYZE", false},
		{"CREATE", false},
		{"ALTERED", false},
		{"DOT", false},
		{"create table", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsDDLTag([]byte(tt.tag)); got != tt.want {
			t.Errorf("IsDDLTag(%q) = %v, want %v", tt.tag, got, tt.want)
		}
	}

	tags := make([][]byte, len(tests))
	for i, tt := range tests {
		tags[i] = []byte(tt.tag)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		for _, tag := range tags {
			IsDDLTag(tag)
		}
	}); allocs != 0 {
		t.Errorf("IsDDLTag: %v allocations per run, want 0", allocs)
	}
}

// TestIsDDLTagFromServer checks IsDDLTag against the tags PostgreSQL sends.
func TestIsDDLTagFromServer(t *testing.T) {
	e := newEnv(t)
	s := e.schema(t, "catalog_tags")
	conn, err := pgx.Connect(t.Context(), e.db.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	tests := []struct {
		sql  string
		tag  string
		want bool
	}{
		{`CREATE TABLE ` + s + `.t (id int, email text)`, "CREATE TABLE", true},
		{`ALTER TABLE ` + s + `.t RENAME COLUMN email TO mail`, "ALTER TABLE", true},
		{`CREATE VIEW ` + s + `.v AS SELECT mail FROM ` + s + `.t`, "CREATE VIEW", true},
		{`CREATE OR REPLACE VIEW ` + s + `.v AS SELECT mail, id FROM ` + s + `.t`, "CREATE VIEW", true},
		{`ALTER VIEW ` + s + `.v RENAME COLUMN mail TO email`, "ALTER VIEW", true},
		{`ALTER TABLE ` + s + `.v RENAME TO w`, "ALTER TABLE", true},
		{`CREATE TYPE ` + s + `.kind AS ENUM ('a')`, "CREATE TYPE", true},
		{`ALTER TYPE ` + s + `.kind RENAME TO sort`, "ALTER TYPE", true},
		{`DO $$BEGIN EXECUTE 'ALTER TABLE ` + s + `.t RENAME COLUMN mail TO email'; END$$`, "DO", true},
		{`CREATE MATERIALIZED VIEW ` + s + `.m AS SELECT id FROM ` + s + `.t`, "SELECT 0", false},
		{`CREATE TABLE ` + s + `.c AS SELECT 1 AS one`, "SELECT 1", false},
		{`SELECT 1 AS one INTO ` + s + `.i`, "SELECT 1", false},
		{`REFRESH MATERIALIZED VIEW ` + s + `.m`, "REFRESH MATERIALIZED VIEW", false},
		{`INSERT INTO ` + s + `.t VALUES (1, 'x')`, "INSERT 0 1", false},
		{`COMMENT ON TABLE ` + s + `.t IS 'x'`, "COMMENT", false},
		{`ALTER SCHEMA ` + s + ` RENAME TO catalog_tags_2`, "ALTER SCHEMA", true},
		{`DROP SCHEMA catalog_tags_2 CASCADE`, "DROP SCHEMA", true},
	}
	for _, tt := range tests {
		tag, err := conn.Exec(t.Context(), tt.sql)
		if err != nil {
			t.Fatalf("%s: %v", tt.sql, err)
		}
		if tag.String() != tt.tag {
			t.Errorf("%s: tag %q, want %q", tt.sql, tag, tt.tag)
		}
		if got := IsDDLTag([]byte(tag.String())); got != tt.want {
			t.Errorf("IsDDLTag(%q) = %v, want %v", tag, got, tt.want)
		}
	}
}
