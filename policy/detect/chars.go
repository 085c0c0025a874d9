package detect

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// Byte classes, looked up in one table so the scanners' inner loops cost a
// load and a test per byte.
const (
	clDigit   = 1 << iota // 0-9
	clUpper               // A-Z
	clLower               // a-z
	clHex                 // 0-9 a-f A-F
	clLocal               // may appear in an email local part
	clDomain              // may appear in an email domain
	clTrigger             // may start a digit-based value: 0-9 + ( :
	clWord                // letters, digits, '_'
)

var class = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] |= clDigit | clHex | clLocal | clDomain | clTrigger | clWord
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= clUpper | clLocal | clDomain | clWord
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= clLower | clLocal | clDomain | clWord
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] |= clHex
		t[c-'a'+'A'] |= clHex
	}
	for _, c := range "._%+-" {
		t[c] |= clLocal
	}
	t['-'] |= clDomain
	t['.'] |= clDomain
	t['_'] |= clWord
	t['+'] |= clTrigger
	t['('] |= clTrigger
	t[':'] |= clTrigger
	return t
}()

func isDigit(c byte) bool { return c-'0' < 10 }
func isUpper(c byte) bool { return class[c]&clUpper != 0 }
func isHex(c byte) bool   { return class[c]&clHex != 0 }
func isWord(c byte) bool  { return class[c]&clWord != 0 }
func isLetter(c byte) bool {
	return class[c]&(clUpper|clLower) != 0
}

// rightOK reports whether a value that ends at b[j] ends at a boundary: not
// inside a word, and not followed by more of a dotted or dashed number
// ("1.2.3.4.5", "123-45-6789-1") or of a word joined by ':' or '/'.
func rightOK(b []byte, j int) bool {
	if j >= len(b) {
		return true
	}
	c := b[j]
	if isWord(c) || c == '@' {
		return false
	}
	if j+1 < len(b) {
		switch n := b[j+1]; c {
		case '.', '-':
			return !isDigit(n)
		case ':', '/':
			return !isWord(n)
		}
	}
	return true
}

// skipToken returns the end of the word-and-dotted-number run at b[i], the
// place to resume after nothing matched at i.
func skipToken(b []byte, i int) int {
	for n := 0; i < len(b) && tokenByte[b[i]] != 0; n++ {
		i++
		if n == 8 {
			// A long token (a hash, an id, base64): eight bytes at a time.
			for i+8 <= len(b) && tokenByte[b[i]]&tokenByte[b[i+1]]&tokenByte[b[i+2]]&tokenByte[b[i+3]]&
				tokenByte[b[i+4]]&tokenByte[b[i+5]]&tokenByte[b[i+6]]&tokenByte[b[i+7]] != 0 {
				i += 8
			}
		}
	}
	return i
}

// tokenByte is 1 for the bytes of a token as skipToken reads it: letters,
// digits, '_', '.' and '-'.
var tokenByte = func() (t [256]uint8) {
	for c := range t {
		if isWord(byte(c)) || c == '.' || c == '-' {
			t[c] = 1
		}
	}
	return t
}()

// Constants for working on eight bytes at once, one per 8-bit lane of a
// uint64.
const (
	lanes01 = 0x0101010101010101
	lanes7f = 0x7f * lanes01
	lanes80 = 0x80 * lanes01
)

// triggerLanes returns the lanes of w (eight bytes) that hold a trigger
// byte, 0-9 + ( :, as the high bit of each such lane; every other bit is 0.
// It works on the low seven bits of each lane, so no lane carries into the
// next, and drops lanes whose byte is 0x80 or above, which never trigger.
func triggerLanes(w uint64) uint64 {
	x := w & lanes7f
	ge0 := x + (0x80-'0')*lanes01          // high bit: x >= '0'
	gtColon := x + (0x7f-':')*lanes01      // high bit: x > ':'
	neParen := (x ^ '('*lanes01) + lanes7f // high bit: x != '('
	nePlus := (x ^ '+'*lanes01) + lanes7f  // high bit: x != '+'
	return (ge0&^gtColon | ^neParen | ^nePlus) &^ w & lanes80
}

// nextTrigger returns the index of the first trigger byte (0-9 + ( :) in
// b[i:], or len(b) if there is none. It tests eight bytes at a time; the
// last, partial eight are tested as the last eight bytes of b, less the
// lanes before i.
func nextTrigger(b []byte, i int) int {
	if len(b) < 8 {
		for i < len(b) && class[b[i]]&clTrigger == 0 {
			i++
		}
		return i
	}
	for ; i+8 < len(b); i += 8 {
		if m := triggerLanes(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	if i >= len(b) {
		return len(b)
	}
	last := len(b) - 8
	if m := triggerLanes(binary.LittleEndian.Uint64(b[last:])) >> (uint(i-last) * 8); m != 0 {
		return i + bits.TrailingZeros64(m)>>3
	}
	return len(b)
}

// indexAt returns the index of the first '@' in b[i:], or -1.
func indexAt(b []byte, i int) int {
	if k := bytes.IndexByte(b[i:], '@'); k >= 0 {
		return i + k
	}
	return -1
}
