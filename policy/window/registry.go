package window

import (
	"fmt"
	"sync"
	"time"

	"github.com/pgwarden/pgwarden/policy/hll"
)

// Config configures a Registry. The zero value is valid.
type Config struct {
	// Precision of the per-bucket subject sketches; DefaultPrecision when 0.
	Precision uint8
	// Shards is the number of independently locked shards; 64 when 0.
	Shards int
	// IdleAfter is how long a key may go without Add before Sweep removes
	// it; 24h (the longest window) when 0. Shorter values drop counts still
	// inside the day window.
	IdleAfter time.Duration
}

func (c *Config) validate() error {
	if c.Precision == 0 {
		c.Precision = DefaultPrecision
	}
	if c.Precision < hll.MinPrecision || c.Precision > hll.MaxPrecision {
		return fmt.Errorf("window: precision %d outside %d..%d", c.Precision, hll.MinPrecision, hll.MaxPrecision)
	}
	if c.Shards == 0 {
		c.Shards = 64
	}
	if c.Shards < 0 {
		return fmt.Errorf("window: %d shards", c.Shards)
	}
	if c.IdleAfter == 0 {
		c.IdleAfter = 24 * time.Hour
	}
	if c.IdleAfter < 0 {
		return fmt.Errorf("window: negative idle time %v", c.IdleAfter)
	}
	return nil
}

// Registry holds a Set of windows per key: an employee, or a session id for
// per-session roll-ups. It is safe for concurrent use; Adds to keys in
// different shards do not contend.
type Registry struct {
	cfg    Config
	shards []shard
}

type shard struct {
	mu   sync.Mutex
	sets map[string]*Set
	_    [40]byte // keep neighbouring shards' locks off one cache line
}

// NewRegistry returns an empty registry.
func NewRegistry(cfg Config) (*Registry, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Registry{cfg: cfg, shards: make([]shard, cfg.Shards)}
	for i := range r.shards {
		r.shards[i].sets = make(map[string]*Set)
	}
	return r, nil
}

func (r *Registry) shard(key string) *shard {
	return &r.shards[hll.HashString(key, 0x5eed)%uint64(len(r.shards))]
}

// Add counts f for key at time at. Only the first Add of a key allocates
// (its Set), besides sketches and custom-category maps of fresh buckets.
func (r *Registry) Add(key string, at time.Time, f Figures) {
	sh := r.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, ok := sh.sets[key]
	if !ok {
		s, _ = NewSet(r.cfg.Precision) // precision validated by NewRegistry
		sh.sets[key] = s
	}
	s.add(at, &f)
}

// Get returns the four windows of key ending at now, and false if the key is
// unknown (never added, deleted or swept). Its cost grows with the buckets
// holding subjects (up to about 2 ms for a key active every second of the
// last day, holding the shard's lock): check limits on counters with
// GetCounts, and estimate subjects less often than once per statement.
func (r *Registry) Get(key string, now time.Time) (Totals, bool) {
	return r.get(key, now, true)
}

// GetCounts is Get without the distinct subjects (every Subjects is nil).
func (r *Registry) GetCounts(key string, now time.Time) (Totals, bool) {
	return r.get(key, now, false)
}

// Spans selects windows: bit i is span i (Totals' index).
type Spans uint8

// AllSpans selects every window.
const AllSpans Spans = 1<<NumSpans - 1

// GetSpans is Get of the windows spans selects only, the others left
// zero, with their distinct subjects when subjects is set: a caller that
// needs the day's totals does not pay for the minute's.
func (r *Registry) GetSpans(key string, now time.Time, spans Spans, subjects bool) (Totals, bool) {
	return r.getSpans(key, now, spans, subjects)
}

func (r *Registry) get(key string, now time.Time, subjects bool) (Totals, bool) {
	return r.getSpans(key, now, AllSpans, subjects)
}

func (r *Registry) getSpans(key string, now time.Time, spans Spans, subjects bool) (Totals, bool) {
	sh := r.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, ok := sh.sets[key]
	if !ok {
		return Totals{}, false
	}
	return s.sum(now, spans, subjects), true
}

// Delete forgets key.
func (r *Registry) Delete(key string) {
	sh := r.shard(key)
	sh.mu.Lock()
	delete(sh.sets, key)
	sh.mu.Unlock()
}

// Sweep removes the keys whose last Add is more than IdleAfter before now and
// returns how many it removed. Call it periodically, for example every
// minute; it locks one shard at a time.
func (r *Registry) Sweep(now time.Time) int {
	removed := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for k, s := range sh.sets {
			if now.Sub(s.LastSeen()) > r.cfg.IdleAfter {
				delete(sh.sets, k)
				removed++
			}
		}
		sh.mu.Unlock()
	}
	return removed
}

// Len returns the number of keys held.
func (r *Registry) Len() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += len(sh.sets)
		sh.mu.Unlock()
	}
	return n
}
