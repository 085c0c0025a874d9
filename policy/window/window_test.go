package window

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/pgwarden/pgwarden/policy/hll"
	"github.com/pgwarden/pgwarden/policy/pii"
)

// t0 is aligned to the buckets of every standard window.
var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func newSet(t testing.TB) *Set {
	t.Helper()
	s, err := NewSet(0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func stmt(rows int64, subjects ...uint64) Figures {
	f := Figures{Statements: 1, Rows: rows, PIIRows: rows, Bytes: 100 * rows, SubjectHashes: subjects}
	f.PIIValues[pii.IdxEmail] = rows
	return f
}

func subject(i int) uint64 { return hll.HashUint64(uint64(i), 0) }

func TestCountsAppearInAllWindows(t *testing.T) {
	s := newSet(t)
	s.Add(t0, stmt(3, subject(1), subject(2)))
	s.Add(t0.Add(500*time.Millisecond), stmt(2, subject(2)))
	got := s.Sum(t0.Add(time.Second))
	for sp := range NumSpans {
		f := got[sp]
		if f.Statements != 2 || f.Rows != 5 || f.PIIRows != 5 || f.Bytes != 500 || f.PIIValues[pii.IdxEmail] != 5 {
			t.Errorf("%v: %+v", Span(sp), f)
		}
		if d := f.DistinctSubjects(); d != 2 {
			t.Errorf("%v: %d distinct subjects, want 2", Span(sp), d)
		}
	}
}

func TestCountsLeaveEachWindowAfterItsSpan(t *testing.T) {
	s := newSet(t)
	s.Add(t0, stmt(1))
	tests := []struct {
		age  time.Duration
		want [NumSpans]int64 // statements per window
	}{
		{0, [NumSpans]int64{1, 1, 1, 1}},
		{59 * time.Second, [NumSpans]int64{1, 1, 1, 1}},
		{60 * time.Second, [NumSpans]int64{0, 1, 1, 1}},
		{10*time.Minute - time.Nanosecond, [NumSpans]int64{0, 1, 1, 1}},
		{10 * time.Minute, [NumSpans]int64{0, 0, 1, 1}},
		{time.Hour, [NumSpans]int64{0, 0, 0, 1}},
		{24*time.Hour - time.Nanosecond, [NumSpans]int64{0, 0, 0, 1}},
		{24 * time.Hour, [NumSpans]int64{0, 0, 0, 0}},
	}
	for _, tt := range tests {
		got := s.Sum(t0.Add(tt.age))
		for sp := range NumSpans {
			if got[sp].Statements != tt.want[sp] {
				t.Errorf("age %v, %v window: %d statements, want %d", tt.age, Span(sp), got[sp].Statements, tt.want[sp])
			}
		}
	}
}

// TestCoverageBound checks the documented bound at random times: an event of
// age a is counted when a < span-width and never when a >= span.
func TestCoverageBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for sp := range NumSpans {
		span := Span(sp).Duration()
		width := span / Buckets
		for range 2000 {
			w, err := NewWindow(span, Buckets, DefaultPrecision)
			if err != nil {
				t.Fatal(err)
			}
			at := t0.Add(time.Duration(rng.Int64N(int64(24 * time.Hour))))
			age := time.Duration(rng.Int64N(int64(span + 2*width)))
			w.Add(at, stmt(1))
			got := w.Sum(at.Add(age)).Statements
			switch {
			case age < span-width && got != 1:
				t.Fatalf("%v window: event of age %v not counted", span, age)
			case age >= span && got != 0:
				t.Fatalf("%v window: event of age %v still counted", span, age)
			}
		}
		if w, _ := NewWindow(span, Buckets, DefaultPrecision); w.Granularity() != width || w.Span() != span {
			t.Fatalf("granularity %v span %v", w.Granularity(), w.Span())
		}
	}
}

func TestSameSubjectInManyBucketsCountsOnce(t *testing.T) {
	s := newSet(t)
	for i := range 5 {
		at := t0.Add(time.Duration(i) * 11 * time.Second)
		s.Add(at, stmt(1, subject(42)))
		// 1000 other subjects, each also seen in all five buckets.
		hashes := make([]uint64, 1000)
		for j := range hashes {
			hashes[j] = subject(1000 + j)
		}
		s.Add(at, stmt(1000, hashes...))
	}
	got := s.Sum(t0.Add(50 * time.Second))
	for sp := range NumSpans {
		d := got[sp].DistinctSubjects()
		// p=10: 3.25% standard error; 10% is three of them.
		if math.Abs(float64(d)-1001)/1001 > 0.10 {
			t.Errorf("%v: %d distinct subjects, want ~1001", Span(sp), d)
		}
		if got[sp].Rows != 5005 {
			t.Errorf("%v: %d rows", Span(sp), got[sp].Rows)
		}
	}
	one := newSet(t)
	for i := range 5 {
		one.Add(t0.Add(time.Duration(i)*11*time.Second), stmt(1, subject(42)))
	}
	if d := one.Sum(t0.Add(50 * time.Second))[Minute]; d.DistinctSubjects() != 1 {
		t.Fatalf("one subject in 5 buckets: %d distinct", d.DistinctSubjects())
	}
}

func TestSubjectsAsSketches(t *testing.T) {
	s := newSet(t)
	fine := hll.NewDefault()
	for i := range 500 {
		fine.AddUint64(uint64(i))
	}
	s.Add(t0, Figures{Statements: 1, Subjects: sketched(fine)})
	// A coarser sketch folds its bucket (and the sum) down to p=8.
	coarse := hll.New(8)
	for i := 250; i < 750; i++ {
		coarse.AddUint64(uint64(i))
	}
	s.Add(t0.Add(time.Second), Figures{Statements: 1, Subjects: sketched(coarse)})
	s.Add(t0.Add(time.Second), Figures{SubjectHashes: []uint64{hll.HashUint64(0, 0)}})
	got := s.Sum(t0.Add(2 * time.Second))
	for sp := range NumSpans {
		d := got[sp].DistinctSubjects()
		if math.Abs(float64(d)-750)/750 > 0.15 {
			t.Errorf("%v: %d distinct subjects, want ~750", Span(sp), d)
		}
		if got[sp].Subjects.Precision() != 8 {
			t.Errorf("%v: sum precision %d, want 8", Span(sp), got[sp].Subjects.Precision())
		}
	}
	if fine.Estimate() < 490 || fine.Estimate() > 510 {
		t.Fatal("Add modified the caller's sketch")
	}
}

func TestCustomCategories(t *testing.T) {
	s := newSet(t)
	s.Add(t0, Figures{Custom: map[string]int64{"loyalty_id": 2}})
	s.Add(t0.Add(time.Second), Figures{Custom: map[string]int64{"loyalty_id": 3, "badge": 1}})
	f := s.Sum(t0.Add(time.Second))[Hour]
	if f.Custom["loyalty_id"] != 5 || f.Custom["badge"] != 1 || f.PIIValuesTotal() != 6 {
		t.Fatalf("custom %v", f.Custom)
	}
	if f := s.Sum(t0.Add(2 * time.Minute))[Minute]; len(f.Custom) != 0 {
		t.Fatalf("expired custom counts %v", f.Custom)
	}
}

func TestOutOfOrderWithinSpan(t *testing.T) {
	s := newSet(t)
	s.Add(t0.Add(50*time.Second), stmt(1))
	s.Add(t0.Add(5*time.Second), stmt(10)) // late, but inside every span
	if c := s.SumCounts(t0.Add(50 * time.Second)); c[Minute].Rows != 11 || c[Minute].Subjects != nil {
		t.Fatalf("counts %+v", c[Minute])
	}
	if got := s.Sum(t0.Add(50 * time.Second))[Minute].Rows; got != 11 {
		t.Fatalf("minute rows %d, want 11", got)
	}
	// The late event keeps its own time: it leaves the minute first.
	got := s.Sum(t0.Add(65 * time.Second))
	if got[Minute].Rows != 1 || got[TenMinutes].Rows != 11 {
		t.Fatalf("minute rows %d (want 1), ten-minute rows %d (want 11)", got[Minute].Rows, got[TenMinutes].Rows)
	}
}

func TestClockJumpsForwardPastEverySpan(t *testing.T) {
	s := newSet(t)
	for i := range 100 {
		s.Add(t0.Add(time.Duration(i)*time.Minute), stmt(1, subject(i)))
	}
	later := t0.Add(100*time.Minute + 25*time.Hour)
	for sp, f := range s.Sum(later) {
		if f.Statements != 0 || f.Subjects != nil {
			t.Errorf("%v after the jump: %+v", Span(sp), f)
		}
	}
	s.Add(later, stmt(7, subject(1)))
	for sp, f := range s.Sum(later) {
		if f.Rows != 7 || f.DistinctSubjects() != 1 {
			t.Errorf("%v after the jump: rows %d, subjects %d", Span(sp), f.Rows, f.DistinctSubjects())
		}
	}
}

func TestClockJumpsBackward(t *testing.T) {
	s := newSet(t)
	s.Add(t0.Add(2*time.Hour), stmt(1))
	// Two hours back: older than the minute, ten-minute and hour spans, so
	// those windows count it in their newest bucket; the day window keeps
	// its own time.
	s.Add(t0, stmt(2))
	got := s.Sum(t0.Add(2 * time.Hour))
	for sp := range NumSpans {
		if got[sp].Rows != 3 {
			t.Errorf("%v: rows %d, want 3", Span(sp), got[sp].Rows)
		}
	}
	// Sum with a clock behind the newest bucket reads as of that bucket.
	if r := s.Sum(t0)[Minute].Rows; r != 3 {
		t.Errorf("sum at the earlier time: minute rows %d, want 3", r)
	}
	// The day window holds the back-dated event at t0, so it leaves first.
	got = s.Sum(t0.Add(24*time.Hour + time.Second))
	if got[Day].Rows != 1 {
		t.Errorf("day rows %d, want 1", got[Day].Rows)
	}
}

func TestBeforeEpochTimes(t *testing.T) {
	w, _ := NewWindow(time.Minute, Buckets, DefaultPrecision)
	at := time.Date(1960, 1, 1, 0, 0, 0, 500, time.UTC)
	w.Add(at, stmt(1))
	if w.Sum(at.Add(59*time.Second)).Rows != 1 || w.Sum(at.Add(61*time.Second)).Rows != 0 {
		t.Fatal("window before 1970 miscounted")
	}
}

func TestInvalidConfigs(t *testing.T) {
	for _, c := range []struct {
		span      time.Duration
		n         int
		precision uint8
	}{{0, 60, 10}, {time.Minute, 0, 10}, {time.Minute, 7, 10}, {time.Minute, 60, 3}, {time.Minute, 60, 17}} {
		if _, err := NewWindow(c.span, c.n, c.precision); err == nil {
			t.Errorf("NewWindow(%v, %d, %d) accepted", c.span, c.n, c.precision)
		}
	}
	for _, c := range []Config{{Precision: 2}, {Shards: -1}, {IdleAfter: -time.Second}} {
		if _, err := NewRegistry(c); err == nil {
			t.Errorf("NewRegistry(%+v) accepted", c)
		}
	}
}

func TestSpanNames(t *testing.T) {
	if Minute.String() != "1m0s" || Day.String() != "24h0m0s" || Span(9).String() != "unknown" {
		t.Fatal("span names")
	}
}

func TestAddPII(t *testing.T) {
	var f Figures
	f.AddPII(pii.Email, 2)
	f.AddPII(pii.IBAN, 1)
	f.AddPII("custom:loyalty_id", 3)
	f.AddPII(pii.Email, 1)
	if f.PIIValues[pii.IdxEmail] != 3 || f.PIIValues[pii.IdxIBAN] != 1 || f.Custom["custom:loyalty_id"] != 3 {
		t.Fatalf("AddPII: got %v custom %v", f.PIIValues, f.Custom)
	}
	got := map[pii.Category]int64{}
	f.EachPII(func(c pii.Category, n int64) { got[c] += n })
	want := map[pii.Category]int64{pii.Email: 3, pii.IBAN: 1, "custom:loyalty_id": 3}
	if !maps.Equal(got, want) || f.PIIValuesTotal() != 7 {
		t.Fatalf("EachPII: got %v, want %v (total %d)", got, want, f.PIIValuesTotal())
	}
}

// TestBucketSize keeps the memory figures of the package documentation true.
func TestBucketSize(t *testing.T) {
	size := unsafe.Sizeof(bucket{})
	t.Logf("bucket %d bytes, set %d bytes of buckets", size, int(size)*Buckets*NumSpans)
	if size > 176 {
		t.Fatalf("bucket is %d bytes; update the memory figures in doc.go", size)
	}
}

func TestRegistryConcurrentAdds(t *testing.T) {
	r, err := NewRegistry(Config{Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, adds, employees = 32, 500, 50
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range adds {
				e := fmt.Sprintf("employee-%d", (g+i)%employees)
				r.Add(e, t0.Add(time.Duration(i)*time.Millisecond), stmt(1, subject(i%100)))
				if i%50 == 0 {
					r.Get(e, t0.Add(time.Duration(i)*time.Millisecond))
				}
			}
		})
	}
	wg.Wait()
	if r.Len() != employees {
		t.Fatalf("%d employees, want %d", r.Len(), employees)
	}
	var total int64
	for e := range employees {
		got, ok := r.Get(fmt.Sprintf("employee-%d", e), t0.Add(time.Second))
		if !ok {
			t.Fatalf("employee-%d missing", e)
		}
		for sp := 1; sp < NumSpans; sp++ {
			if got[sp].Rows != got[Minute].Rows {
				t.Fatalf("employee-%d: windows disagree", e)
			}
		}
		total += got[Day].Rows
	}
	if total != goroutines*adds {
		t.Fatalf("total rows %d, want %d", total, goroutines*adds)
	}
}

func TestRegistrySweep(t *testing.T) {
	r, _ := NewRegistry(Config{})
	r.Add("alice", t0, stmt(1))
	r.Add("bob", t0.Add(12*time.Hour), stmt(1))
	r.Add("carol", t0, stmt(1))
	r.Delete("carol")
	if n := r.Sweep(t0.Add(24 * time.Hour)); n != 0 {
		t.Fatalf("swept %d keys idle exactly 24h", n)
	}
	if n := r.Sweep(t0.Add(24*time.Hour + time.Nanosecond)); n != 1 {
		t.Fatalf("swept %d, want alice only", n)
	}
	if _, ok := r.Get("alice", t0.Add(25*time.Hour)); ok {
		t.Fatal("alice still present")
	}
	if got, ok := r.GetCounts("bob", t0.Add(25*time.Hour)); !ok || got[Day].Rows != 1 {
		t.Fatalf("bob: %v %v", ok, got[Day].Rows)
	}
	if _, ok := r.Get("carol", t0); ok || r.Len() != 1 {
		t.Fatal("carol not deleted")
	}
	// A clock that went backward never makes a key look idle.
	if n := r.Sweep(t0); n != 0 {
		t.Fatalf("swept %d with an earlier clock", n)
	}
}

func TestRegistryAddDoesNotAllocate(t *testing.T) {
	r, _ := NewRegistry(Config{})
	f := stmt(3, subject(1), subject(2), subject(3))
	r.Add("alice", t0, f)
	at := t0
	allocs := testing.AllocsPerRun(1000, func() {
		at = at.Add(time.Microsecond)
		r.Add("alice", at, f)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Add", allocs)
	}
}

// BenchmarkRegistryAdd adds a typical statement (3 PII rows, 3 subjects) for
// 1000 employees in turn, the clock advancing 1 ms per Add so buckets rotate.
func BenchmarkRegistryAdd(b *testing.B) {
	r, _ := NewRegistry(Config{})
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("employee-%04d", i)
		r.Add(names[i], t0, stmt(1))
	}
	f := stmt(3, subject(1), subject(2), subject(3))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		f.SubjectHashes[0] = subject(i)
		r.Add(names[i%len(names)], t0.Add(time.Duration(i)*time.Millisecond), f)
	}
}

// BenchmarkRegistryAddParallel is BenchmarkRegistryAdd from GOMAXPROCS
// goroutines.
func BenchmarkRegistryAddParallel(b *testing.B) {
	r, _ := NewRegistry(Config{})
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("employee-%04d", i)
		r.Add(names[i], t0, stmt(1))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		f := stmt(3, subject(1), subject(2), subject(3))
		i := rand.IntN(len(names))
		for pb.Next() {
			i++
			f.SubjectHashes[0] = subject(i)
			r.Add(names[i%len(names)], t0.Add(time.Duration(i)*time.Millisecond), f)
		}
	})
}

// BenchmarkRegistryAddHot is BenchmarkRegistryAdd for one employee, whose
// windows stay in cache.
func BenchmarkRegistryAddHot(b *testing.B) {
	r, _ := NewRegistry(Config{})
	f := stmt(3, subject(1), subject(2), subject(3))
	b.ReportAllocs()
	for i := range b.N {
		f.SubjectHashes[0] = subject(i)
		r.Add("alice", t0.Add(time.Duration(i)*time.Millisecond), f)
	}
}

// BenchmarkRegistryGetCounts is BenchmarkRegistryGet without the subjects.
func BenchmarkRegistryGetCounts(b *testing.B) {
	r, _ := NewRegistry(Config{})
	for i := range 24 * 3600 {
		r.Add("alice", t0.Add(time.Duration(i)*time.Second), stmt(1, subject(i)))
	}
	now := t0.Add(24 * time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r.GetCounts("alice", now)
	}
}

// BenchmarkRegistryGet sums the four windows of an employee active every
// second of the last 24 hours.
func BenchmarkRegistryGet(b *testing.B) {
	r, _ := NewRegistry(Config{})
	for i := range 24 * 3600 {
		r.Add("alice", t0.Add(time.Duration(i)*time.Second), stmt(1, subject(i)))
	}
	now := t0.Add(24 * time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r.Get("alice", now)
	}
}

func TestFiguresDistinctSubjects(t *testing.T) {
	var f Figures
	if f.DistinctSubjects() != 0 {
		t.Fatal("empty figures have subjects")
	}
	f.Subjects = hll.NewCounter(12)
	f.Subjects.Add(hll.HashUint64(1, 0))
	f.Subjects.Add(hll.HashUint64(2, 0))
	if f.DistinctSubjects() != 2 {
		t.Fatalf("counter only: %d", f.DistinctSubjects())
	}
	f.SubjectHashes = []uint64{hll.HashUint64(2, 0), hll.HashUint64(3, 0)}
	if f.DistinctSubjects() != 3 {
		t.Fatalf("counter and hashes: %d, want 3", f.DistinctSubjects())
	}
}

// sketched is a counter holding the elements of s, as a sketch.
func sketched(s *hll.Sketch) *hll.Counter {
	c := hll.NewCounter(s.Precision())
	c.MergeSketch(s)
	return c
}

// TestSubjectsExact: below hll.ExactLimit a window's distinct subjects are
// exact, however many statements and buckets they are spread over, and
// however often a subject comes back; above, the sum is a sketch.
func TestSubjectsExact(t *testing.T) {
	s := newSet(t)
	// 25 statements of 20 subjects, one every 2 s, each repeating 5 of the
	// statement before: 25*15+5 = 380 distinct subjects.
	next := 0
	for i := range 25 {
		var hashes []uint64
		for j := range 20 {
			hashes = append(hashes, subject(next-5*min(i, 1)+j))
		}
		next += 20 - 5*min(i, 1)
		c := hll.NewCounter(hll.DefaultPrecision)
		for _, h := range hashes[:10] {
			c.Add(h)
		}
		s.Add(t0.Add(time.Duration(2*i)*time.Second), Figures{Statements: 1, Subjects: c, SubjectHashes: hashes[10:]})
	}
	got := s.Sum(t0.Add(50 * time.Second))
	for sp := range NumSpans {
		if d := got[sp].DistinctSubjects(); d != uint64(next) || !got[sp].Subjects.Exact() {
			t.Errorf("%v: %d distinct subjects (exact %v), want exactly %d", Span(sp), d, got[sp].Subjects.Exact(), next)
		}
	}
	for i := next; i <= hll.ExactLimit; i++ {
		s.Add(t0.Add(51*time.Second), stmt(1, subject(i)))
	}
	got = s.Sum(t0.Add(52 * time.Second))
	if got[Hour].Subjects.Exact() {
		t.Fatalf("%d subjects still exact", hll.ExactLimit+1)
	}
	if d := got[Hour].DistinctSubjects(); math.Abs(float64(d)-hll.ExactLimit-1)/hll.ExactLimit > 0.15 {
		t.Fatalf("%d distinct subjects, want about %d", d, hll.ExactLimit+1)
	}
}

// TestGetSpans: only the windows asked for are summed; the others are zero.
func TestGetSpans(t *testing.T) {
	r, _ := NewRegistry(Config{})
	r.Add("alice", t0, stmt(3))
	all, _ := r.GetCounts("alice", t0)
	got, ok := r.GetSpans("alice", t0, 1<<Day|1<<Minute, false)
	if !ok || got[Day].Rows != all[Day].Rows || got[Minute].Rows != all[Minute].Rows || all[Day].Rows == 0 {
		t.Errorf("asked windows: %+v, want %+v", got, all)
	}
	if got[Hour].Rows != 0 || got[TenMinutes].Rows != 0 {
		t.Errorf("windows not asked for were summed: %+v", got)
	}
}

// TestRunningTotalMatchesBuckets checks the running total that SumCounts
// reads against the sum of the buckets, over random additions with the
// clock moving forward, standing still, jumping past the span and going
// backward.
func TestRunningTotalMatchesBuckets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s, err := NewSet(0)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1767225600, 0)
	for i := range 20000 {
		switch r := rng.IntN(100); {
		case r < 60:
			at = at.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		case r < 62:
			at = at.Add(time.Duration(rng.IntN(48)) * time.Hour)
		case r < 65:
			at = at.Add(-time.Duration(rng.IntN(120)) * time.Minute)
		}
		f := Figures{Statements: 1, Rows: int64(rng.IntN(100)), PIIRows: int64(rng.IntN(10)), Bytes: int64(rng.IntN(5000))}
		f.PIIValues[rng.IntN(pii.NumBuiltin)] = int64(rng.IntN(7))
		s.Add(at, f)
		for sp := range s.windows {
			w := &s.windows[sp]
			now := at.Add(time.Duration(rng.IntN(2)) * w.Granularity())
			got := w.SumCounts(now)
			want := w.sumBuckets(max(w.number(now), w.head), false)
			if got.Statements != want.Statements || got.Rows != want.Rows || got.PIIRows != want.PIIRows ||
				got.Bytes != want.Bytes || got.PIIValues != want.PIIValues {
				t.Fatalf("step %d, window %v: running total %+v, buckets %+v", i, w.Span(), got, want)
			}
		}
	}
}
