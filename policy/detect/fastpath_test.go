package detect

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pgwarden/pgwarden/policy/pii"
)

// plainNextTrigger is nextTrigger byte by byte: the fast path (eight bytes
// at a time) must agree with it everywhere.
func plainNextTrigger(b []byte, i int) int {
	for i < len(b) && class[b[i]]&clTrigger == 0 {
		i++
	}
	return i
}

func TestTriggerLanes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	check := func(w uint64) {
		var want uint64
		for lane := 0; lane < 8; lane++ {
			if class[byte(w>>(lane*8))]&clTrigger != 0 {
				want |= 0x80 << (lane * 8)
			}
		}
		if got := triggerLanes(w); got != want {
			t.Fatalf("triggerLanes(%#016x) = %#016x, want %#016x", w, got, want)
		}
	}
	for c := 0; c < 256; c++ {
		for lane := 0; lane < 8; lane++ {
			for _, fill := range []uint64{0, lanes01 * 'a', lanes01 * '0', lanes01 * 0xff, lanes01 * 0xb0, r.Uint64()} {
				w := fill&^(0xff<<(lane*8)) | uint64(c)<<(lane*8)
				check(w)
			}
		}
	}
	for k := 0; k < 1000000; k++ {
		check(r.Uint64())
	}
}

func TestNextTrigger(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	buf := make([]byte, 40)
	for k := 0; k < 20000; k++ {
		for j := range buf {
			switch r.IntN(4) {
			case 0:
				buf[j] = byte(r.IntN(256))
			case 1:
				buf[j] = 0x80 | "0123456789+(:"[r.IntN(13)]
			default:
				buf[j] = "abc XYZ,.-)*/é"[r.IntN(14)]
			}
			if r.IntN(30) == 0 {
				buf[j] = "0123456789+(:"[r.IntN(13)]
			}
		}
		for n := 0; n <= len(buf); n++ {
			b := buf[:n] // the bytes past n are there but not b's
			for i := 0; i <= n; i++ {
				if got, want := nextTrigger(b, i), plainNextTrigger(b, i); got != want {
					t.Fatalf("nextTrigger(%q, %d) = %d, want %d", b, i, got, want)
				}
			}
		}
	}
}

// plainSkipToken is skipToken byte by byte.
func plainSkipToken(b []byte, i int) int {
	for i < len(b) && (isWord(b[i]) || b[i] == '.' || b[i] == '-') {
		i++
	}
	return i
}

func TestSkipToken(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	buf := make([]byte, 40)
	for k := 0; k < 20000; k++ {
		for j := range buf {
			switch r.IntN(6) {
			case 0:
				buf[j] = byte(r.IntN(256))
			case 1:
				buf[j] = 0x80 | "aZ09_.-"[r.IntN(7)]
			default:
				buf[j] = "abcXYZ0189_.-"[r.IntN(13)]
			}
			if r.IntN(20) == 0 {
				buf[j] = " /@:,`{[^"[r.IntN(9)]
			}
		}
		for n := 0; n <= len(buf); n++ {
			b := buf[:n]
			for i := 0; i <= n; i++ {
				if got, want := skipToken(b, i), plainSkipToken(b, i); got != want {
					t.Fatalf("skipToken(%q, %d) = %d, want %d", b, i, got, want)
				}
			}
		}
	}
}

func TestAddAll(t *testing.T) {
	var a, b, want Counts
	a.Add(pii.Email, 2)
	a.Add("custom:x", 1)
	b.Add(pii.Email, 3)
	b.Add(pii.Phone, 1)
	b.Add("custom:y", 4)
	b.Add("custom:x", 5)
	b.Add("custom:z", 1)
	b.Reset()
	b.Add(pii.Email, 3)
	b.Add("custom:y", 4)
	b.Add("custom:x", 5)
	want = a
	want.custom = append([]customCount(nil), a.custom...)
	b.Each(want.Add)
	a.AddAll(&b)
	if fmt.Sprint(a.builtin, a.custom) != fmt.Sprint(want.builtin, want.custom) {
		t.Errorf("AddAll: %v %v, want %v %v", a.builtin, a.custom, want.builtin, want.custom)
	}
}

func TestAddIndexed(t *testing.T) {
	var a, b Counts
	for _, cat := range []pii.Category{pii.Email, pii.Address, "custom:x", pii.IBAN, "custom:x"} {
		a.Add(cat, 2)
		b.AddIndexed(cat.Index(), cat, 2)
	}
	if fmt.Sprint(a.builtin, a.custom) != fmt.Sprint(b.builtin, b.custom) {
		t.Errorf("AddIndexed: %v %v, want %v %v", b.builtin, b.custom, a.builtin, a.custom)
	}
}
