package window

import "github.com/pgwarden/pgwarden/policy/hll"

// Category indexes Figures.PIIValues. The built-in categories mirror the
// names of policy.Category (email, name, ...); custom categories are counted
// by name in Figures.Custom.
type Category uint8

// Built-in categories.
const (
	Email Category = iota
	Name
	Phone
	NationalID
	Card
	Address
	DateOfBirth
	IP
	IBAN
	NumCategories int = iota
)

var categoryNames = [NumCategories]string{
	"email", "name", "phone", "national_id", "card", "address", "date_of_birth", "ip", "iban",
}

// String returns the policy name of c, such as "national_id".
func (c Category) String() string {
	if int(c) < NumCategories {
		return categoryNames[c]
	}
	return "unknown"
}

// CategoryOf returns the built-in category named name (a policy.Category
// value), or false for a custom category.
func CategoryOf(name string) (Category, bool) {
	for i, n := range categoryNames {
		if n == name {
			return Category(i), true
		}
	}
	return 0, false
}

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
	PIIValues               [NumCategories]int64
	Custom                  map[string]int64 // PII values of custom categories, by name

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
