package adminlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/state/schema"
)

// ensurePG creates the table of pending actions in the state database if
// needed, for the commands that change the shared state there (users
// release --state-url).
func ensurePG(ctx context.Context, pool *pgxpool.Pool) error {
	if err := schema.Create(ctx, pool, schema.For("pgwarden_admin_actions"), "pgwarden_admin_actions"); err != nil {
		return fmt.Errorf("adminlog: %w", err)
	}
	return nil
}

// WritePG records a in the state database for a server to audit.
func WritePG(ctx context.Context, pool *pgxpool.Pool, a Action) error {
	if err := ensurePG(ctx, pool); err != nil {
		return err
	}
	raw, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("adminlog: %w", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO pgwarden_admin_actions (action) VALUES ($1)`, raw); err != nil {
		return fmt.Errorf("adminlog: %w", err)
	}
	return nil
}

// DrainPG passes the pending actions of the state database to f, oldest
// first, and deletes those f accepted, in one transaction: of several
// servers sharing the database, one takes each action (the others skip
// the rows it holds). f's error stops the drain; what it accepted before
// is deleted.
func DrainPG(ctx context.Context, pool *pgxpool.Pool, f func(Action) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("adminlog: %w", err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `SELECT id, action FROM pgwarden_admin_actions ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED`)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return nil // no command has written an action yet (WritePG creates the table)
	}
	if err != nil {
		return fmt.Errorf("adminlog: %w", err)
	}
	type row struct {
		id  int64
		raw []byte
	}
	var pending []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.raw); err != nil {
			rows.Close()
			return fmt.Errorf("adminlog: %w", err)
		}
		pending = append(pending, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("adminlog: %w", err)
	}
	var done []int64
	var ferr error
	for _, r := range pending {
		var a Action
		if err := json.Unmarshal(r.raw, &a); err != nil {
			ferr = fmt.Errorf("adminlog: action %d: %w", r.id, err)
			break
		}
		if ferr = f(a); ferr != nil {
			break
		}
		done = append(done, r.id)
	}
	if len(done) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM pgwarden_admin_actions WHERE id = ANY($1)`, done); err != nil {
			return fmt.Errorf("adminlog: %w", err)
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("adminlog: %w", err)
		}
	}
	return ferr
}
