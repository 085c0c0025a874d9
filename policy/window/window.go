package window

import (
	"fmt"
	"time"

	"github.com/pgwarden/pgwarden/policy/hll"
)

// Buckets is the number of buckets of each standard window.
const Buckets = 60

// DefaultPrecision is the precision of the per-bucket subject sketches: 1 KiB
// each, 3.25% standard error.
const DefaultPrecision uint8 = 10

// Span names one of the four standard windows.
type Span uint8

// The standard windows.
const (
	Minute Span = iota
	TenMinutes
	Hour
	Day
	NumSpans int = iota
)

var spanDurations = [NumSpans]time.Duration{time.Minute, 10 * time.Minute, time.Hour, 24 * time.Hour}

// Duration returns the length of the window.
func (s Span) Duration() time.Duration { return spanDurations[s] }

// String returns "1m0s", "10m0s", "1h0m0s" or "24h0m0s".
func (s Span) String() string {
	if int(s) < NumSpans {
		return spanDurations[s].String()
	}
	return "unknown"
}

// Window sums Figures over a sliding span of time, in a ring of buckets.
// See the package documentation for what Sum covers and how out-of-order
// times and clock jumps are handled. A Window is not safe for concurrent use.
type Window struct {
	span, width int64 // nanoseconds
	precision   uint8
	started     bool
	head        int64 // bucket number (time/width) of the newest bucket
	buckets     []bucket
	// total is the sum of the buckets' counters (not their subjects),
	// kept as buckets are added to and recycled: a sum at the newest
	// bucket's time, the common case, reads it instead of every bucket.
	total Figures
}

type bucket struct {
	num         int64   // bucket number (time/width) this slot holds
	f           Figures // counters; f.Subjects is the bucket's own counter
	hasSubjects bool    // f.Subjects holds subjects of bucket num
}

// NewWindow returns an empty window of the given span, divided into n
// buckets of span/n each, whose subject sketches have the given precision.
func NewWindow(span time.Duration, n int, precision uint8) (*Window, error) {
	w := &Window{}
	if err := w.init(span, n, precision); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Window) init(span time.Duration, n int, precision uint8) error {
	if span <= 0 || n <= 0 || span%time.Duration(n) != 0 {
		return fmt.Errorf("window: span %v is not a positive multiple of %d buckets", span, n)
	}
	if precision < hll.MinPrecision || precision > hll.MaxPrecision {
		return fmt.Errorf("window: precision %d outside %d..%d", precision, hll.MinPrecision, hll.MaxPrecision)
	}
	*w = Window{span: int64(span), width: int64(span) / int64(n), precision: precision, buckets: make([]bucket, n)}
	return nil
}

// Span returns the window's length.
func (w *Window) Span() time.Duration { return time.Duration(w.span) }

// Granularity returns the width of one bucket, the bound on how far Sum's
// coverage may differ from (now-span, now].
func (w *Window) Granularity() time.Duration { return time.Duration(w.width) }

// number returns the bucket number of t, flooring before 1970 too.
func (w *Window) number(t time.Time) int64 {
	ns := t.UnixNano()
	q := ns / w.width
	if ns%w.width < 0 {
		q--
	}
	return q
}

func (w *Window) slot(num int64) *bucket {
	n := int64(len(w.buckets))
	return &w.buckets[(num%n+n)%n]
}

// advance makes num the newest bucket, emptying the buckets that fall out of
// the span (all of them after a jump of a whole span or more).
func (w *Window) advance(num int64) {
	n := int64(len(w.buckets))
	first := num - n + 1
	if w.started && w.head+1 > first {
		first = w.head + 1
	}
	for k := first; k <= num; k++ {
		b := w.slot(k)
		w.total.subCounts(&b.f)
		b.num = k
		subjects := b.f.Subjects
		custom := b.f.Custom
		clear(custom)
		if b.hasSubjects {
			subjects.Reset()
			if subjects.Precision() != w.precision {
				subjects = nil // folded down by a coarser sketch
			}
		}
		b.f = Figures{Custom: custom, Subjects: subjects}
		b.hasSubjects = false
	}
	w.head, w.started = num, true
}

// Add counts f at time at. It keeps no reference to f's map, slice or sketch.
func (w *Window) Add(at time.Time, f Figures) { w.add(at, &f) }

func (w *Window) add(at time.Time, f *Figures) {
	num := w.number(at)
	switch {
	case !w.started || num > w.head:
		w.advance(num)
	case num <= w.head-int64(len(w.buckets)):
		num = w.head // the clock went backward: count it now
	}
	b := w.slot(num)
	b.f.AddCounts(f)
	w.total.AddCounts(f)
	if len(f.SubjectHashes) == 0 && f.Subjects == nil {
		return
	}
	if b.f.Subjects == nil {
		b.f.Subjects = hll.NewCounter(w.precision)
	}
	b.hasSubjects = true
	b.f.Subjects.Merge(f.Subjects) // exact while both are and few enough
	for _, h := range f.SubjectHashes {
		b.f.Subjects.Add(h)
	}
}

// Sum returns the figures of the window ending at now. Subjects is nil when
// no subject was counted. A now before the newest bucket counted is taken as
// that bucket's time: time never moves backward for a window.
//
// Merging the subject counters costs, per live bucket with subjects, its
// hashes while exact, 2^precision once a sketch (about 1 µs each at
// precision 10); SumCounts skips it.
func (w *Window) Sum(now time.Time) Figures { return w.sum(now, true) }

// SumCounts is Sum without the distinct subjects (Subjects is nil): the
// counters only, read from a running total when now falls in the newest
// bucket, else at a cost of a few nanoseconds per bucket.
func (w *Window) SumCounts(now time.Time) Figures { return w.sum(now, false) }

func (w *Window) sum(now time.Time, subjects bool) Figures {
	var out Figures
	if !w.started {
		return out
	}
	num := max(w.number(now), w.head)
	if num == w.head && !subjects && len(w.total.Custom) == 0 {
		// Every bucket is live.
		out = w.total
		out.Custom = nil
		return out
	}
	return w.sumBuckets(num, subjects)
}

// sumBuckets is sum over the live buckets of the window ending with bucket
// number num.
func (w *Window) sumBuckets(num int64, subjects bool) Figures {
	var out Figures
	oldest := num - int64(len(w.buckets)) + 1
	for i := range w.buckets {
		b := &w.buckets[i]
		if b.num < oldest || b.num > num {
			continue
		}
		out.AddCounts(&b.f)
		if subjects && b.hasSubjects {
			if out.Subjects == nil {
				out.Subjects = hll.NewCounter(w.precision)
			}
			out.Subjects.Merge(b.f.Subjects)
		}
	}
	return out
}

// Set is the four standard windows of one key. It is not safe for concurrent
// use.
type Set struct {
	windows [NumSpans]Window
	last    time.Time // latest time added
}

// NewSet returns empty standard windows whose subject sketches have the given
// precision (DefaultPrecision when 0).
func NewSet(precision uint8) (*Set, error) {
	if precision == 0 {
		precision = DefaultPrecision
	}
	s := &Set{}
	for i := range s.windows {
		if err := s.windows[i].init(spanDurations[i], Buckets, precision); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Add counts f at time at in every window.
func (s *Set) Add(at time.Time, f Figures) { s.add(at, &f) }

func (s *Set) add(at time.Time, f *Figures) {
	for i := range s.windows {
		s.windows[i].add(at, f)
	}
	if at.After(s.last) {
		s.last = at
	}
}

// Totals are the figures of the four standard windows, indexed by Span.
type Totals [NumSpans]Figures

// Sum returns the figures of each window ending at now.
func (s *Set) Sum(now time.Time) Totals {
	return s.sum(now, AllSpans, true)
}

// SumCounts is Sum without the distinct subjects.
func (s *Set) SumCounts(now time.Time) Totals {
	return s.sum(now, AllSpans, false)
}

func (s *Set) sum(now time.Time, spans Spans, subjects bool) Totals {
	var t Totals
	for i := range s.windows {
		if spans&(1<<i) != 0 {
			t[i] = s.windows[i].sum(now, subjects)
		}
	}
	return t
}

// LastSeen returns the latest time passed to Add, or the zero time.
func (s *Set) LastSeen() time.Time { return s.last }
