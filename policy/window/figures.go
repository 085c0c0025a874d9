package window

import (
	"github.com/pgwarden/pgwarden/policy/hll"
	"github.com/pgwarden/pgwarden/policy/pii"
)

// Figures are the counted quantities of a statement, or of a window once
// summed.
//
// PII values of the built-in categories live in a fixed array, so counting
// them never allocates; only custom categories use the Custom map, which is
// nil when there are none. Distinct data subjects arrive either as
// SubjectHashes (64-bit hashes from hll.Hash64 and friends: cheapest for the
// few subjects of a typical statement) or as a Subjects counter (exact up to
// hll.ExactLimit subjects, then a sketch of any precision, cheapest at
// DefaultPrecision since a finer one is folded register by register). Sum
// returns Subjects only, never SubjectHashes.
type Figures struct {
	Statements int64
	Rows       int64
	PIIRows    int64 // rows with at least one PII value
	Bytes      int64 // bytes sent to the client
	// Unexplained counts rows the employee had no recorded reason to see
	// (policy explained_access); Sequential, rows next to a key read in
	// the last hour (a sweep).
	Unexplained, Sequential int64
	PIIValues               [pii.NumBuiltin]int64 // by pii index
	Custom                  map[string]int64      // PII values of custom categories, by name

	SubjectHashes []uint64
	Subjects      *hll.Counter
}

// DistinctSubjects returns the number of distinct data subjects, counting
// the counter and the hashes: exact up to hll.ExactLimit, estimated above;
// 0 when there are neither.
func (f *Figures) DistinctSubjects() uint64 {
	if len(f.SubjectHashes) == 0 {
		if f.Subjects == nil {
			return 0
		}
		return f.Subjects.Count()
	}
	var c *hll.Counter
	if f.Subjects != nil {
		c = f.Subjects.Clone()
	} else {
		c = hll.NewCounter(DefaultPrecision)
	}
	for _, h := range f.SubjectHashes {
		c.Add(h)
	}
	return c.Count()
}

// AddPII adds n values of category c: to PIIValues for a built-in category,
// to Custom (allocated on first use) for any other.
func (f *Figures) AddPII(c pii.Category, n int64) {
	if i := c.Index(); i >= 0 {
		f.PIIValues[i] += n
		return
	}
	if f.Custom == nil {
		f.Custom = make(map[string]int64)
	}
	f.Custom[string(c)] += n
}

// EachPII calls fn for every category with a non-zero count: built-in
// categories in index order, then custom ones in no particular order.
func (f *Figures) EachPII(fn func(pii.Category, int64)) {
	for i, n := range f.PIIValues {
		if n != 0 {
			fn(pii.Builtin(i), n)
		}
	}
	for name, n := range f.Custom {
		if n != 0 {
			fn(pii.Category(name), n)
		}
	}
}

// PIIValuesTotal returns the PII values of every category, custom included.
func (f *Figures) PIIValuesTotal() int64 {
	var n int64
	for _, v := range f.PIIValues {
		n += v
	}
	for _, v := range f.Custom {
		n += v
	}
	return n
}

// AddCounts adds o's counters (not its subjects) to f, allocating f.Custom
// only when o has custom categories.
func (f *Figures) AddCounts(o *Figures) {
	f.Statements += o.Statements
	f.Rows += o.Rows
	f.PIIRows += o.PIIRows
	f.Bytes += o.Bytes
	f.Unexplained += o.Unexplained
	f.Sequential += o.Sequential
	for i, v := range o.PIIValues {
		f.PIIValues[i] += v
	}
	if len(o.Custom) > 0 {
		if f.Custom == nil {
			f.Custom = make(map[string]int64, len(o.Custom))
		}
		for k, v := range o.Custom {
			f.Custom[k] += v
		}
	}
}

// subCounts takes o's counters (not its subjects) from f, as AddCounts
// added them.
func (f *Figures) subCounts(o *Figures) {
	f.Statements -= o.Statements
	f.Rows -= o.Rows
	f.PIIRows -= o.PIIRows
	f.Bytes -= o.Bytes
	f.Unexplained -= o.Unexplained
	f.Sequential -= o.Sequential
	for i, v := range o.PIIValues {
		f.PIIValues[i] -= v
	}
	for k, v := range o.Custom {
		if f.Custom[k] -= v; f.Custom[k] == 0 {
			delete(f.Custom, k)
		}
	}
}
