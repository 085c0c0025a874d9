package hll

import (
	"fmt"
	"slices"
)

// ExactLimit is the number of distinct hashes a Counter keeps exactly before
// it switches to a sketch: 4096 hashes, in a table of at most 64 KiB.
const ExactLimit = 4096

// Counter counts distinct elements by their 64-bit hashes: exactly, in a set
// of the hashes, while there are at most ExactLimit of them, then with a
// Sketch of the counter's precision. A count of a few hundred subjects
// compared with a limit of the same order is thus never off by the
// sketch's error. The zero value is not usable; build one with NewCounter.
//
// A Counter is not safe for concurrent use.
type Counter struct {
	p uint8
	// set holds the hashes while exact, in open addressing (0 is a free
	// slot; hash 0 is recorded by zero); n counts them, zero included.
	set  []uint64
	n    int
	zero bool
	sk   *Sketch // nil while exact
}

// insert adds h to the exact set.
func (c *Counter) insert(h uint64) {
	if h == 0 {
		if !c.zero {
			c.zero = true
			c.n++
		}
		return
	}
	if (c.n+1)*4 > len(c.set)*3 {
		c.grow()
	}
	mask := uint64(len(c.set) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch c.set[i] {
		case h:
			return
		case 0:
			c.set[i] = h
			c.n++
			return
		}
	}
}

func (c *Counter) grow() {
	old := c.set
	c.set = make([]uint64, max(16, 2*len(old)))
	mask := uint64(len(c.set) - 1)
	for _, h := range old {
		if h == 0 {
			continue
		}
		i := h & mask
		for c.set[i] != 0 {
			i = (i + 1) & mask
		}
		c.set[i] = h
	}
}

// each calls fn with every hash of the exact set.
func (c *Counter) each(fn func(uint64)) {
	if c.zero {
		fn(0)
	}
	for _, h := range c.set {
		if h != 0 {
			fn(h)
		}
	}
}

// NewCounter returns an empty, exact counter whose sketch, once it needs one,
// has the given precision. It panics if precision is outside
// MinPrecision..MaxPrecision, a programming error.
func NewCounter(precision uint8) *Counter {
	if precision < MinPrecision || precision > MaxPrecision {
		panic(fmt.Sprintf("hll: precision %d outside %d..%d", precision, MinPrecision, MaxPrecision))
	}
	return &Counter{p: precision}
}

// Precision returns the precision of the counter's sketch, present or to be.
func (c *Counter) Precision() uint8 { return c.p }

// Exact reports whether Count is exact: the counter still holds the hashes.
func (c *Counter) Exact() bool { return c.sk == nil }

// Sketch returns the counter's sketch, or nil while it is exact. The sketch
// belongs to the counter.
func (c *Counter) Sketch() *Sketch { return c.sk }

// Add records one element by its well-mixed 64-bit hash (see Sketch.Add).
func (c *Counter) Add(hash uint64) {
	if c.sk != nil {
		c.sk.Add(hash)
		return
	}
	c.insert(hash)
	if c.n > ExactLimit {
		c.toSketch(c.p)
	}
}

// Contains reports whether hash was added, while the counter is exact; a
// sketch cannot tell, and Contains returns false.
func (c *Counter) Contains(hash uint64) bool {
	if c.sk != nil {
		return false
	}
	if hash == 0 {
		return c.zero
	}
	if len(c.set) == 0 {
		return false
	}
	mask := uint64(len(c.set) - 1)
	for i := hash & mask; c.set[i] != 0; i = (i + 1) & mask {
		if c.set[i] == hash {
			return true
		}
	}
	return false
}

// toSketch moves the hashes into a sketch of precision p.
func (c *Counter) toSketch(p uint8) {
	c.p = p
	c.sk = New(p)
	c.each(c.sk.Add)
	c.set, c.n, c.zero = nil, 0, false
}

// Count returns the number of distinct elements added: exact while Exact,
// else the sketch's estimate.
func (c *Counter) Count() uint64 {
	if c.sk != nil {
		return c.sk.Estimate()
	}
	return uint64(c.n)
}

// Merge makes c the counter of the union of c and o. The union of two exact
// counters stays exact while it holds at most ExactLimit hashes; otherwise
// the result is a sketch of the lower of the two precisions (a finer sketch
// is folded, see Sketch.MergeFolded).
func (c *Counter) Merge(o *Counter) {
	if o == nil || o.IsEmpty() {
		return
	}
	if c.sk == nil && o.sk == nil {
		o.each(c.insert)
		if c.n > ExactLimit {
			c.toSketch(min(c.p, o.p))
		}
		return
	}
	if o.sk == nil {
		o.each(c.sk.Add)
		return
	}
	p := min(c.p, o.p)
	switch {
	case c.sk == nil:
		c.toSketch(p)
	case c.sk.Precision() > p:
		c.sk, _ = c.sk.Downsample(p) // p is lower
		c.p = p
	}
	_ = c.sk.MergeFolded(o.sk) // c.sk is never finer than o.sk
}

// MergeSketch makes c the counter of the union of c and the elements of s,
// which makes c a sketch.
func (c *Counter) MergeSketch(s *Sketch) {
	if s == nil {
		return
	}
	c.Merge(&Counter{p: s.Precision(), sk: s})
}

// IsEmpty reports whether nothing has been added to c.
func (c *Counter) IsEmpty() bool {
	if c.sk != nil {
		return c.sk.IsEmpty()
	}
	return c.n == 0
}

// Reset empties c and makes it exact again, keeping the set's memory.
func (c *Counter) Reset() {
	c.sk = nil
	clear(c.set)
	c.n, c.zero = 0, false
}

// Clone returns an independent copy of c.
func (c *Counter) Clone() *Counter {
	out := &Counter{p: c.p, n: c.n, zero: c.zero}
	if c.sk != nil {
		out.sk = c.sk.Clone()
		return out
	}
	if c.n > 0 {
		out.set = slices.Clone(c.set)
	}
	return out
}
