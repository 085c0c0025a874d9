package detect

import "github.com/pgwarden/pgwarden/policy/pii"

// Slots of the built-in categories in Counts and Set: their pii indexes.
const (
	idxEmail      = pii.IdxEmail
	idxPhone      = pii.IdxPhone
	idxNationalID = pii.IdxNationalID
	idxCard       = pii.IdxCard
	idxIBAN       = pii.IdxIBAN
	idxIP         = pii.IdxIP
	numBuiltin    = pii.NumBuiltin
)

// Counts accumulates the PII values found per category across any number of
// Scan calls. The zero value is ready to use. Built-in categories live in a
// fixed array, so counting them never allocates; a custom category takes a
// slot the first time it is seen and keeps it across Reset, so a Counts that
// is reused row after row stops allocating after the first few rows.
// A Counts is not safe for concurrent use.
type Counts struct {
	builtin [numBuiltin]int
	custom  []customCount
	// spans holds the byte ranges built-in detectors claimed during the
	// current Scan, so custom patterns do not count them a second time.
	spans []span
}

type customCount struct {
	cat pii.Category
	n   int
}

// span is a half-open byte range [start, end) of one field.
type span struct{ start, end int }

// Add adds n values of category cat.
func (c *Counts) Add(cat pii.Category, n int) {
	if i := cat.Index(); i >= 0 {
		c.builtin[i] += n
		return
	}
	for k := range c.custom {
		if c.custom[k].cat == cat {
			c.custom[k].n += n
			return
		}
	}
	c.custom = append(c.custom, customCount{cat: cat, n: n})
}

// AddIndexed is Add for a category whose Index the caller knows, i, so
// that a count per value costs no lookup of the category.
func (c *Counts) AddIndexed(i int, cat pii.Category, n int) {
	if i >= 0 {
		c.builtin[i] += n
		return
	}
	c.Add(cat, n)
}

// AddAll adds every count of o, as o.Each(c.Add) would, but without a
// call per category.
func (c *Counts) AddAll(o *Counts) {
	for i, n := range o.builtin {
		c.builtin[i] += n
	}
	for _, cc := range o.custom {
		if cc.n != 0 {
			c.Add(cc.cat, cc.n)
		}
	}
}

// Get returns the number of values counted for cat.
func (c *Counts) Get(cat pii.Category) int {
	if i := cat.Index(); i >= 0 {
		return c.builtin[i]
	}
	for _, cc := range c.custom {
		if cc.cat == cat {
			return cc.n
		}
	}
	return 0
}

// Total returns the number of values counted in all categories.
func (c *Counts) Total() int {
	t := 0
	for _, n := range c.builtin {
		t += n
	}
	for _, cc := range c.custom {
		t += cc.n
	}
	return t
}

// Reset sets every count to zero, keeping the storage for reuse.
func (c *Counts) Reset() {
	c.builtin = [numBuiltin]int{}
	for k := range c.custom {
		c.custom[k].n = 0
	}
	c.spans = c.spans[:0]
}

// Each calls f for every category with a non-zero count: built-in
// categories first in a fixed order, then custom ones in the order first
// seen.
func (c *Counts) Each(f func(pii.Category, int)) {
	for i, n := range c.builtin {
		if n != 0 {
			f(pii.Builtin(i), n)
		}
	}
	for _, cc := range c.custom {
		if cc.n != 0 {
			f(cc.cat, cc.n)
		}
	}
}
