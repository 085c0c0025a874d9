package notify

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.etcd.io/bbolt"
)

// recordStore is the part of the outbox a Stream uses: per queue, the
// records spilled from memory, oldest first, and the cursor (the seq of
// the last record the sink acknowledged). Both outboxes implement it, in
// the same bbolt file and the same database as the alerts' queues.
type recordStore interface {
	// pushRecords appends recs to queue in one atomic, durable write.
	pushRecords(ctx context.Context, queue string, recs []Record) error
	// firstRecords returns up to max of queue's oldest records.
	firstRecords(ctx context.Context, queue string, max int) ([]Record, error)
	// recordDepth counts queue's records.
	recordDepth(ctx context.Context, queue string) (int, error)
	// ack removes queue's records up to seq through and sets its cursor to
	// through, in one transaction.
	ack(ctx context.Context, queue string, through uint64) error
	// cursor returns queue's cursor; ok is false when none was stored.
	cursor(ctx context.Context, queue string) (seq uint64, ok bool, err error)
}

// In bbolt, the bucket "stream_outbox" holds one nested bucket per queue
// mapping a record's 8-byte big-endian seq to its line, and the bucket
// "stream_cursor" maps a queue's name to its cursor.
const (
	streamBucket       = "stream_outbox"
	streamCursorBucket = "stream_cursor"
)

func (o boltOutbox) pushRecords(_ context.Context, queue string, recs []Record) error {
	err := o.db.Update(func(tx *bbolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists([]byte(streamBucket))
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists([]byte(queue))
		if err != nil {
			return err
		}
		b.FillPercent = 1 // keys only grow
		for _, r := range recs {
			if err := b.Put(seqKey(r.Seq), r.Line); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("notify: writing the stream outbox: %w", err)
	}
	return nil
}

func (o boltOutbox) firstRecords(_ context.Context, queue string, max int) ([]Record, error) {
	var out []Record
	err := o.db.View(func(tx *bbolt.Tx) error {
		b := streamQueueBucket(tx, queue)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
			out = append(out, Record{Seq: binary.BigEndian.Uint64(k), Line: append([]byte(nil), v...)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("notify: reading the stream outbox: %w", err)
	}
	return out, nil
}

func (o boltOutbox) recordDepth(_ context.Context, queue string) (n int, err error) {
	err = o.db.View(func(tx *bbolt.Tx) error {
		if b := streamQueueBucket(tx, queue); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("notify: reading the stream outbox: %w", err)
	}
	return n, nil
}

func (o boltOutbox) ack(_ context.Context, queue string, through uint64) error {
	err := o.db.Update(func(tx *bbolt.Tx) error {
		if b := streamQueueBucket(tx, queue); b != nil {
			c := b.Cursor()
			for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= through; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		cb, err := tx.CreateBucketIfNotExists([]byte(streamCursorBucket))
		if err != nil {
			return err
		}
		return cb.Put([]byte(queue), seqKey(through))
	})
	if err != nil {
		return fmt.Errorf("notify: recording the stream cursor: %w", err)
	}
	return nil
}

func (o boltOutbox) cursor(_ context.Context, queue string) (seq uint64, ok bool, err error) {
	err = o.db.View(func(tx *bbolt.Tx) error {
		cb := tx.Bucket([]byte(streamCursorBucket))
		if cb == nil {
			return nil
		}
		if v := cb.Get([]byte(queue)); len(v) == 8 {
			seq, ok = binary.BigEndian.Uint64(v), true
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("notify: reading the stream cursor: %w", err)
	}
	return seq, ok, nil
}

func streamQueueBucket(tx *bbolt.Tx, queue string) *bbolt.Bucket {
	root := tx.Bucket([]byte(streamBucket))
	if root == nil {
		return nil
	}
	return root.Bucket([]byte(queue))
}

// In PostgreSQL, beside the alerts' tables: pgwarden_stream_outbox holds
// the spilled records (the line as bytea, so that the bytes the chain
// hashes are kept exactly) and pgwarden_stream_cursor the cursors. The
// tables are in state/schema.
var pgStreamTables = []string{"pgwarden_stream_outbox", "pgwarden_stream_cursor"}

// pgRecords is the stream's part of the shared outbox.
type pgRecords struct{ *pgOutbox }

func newPGRecords(ctx context.Context, o *pgOutbox) (pgRecords, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := createPG(ctx, o.pool, pgStreamTables...); err != nil {
		return pgRecords{}, fmt.Errorf("notify: creating the stream outbox tables: %w", err)
	}
	return pgRecords{o}, nil
}

func (o pgRecords) pushRecords(ctx context.Context, queue string, recs []Record) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	seqs := make([]int64, len(recs))
	lines := make([][]byte, len(recs))
	for i, r := range recs {
		seqs[i], lines[i] = int64(r.Seq), r.Line
	}
	_, err := o.pool.Exec(ctx, `INSERT INTO pgwarden_stream_outbox (queue, seq, line)
SELECT $1, s, l FROM unnest($2::bigint[], $3::bytea[]) AS r(s, l) ON CONFLICT DO NOTHING`, queue, seqs, lines)
	if err != nil {
		return fmt.Errorf("notify: writing the stream outbox: %w", err)
	}
	return nil
}

func (o pgRecords) firstRecords(ctx context.Context, queue string, max int) ([]Record, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	rows, err := o.pool.Query(ctx, `SELECT seq, line FROM pgwarden_stream_outbox WHERE queue = $1 ORDER BY seq LIMIT $2`, queue, max)
	if err != nil {
		return nil, fmt.Errorf("notify: reading the stream outbox: %w", err)
	}
	var out []Record
	var seq int64
	var line []byte
	_, err = pgx.ForEachRow(rows, []any{&seq, &line}, func() error {
		out = append(out, Record{Seq: uint64(seq), Line: append([]byte(nil), line...)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("notify: reading the stream outbox: %w", err)
	}
	return out, nil
}

func (o pgRecords) recordDepth(ctx context.Context, queue string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var n int
	if err := o.pool.QueryRow(ctx, `SELECT count(*) FROM pgwarden_stream_outbox WHERE queue = $1`, queue).Scan(&n); err != nil {
		return 0, fmt.Errorf("notify: reading the stream outbox: %w", err)
	}
	return n, nil
}

func (o pgRecords) ack(ctx context.Context, queue string, through uint64) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM pgwarden_stream_outbox WHERE queue = $1 AND seq <= $2`, queue, int64(through))
	b.Queue(`INSERT INTO pgwarden_stream_cursor (queue, seq) VALUES ($1, $2)
ON CONFLICT (queue) DO UPDATE SET seq = excluded.seq`, queue, int64(through))
	if err := o.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("notify: recording the stream cursor: %w", err)
	}
	return nil
}

func (o pgRecords) cursor(ctx context.Context, queue string) (uint64, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var seq int64
	err := o.pool.QueryRow(ctx, `SELECT seq FROM pgwarden_stream_cursor WHERE queue = $1`, queue).Scan(&seq)
	if err == pgx.ErrNoRows {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("notify: reading the stream cursor: %w", err)
	}
	return uint64(seq), true, nil
}
