package hll

import (
	"math"
	"testing"
)

func counterOf(p uint8, from, to int) *Counter {
	c := NewCounter(p)
	for i := from; i < to; i++ {
		c.Add(HashUint64(uint64(i), 0))
	}
	return c
}

// TestCounterExact: 500 subjects count exactly 500, where a sketch of any
// precision is off by a few (the limit of 500 that fired at 500 rows).
func TestCounterExact(t *testing.T) {
	for _, n := range []int{0, 1, 499, 500, 501, ExactLimit} {
		c := counterOf(DefaultPrecision, 0, n)
		c.Add(HashUint64(0, 0)) // a subject seen twice
		want := uint64(max(n, 1))
		if got := c.Count(); got != want || !c.Exact() {
			t.Errorf("%d subjects: count %d (exact %v), want %d", n, got, c.Exact(), want)
		}
	}
}

func TestCounterMerge(t *testing.T) {
	a, b := counterOf(10, 0, 300), counterOf(14, 200, 501)
	a.Merge(b)
	if a.Count() != 501 || !a.Exact() {
		t.Fatalf("exact + exact: %d (exact %v), want 501", a.Count(), a.Exact())
	}
	if b.Count() != 301 {
		t.Fatalf("Merge changed its argument: %d", b.Count())
	}
	// Exact + exact past the limit: a sketch of the lower precision.
	big := counterOf(14, 0, ExactLimit)
	big.Merge(counterOf(12, ExactLimit, ExactLimit+10))
	if big.Exact() || big.Precision() != 12 {
		t.Fatalf("%d subjects: exact %v, precision %d", ExactLimit+10, big.Exact(), big.Precision())
	}
	// Exact + sketch, either way round: a sketch of the union.
	sk := counterOf(12, 1000, 1000+ExactLimit+1)
	if sk.Exact() {
		t.Fatal("no switch to a sketch past ExactLimit")
	}
	small := counterOf(14, 0, 1100)
	s1 := small.Clone()
	s1.Merge(sk)
	sk2 := sk.Clone()
	sk2.Merge(small)
	want := float64(1000 + ExactLimit + 1)
	for _, c := range []*Counter{s1, sk2} {
		if c.Exact() || c.Precision() != 12 {
			t.Errorf("exact + sketch: exact %v, precision %d", c.Exact(), c.Precision())
		}
		if d := float64(c.Count()); math.Abs(d-want)/want > 0.05 {
			t.Errorf("exact + sketch: %v, want about %v", d, want)
		}
	}
	if small.Count() != 1100 || !small.Exact() {
		t.Fatal("Clone shares the set")
	}
	// A sketch merged with a finer sketch folds it; with a coarser one it
	// folds itself down.
	fine := counterOf(14, 0, ExactLimit+500)
	coarse := counterOf(10, 0, ExactLimit+500)
	fine.Merge(coarse)
	if fine.Precision() != 10 {
		t.Fatalf("fine + coarse: precision %d, want 10", fine.Precision())
	}
	fine.Reset()
	if !fine.Exact() || !fine.IsEmpty() || fine.Count() != 0 {
		t.Fatal("Reset leaves subjects")
	}
}

func TestCounterSwitch(t *testing.T) {
	c := counterOf(DefaultPrecision, 0, ExactLimit)
	if !c.Exact() || !c.Contains(HashUint64(7, 0)) {
		t.Fatal("not exact at ExactLimit")
	}
	c.Add(HashUint64(ExactLimit, 0))
	if c.Exact() || c.Sketch() == nil {
		t.Fatal("still exact past ExactLimit")
	}
	if d := float64(c.Count()); math.Abs(d-ExactLimit-1)/ExactLimit > 0.05 {
		t.Fatalf("after the switch: %v, want about %d", d, ExactLimit+1)
	}
}

// TestCounterZeroHash: 0, the table's free slot, is a hash like any other.
func TestCounterZeroHash(t *testing.T) {
	c := NewCounter(DefaultPrecision)
	c.Add(0)
	c.Add(0)
	c.Add(HashUint64(1, 0))
	if c.Count() != 2 || !c.Contains(0) || c.Contains(HashUint64(2, 0)) {
		t.Fatalf("count %d, contains 0 %v", c.Count(), c.Contains(0))
	}
	d := NewCounter(DefaultPrecision)
	d.Add(0)
	d.Merge(c)
	if d.Count() != 2 || c.Clone().Count() != 2 {
		t.Fatalf("merged %d", d.Count())
	}
}
