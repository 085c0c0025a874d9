package detect

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
	for i < len(b) && (isWord(b[i]) || b[i] == '.' || b[i] == '-') {
		i++
	}
	return i
}
