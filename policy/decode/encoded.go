package decode

import (
	"encoding/binary"
	"unicode/utf8"
)

// chunkSize bounds the bytes a value decodes into at once: a longer value
// is decoded and scanned in chunks, cut where no address or number
// straddles them.
const chunkSize = 32 << 10

// minEncoded is the shortest text tried as base64 or hex; shorter ones
// cannot hold an address.
const minEncoded = 12

// sink collects decoded bytes and hands them to the scan function a chunk
// at a time.
type sink struct {
	buf  []byte
	scan ScanFunc
	n    int
	// judged: the first probeLen bytes showed text; binary: they did
	// not, and the rest of the value is not decoded.
	judged, binary bool
	// valid is where early stopped looking: the bytes before it are
	// valid UTF-8.
	valid int
}

func (s *sink) start(scan ScanFunc) {
	if s.buf == nil {
		s.buf = make([]byte, 0, chunkSize)
	}
	s.buf, s.scan, s.n = s.buf[:0], scan, 0
	s.judged, s.binary, s.valid = false, false, 0
}

// room returns how many bytes the decoders may append to s.buf before
// calling filled: probeStep at a time while the value is not judged, then
// up to a full chunk.
func (s *sink) room() int {
	if !s.judged {
		return min(probeStep, probeLen-len(s.buf))
	}
	return chunkSize - len(s.buf)
}

// filled judges the value once its probe is decoded, or before when the
// bytes so far are binary, and flushes a full chunk; false when the value
// is binary and decoding should stop.
func (s *sink) filled() bool {
	if !s.judged {
		if len(s.buf) >= probeLen {
			s.judge()
		} else {
			s.early()
		}
	}
	if s.binary {
		return false
	}
	if len(s.buf) == chunkSize {
		s.flush(false)
	}
	return true
}

// early judges a value binary before its probe is complete when the bytes
// so far hold a rune that is invalid whatever follows (judge would find
// it too); it walks on from s.valid, the end of the runes found valid.
func (s *sink) early() {
	p := s.buf
	i := s.valid
	for i < len(p) {
		if p[i] < utf8.RuneSelf {
			i++
			continue
		}
		if len(p)-i < utf8.UTFMax {
			break // may be a rune the next bytes complete
		}
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size == 1 {
			s.judged, s.binary = true, true
			return
		}
		i += size
	}
	s.valid = i
}

// probeLen is how many decoded bytes tell text from binary; probeStep,
// how many are decoded between looks at them while they might.
const (
	probeLen  = 32
	probeStep = 8
)

// judge looks at the first decoded bytes: a hash, a key, an image or any
// random bytes are not text and cannot hold a detector's value (md5 in
// hex is the commonest encoded column), so they are not decoded further.
// Text is valid UTF-8 (but for a rune cut at the end) with few control
// characters.
func (s *sink) judge() {
	s.judged = true
	p := s.buf[:min(len(s.buf), probeLen)]
	// A rune cut by the probe is no sign of binary: the probe is text when
	// valid UTF-8 but for its last three bytes at most.
	n := validPrefix(p)
	if n < len(p)-3 {
		s.binary = true
		return
	}
	p = p[:n]
	ctl := 0
	for _, c := range p {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			ctl++
		}
	}
	s.binary = ctl*10 > len(p)
}

// validPrefix returns the length of the longest prefix of p that is valid
// UTF-8: where p's first invalid or incomplete rune starts, or len(p).
func validPrefix(p []byte) int {
	i := 0
	for i < len(p) {
		if p[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size == 1 {
			break
		}
		i += size
	}
	return i
}

// flush scans what was decoded; unless final, the bytes after the last
// separator in the chunk's second half are kept for the next chunk.
func (s *sink) flush(final bool) int {
	if !s.judged {
		s.judge()
	}
	if s.binary {
		s.buf = s.buf[:0]
		if final {
			s.scan = nil
		}
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
	if final {
		s.scan = nil
	}
	return s.n
}

// cutPoint returns where to cut a full chunk: after the last list
// separator (no detector's value holds one) in its second half, else after
// the last space, else at its end.
func cutPoint(b []byte) int {
	space := -1
	for i := len(b) - 1; i >= len(b)/2; i-- {
		switch b[i] {
		case ',', ';', '\n', '\r', '\t', '|', 0, '"', '<', '>':
			return i + 1
		case ' ':
			if space < 0 {
				space = i + 1
			}
		}
	}
	if space > 0 {
		return space
	}
	return len(b)
}

var (
	hexVal [256]byte // hex digit values, 0xff for others
	b64Val [256]byte // base64 (standard alphabet) values, 0xff for others
	// tokenByte marks the bytes of an encoded element: the base64
	// alphabet, padding, line breaks and backslashes.
	tokenByte [256]bool
)

func init() {
	for i := range hexVal {
		hexVal[i], b64Val[i] = 0xff, 0xff
	}
	for i, c := range "0123456789abcdef" {
		hexVal[c] = byte(i)
	}
	for i, c := range "ABCDEF" {
		hexVal[c] = byte(10 + i)
	}
	for i, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" {
		b64Val[c] = byte(i)
		tokenByte[c] = true
	}
	for _, c := range "=\n\r\\" {
		tokenByte[c] = true
	}
}

// MayBeEncoded reports, from its first bytes, whether a text value of
// kind Encoded can be base64 or hex: most texts cannot, and are let go
// before a call to Scan.
func MayBeEncoded(v []byte) bool {
	if len(v) < minEncoded {
		return false
	}
	for _, c := range v[2:8] { // past a bytea's \x
		if b64Val[c] == 0xff && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// unwrap decodes a text that is all hex (with or without bytea's \x) or
// all base64, as encode() writes them, and scans what it holds; other
// texts yield nothing.
func (d *Decoder) unwrap(v []byte, scan ScanFunc) int {
	if len(v) < minEncoded {
		return 0
	}
	if v[0] == '\\' && v[1] == 'x' && isHex(v[2:]) {
		return d.hex(v[2:], scan)
	}
	if isHex(v) {
		return d.hex(v, scan)
	}
	if isBase64(v) {
		return d.base64(v, scan)
	}
	return 0
}

// isHex reports whether v is an even number of hex digits.
func isHex(v []byte) bool {
	if len(v)%2 != 0 {
		return false
	}
	i := 0
	for ; i+8 <= len(v); i += 8 {
		if hexLanes(binary.LittleEndian.Uint64(v[i:])) != lanes80 {
			return false
		}
	}
	for ; i < len(v); i++ {
		if hexVal[v[i]] == 0xff {
			return false
		}
	}
	return true
}

// Constants for working on eight bytes at once, one per 8-bit lane of a
// uint64.
const (
	lanes01 = 0x0101010101010101
	lanes7f = 0x7f * lanes01
	lanes80 = 0x80 * lanes01
)

// hexLanes returns the lanes of w (eight bytes) that hold a hex digit,
// 0-9 a-f A-F, as the high bit of each such lane; every other bit is 0.
// It works on the low seven bits of each lane, so no lane carries into the
// next, and drops lanes whose byte is 0x80 or above.
func hexLanes(w uint64) uint64 {
	x := w & lanes7f
	l := x | 0x20*lanes01 // letters in lower case
	digit := (x + (0x80-'0')*lanes01) &^ (x + (0x7f-'9')*lanes01)
	letter := (l + (0x80-'a')*lanes01) &^ (l + (0x7f-'f')*lanes01)
	return (digit | letter) &^ w & lanes80
}

// isBase64 reports whether v is base64 as encode(..., 'base64') writes
// it: groups of four of the standard alphabet, the last padded with '=',
// lines broken by newlines.
func isBase64(v []byte) bool {
	n, pad := 0, 0
	for _, c := range v {
		switch {
		case c == '\n' || c == '\r':
			continue
		case c == '=':
			pad++
		case b64Val[c] == 0xff || pad > 0:
			return false
		}
		n++
	}
	return n >= minEncoded && n%4 == 0 && pad <= 2
}

// hex decodes hex digits (pairs, blanks between them skipped, as bytea
// input allows) and scans the bytes.
func (d *Decoder) hex(v []byte, scan ScanFunc) int {
	s := &d.sink
	s.start(scan)
	for i := 0; i+1 < len(v); {
		buf := s.buf
		for room := s.room(); room > 0 && i+1 < len(v); {
			hi, lo := hexVal[v[i]], hexVal[v[i+1]]
			if hi|lo > 0xf {
				i++
				continue
			}
			buf = append(buf, hi<<4|lo)
			room--
			i += 2
		}
		s.buf = buf
		if !s.filled() {
			break
		}
	}
	return s.flush(true)
}

// base64 decodes base64, skipping line breaks, up to its padding.
func (d *Decoder) base64(v []byte, scan ScanFunc) int {
	s := &d.sink
	s.start(scan)
	var acc uint32
	bits := 0
	for i := 0; i < len(v); {
		buf := s.buf
		room := s.room()
		for ; room > 0 && i < len(v); i++ {
			c := v[i]
			x := b64Val[c]
			if x == 0xff {
				if c == '=' {
					i = len(v)
					break
				}
				continue
			}
			acc = acc<<6 | uint32(x)
			if bits += 6; bits >= 8 {
				bits -= 8
				buf = append(buf, byte(acc>>bits))
				room--
			}
		}
		s.buf = buf
		if !s.filled() {
			break
		}
	}
	return s.flush(true)
}

// bytea decodes a bytea in text format, hex (\x...) or escape, and scans
// the bytes.
// https://www.postgresql.org/docs/current/datatype-binary.html
func (d *Decoder) bytea(v []byte, scan ScanFunc) int {
	if len(v) >= 2 && v[0] == '\\' && v[1] == 'x' {
		return d.hex(v[2:], scan)
	}
	s := &d.sink
	s.start(scan)
	for i := 0; i < len(v); {
		buf := s.buf
		for room := s.room(); room > 0 && i < len(v); i++ {
			c := v[i]
			if c == '\\' && i+1 < len(v) {
				if v[i+1] == '\\' {
					i++
				} else if i+3 < len(v) && isOctal(v[i+1]) && isOctal(v[i+2]) && isOctal(v[i+3]) {
					c = (v[i+1]-'0')<<6 | (v[i+2]-'0')<<3 | (v[i+3] - '0')
					i += 3
				}
			}
			buf = append(buf, c)
			room--
		}
		s.buf = buf
		if !s.filled() {
			break
		}
	}
	return s.flush(true)
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// tokens decodes the hex and base64 elements of a text-format array,
// composite or json value: the runs of base64 and hex characters (and
// line breaks, padding, and the backslashes before a bytea's \x) between
// its punctuation.
func (d *Decoder) tokens(v []byte, scan ScanFunc) int {
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
		n += d.unwrap(tok, scan)
	}
	return n
}
