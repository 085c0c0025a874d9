package shardlru

import (
	"fmt"
	"sync"
	"testing"
)

func TestCache(t *testing.T) {
	c, err := New[string, int](64)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 64 {
		c.Add(fmt.Sprint(i), i)
	}
	if v, ok := c.Get("7"); !ok || v != 7 {
		t.Fatalf("Get(7) = %d, %v", v, ok)
	}
	if v, ok := c.Peek("8"); !ok || v != 8 {
		t.Fatalf("Peek(8) = %d, %v", v, ok)
	}
	if !c.Remove("7") || c.Remove("7") {
		t.Fatal("Remove(7) twice: want true, then false")
	}
	if _, ok := c.Get("7"); ok {
		t.Fatal("7 still there after Remove")
	}
	c.Purge()
	if n := c.Len(); n != 0 {
		t.Fatalf("Len after Purge = %d", n)
	}
}

// TestBounded checks that the cache holds no more than its size rounded up
// to whole shards, and evicts within a shard.
func TestBounded(t *testing.T) {
	c, _ := New[int, int](1600)
	if len(c.shards) != 16 {
		t.Fatalf("%d shards for 1600 entries, want 16", len(c.shards))
	}
	for i := range 100000 {
		c.Add(i, i)
	}
	if n := c.Len(); n != 1600 {
		t.Fatalf("Len = %d after 100000 adds to a cache of 1600 (16 shards of 100)", n)
	}
	// The most recent key of each shard survives.
	if _, ok := c.Get(99999); !ok {
		t.Fatal("the last key added was evicted")
	}
}

// TestSmallIsExact checks that a small cache is one LRU: it evicts the
// least recently used entry of the whole cache.
func TestSmallIsExact(t *testing.T) {
	c, _ := New[int, int](8)
	if len(c.shards) != 1 {
		t.Fatalf("%d shards for 8 entries, want 1", len(c.shards))
	}
	for i := range 8 {
		c.Add(i, i)
	}
	c.Get(0)
	c.Add(8, 8)
	if _, ok := c.Peek(1); ok {
		t.Fatal("1, the least recently used, was not evicted")
	}
	if _, ok := c.Peek(0); !ok {
		t.Fatal("0, used just before, was evicted")
	}
}

func TestConcurrent(t *testing.T) {
	c, _ := New[uint32, int](1024)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5000 {
				k := uint32(i % 2000)
				if v, ok := c.Get(k); ok && v != int(k) {
					t.Errorf("Get(%d) = %d", k, v)
					return
				}
				c.Add(k, int(k))
				if i%997 == g {
					c.Remove(k)
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkGetParallel is a hit from every processor at once: with one
// lock the lookups queue on it, with shards they rarely meet.
func BenchmarkGetParallel(b *testing.B) {
	c, _ := New[string, int](4096)
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = $%d", i)
		c.Add(keys[i], i)
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Get(keys[i&255])
			i++
		}
	})
}
