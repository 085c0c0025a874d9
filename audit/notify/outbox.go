package notify

import (
	"context"
	"fmt"
	"time"
)

// outbox stores the queues a Notifier delivers from: one FIFO queue per sink,
// named by Sink.Name. Keys are opaque to the Notifier; within a queue they
// sort in enqueue order.
type outbox interface {
	// enqueue appends every alert to the queue of every named sink in one
	// atomic, durable write.
	enqueue(ctx context.Context, sinks []string, alerts []Alert) error
	// oldest returns the first entry of sink's queue; ok is false when the
	// queue is empty. An entry that cannot be decoded is returned with bad
	// set, so that the Notifier can drop it.
	oldest(ctx context.Context, sink string) (e entry, ok bool, err error)
	// remove deletes an entry; found reports whether it was still there.
	remove(ctx context.Context, sink string, key []byte) (found bool, err error)
	// setAttempts records an entry's failed attempts, if it is still there.
	setAttempts(ctx context.Context, sink string, key []byte, e entry) error
	// depths counts the entries of every non-empty queue, configured or not.
	depths(ctx context.Context) (map[string]int, error)
	// claim reports whether this Notifier may deliver sink's queue now. An
	// outbox that several Notifiers share takes or renews a lease here.
	claim(ctx context.Context, sink string) (bool, error)
	// release gives up what claim took.
	release(ctx context.Context, sink string) error
}

type entry struct {
	Alert    Alert `json:"alert"`
	Attempts int   `json:"attempts"` // failed attempts so far

	key []byte // the entry's key in its queue
	bad error  // why the stored entry could not be decoded
}

// enqueue writes every alert into every sink's queue at once.
func (n *Notifier) enqueue(alerts []Alert) error {
	if len(alerts) == 0 || len(n.sinks) == 0 {
		return nil
	}
	names := make([]string, len(n.sinks))
	for i, s := range n.sinks {
		names[i] = s.Name()
	}
	if err := n.store.enqueue(context.Background(), names, alerts); err != nil {
		return err
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

// oldest returns the first entry of sink i's queue, dropping the undecodable
// entries in its way: a corrupt entry would block the queue forever.
func (n *Notifier) oldest(ctx context.Context, i int) (entry, bool, error) {
	name := n.sinks[i].Name()
	for {
		e, ok, err := n.store.oldest(ctx, name)
		if err != nil || !ok || e.bad == nil {
			return e, ok, err
		}
		n.log.Error("notify_outbox_entry_corrupt", "sink", name, "key", fmt.Sprintf("%x", e.key),
			"detail", "undecodable entry dropped", "error", e.bad)
		if err := n.remove(ctx, i, e.key, func(s *SinkStats) { s.Dropped++ }); err != nil {
			return entry{}, false, err
		}
	}
}

// remove deletes key from sink i's queue and, if it was there, applies count
// to the sink's stats.
func (n *Notifier) remove(ctx context.Context, i int, key []byte, count func(*SinkStats)) error {
	found, err := n.store.remove(ctx, n.sinks[i].Name(), key)
	if err != nil {
		return err
	}
	if found {
		n.mu.Lock()
		n.sinkSt[i].Pending = max(n.sinkSt[i].Pending-1, 0)
		count(&n.sinkSt[i])
		n.changedLocked()
		n.mu.Unlock()
	}
	return nil
}

// loadDepths counts the entries per configured sink, and per queue that no
// configured sink owns.
func (n *Notifier) loadDepths(ctx context.Context) (pending []int, orphans map[string]int, err error) {
	d, err := n.store.depths(ctx)
	if err != nil {
		return nil, nil, err
	}
	pending = make([]int, len(n.sinks))
	for i, s := range n.sinks {
		pending[i] = d[s.Name()]
		delete(d, s.Name())
	}
	return pending, d, nil
}

// refreshDepths replaces the pending counts with the outbox's, which other
// Notifiers sharing it change too.
func (n *Notifier) refreshDepths(ctx context.Context) (total int, err error) {
	pending, _, err := n.loadDepths(ctx)
	if err != nil {
		return 0, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	changed := false
	for i, p := range pending {
		total += p
		if n.sinkSt[i].Pending != p {
			n.sinkSt[i].Pending = p
			changed = true
		}
	}
	if changed {
		n.changedLocked()
	}
	return total, nil
}

// claim reports whether this Notifier may deliver sink i's queue now.
func (n *Notifier) claim(ctx context.Context, i int) (bool, error) {
	return n.store.claim(ctx, n.sinks[i].Name())
}

// deliver hands e to sink i, renewing the sink's lease while the sink works
// when the outbox is shared.
func (n *Notifier) deliver(ctx context.Context, i int, e entry) error {
	sink := n.sinks[i]
	if !n.shared {
		return sink.Deliver(ctx, e.Alert)
	}
	done := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(n.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				held, err := n.claim(ctx, i)
				if (err != nil || !held) && ctx.Err() == nil {
					n.log.Warn("notify_lease_lost", "sink", sink.Name(), "alert_id", e.Alert.ID, "error", err,
						"consequence", "another instance may deliver this alert too")
				}
			}
		}
	}()
	err := sink.Deliver(ctx, e.Alert)
	close(done)
	<-renewed
	return err
}
