// Package shardlru is a fixed-size LRU cache split into shards, each a
// github.com/hashicorp/golang-lru/v2 cache with its own lock, so that
// sessions looking up different keys at once do not wait on one mutex.
// An LRU Get moves its entry and so takes a write lock even for a hit;
// with one cache that lock is shared by every session's statements.
//
// Recency is kept per shard: the entry evicted is the least recently used
// of its shard, not of the whole cache, and a shard holds at most its
// share of the size (rounded up). A cache too small to give each shard
// minPerShard entries has fewer shards, down to one: a plain LRU.
package shardlru

import (
	"hash/maphash"

	lru "github.com/hashicorp/golang-lru/v2"
)

const (
	// maxShards is the most shards a cache has: a power of two, enough
	// that on a machine of a few dozen cores two lookups rarely meet on
	// one lock.
	maxShards = 16
	// minPerShard is the fewest entries a shard is made for.
	minPerShard = 64
)

// Cache is a sharded LRU cache. Its methods are safe for concurrent use.
type Cache[K comparable, V any] struct {
	seed   maphash.Seed
	mask   uint64
	shards []*lru.Cache[K, V]
}

// New returns a cache of size entries, rounded up to whole shards.
func New[K comparable, V any](size int) (*Cache[K, V], error) {
	n := maxShards
	for n > 1 && size < n*minPerShard {
		n /= 2
	}
	per := (size + n - 1) / n
	c := &Cache[K, V]{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]*lru.Cache[K, V], n)}
	for i := range c.shards {
		s, err := lru.New[K, V](per)
		if err != nil {
			return nil, err
		}
		c.shards[i] = s
	}
	return c, nil
}

func (c *Cache[K, V]) shard(key K) *lru.Cache[K, V] {
	if c.mask == 0 {
		return c.shards[0]
	}
	return c.shards[maphash.Comparable(c.seed, key)&c.mask]
}

// Get returns key's value and marks it most recently used in its shard.
func (c *Cache[K, V]) Get(key K) (V, bool) { return c.shard(key).Get(key) }

// Peek returns key's value without changing its recency.
func (c *Cache[K, V]) Peek(key K) (V, bool) { return c.shard(key).Peek(key) }

// Add sets key's value and reports whether an entry was evicted for it.
func (c *Cache[K, V]) Add(key K, value V) bool { return c.shard(key).Add(key, value) }

// Remove removes key and reports whether it was there.
func (c *Cache[K, V]) Remove(key K) bool { return c.shard(key).Remove(key) }

// Purge removes every entry.
func (c *Cache[K, V]) Purge() {
	for _, s := range c.shards {
		s.Purge()
	}
}

// Len is the number of entries.
func (c *Cache[K, V]) Len() int {
	n := 0
	for _, s := range c.shards {
		n += s.Len()
	}
	return n
}
