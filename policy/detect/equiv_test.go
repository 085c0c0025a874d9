package detect

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// equivSets returns the Sets the reference comparison runs: Default, each
// built-in detector alone, everything but email, and Default with a custom
// pattern so that Scan records the byte ranges it claims (Counts.spans).
func equivSets(t testing.TB) []*Set {
	sets := []*Set{Default()}
	for _, cat := range Builtins() {
		s, err := New([]Category{cat}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sets = append(sets, s)
	}
	s, err := New([]Category{Phone, NationalID, Card, IBAN, IP}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sets = append(sets, s)
	s, err = New(Builtins(), []Custom{{Name: "x", Category: "custom:x", Pattern: `x{9}`}})
	if err != nil {
		t.Fatal(err)
	}
	return append(sets, s)
}

// checkEquiv fails unless every Set scans b exactly as refScan does: the
// same total, the same count per category and, where tracked, the same
// byte ranges.
func checkEquiv(t testing.TB, sets []*Set, b []byte) {
	t.Helper()
	var got, want Counts
	for k, s := range sets {
		got.Reset()
		want.Reset()
		n := s.Scan(b, &got)
		wn := refScan(s, b, &want)
		if n != wn || got.builtin != want.builtin || !slices.Equal(got.spans, want.spans) {
			t.Fatalf("set %d, Scan(%q) = %d %v %v, reference %d %v %v",
				k, b, n, got.builtin, got.spans, wn, want.builtin, want.spans)
		}
	}
}

// equivSeeds are values the detectors recognise or nearly recognise, and
// the benchmark corpora.
func equivSeeds() [][]byte {
	var seeds [][]byte
	for _, s := range []string{
		"", "a@b.co", "::1", "+14155550101", "(415) 555-0101", "078-05-1120",
		"4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "378282246310005",
		"3782 822463 10005", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000",
		"GB82WEST12345698765432", "1.2.3.4.5", "10.0.0.7", "192.168.1.1:5432", "10.0.0.0/24",
		"{a@x.com,b@y.org}", `[{"email":"a@x.com","phone":"+14155550101"}]`,
		"::ffff:192.0.2.1", "fe80::1::2", "2001:db8::8a2e:370:7334", "@@@...:::(((+++",
		"+44 (0)20 7946 0958", "+1 (415) 555-0101", "(415)555-0101", "415.555.0101",
		"1-415-555-0101", "020 7946 0958", "06 12 34 56 78", "07700 900123", "(030) 1234567",
		"+1 415 555 1234", "123-45-6789", "1234 Oak Street, Apt 12, Springfield, IL 62123",
		"maria.garcia1234@example.com", "ann@x.com415-555-0101", "2024-01-01 10:00:00+00",
		"v1.10.0.0.1", "host.10.0.0.1", "abc::text", "Müller 415 555 0101 café",
		"\xff415-555-0101\x80", "a@x.com..", "a@x.com.-", "a@x..com", "a@.com", "a@x.c0m",
		"a@x.com-1", "a@x-.com", "a@x.co.uk.", "a@b@c.de", "x.@y.z.com", "..a@b.cd", "a@1.2.com", "é078-05-1120é", "日本 +81 3 1234 5678",
	} {
		seeds = append(seeds, []byte(s))
	}
	seeds = append(seeds, rowCorpus(64)...)
	seeds = append(seeds, cleanCorpus(4)...)
	for _, r := range peopleCorpus(50) {
		seeds = append(seeds, r[:]...)
		seeds = append(seeds, bytes.Join(r[:], []byte(" | ")))
	}
	return seeds
}

// randomValue builds a value of up to max bytes from pieces that exercise
// the detectors: digit runs, separators, trigger bytes, letters, '@',
// UTF-8 text, bytes >= 0x80 (including 0xa8, 0xab and 0xb0-0xba, which
// differ from a trigger byte only in the high bit) and whole seeds.
func randomValue(r *rand.Rand, seeds [][]byte, max int) []byte {
	const (
		digits  = "0123456789"
		seps    = " -.()+:/,@\t_"
		letters = "abcdefxyzABCDEFXYZ"
	)
	n := r.IntN(max + 1)
	b := make([]byte, 0, n+64)
	for len(b) < n {
		switch r.IntN(12) {
		case 0, 1, 2:
			for k := r.IntN(12) + 1; k > 0; k-- {
				b = append(b, digits[r.IntN(len(digits))])
			}
		case 3, 4:
			b = append(b, seps[r.IntN(len(seps))])
		case 5:
			for k := r.IntN(10) + 1; k > 0; k-- {
				b = append(b, letters[r.IntN(len(letters))])
			}
		case 6:
			b = append(b, " Street, Apt "[:r.IntN(14)]...)
		case 7:
			b = append(b, byte(0x80|"0123456789:+("[r.IntN(13)]))
		case 8:
			b = append(b, []string{"é", "日本", "\xff", "\x80", "ü"}[r.IntN(5)]...)
		case 9:
			b = append(b, byte(r.IntN(256)))
		case 10, 11:
			s := seeds[r.IntN(len(seeds))]
			if len(s) > 0 {
				lo := r.IntN(len(s))
				hi := lo + r.IntN(len(s)-lo) + 1
				b = append(b, s[lo:hi]...)
			}
		}
	}
	return b
}

func TestScanMatchesReference(t *testing.T) {
	sets := equivSets(t)
	seeds := equivSeeds()
	for _, s := range seeds {
		checkEquiv(t, sets, s)
		// Every prefix and suffix: values that end or begin mid-value,
		// and slices whose backing array goes on past their length.
		for k := range s {
			checkEquiv(t, sets, s[:k])
			checkEquiv(t, sets, s[k:])
		}
	}
	n := 200000
	if testing.Short() {
		n = 20000
	}
	r := rand.New(rand.NewPCG(1, 2))
	for k := 0; k < n; k++ {
		b := randomValue(r, seeds, 1+k%200)
		checkEquiv(t, sets, b)
		if len(b) > 2 {
			lo := r.IntN(len(b))
			hi := lo + r.IntN(len(b)-lo)
			checkEquiv(t, sets, b[lo:hi])
		}
	}
}

// TestScanMatchesReferenceAllBytes puts every byte value at every offset
// of an 8-byte window, and between digit runs and separators, so that the
// word-at-a-time skipping is checked lane by lane.
func TestScanMatchesReferenceAllBytes(t *testing.T) {
	sets := equivSets(t)
	for _, tmpl := range []string{
		"abcdefghijklmnopqrstuvwx",
		"the quick brown fox jumps over",
		"415 555 0101 xxxxxxxxxxxxxxxxx",
		"xxxxxxxxxxxxxxxx 415 555 0101",
		"aaaaaaa078-05-1120 bbbbbbbbbbbbbbb",
		"mmmmmmmmmmmm fe80::1 mmmmmmmmmmmmmmm",
		"ann@x.com zzzzzzzzzzzzzzzzzzzzz +1 415 555 1234",
	} {
		for off := 0; off < len(tmpl); off++ {
			for c := 0; c < 256; c++ {
				b := []byte(tmpl)
				b[off] = byte(c)
				checkEquiv(t, sets, b)
				checkEquiv(t, sets, b[:off+1])
				checkEquiv(t, sets, b[off:])
			}
		}
	}
}

func FuzzScanMatchesReference(f *testing.F) {
	for _, s := range equivSeeds() {
		f.Add(s)
	}
	sets := equivSets(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkEquiv(t, sets, b)
	})
}

// plainNextTrigger is nextTrigger a byte at a time.
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
