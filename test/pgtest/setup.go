package pgtest

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// setupLock is the advisory lock key that serializes setup: test packages that
// adopt one server run their setup at the same time, and concurrent GRANTs and
// ALTER ROLEs on the same objects fail with "tuple concurrently updated".
const setupLock = 0x70677464 // "pgtd"

// passwordRoles are the roles that log in with Password, and the
// password_encryption each one's password is stored with.
var passwordRoles = []struct{ name, encryption string }{
	{PlainUser, "scram-sha-256"},
	{MD5User, "md5"},
	{ScramUser, "scram-sha-256"},
}

// testRoles are all the roles setup creates.
var testRoles = []string{TrustUser, PlainUser, MD5User, ScramUser}

// setup creates Database and the test roles unless they exist, and (re)sets the
// roles' passwords and privileges. It is idempotent.
func (c *Cluster) setup(ctx context.Context) error {
	conn, err := c.connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx)) // also releases the advisory lock

	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", setupLock); err != nil {
		return err
	}
	db := pgx.Identifier{c.Database}.Sanitize()
	var exists bool
	err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", c.Database).Scan(&exists)
	if err != nil {
		return err
	}
	if !exists {
		// CREATE DATABASE cannot share a multi-statement query: that is a transaction.
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			return err
		}
	}
	if _, err := conn.Exec(ctx, rolesSQL(db)); err != nil {
		return err
	}
	return c.exec(ctx, c.Database, "GRANT ALL ON SCHEMA public TO "+roleList())
}

// rolesSQL creates the test roles and sets their passwords and database privileges.
func rolesSQL(db string) string {
	var b strings.Builder
	b.WriteString("DO $$\nBEGIN\n")
	for _, r := range testRoles {
		fmt.Fprintf(&b, "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN CREATE ROLE %s; END IF;\n",
			literal(r), pgx.Identifier{r}.Sanitize())
	}
	b.WriteString("END\n$$;\n")
	fmt.Fprintf(&b, "ALTER ROLE %s LOGIN PASSWORD NULL;\n", pgx.Identifier{TrustUser}.Sanitize())
	for _, r := range passwordRoles {
		fmt.Fprintf(&b, "SET password_encryption = %s;\n", literal(r.encryption))
		fmt.Fprintf(&b, "ALTER ROLE %s LOGIN PASSWORD %s;\n", pgx.Identifier{r.name}.Sanitize(), literal(Password))
	}
	b.WriteString("RESET password_encryption;\n")
	fmt.Fprintf(&b, "GRANT ALL ON DATABASE %s TO %s;\n", db, roleList())
	return b.String()
}

// roleList returns the test roles as a comma-separated list of identifiers.
func roleList() string {
	ids := make([]string, len(testRoles))
	for i, r := range testRoles {
		ids[i] = pgx.Identifier{r}.Sanitize()
	}
	return strings.Join(ids, ", ")
}

// literal quotes s as an SQL string literal.
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
