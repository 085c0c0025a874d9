package decode

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// refSink is the sink as it was before the decoders appended a batch at a
// time and judged early: a byte at a time, judged once probeLen bytes are
// in. The fast decoders must hand the scan function the same pieces.
type refSink struct {
	buf            []byte
	scan           ScanFunc
	n              int
	judged, binary bool
}

func (s *refSink) put(b byte) bool {
	s.buf = append(s.buf, b)
	if !s.judged && len(s.buf) == probeLen {
		s.judge()
	}
	if s.binary {
		return false
	}
	if len(s.buf) == chunkSize {
		s.flush(false)
	}
	return true
}

func (s *refSink) judge() {
	s.judged = true
	p := s.buf[:min(len(s.buf), probeLen)]
	for i := 0; i < 3 && len(p) > 0 && !utf8.Valid(p); i++ {
		p = p[:len(p)-1]
	}
	if !utf8.Valid(p) {
		s.binary = true
		return
	}
	ctl := 0
	for _, c := range p {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			ctl++
		}
	}
	s.binary = ctl*10 > len(p)
}

func (s *refSink) flush(final bool) int {
	if !s.judged {
		s.judge()
	}
	if s.binary {
		s.buf = s.buf[:0]
		return s.n
	}
	cut := len(s.buf)
	if !final {
		cut = cutPoint(s.buf)
	}
	if cut > 0 {
		s.n += s.scan(s.buf[:cut], true)
	}
	s.buf = s.buf[:copy(s.buf, s.buf[cut:])]
	return s.n
}

func refIsHex(v []byte) bool {
	if len(v)%2 != 0 {
		return false
	}
	for _, c := range v {
		if hexVal[c] == 0xff {
			return false
		}
	}
	return true
}

func refUnwrap(v []byte, scan ScanFunc) int {
	if len(v) < minEncoded {
		return 0
	}
	if v[0] == '\\' && v[1] == 'x' && refIsHex(v[2:]) {
		return refHex(v[2:], scan)
	}
	if refIsHex(v) {
		return refHex(v, scan)
	}
	if isBase64(v) {
		return refBase64(v, scan)
	}
	return 0
}

func refHex(v []byte, scan ScanFunc) int {
	s := &refSink{scan: scan}
	for i := 0; i+1 < len(v); {
		hi, lo := hexVal[v[i]], hexVal[v[i+1]]
		if hi == 0xff || lo == 0xff {
			i++
			continue
		}
		if !s.put(hi<<4 | lo) {
			break
		}
		i += 2
	}
	return s.flush(true)
}

func refBase64(v []byte, scan ScanFunc) int {
	s := &refSink{scan: scan}
	var acc uint32
	bits := 0
	for _, c := range v {
		x := b64Val[c]
		if x == 0xff {
			if c == '=' {
				break
			}
			continue
		}
		acc = acc<<6 | uint32(x)
		if bits += 6; bits >= 8 {
			bits -= 8
			if !s.put(byte(acc >> bits)) {
				break
			}
		}
	}
	return s.flush(true)
}

func refBytea(v []byte, scan ScanFunc) int {
	if len(v) >= 2 && v[0] == '\\' && v[1] == 'x' {
		return refHex(v[2:], scan)
	}
	s := &refSink{scan: scan}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\\' && i+1 < len(v) {
			if v[i+1] == '\\' {
				i++
			} else if i+3 < len(v) && isOctal(v[i+1]) && isOctal(v[i+2]) && isOctal(v[i+3]) {
				c = (v[i+1]-'0')<<6 | (v[i+2]-'0')<<3 | (v[i+3] - '0')
				i += 3
			}
		}
		if !s.put(c) {
			break
		}
	}
	return s.flush(true)
}

func refTokens(v []byte, scan ScanFunc) int {
	n := 0
	start := 0
	for i := 0; i <= len(v); i++ {
		if i < len(v) && tokenByte[v[i]] {
			continue
		}
		tok := v[start:i]
		start = i + 1
		if len(tok) < minEncoded {
			continue
		}
		for len(tok) > 2 && tok[0] == '\\' && tok[1] == '\\' {
			tok = tok[1:]
		}
		n += refUnwrap(tok, scan)
	}
	return n
}

// randomPayload returns bytes that are text, binary or in between: ASCII
// words and addresses, multi-byte and cut runes, control characters and
// random bytes, in runs.
func randomPayload(r *rand.Rand, n int) []byte {
	pieces := []string{"ann@example.com", " ", "Maria", "415-555-0101", "é", "中", "😀", "\t", "\n", "\x00", "\x07",
		"\xe4\xb8", "\xf0\x9f\x98", "\xc3", "\xed\xa0\x80", "\xef\xbf\xbd", ",", "\x7f", "ß"}
	var b []byte
	binary := r.IntN(3) == 0
	for len(b) < n {
		switch {
		case binary && r.IntN(2) == 0 || r.IntN(8) == 0:
			b = append(b, byte(r.IntN(256)))
		default:
			b = append(b, pieces[r.IntN(len(pieces))]...)
		}
	}
	return b[:n]
}

// encodings returns p in the forms the decoders read, some of them
// damaged.
func encodings(r *rand.Rand, p []byte) [][]byte {
	h := hex.EncodeToString(p)
	b64 := base64.StdEncoding.EncodeToString(p)
	var lines strings.Builder
	for i := 0; i < len(b64); i += 76 {
		if i > 0 {
			lines.WriteByte('\n')
		}
		lines.WriteString(b64[i:min(i+76, len(b64))])
	}
	var esc bytes.Buffer
	for _, c := range p {
		switch {
		case c == '\\':
			esc.WriteString(`\\`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&esc, `\%03o`, c)
		default:
			esc.WriteByte(c)
		}
	}
	out := [][]byte{[]byte(h), []byte(`\x` + h), []byte(strings.ToUpper(h)), []byte(b64), []byte(lines.String()), esc.Bytes(),
		[]byte(`\x` + strings.Join(strings.SplitAfter(h, "ab"), " "))}
	for k := range len(out) {
		v := bytes.Clone(out[k])
		if len(v) > 0 {
			for range 1 + r.IntN(3) {
				v[r.IntN(len(v))] = "g=\\ xZ-{,"[r.IntN(9)]
			}
		}
		out = append(out, v)
	}
	return out
}

// pieces returns what scan is handed, copied.
func pieces(f func(ScanFunc) int) ([]string, int) {
	var got []string
	n := f(func(p []byte, decoded bool) int {
		got = append(got, fmt.Sprintf("%v:%q", decoded, p))
		return bytes.Count(p, []byte("@")) + 1
	})
	return got, n
}

// TestFastDecodersMatchReference compares the decoders with the
// byte-at-a-time reference on random text and binary, encoded and
// damaged: same pieces scanned, same count.
func TestFastDecodersMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	var d Decoder
	check := func(v []byte) {
		t.Helper()
		for _, tc := range []struct {
			name string
			k    Kind
			ref  func([]byte, ScanFunc) int
		}{
			{"encoded", Encoded, refUnwrap},
			{"bytea", Bytea, refBytea},
			{"nested", Nested, refTokens},
		} {
			want, wn := pieces(func(scan ScanFunc) int { return tc.ref(v, scan) })
			got, gn := pieces(func(scan ScanFunc) int { return d.Scan(tc.k, 0, v, scan) })
			if gn != wn || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s %q:\ngot  %d %v\nwant %d %v", tc.name, v, gn, got, wn, want)
			}
		}
	}
	for range 6000 {
		n := r.IntN(80)
		if r.IntN(200) == 0 {
			n = chunkSize + r.IntN(chunkSize)
		}
		for _, v := range encodings(r, randomPayload(r, n)) {
			check(v)
			check([]byte(`{"k": "` + string(v) + `"}`))
		}
	}
}

func TestHexLanes(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for k := 0; k < 1000000; k++ {
		w := r.Uint64()
		if k < 256*8 {
			lane := k / 256
			w = w&^(0xff<<(lane*8)) | uint64(k%256)<<(lane*8)
		}
		var want uint64
		for lane := 0; lane < 8; lane++ {
			if hexVal[byte(w>>(lane*8))] != 0xff {
				want |= 0x80 << (lane * 8)
			}
		}
		if got := hexLanes(w); got != want {
			t.Fatalf("hexLanes(%#016x) = %#016x, want %#016x", w, got, want)
		}
	}
}
