package hll

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// Precision bounds and default.
const (
	MinPrecision     uint8 = 4
	MaxPrecision     uint8 = 16
	DefaultPrecision uint8 = 14
)

// Errors returned by Merge, MergeFolded, Downsample and UnmarshalBinary.
var (
	ErrPrecisionMismatch = errors.New("hll: sketches have different precisions")
	ErrBadEncoding       = errors.New("hll: malformed sketch encoding")
)

// formatVersion is the first byte of MarshalBinary's output.
const formatVersion = 1

// Sketch is a dense HyperLogLog sketch. The zero value is not usable; build
// one with New or NewDefault.
type Sketch struct {
	p   uint8
	reg []uint8 // 2^p registers, each the largest rank seen, 0..65-p
}

var (
	_ encoding.BinaryMarshaler   = (*Sketch)(nil)
	_ encoding.BinaryUnmarshaler = (*Sketch)(nil)
)

// New returns an empty sketch of 2^precision registers. It panics if
// precision is outside MinPrecision..MaxPrecision, a programming error.
func New(precision uint8) *Sketch {
	if precision < MinPrecision || precision > MaxPrecision {
		panic(fmt.Sprintf("hll: precision %d outside %d..%d", precision, MinPrecision, MaxPrecision))
	}
	return &Sketch{p: precision, reg: make([]uint8, 1<<precision)}
}

// NewDefault returns an empty sketch of DefaultPrecision (16 KiB, 0.81%
// standard error).
func NewDefault() *Sketch { return New(DefaultPrecision) }

// Precision returns p; the sketch has 2^p registers.
func (s *Sketch) Precision() uint8 { return s.p }

// Add records one element by its 64-bit hash, which must be well mixed (use
// Hash64 or HashUint64, never a raw key). It does not allocate.
func (s *Sketch) Add(hash uint64) {
	idx := hash >> (64 - s.p)
	// The guard bit bounds the rank at 65-p when the remaining bits are zero.
	rank := uint8(bits.LeadingZeros64(hash<<s.p|1<<(s.p-1))) + 1
	if rank > s.reg[idx] {
		s.reg[idx] = rank
	}
}

// AddBytes records the element whose key is b.
func (s *Sketch) AddBytes(b []byte) { s.Add(Hash64(b, 0)) }

// AddString records the element whose key is str.
func (s *Sketch) AddString(str string) { s.Add(HashString(str, 0)) }

// AddUint64 records the element whose integer key is x.
func (s *Sketch) AddUint64(x uint64) { s.Add(HashUint64(x, 0)) }

// linearCountingThreshold is, per precision, the cardinality below which
// linear counting beats the HyperLogLog estimate (Heule et al. 2013, table
// of thresholds; extended to p=4).
var linearCountingThreshold = [MaxPrecision + 1]float64{
	4: 10, 5: 20, 6: 40, 7: 80, 8: 220, 9: 400, 10: 900, 11: 1800,
	12: 3100, 13: 6500, 14: 11500, 15: 20000, 16: 50000,
}

// Estimate returns the estimated number of distinct elements added.
func (s *Sketch) Estimate() uint64 {
	m := float64(len(s.reg))
	q := 64 - int(s.p)
	var hist [66]int
	for _, r := range s.reg {
		hist[r]++
	}
	if hist[0] == len(s.reg) {
		return 0
	}
	if hist[0] > 0 {
		lc := m * math.Log(m/float64(hist[0]))
		if lc <= linearCountingThreshold[s.p] {
			return uint64(math.Round(lc))
		}
	}
	// Ertl 2017, algorithm 6 (improved raw estimator).
	z := m * tau(1-float64(hist[q+1])/m)
	for k := q; k >= 1; k-- {
		z = 0.5 * (z + float64(hist[k]))
	}
	z += m * sigma(float64(hist[0])/m)
	return uint64(math.Round(m * m / (2 * math.Ln2) / z))
}

func sigma(x float64) float64 {
	if x == 1 {
		return math.Inf(1)
	}
	y, z := 1.0, x
	for {
		x *= x
		prev := z
		z += x * y
		y += y
		if z == prev {
			return z
		}
	}
}

func tau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for {
		x = math.Sqrt(x)
		prev := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if z == prev {
			return z / 3
		}
	}
}

// Merge makes s the sketch of the union of s and other, which must have the
// same precision.
func (s *Sketch) Merge(other *Sketch) error {
	if other.p != s.p {
		return fmt.Errorf("%w: %d and %d", ErrPrecisionMismatch, s.p, other.p)
	}
	for i, r := range other.reg {
		if r > s.reg[i] {
			s.reg[i] = r
		}
	}
	return nil
}

// MergeFolded makes s the sketch of the union of s and other, where other
// may be finer (other.Precision() >= s.Precision()): each of other's
// registers is folded into the coarser register its elements would have
// reached, so the result equals a sketch of precision s.Precision() fed the
// same hashes. It does not allocate.
func (s *Sketch) MergeFolded(other *Sketch) error {
	if other.p < s.p {
		return fmt.Errorf("%w: cannot fold precision %d into %d", ErrPrecisionMismatch, other.p, s.p)
	}
	if other.p == s.p {
		return s.Merge(other)
	}
	d := other.p - s.p
	low := uint64(1)<<d - 1
	for i, r := range other.reg {
		if r == 0 {
			continue
		}
		// The d index bits dropped by folding now lead the hash remainder.
		dropped := uint64(i) & low
		var rank uint8
		if dropped != 0 {
			rank = d - uint8(bits.Len64(dropped)) + 1
		} else {
			rank = d + r
		}
		j := uint64(i) >> d
		if rank > s.reg[j] {
			s.reg[j] = rank
		}
	}
	return nil
}

// Downsample returns a new sketch of a lower or equal precision holding the
// same elements.
func (s *Sketch) Downsample(precision uint8) (*Sketch, error) {
	if precision > s.p {
		return nil, fmt.Errorf("%w: cannot raise precision %d to %d", ErrPrecisionMismatch, s.p, precision)
	}
	out := New(precision)
	if err := out.MergeFolded(s); err != nil {
		return nil, err
	}
	return out, nil
}

// Clone returns an independent copy of s.
func (s *Sketch) Clone() *Sketch {
	c := &Sketch{p: s.p, reg: make([]uint8, len(s.reg))}
	copy(c.reg, s.reg)
	return c
}

// Reset empties s, keeping its memory.
func (s *Sketch) Reset() { clear(s.reg) }

// IsEmpty reports whether nothing has been added to s.
func (s *Sketch) IsEmpty() bool {
	for _, r := range s.reg {
		if r != 0 {
			return false
		}
	}
	return true
}

// MarshalBinary encodes s as: version (1), precision, then the 2^p registers,
// one byte each.
func (s *Sketch) MarshalBinary() ([]byte, error) {
	out := make([]byte, 2+len(s.reg))
	out[0] = formatVersion
	out[1] = s.p
	copy(out[2:], s.reg)
	return out, nil
}

// UnmarshalBinary replaces s with the sketch encoded by MarshalBinary,
// rejecting unknown versions, bad precisions, wrong lengths and impossible
// register values.
func (s *Sketch) UnmarshalBinary(data []byte) error {
	if len(data) < 2 {
		return fmt.Errorf("%w: %d bytes", ErrBadEncoding, len(data))
	}
	if data[0] != formatVersion {
		return fmt.Errorf("%w: unknown version %d", ErrBadEncoding, data[0])
	}
	p := data[1]
	if p < MinPrecision || p > MaxPrecision {
		return fmt.Errorf("%w: precision %d", ErrBadEncoding, p)
	}
	if len(data) != 2+1<<p {
		return fmt.Errorf("%w: %d bytes for precision %d", ErrBadEncoding, len(data), p)
	}
	maxRank := 65 - p
	for _, r := range data[2:] {
		if r > maxRank {
			return fmt.Errorf("%w: register value %d above %d", ErrBadEncoding, r, maxRank)
		}
	}
	reg := make([]uint8, 1<<p)
	copy(reg, data[2:])
	s.p, s.reg = p, reg
	return nil
}
