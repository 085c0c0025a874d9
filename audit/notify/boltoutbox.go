package notify

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"
)

// The bbolt outbox is the bucket "notify_outbox" holding one nested bucket
// per sink, named after Sink.Name. A sink's bucket maps an 8-byte big-endian
// sequence number (from the bucket's NextSequence, so keys sort oldest first)
// to a JSON-encoded entry.
const outboxBucket = "notify_outbox"

// boltOutbox is the outbox of a single process. bbolt operations cannot be
// cancelled, so it ignores the contexts.
type boltOutbox struct{ db *bbolt.DB }

// enqueue writes every alert into every sink's queue in one transaction
// (which bbolt fsyncs on commit).
func (o boltOutbox) enqueue(_ context.Context, sinks []string, alerts []Alert) error {
	vals := make([][]byte, len(alerts))
	for i, a := range alerts {
		v, err := json.Marshal(entry{Alert: a})
		if err != nil {
			return fmt.Errorf("notify: encoding alert %s: %w", a.ID, err)
		}
		vals[i] = v
	}
	err := o.db.Update(func(tx *bbolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists([]byte(outboxBucket))
		if err != nil {
			return err
		}
		for _, name := range sinks {
			b, err := root.CreateBucketIfNotExists([]byte(name))
			if err != nil {
				return err
			}
			for _, v := range vals {
				seq, err := b.NextSequence()
				if err != nil {
					return err
				}
				if err := b.Put(seqKey(seq), v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("notify: writing the outbox: %w", err)
	}
	return nil
}

func (o boltOutbox) oldest(_ context.Context, sink string) (e entry, ok bool, err error) {
	err = o.db.View(func(tx *bbolt.Tx) error {
		b := sinkBucket(tx, sink)
		if b == nil {
			return nil
		}
		k, v := b.Cursor().First()
		if k == nil {
			return nil
		}
		ok = true
		e.bad = json.Unmarshal(v, &e)
		e.key = append([]byte(nil), k...)
		return nil
	})
	if err != nil {
		return entry{}, false, fmt.Errorf("notify: reading the outbox: %w", err)
	}
	return e, ok, nil
}

func (o boltOutbox) remove(_ context.Context, sink string, key []byte) (found bool, err error) {
	err = o.db.Update(func(tx *bbolt.Tx) error {
		b := sinkBucket(tx, sink)
		if b == nil || b.Get(key) == nil {
			return nil
		}
		found = true
		return b.Delete(key)
	})
	if err != nil {
		return false, fmt.Errorf("notify: deleting from the outbox: %w", err)
	}
	return found, nil
}

// setAttempts rewrites the entry.
func (o boltOutbox) setAttempts(_ context.Context, sink string, key []byte, e entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("notify: encoding alert %s: %w", e.Alert.ID, err)
	}
	err = o.db.Update(func(tx *bbolt.Tx) error {
		b := sinkBucket(tx, sink)
		if b == nil || b.Get(key) == nil {
			return nil
		}
		return b.Put(key, v)
	})
	if err != nil {
		return fmt.Errorf("notify: updating the outbox: %w", err)
	}
	return nil
}

func (o boltOutbox) depths(context.Context) (map[string]int, error) {
	d := make(map[string]int)
	err := o.db.View(func(tx *bbolt.Tx) error {
		root := tx.Bucket([]byte(outboxBucket))
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(name []byte) error {
			if c := root.Bucket(name).Stats().KeyN; c > 0 {
				d[string(name)] = c
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("notify: reading the outbox: %w", err)
	}
	return d, nil
}

// claim always succeeds: bbolt's file lock keeps other processes out.
func (boltOutbox) claim(context.Context, string) (bool, error) { return true, nil }
func (boltOutbox) release(context.Context, string) error       { return nil }

func sinkBucket(tx *bbolt.Tx, name string) *bbolt.Bucket {
	root := tx.Bucket([]byte(outboxBucket))
	if root == nil {
		return nil
	}
	return root.Bucket([]byte(name))
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}
