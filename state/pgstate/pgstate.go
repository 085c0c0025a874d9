// Package pgstate keeps pgwarden's learned state in its own PostgreSQL
// database, for deployments that want it off the proxy's disk: one row
// per named blob in the table pgwarden_state, replaced whole and
// atomically (a single upsert).
package pgstate

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/state/schema"
)

// Store is the pgwarden_state table.
type Store struct {
	pool *pgxpool.Pool
}

// Open creates the table if needed.
func Open(ctx context.Context, pool *pgxpool.Pool) (*Store, error) {
	if err := schema.Create(ctx, pool, schema.For("pgwarden_state"), "pgwarden_state"); err != nil {
		return nil, fmt.Errorf("pgstate: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Save replaces the blob called name.
func (s *Store) Save(ctx context.Context, name string, data []byte) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO pgwarden_state (name, data) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET data = excluded.data, updated_at = now()`, name, data)
	if err != nil {
		return fmt.Errorf("pgstate: save %s: %w", name, err)
	}
	return nil
}

// Load returns the blob called name; false when there is none.
func (s *Store) Load(ctx context.Context, name string) ([]byte, bool, error) {
	var data []byte
	err := s.pool.QueryRow(ctx, `SELECT data FROM pgwarden_state WHERE name = $1`, name).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("pgstate: load %s: %w", name, err)
	}
	return data, true, nil
}
