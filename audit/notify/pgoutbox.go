package notify

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/state/cluster"
	"github.com/pgwarden/pgwarden/state/schema"
)

// pgOutboxLock is the advisory lock key that serializes the outbox's schema
// creation and its enqueues ("pgw_obx1").
const pgOutboxLock int64 = 0x7067775f6f627831

// The shared outbox: one row per (sink, alert) in pgwarden_outbox, a queue
// being the rows of one sink in id order, and one lease per sink in
// pgwarden_leases naming the instance that delivers that queue (a
// cluster.Lease, on the database's clock, so the instances' clocks do not
// matter). The tables are in state/schema.
var pgOutboxTables = []string{"pgwarden_outbox", "pgwarden_leases"}

// sinkLease is the lease of sink's queue.
func (o *pgOutbox) sinkLease(sink string) *cluster.Lease {
	return cluster.NewLease(o.pool, "outbox:"+sink, o.holder, o.lease)
}

// pgOutbox is an outbox in PostgreSQL that several Notifiers share.
type pgOutbox struct {
	pool    *pgxpool.Pool
	holder  string        // Config.Instance plus a random suffix: unique per Notifier
	lease   time.Duration // how long a claim lasts
	timeout time.Duration // bound of each statement
}

// createPG creates the named tables, after taking pgOutboxLock.
func createPG(ctx context.Context, pool *pgxpool.Pool, tables ...string) error {
	return schema.Create(ctx, pool, fmt.Sprintf("SELECT pg_advisory_xact_lock(%d);\n", pgOutboxLock)+schema.For(tables...), tables...)
}

func newPGOutbox(pool *pgxpool.Pool, holder string, lease, timeout time.Duration) (*pgOutbox, error) {
	o := &pgOutbox{pool: pool, holder: holder, lease: lease, timeout: timeout}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Without arguments Exec uses the simple protocol: the statements run
	// as one implicit transaction, under the lock, so that instances
	// starting together do not race to create the same table.
	if err := createPG(ctx, pool, pgOutboxTables...); err != nil {
		return nil, fmt.Errorf("notify: creating the outbox tables: %w", err)
	}
	return o, nil
}

// enqueue inserts the rows in one round trip. A batch without BEGIN runs as
// one implicit transaction that the server commits without waiting for the
// client. The advisory lock makes ids increase in commit order, so a worker
// never delivers an entry while an older one of its queue is uncommitted.
func (o *pgOutbox) enqueue(ctx context.Context, sinks []string, alerts []Alert) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, pgOutboxLock)
	for _, a := range alerts {
		v, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("notify: encoding alert %s: %w", a.ID, err)
		}
		b.Queue(`INSERT INTO pgwarden_outbox (sink, alert) SELECT s, $2::jsonb FROM unnest($1::text[]) AS s`,
			sinks, json.RawMessage(v))
	}
	if err := o.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("notify: writing the outbox: %w", err)
	}
	return nil
}

func (o *pgOutbox) oldest(ctx context.Context, sink string) (e entry, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var id int64
	var alert []byte
	err = o.pool.QueryRow(ctx, `SELECT id, alert, attempts FROM pgwarden_outbox WHERE sink = $1 ORDER BY id LIMIT 1`,
		sink).Scan(&id, &alert, &e.Attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return entry{}, false, nil
	}
	if err != nil {
		return entry{}, false, fmt.Errorf("notify: reading the outbox: %w", err)
	}
	e.key = binary.BigEndian.AppendUint64(nil, uint64(id))
	e.bad = json.Unmarshal(alert, &e.Alert)
	return e, true, nil
}

func (o *pgOutbox) remove(ctx context.Context, _ string, key []byte) (found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	tag, err := o.pool.Exec(ctx, `DELETE FROM pgwarden_outbox WHERE id = $1`, keyID(key))
	if err != nil {
		return false, fmt.Errorf("notify: deleting from the outbox: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

func (o *pgOutbox) setAttempts(ctx context.Context, _ string, key []byte, e entry) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if _, err := o.pool.Exec(ctx, `UPDATE pgwarden_outbox SET attempts = $2 WHERE id = $1`, keyID(key), e.Attempts); err != nil {
		return fmt.Errorf("notify: updating the outbox: %w", err)
	}
	return nil
}

func (o *pgOutbox) depths(ctx context.Context) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	rows, err := o.pool.Query(ctx, `SELECT sink, count(*) FROM pgwarden_outbox GROUP BY sink`)
	if err != nil {
		return nil, fmt.Errorf("notify: reading the outbox: %w", err)
	}
	d := make(map[string]int)
	var sink string
	var c int
	_, err = pgx.ForEachRow(rows, []any{&sink, &c}, func() error {
		d[sink] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("notify: reading the outbox: %w", err)
	}
	return d, nil
}

// claim takes the sink's lease if it is free or expired, or renews it if
// this Notifier holds it: one conditional upsert, so two instances cannot
// both succeed.
func (o *pgOutbox) claim(ctx context.Context, sink string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	held, err := o.sinkLease(sink).Claim(ctx)
	if err != nil {
		return false, fmt.Errorf("notify: taking the lease of sink %s: %w", sink, err)
	}
	return held, nil
}

// release ends this Notifier's lease, so that another instance need not
// wait for it to expire.
func (o *pgOutbox) release(ctx context.Context, sink string) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := o.sinkLease(sink).Release(ctx); err != nil {
		return fmt.Errorf("notify: releasing the lease of sink %s: %w", sink, err)
	}
	return nil
}

func keyID(key []byte) int64 {
	if len(key) != 8 {
		return 0 // not a key of this outbox; matches no row (ids start at 1)
	}
	return int64(binary.BigEndian.Uint64(key))
}
