package quarantine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/state/schema"
)

// Store is what the guard and the admin API need of a quarantine list;
// *List (a file) and *PG (pgwarden's own database, shared by instances)
// are ones.
type Store interface {
	Get(employee string) (Entry, bool)
	Add(e Entry) (bool, error)
	Release(employee string) (Entry, bool, error)
	All() ([]Entry, error)
}

// PG keeps the quarantine list in the table pgwarden_quarantine, so that
// every instance refuses a quarantined employee. Get reads a copy
// refreshed at most every second; when the database cannot be read, the
// last copy stands (the side of caution).
type PG struct {
	pool *pgxpool.Pool

	mu      sync.Mutex
	cache   map[string]Entry
	fetched time.Time
}

// OpenPG creates the table if needed.
func OpenPG(ctx context.Context, pool *pgxpool.Pool) (*PG, error) {
	if err := schema.Create(ctx, pool, schema.For("pgwarden_quarantine"), "pgwarden_quarantine"); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	q := &PG{pool: pool}
	if err := q.refresh(ctx); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *PG) refresh(ctx context.Context) error {
	all, err := q.All()
	if err != nil {
		return err
	}
	m := make(map[string]Entry, len(all))
	for _, e := range all {
		m[e.Employee] = e
	}
	q.mu.Lock()
	q.cache, q.fetched = m, time.Now()
	q.mu.Unlock()
	return nil
}

// Get reports whether employee is quarantined.
func (q *PG) Get(employee string) (Entry, bool) {
	q.mu.Lock()
	stale := time.Since(q.fetched) >= recheck
	q.mu.Unlock()
	if stale {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := q.refresh(ctx); err != nil {
			q.mu.Lock()
			q.fetched = time.Now() // try again in a second
			q.mu.Unlock()
		}
		cancel()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.cache[employee]
	return e, ok
}

// Add quarantines e.Employee; false when they already were.
func (q *PG) Add(e Entry) (bool, error) {
	if e.Employee == "" {
		return false, errors.New("quarantine: empty employee name")
	}
	tag, err := q.pool.Exec(context.Background(), `INSERT INTO pgwarden_quarantine (employee, since, rule, reason, session_id)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (employee) DO NOTHING`, e.Employee, e.Since, e.Rule, e.Reason, e.SessionID)
	if err != nil {
		return false, fmt.Errorf("quarantine: %w", err)
	}
	q.mu.Lock()
	if q.cache == nil {
		q.cache = map[string]Entry{}
	}
	if _, ok := q.cache[e.Employee]; !ok {
		q.cache[e.Employee] = e
	}
	q.mu.Unlock()
	return tag.RowsAffected() == 1, nil
}

// Release lifts a quarantine.
func (q *PG) Release(employee string) (Entry, bool, error) {
	var e Entry
	err := q.pool.QueryRow(context.Background(), `DELETE FROM pgwarden_quarantine WHERE employee = $1
RETURNING employee, since, rule, reason, session_id`, employee).Scan(&e.Employee, &e.Since, &e.Rule, &e.Reason, &e.SessionID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("quarantine: %w", err)
	}
	q.mu.Lock()
	delete(q.cache, employee)
	q.mu.Unlock()
	return e, true, nil
}

// All returns every entry, oldest first.
func (q *PG) All() ([]Entry, error) {
	rows, err := q.pool.Query(context.Background(), `SELECT employee, since, rule, reason, session_id FROM pgwarden_quarantine ORDER BY since, employee`)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.Employee, &e.Since, &e.Rule, &e.Reason, &e.SessionID); err != nil {
			return nil, fmt.Errorf("quarantine: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
