// Package schema holds schema.sql: the statements that create every table
// pgwarden keeps in its own PostgreSQL databases (the state database and
// the audit database), in one file that a DBA can read, and run ahead of
// time with a privileged role (pgwarden config schema prints it).
//
// Each store creates the tables it uses when it starts, with the
// statements For returns, as the file writes them (CREATE ... IF NOT
// EXISTS). Create runs them and accepts a role that may not create
// tables when the tables are there already.
package schema

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SQL is schema.sql.
//
//go:embed schema.sql
var SQL string

// AuditTable is the name schema.sql gives the audit sink's table, whose
// name is configurable (Audit).
const AuditTable = "pgwarden_audit"

var tables, order = parse(SQL)

// parse splits schema.sql at its "-- table: NAME" lines into each table's
// statements, comments left out.
func parse(sql string) (map[string]string, []string) {
	m := make(map[string]string)
	var names []string
	var name string
	var b strings.Builder
	end := func() {
		if name != "" {
			m[name] = strings.TrimSuffix(strings.TrimSpace(b.String()), ";")
		}
		b.Reset()
	}
	for line := range strings.Lines(sql) {
		if n, ok := strings.CutPrefix(line, "-- table: "); ok {
			end()
			name = strings.TrimSpace(n)
			names = append(names, name)
			continue
		}
		if !strings.HasPrefix(line, "--") {
			b.WriteString(line)
		}
	}
	end()
	return m, names
}

// Tables lists the tables schema.sql creates, in its order.
func Tables() []string { return slices.Clone(order) }

// For returns the statements that create the named tables and their
// indexes, in the order given, as one string to run with the simple
// protocol. A name schema.sql lacks is a programming error: For panics.
func For(names ...string) string {
	stmts := make([]string, len(names))
	for i, n := range names {
		s, ok := tables[n]
		if !ok {
			panic("schema: no table " + n + " in schema.sql")
		}
		stmts[i] = s
	}
	return strings.Join(stmts, ";\n")
}

var auditNames = regexp.MustCompile(`\b` + AuditTable + `(_employee_time_idx|_time_idx)?\b`)

// Audit returns the statements that create the audit sink's table named
// table ("name" or "schema.name") and its indexes, named after its base
// name.
func Audit(table string) string {
	parts := strings.Split(table, ".")
	base := parts[len(parts)-1]
	return auditNames.ReplaceAllStringFunc(For(AuditTable), func(m string) string {
		if suffix := strings.TrimPrefix(m, AuditTable); suffix != "" {
			return pgx.Identifier{base + suffix}.Sanitize()
		}
		return pgx.Identifier(parts).Sanitize()
	})
}

// DB is what Create needs of a pool or a connection.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Create runs sql, statements For or Audit returned (after a lock, if the
// caller takes one), on db. When db's role may not create them
// (insufficient_privilege) but every one of tables ("name" or
// "schema.name") exists, created ahead of time from schema.sql, there is
// nothing to do and Create returns nil.
func Create(ctx context.Context, db DB, sql string, tables ...string) error {
	_, err := db.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	var pe *pgconn.PgError
	if err == nil || !errors.As(err, &pe) || pe.Code != "42501" {
		return err
	}
	idents := make([]string, len(tables))
	for i, t := range tables {
		idents[i] = pgx.Identifier(strings.Split(t, ".")).Sanitize()
	}
	var missing []string
	if qerr := db.QueryRow(ctx, `SELECT coalesce(array_agg(t), '{}') FROM unnest($1::text[]) t WHERE to_regclass(t) IS NULL`,
		idents).Scan(&missing); qerr != nil {
		return errors.Join(err, qerr)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w (missing %s: create them with pgwarden config schema)", err, strings.Join(missing, ", "))
	}
	return nil
}
