package sqltext

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// A text's shape is the text with every literal replaced by a placeholder
// naming the literal's token class, comments dropped and whitespace runs
// collapsed to one space; identifiers, keywords, operators and the
// client's own $n parameters are kept as written. PostgreSQL's grammar
// sees token classes, not values, so texts of one shape parse to the same
// tree but for the constants' values and locations: what the analysis
// reads off names and structure is computed once per shape.
//
// The scanner reads the subset of PostgreSQL's lexical rules it can read
// exactly; a text outside it (an unterminated token, Unicode escapes, an
// E” escape that builds bytes, a string continued on the next line, a
// number run into a name, a NUL, invalid UTF-8) is marked not shapeable
// and is analyzed on its own.

// Literal kinds. The first four are PostgreSQL's token classes ICONST,
// FCONST, BCONST and XCONST; strings (SCONST) are told apart by how their
// value is decoded.
const (
	litInt    = 'i' // an integer that fits in int32
	litNum    = 'f' // any other number
	litBit    = 'b' // B'0101'
	litHex    = 'x' // X'1F'
	litString = 's' // '...', and the string of N'...'
	litEscape = 'e' // E'...'
	litDollar = 'd' // $tag$...$tag$
)

// literal is one constant of a text: sql[pos:end], pos where the parser
// locates it.
type literal struct {
	pos, end int
	kind     byte
}

// shape is what scanShape reads of a text.
type shape struct {
	// key is the shape: literals are "\x00" and their class, or, for
	// integers whose value the grammar reads (float(24), int[3],
	// current_time(3)), "\x00k", the digits and "\x00".
	key string
	// lits are the text's literals, in order.
	lits []literal
	// maxParam is the highest $n the text holds.
	maxParam int
	// ok is set when texts of this shape parse alike (see above).
	ok bool
}

// shapeClass is the placeholder class of a literal kind in a key.
func shapeClass(kind byte) byte {
	switch kind {
	case litEscape, litDollar:
		return litString
	}
	return kind
}

// token kinds the scanner remembers of the last two tokens.
const (
	tokNone = iota
	tokWord
	tokPunct
	tokOther
)

type prevToken struct {
	kind int
	text string
}

// scanShape reads sql's shape in one pass.
func scanShape(sql string) shape {
	sh := shape{ok: utf8.ValidString(sql) && strings.IndexByte(sql, 0) < 0, lits: make([]literal, 0, 4)}
	buf := make([]byte, 0, len(sql)+8)
	space := false       // whitespace or a comment since the last token
	afterString := false // the last token was a string literal
	var prev, prev2 prevToken
	token := func(kind int, text string) {
		prev2, prev = prev, prevToken{kind, text}
	}
	sep := func() {
		if space && len(buf) > 0 {
			buf = append(buf, ' ')
		}
		space = false
	}
	lit := func(pos, end int, kind byte) {
		sep()
		sh.lits = append(sh.lits, literal{pos: pos, end: end, kind: kind})
		buf = append(buf, 0, shapeClass(kind))
		token(tokOther, "")
	}
	for i := 0; i < len(sql); {
		c := sql[i]
		if c != '\'' && c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v' &&
			!(c == '-' && i+1 < len(sql) && sql[i+1] == '-') && !(c == '/' && i+1 < len(sql) && sql[i+1] == '*') {
			afterString = false
		}
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			space = true
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' && sql[i] != '\r' {
				i++
			}
			space = true
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end, closed := blockComment(sql, i)
			sh.ok = sh.ok && closed
			i = end
			space = true
		case c == '\'':
			if afterString {
				sh.ok = false // perhaps 'a'\n'b', one string
			}
			end, closed := quoted(sql, i, false)
			sh.ok = sh.ok && closed
			lit(i, end, litString)
			i, afterString = end, true
		case c == '"':
			end, closed := quoted(sql, i, false)
			sh.ok = sh.ok && closed
			sep()
			buf = append(buf, sql[i:end]...)
			token(tokOther, "")
			i = end
		case c == '$' && i+1 < len(sql) && isDigit(sql[i+1]):
			j := i + 1
			for j < len(sql) && isDigit(sql[j]) {
				j++
			}
			if j < len(sql) && isWordByte(sql[j]) {
				sh.ok = false // trailing junk after parameter
			}
			if n, err := strconv.Atoi(sql[i+1 : j]); err == nil && n > sh.maxParam {
				sh.maxParam = n
			}
			sep()
			buf = append(buf, sql[i:j]...)
			token(tokOther, "")
			i = j
		case c == '$' && dollarTag(sql, i) > 0:
			tag := dollarTag(sql, i)
			end := len(sql)
			if k := strings.Index(sql[i+tag:], sql[i:i+tag]); k >= 0 {
				end = i + tag + k + tag
			} else {
				sh.ok = false
			}
			lit(i, end, litDollar)
			i, afterString = end, true
		case isDigit(c) || c == '.' && i+1 < len(sql) && isDigit(sql[i+1]):
			end, kind, good := number(sql, i)
			sh.ok = sh.ok && good
			if kind == litInt && keyedInt(prev, prev2) {
				sep()
				buf = append(buf, 0, 'k')
				buf = append(buf, sql[i:end]...)
				buf = append(buf, 0)
				sh.lits = append(sh.lits, literal{pos: i, end: end, kind: kind})
				token(tokOther, "")
			} else {
				lit(i, end, kind)
			}
			i = end
		case isWordByte(c): // a letter, '_' or a byte of a multibyte character
			j := i + 1
			for j < len(sql) && isWordByte(sql[j]) {
				j++
			}
			if j == i+1 && j < len(sql) && sql[j] == '\'' {
				switch c | 0x20 {
				case 'e':
					end, closed := quoted(sql, j, true)
					sh.ok = sh.ok && closed && plainEscapes(sql[j:end])
					lit(i, end, litEscape)
					i, afterString = end, true
					continue
				case 'b', 'x':
					// No escapes: B'1''0' is B'1' then '0'.
					end, closed := len(sql), false
					if k := strings.IndexByte(sql[j+1:], '\''); k >= 0 {
						end, closed = j+1+k+1, true
					}
					sh.ok = sh.ok && closed
					lit(i, end, c|0x20)
					i, afterString = end, true
					continue
				}
			}
			if j == i+1 && c|0x20 == 'u' && j+1 < len(sql) && sql[j] == '&' && (sql[j+1] == '\'' || sql[j+1] == '"') {
				sh.ok = false // Unicode escapes, and UESCAPE
			}
			sep()
			buf = append(buf, sql[i:j]...)
			token(tokWord, sql[i:j])
			i = j
		default:
			sep()
			buf = append(buf, c)
			token(tokPunct, sql[i:i+1])
			i++
		}
	}
	// buf is not written again: the key may share its bytes, as
	// strings.Builder's String does.
	sh.key = unsafe.String(unsafe.SliceData(buf), len(buf))
	return sh
}

// keyedInt reports whether the grammar reads the value of an integer
// after the tokens prev2, prev: it chooses a type (float(24) is real,
// float(25) double precision), sets a typmod outside a constant
// (current_time(3)) or an array bound (int[3], int ARRAY[3]). Such
// integers are part of the key.
func keyedInt(prev, prev2 prevToken) bool {
	switch {
	case prev.kind == tokPunct && prev.text == "[":
		return true // int[3], int ARRAY[3], and subscripts
	case prev.kind == tokPunct && prev.text == "(" && prev2.kind == tokWord:
		for _, w := range [...]string{"float", "current_time", "current_timestamp", "localtime", "localtimestamp"} {
			if strings.EqualFold(prev2.text, w) {
				return true
			}
		}
	}
	return false
}

// blockComment returns the index past the comment opened at i (comments
// nest), and whether it is closed.
func blockComment(sql string, i int) (int, bool) {
	depth := 0
	for i < len(sql) {
		switch {
		case sql[i] == '/' && i+1 < len(sql) && sql[i+1] == '*':
			depth++
			i += 2
		case sql[i] == '*' && i+1 < len(sql) && sql[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i, true
			}
		default:
			i++
		}
	}
	return i, false
}

// quoted returns the index past the quoted token whose opening quote is
// at i, and whether it is closed.
func quoted(sql string, i int, backslash bool) (int, bool) {
	q := sql[i]
	for i++; i < len(sql); i++ {
		switch sql[i] {
		case '\\':
			if backslash {
				i++
			}
		case q:
			if i+1 < len(sql) && sql[i+1] == q {
				i++
				continue
			}
			return i + 1, true
		}
	}
	return len(sql), false
}

// plainEscapes reports whether an E'...' token's escapes each stand for
// one ASCII character: octal, hexadecimal and Unicode escapes build bytes
// that may not form a character, and are left to the parser.
func plainEscapes(tok string) bool {
	for i := 0; i < len(tok); i++ {
		if tok[i] != '\\' || i+1 >= len(tok) {
			continue
		}
		switch c := tok[i+1]; {
		case '0' <= c && c <= '7', c == 'x', c == 'u', c == 'U':
			return false
		}
		i++
	}
	return true
}

// number reads the numeric literal at i as PostgreSQL's scanner does
// (PostgreSQL 16 and later: 0x, 0o, 0b prefixes and '_' separators) and
// returns the index past it, its kind (litInt when it is an integer that
// fits in int32, as ICONST) and false when the scanner would fail (1e,
// 0x, 1..) or find junk after it (123abc).
func number(sql string, i int) (end int, kind byte, ok bool) {
	start := i
	kind, ok = litInt, true
	if sql[i] == '0' && i+1 < len(sql) && strings.IndexByte("xXoObB", sql[i+1]) >= 0 {
		j := digits(sql, i+2, sql[i+1]|0x20, true)
		if j == i+2 {
			return j, litInt, false
		}
		if j < len(sql) && isWordByte(sql[j]) {
			ok = false
		}
		if _, fits := intValue(sql[start:j]); !fits {
			kind = litNum
		}
		return j, kind, ok
	}
	j := digits(sql, i, 'd', false)
	if j < len(sql) && sql[j] == '.' {
		if j+1 < len(sql) && sql[j+1] == '.' {
			return j, litInt, false // 1..5
		}
		kind = litNum
		j = digits(sql, j+1, 'd', false)
	}
	if j < len(sql) && (sql[j] == 'e' || sql[j] == 'E') {
		k := j + 1
		if k < len(sql) && (sql[k] == '+' || sql[k] == '-') {
			k++
		}
		e := digits(sql, k, 'd', false)
		if e == k {
			return k, litNum, false
		}
		kind, j = litNum, e
	}
	if j < len(sql) && isWordByte(sql[j]) {
		ok = false
	}
	if kind == litInt {
		if _, fits := intValue(sql[start:j]); !fits {
			kind = litNum
		}
	}
	return j, kind, ok
}

// digits returns the index past a run of digits of base ('d', 'x', 'o',
// 'b') at i, each but the first after an optional '_' separator, the
// first too when lead is set (0x_1F).
func digits(sql string, i int, base byte, lead bool) int {
	j := i
	for {
		k := j
		if k < len(sql) && sql[k] == '_' && (j > i || lead) {
			k++
		}
		if k >= len(sql) || !isBaseDigit(sql[k], base) {
			return j
		}
		j = k + 1
	}
}

func isBaseDigit(c, base byte) bool {
	switch base {
	case 'x':
		return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f'
	case 'o':
		return '0' <= c && c <= '7'
	case 'b':
		return c == '0' || c == '1'
	}
	return isDigit(c)
}

// intValue reads an integer literal (no sign); fits is false past int32.
func intValue(tok string) (v int64, fits bool) {
	tok = strings.ReplaceAll(tok, "_", "")
	base := 10
	if len(tok) > 2 && tok[0] == '0' {
		switch tok[1] | 0x20 {
		case 'x':
			base, tok = 16, tok[2:]
		case 'o':
			base, tok = 8, tok[2:]
		case 'b':
			base, tok = 2, tok[2:]
		}
	}
	v, err := strconv.ParseInt(tok, base, 64)
	return v, err == nil && v <= math.MaxInt32
}

// canonical is the text of the shape with every literal a fixed one of
// its class (” for strings, 0 for integers, .0 for other numbers), the
// integers the key holds as written: one text for all texts of the shape,
// holding none of their values, which parses as they do.
func (sh *shape) canonical() string {
	var b strings.Builder
	b.Grow(len(sh.key) + 2*len(sh.lits))
	key := sh.key
	for i := 0; i < len(key); i++ {
		if key[i] != 0 {
			b.WriteByte(key[i])
			continue
		}
		i++
		switch key[i] {
		case 'k':
			for i+1 < len(key) && key[i+1] != 0 {
				i++
				b.WriteByte(key[i])
			}
			i++
		case litInt:
			if i+1 < len(key) && (key[i+1] == '.' || key[i+1] == 0) {
				b.WriteString("0x0") // 0x1F. and 0x1F.5 stay two tokens
			} else {
				b.WriteByte('0')
			}
		case litNum:
			b.WriteString(".0")
		case litBit:
			b.WriteString("B''")
		case litHex:
			b.WriteString("X''")
		default:
			b.WriteString("''")
		}
	}
	return b.String()
}

// value returns the constant the parser makes of literal l, negated when
// neg (the grammar folds a minus sign into a numeric constant), as
// Operand.Const holds it; false when it is not one value reads exactly.
func (l literal) value(sql string, neg bool) (string, bool) {
	tok := sql[l.pos:l.end]
	switch l.kind {
	case litInt:
		if !neg && canonicalInt(tok) {
			return tok, true
		}
		v, fits := intValue(tok)
		if !fits {
			return "", false
		}
		if neg {
			v = -v
		}
		return strconv.FormatInt(v, 10), true
	case litNum:
		if neg {
			return "-" + tok, true
		}
		return tok, true
	case litString, litEscape, litDollar:
		if neg {
			return "", false
		}
		return stringValue(tok, l.kind)
	}
	return "", false
}

// canonicalInt reports whether an integer token is written as
// strconv.FormatInt writes it.
func canonicalInt(tok string) bool {
	if len(tok) > 1 && tok[0] == '0' {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if !isDigit(tok[i]) {
			return false
		}
	}
	return true
}

// stringValue decodes a string literal token.
func stringValue(tok string, kind byte) (string, bool) {
	switch kind {
	case litDollar:
		tag := strings.IndexByte(tok[1:], '$') + 2
		return tok[tag : len(tok)-tag], true
	case litString:
		body := tok[1 : len(tok)-1]
		if !strings.Contains(body, "''") {
			return body, true
		}
		return strings.ReplaceAll(body, "''", "'"), true
	}
	body := tok[2 : len(tok)-1]
	if !strings.ContainsAny(body, `\'`) {
		return body, true
	}
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '\'':
			i++ // a doubled quote
		case c == '\\' && i+1 < len(body):
			i++
			switch c = body[i]; c {
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case '0', '1', '2', '3', '4', '5', '6', '7', 'x', 'u', 'U':
				return "", false
			}
		}
		b.WriteByte(c)
	}
	return b.String(), true
}
