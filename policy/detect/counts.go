package detect

// Category names the kind of personal data a detector recognises. The
// built-in values match the policy package's category names; custom
// detectors may use any other name (the policy uses "custom:<name>").
type Category string

// Built-in categories, each recognised by a hand-written scanner.
const (
	Email      Category = "email"       // addr-spec with a dotted domain and an alphabetic TLD
	Phone      Category = "phone"       // E.164 and common national formats
	NationalID Category = "national_id" // US social security number, ddd-dd-dddd
	Card       Category = "card"        // Luhn-valid payment card number
	IBAN       Category = "iban"        // ISO 13616 account number, mod-97 valid
	IP         Category = "ip"          // IPv4 dotted quad or IPv6
)

// Indexes of the built-in categories in Counts and Set.
const (
	idxEmail = iota
	idxPhone
	idxNationalID
	idxCard
	idxIBAN
	idxIP
	numBuiltin
)

// builtins lists the built-in categories in index order.
var builtins = [numBuiltin]Category{Email, Phone, NationalID, Card, IBAN, IP}

// Builtins returns the built-in categories in a fixed order.
func Builtins() []Category {
	out := make([]Category, numBuiltin)
	copy(out, builtins[:])
	return out
}

// builtinIndex returns the index of a built-in category, or -1. A switch
// compiles to a length test and at most a couple of comparisons: Add runs
// for every PII value counted.
func builtinIndex(cat Category) int {
	switch cat {
	case Email:
		return idxEmail
	case Phone:
		return idxPhone
	case NationalID:
		return idxNationalID
	case Card:
		return idxCard
	case IBAN:
		return idxIBAN
	case IP:
		return idxIP
	}
	return -1
}

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
	cat Category
	n   int
}

// span is a half-open byte range [start, end) of one field.
type span struct{ start, end int }

// Add adds n values of category cat.
func (c *Counts) Add(cat Category, n int) {
	if i := builtinIndex(cat); i >= 0 {
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

// Get returns the number of values counted for cat.
func (c *Counts) Get(cat Category) int {
	if i := builtinIndex(cat); i >= 0 {
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
func (c *Counts) Each(f func(Category, int)) {
	for i, n := range c.builtin {
		if n != 0 {
			f(builtins[i], n)
		}
	}
	for _, cc := range c.custom {
		if cc.n != 0 {
			f(cc.cat, cc.n)
		}
	}
}
