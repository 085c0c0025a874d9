package notify

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"
)

// The outbox is the bbolt bucket "notify_outbox" holding one nested bucket
// per sink, named after Sink.Name. A sink's bucket maps an 8-byte big-endian
// sequence number (from the bucket's NextSequence, so keys sort oldest first)
// to a JSON-encoded entry.
const outboxBucket = "notify_outbox"

type entry struct {
	Alert    Alert `json:"alert"`
	Attempts int   `json:"attempts"` // failed attempts so far
}

// enqueue writes every alert into every sink's queue in one transaction
// (which bbolt fsyncs on commit).
func (n *Notifier) enqueue(alerts []Alert) error {
	if len(alerts) == 0 || len(n.sinks) == 0 {
		return nil
	}
	vals := make([][]byte, len(alerts))
	for i, a := range alerts {
		v, err := json.Marshal(entry{Alert: a})
		if err != nil {
			return fmt.Errorf("notify: encoding alert %s: %w", a.ID, err)
		}
		vals[i] = v
	}
	err := n.db.Update(func(tx *bbolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists([]byte(outboxBucket))
		if err != nil {
			return err
		}
		for _, s := range n.sinks {
			b, err := root.CreateBucketIfNotExists([]byte(s.Name()))
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
	n.mu.Lock()
	n.stats.Accepted += uint64(len(alerts))
	for i := range n.sinkSt {
		n.sinkSt[i].Pending += len(alerts)
	}
	n.changedLocked()
	n.mu.Unlock()
	for _, w := range n.wake {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	return nil
}

// oldest returns the first entry of sink i's queue.
func (n *Notifier) oldest(i int) (key []byte, e entry, ok bool, err error) {
	name := n.sinks[i].Name()
	var bad []byte
	err = n.db.View(func(tx *bbolt.Tx) error {
		b := sinkBucket(tx, name)
		if b == nil {
			return nil
		}
		k, v := b.Cursor().First()
		if k == nil {
			return nil
		}
		key = append([]byte(nil), k...)
		if err := json.Unmarshal(v, &e); err != nil {
			bad = key
			return nil
		}
		ok = true
		return nil
	})
	if err != nil {
		return nil, entry{}, false, fmt.Errorf("notify: reading the outbox: %w", err)
	}
	if bad != nil {
		// A corrupt entry would block the queue forever: drop it.
		n.log.Error("notify_outbox_entry_corrupt", "sink", name, "key", fmt.Sprintf("%x", bad), "detail", "undecodable entry dropped")
		if err := n.remove(i, bad, func(s *SinkStats) { s.Dropped++ }); err != nil {
			return nil, entry{}, false, err
		}
		return n.oldest(i)
	}
	return key, e, ok, nil
}

// remove deletes key from sink i's queue and, if it was there, applies count
// to the sink's stats.
func (n *Notifier) remove(i int, key []byte, count func(*SinkStats)) error {
	name := n.sinks[i].Name()
	found := false
	err := n.db.Update(func(tx *bbolt.Tx) error {
		b := sinkBucket(tx, name)
		if b == nil || b.Get(key) == nil {
			return nil
		}
		found = true
		return b.Delete(key)
	})
	if err != nil {
		return fmt.Errorf("notify: deleting from the outbox: %w", err)
	}
	if found {
		n.mu.Lock()
		n.sinkSt[i].Pending--
		count(&n.sinkSt[i])
		n.changedLocked()
		n.mu.Unlock()
	}
	return nil
}

// update rewrites an entry (to record its attempt count).
func (n *Notifier) update(i int, key []byte, e entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("notify: encoding alert %s: %w", e.Alert.ID, err)
	}
	name := n.sinks[i].Name()
	err = n.db.Update(func(tx *bbolt.Tx) error {
		b := sinkBucket(tx, name)
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

// loadDepths counts the entries per configured sink, and per sink bucket
// that no configured sink owns.
func (n *Notifier) loadDepths() (pending []int, orphans map[string]int, err error) {
	pending = make([]int, len(n.sinks))
	orphans = make(map[string]int)
	idx := make(map[string]int, len(n.sinks))
	for i, s := range n.sinks {
		idx[s.Name()] = i
	}
	err = n.db.View(func(tx *bbolt.Tx) error {
		root := tx.Bucket([]byte(outboxBucket))
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(name []byte) error {
			c := root.Bucket(name).Stats().KeyN
			if i, ok := idx[string(name)]; ok {
				pending[i] = c
			} else if c > 0 {
				orphans[string(name)] = c
			}
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("notify: reading the outbox: %w", err)
	}
	return pending, orphans, nil
}

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
