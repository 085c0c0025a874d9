package hll

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/bits"
	"strconv"
	"testing"
)

func relErr(got uint64, want int) float64 {
	return math.Abs(float64(got)-float64(want)) / float64(want)
}

func TestEstimateAccuracy(t *testing.T) {
	for _, n := range []int{1_000, 10_000, 50_000, 100_000, 1_000_000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			s := NewDefault()
			for i := range n {
				s.AddUint64(uint64(i))
			}
			got := s.Estimate()
			if e := relErr(got, n); e > 0.02 {
				t.Fatalf("estimate %d for %d distinct: relative error %.4f > 0.02", got, n, e)
			}
			t.Logf("p=14 n=%d estimate=%d error=%+.3f%%", n, got, 100*(float64(got)-float64(n))/float64(n))
		})
	}
}

// TestEstimateAccuracyStringKeys repeats the accuracy check with keys hashed by
// AddBytes, over many seeds, and bounds the mean error at each size.
func TestEstimateAccuracyStringKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	for _, n := range []int{1_000, 10_000, 30_000, 60_000, 100_000} {
		var sumErr, maxErr float64
		const trials = 10
		for trial := range trials {
			s := NewDefault()
			buf := make([]byte, 0, 32)
			for i := range n {
				buf = append(buf[:0], "customer-"...)
				buf = strconv.AppendInt(buf, int64(trial*10_000_000+i), 10)
				s.AddBytes(buf)
			}
			e := (float64(s.Estimate()) - float64(n)) / float64(n)
			sumErr += e
			maxErr = max(maxErr, math.Abs(e))
		}
		t.Logf("p=14 n=%d mean error=%+.3f%% max |error|=%.3f%% over %d trials", n, 100*sumErr/trials, 100*maxErr, trials)
		if maxErr > 0.03 || math.Abs(sumErr/trials) > 0.01 {
			t.Errorf("n=%d: mean error %.4f, max error %.4f", n, sumErr/trials, maxErr)
		}
	}
}

func TestEstimateTiny(t *testing.T) {
	for _, p := range []uint8{4, 10, 14, 16} {
		for _, n := range []int{0, 1, 2, 10} {
			s := New(p)
			for i := range n {
				s.AddUint64(uint64(i))
			}
			got := s.Estimate()
			tol := 0
			if p <= 10 && n == 10 {
				tol = 1 // a register collision among 10 of 16 registers is likely
			}
			if int(got) < n-tol || int(got) > n+tol {
				t.Errorf("p=%d: estimate %d for %d distinct", p, got, n)
			}
		}
	}
}

func TestDuplicatesDoNotInflate(t *testing.T) {
	s := NewDefault()
	for range 50 {
		for i := range 1000 {
			s.AddString("subject-" + strconv.Itoa(i))
		}
	}
	if got := s.Estimate(); relErr(got, 1000) > 0.02 {
		t.Fatalf("1000 subjects added 50 times each: estimate %d", got)
	}
}

func TestMergeIsUnion(t *testing.T) {
	a, b, union := NewDefault(), NewDefault(), NewDefault()
	for i := range 60_000 {
		a.AddUint64(uint64(i))
		union.AddUint64(uint64(i))
	}
	for i := 40_000; i < 100_000; i++ {
		b.AddUint64(uint64(i))
		union.AddUint64(uint64(i))
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.reg, union.reg) {
		t.Fatal("merged registers differ from the union's")
	}
	if e := relErr(a.Estimate(), 100_000); e > 0.02 {
		t.Fatalf("union estimate %d, want ~100000", a.Estimate())
	}
	if err := a.Merge(New(10)); !errors.Is(err, ErrPrecisionMismatch) {
		t.Fatalf("merging p=10 into p=14: %v", err)
	}
}

func TestMergeFoldedEqualsCoarseSketch(t *testing.T) {
	for _, fine := range []uint8{10, 14, 16} {
		for _, coarse := range []uint8{4, 8, 10} {
			if coarse > fine {
				continue
			}
			f, want := New(fine), New(coarse)
			for i := range 20_000 {
				f.AddUint64(uint64(i))
				want.AddUint64(uint64(i))
			}
			got, err := f.Downsample(coarse)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.reg, want.reg) {
				t.Fatalf("fold %d->%d differs from a sketch built at %d", fine, coarse, coarse)
			}
		}
	}
	if err := New(10).MergeFolded(New(14).Clone()); err != nil {
		t.Fatal(err)
	}
	if err := New(14).MergeFolded(New(10)); !errors.Is(err, ErrPrecisionMismatch) {
		t.Fatalf("folding p=10 into p=14: %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	s := New(12)
	for i := range 5000 {
		s.AddUint64(uint64(i))
	}
	data, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Sketch
	if err := back.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if back.Precision() != 12 || !bytes.Equal(back.reg, s.reg) || back.Estimate() != s.Estimate() {
		t.Fatal("round trip changed the sketch")
	}
	bad := map[string][]byte{
		"empty":     nil,
		"version":   append([]byte{2}, data[1:]...),
		"precision": append([]byte{1, 3}, data[2:]...),
		"truncated": data[:len(data)-1],
		"register":  append(append([]byte{}, data[:len(data)-1]...), 65-12+1),
	}
	for name, b := range bad {
		if err := new(Sketch).UnmarshalBinary(b); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCloneResetIsEmpty(t *testing.T) {
	s := NewDefault()
	if !s.IsEmpty() {
		t.Fatal("new sketch not empty")
	}
	s.AddString("alice")
	c := s.Clone()
	s.Reset()
	if !s.IsEmpty() || s.Estimate() != 0 {
		t.Fatal("reset sketch not empty")
	}
	if c.Estimate() != 1 {
		t.Fatalf("clone estimate %d, want 1", c.Estimate())
	}
}

func TestAddDoesNotAllocate(t *testing.T) {
	s := NewDefault()
	key := []byte("someone@example.com")
	str := "someone@example.com"
	var i uint64
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		s.Add(i * 0x9e3779b97f4a7c15)
		s.AddBytes(key)
		s.AddString(str)
		s.AddUint64(i)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Add", allocs)
	}
}

func TestNewPanicsOnBadPrecision(t *testing.T) {
	for _, p := range []uint8{0, 3, 17} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%d) did not panic", p)
				}
			}()
			New(p)
		}()
	}
}

func TestHashUint64MatchesHash64(t *testing.T) {
	var b [8]byte
	for _, x := range []uint64{0, 1, 42, 1 << 40, math.MaxUint64} {
		binary.LittleEndian.PutUint64(b[:], x)
		if HashUint64(x, 7) != Hash64(b[:], 7) {
			t.Fatalf("HashUint64(%d) != Hash64 of its bytes", x)
		}
	}
	if HashString("abc", 0) != Hash64([]byte("abc"), 0) {
		t.Fatal("HashString differs from Hash64")
	}
}

// TestHashAvalanche flips each input bit of keys of every length up to 100
// bytes and checks that about half the output bits change on average.
func TestHashAvalanche(t *testing.T) {
	for n := 1; n <= 100; n++ {
		key := make([]byte, n)
		for i := range key {
			key[i] = byte(i*31 + n)
		}
		var flipped, trials int
		for bit := 0; bit < 8*n; bit++ {
			h0 := Hash64(key, 0)
			key[bit/8] ^= 1 << (bit % 8)
			flipped += bits.OnesCount64(h0 ^ Hash64(key, 0))
			key[bit/8] ^= 1 << (bit % 8)
			trials++
		}
		mean := float64(flipped) / float64(trials)
		if mean < 28 || mean > 36 {
			t.Errorf("length %d: %.1f output bits change per flipped input bit", n, mean)
		}
	}
}

// TestHashUniformRegisters checks that sequential keys spread evenly over
// 1024 registers (chi-squared well below the 0.1% critical value).
func TestHashUniformRegisters(t *testing.T) {
	const buckets, n = 1024, 1 << 20
	var counts [buckets]int
	buf := make([]byte, 0, 16)
	for i := range n {
		buf = strconv.AppendInt(buf[:0], int64(i), 10)
		counts[Hash64(buf, 0)>>54]++
	}
	exp := float64(n) / buckets
	var chi2 float64
	for _, c := range counts {
		chi2 += (float64(c) - exp) * (float64(c) - exp) / exp
	}
	if chi2 > 1170 { // df=1023, p=0.001 critical value ~1168
		t.Fatalf("chi-squared %.0f over %d registers", chi2, buckets)
	}
}

func BenchmarkAdd(b *testing.B) {
	s := NewDefault()
	for i := range b.N {
		s.Add(uint64(i) * 0x9e3779b97f4a7c15)
	}
}

func BenchmarkAddUint64(b *testing.B) {
	s := NewDefault()
	for i := range b.N {
		s.AddUint64(uint64(i))
	}
}

func BenchmarkAddBytes(b *testing.B) {
	for _, n := range []int{8, 20, 64, 150} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := NewDefault()
			key := bytes.Repeat([]byte("x"), n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for i := range b.N {
				key[0] = byte(i)
				key[n-1] = byte(i >> 8)
				s.AddBytes(key)
			}
		})
	}
}

func BenchmarkEstimate(b *testing.B) {
	s := NewDefault()
	for i := range 100_000 {
		s.AddUint64(uint64(i))
	}
	b.ResetTimer()
	for range b.N {
		_ = s.Estimate()
	}
}

func BenchmarkMergeFolded14to10(b *testing.B) {
	src, dst := NewDefault(), New(10)
	for i := range 1000 {
		src.AddUint64(uint64(i))
	}
	b.ResetTimer()
	for range b.N {
		_ = dst.MergeFolded(src)
	}
}
