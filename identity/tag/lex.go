package tag

import "strings"

// span is the bytes [start, end) of a block comment, from "/*" to "*/";
// end 0 means none.
type span struct{ start, end int }

type tokKind uint8

const (
	tokOther   tokKind = iota
	tokComment         // /* ... */, nested as PostgreSQL nests them
	tokLine            // -- to the end of the line
	tokSemi
)

// edgeComments returns the block comment that starts sql (after white
// space) and the one that ends it (followed by nothing but white space and
// at most one semicolon); they are the same when the comment is all there
// is. ok is false when the text does not lex: an unterminated comment,
// string or quoted identifier.
func edgeComments(sql string) (lead, trail span, ok bool) {
	var first, last, prev struct {
		kind       tokKind
		start, end int
		set        bool
	}
	_, ok = lex(sql, func(k tokKind, start, end int) {
		if !first.set {
			first.kind, first.start, first.end, first.set = k, start, end, true
		}
		prev = last
		last.kind, last.start, last.end, last.set = k, start, end, true
	})
	if !ok || !first.set {
		return span{}, span{}, false
	}
	if first.kind == tokComment {
		lead = span{first.start, first.end}
	}
	switch {
	case last.kind == tokComment:
		trail = span{last.start, last.end}
	case last.kind == tokSemi && prev.set && prev.kind == tokComment:
		trail = span{prev.start, prev.end}
	}
	return lead, trail, true
}

// endsInComment reports whether sql ends inside a line comment, which
// would swallow anything appended on the same line.
func endsInComment(sql string) bool {
	open, ok := lex(sql, func(tokKind, int, int) {})
	return ok && open
}

// lex splits sql into the tokens that matter here, as PostgreSQL's lexer
// would with standard_conforming_strings on: comments, semicolons, and the
// rest (quoted strings and identifiers whole, so that a comment inside one
// is not taken for one). White space is skipped. lineOpen reports that the
// text ends inside a line comment; ok is false when a comment, string or
// quoted identifier is not terminated.
// https://www.postgresql.org/docs/current/sql-syntax-lexical.html
func lex(sql string, visit func(k tokKind, start, end int)) (lineOpen, ok bool) {
	n := len(sql)
	// The identifier just read, for an E'...' string's prefix.
	identStart, identEnd := -1, -1
	for i := 0; i < n; {
		c := sql[i]
		switch {
		case isSpace(c):
			i++
		case c == '-' && i+1 < n && sql[i+1] == '-':
			j := i + 2
			for j < n && sql[j] != '\n' && sql[j] != '\r' {
				j++
			}
			visit(tokLine, i, j)
			lineOpen = j == n
			i = j
			continue
		case c == '/' && i+1 < n && sql[i+1] == '*':
			depth, j := 1, i+2
			for j < n && depth > 0 {
				switch {
				case sql[j] == '/' && j+1 < n && sql[j+1] == '*':
					depth++
					j += 2
				case sql[j] == '*' && j+1 < n && sql[j+1] == '/':
					depth--
					j += 2
				default:
					j++
				}
			}
			if depth > 0 {
				return false, false
			}
			visit(tokComment, i, j)
			i = j
		case c == '\'':
			// E'...' takes backslash escapes; the E must stand alone.
			esc := identEnd == i && identEnd-identStart == 1 && (sql[identStart] == 'E' || sql[identStart] == 'e')
			j := quoted(sql, i, '\'', esc)
			if j < 0 {
				return false, false
			}
			visit(tokOther, i, j)
			i = j
		case c == '"':
			j := quoted(sql, i, '"', false)
			if j < 0 {
				return false, false
			}
			visit(tokOther, i, j)
			i = j
		case identStartByte(c):
			// An identifier or key word: a dollar sign in it is part of
			// the name, not a quote.
			j := i + 1
			for j < n && (identStartByte(sql[j]) || sql[j] >= '0' && sql[j] <= '9' || sql[j] == '$') {
				j++
			}
			visit(tokOther, i, j)
			identStart, identEnd = i, j
			i = j
		case c == '$':
			d := dollarDelim(sql[i:])
			if d == "" {
				visit(tokOther, i, i+1)
				i++
				break
			}
			end := strings.Index(sql[i+len(d):], d)
			if end < 0 {
				return false, false
			}
			j := i + len(d) + end + len(d)
			visit(tokOther, i, j)
			i = j
		case c == ';':
			visit(tokSemi, i, i+1)
			i++
		default:
			visit(tokOther, i, i+1)
			i++
		}
		lineOpen = false
	}
	return lineOpen, true
}

// quoted returns the end of the quoted string or identifier at i, -1 when
// it is not terminated. A doubled quote stands for one; with esc, so does
// a backslash-escaped one.
func quoted(s string, i int, q byte, esc bool) int {
	for j := i + 1; j < len(s); j++ {
		switch {
		case esc && s[j] == '\\':
			j++
		case s[j] == q:
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return -1
}

// dollarDelim returns the dollar-quote delimiter s starts with ($$ or
// $tag$), or "" (a parameter such as $1, or a lone dollar).
func dollarDelim(s string) string {
	for j := 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == '$':
			return s[:j+1]
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c == '_', c >= 0x80:
		case c >= '0' && c <= '9' && j > 1:
		default:
			return ""
		}
	}
	return ""
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// identStartByte reports whether c may start an identifier.
func identStartByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_' || c >= 0x80
}
