package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// colKey names one column as the catalog spells it.
type colKey struct {
	schema, table, column string
}

// namePart matches one of schema, table or column: exactly when re is nil,
// otherwise by the compiled glob.
type namePart struct {
	lit string
	re  *regexp.Regexp
}

func (p namePart) match(s string) bool {
	if p.re == nil {
		return p.lit == s
	}
	return p.re.MatchString(s)
}

// canonical identifies the part for duplicate detection: a literal by its
// name, a glob by its compiled form, so `a\bc` and `abc` are the same entry.
func (p namePart) canonical() string {
	if p.re == nil {
		return "=" + p.lit
	}
	return "~" + p.re.String()
}

// namePattern is a parsed `match:` value, schema.table.column.
type namePattern struct {
	parts [3]namePart
}

// exact reports whether the pattern names one column, with no glob.
func (n *namePattern) exact() bool {
	return n.parts[0].re == nil && n.parts[1].re == nil && n.parts[2].re == nil
}

func (n *namePattern) key() colKey {
	return colKey{n.parts[0].lit, n.parts[1].lit, n.parts[2].lit}
}

func (n *namePattern) match(k colKey) bool {
	return n.parts[0].match(k.schema) && n.parts[1].match(k.table) && n.parts[2].match(k.column)
}

func (n *namePattern) canonical() string {
	return n.parts[0].canonical() + "\x00" + n.parts[1].canonical() + "\x00" + n.parts[2].canonical()
}

// parseMatch parses schema.table.column. A part in double quotes is taken
// literally (dots, glob characters and case included; "" is a quote); an
// unquoted part is a glob where '*' matches any run of characters, '?' one
// character, [abc], [a-z] and [!abc] (or [^abc]) a class, and '\' escapes the
// next character. Matching is case-sensitive: write names as the catalog
// stores them (PostgreSQL folds unquoted SQL identifiers to lower case).
func parseMatch(s string) (*namePattern, error) {
	var n namePattern
	if err := parseName(s, n.parts[:], "schema.table.column"); err != nil {
		return nil, err
	}
	return &n, nil
}

// parseName parses a dotted name of len(parts) parts, each quoted or a glob
// as parseMatch describes, into parts; shape names the parts for errors.
func parseName(s string, parts []namePart, shape string) error {
	count := 0
	i := 0
	for {
		var part namePart
		if i < len(s) && s[i] == '"' {
			lit, next, err := quotedIdent(s, i)
			if err != nil {
				return err
			}
			part.lit, i = lit, next
		} else {
			j := i
			for j < len(s) && s[j] != '.' {
				switch c := s[j]; {
				case c == '\\' && j+1 < len(s):
					j++
				case c == '"':
					return fmt.Errorf("unexpected '\"' in %q: quote a whole name part", s)
				case c == ' ' || c == '\t' || c == '\n' || c == '\r':
					return fmt.Errorf("whitespace in unquoted name part %q: quote the name", s[i:j+1])
				}
				j++
			}
			if j == i {
				return fmt.Errorf("empty name part in %q: want %s", s, shape)
			}
			lit, re, err := compileGlob(s[i:j])
			if err != nil {
				return fmt.Errorf("malformed glob %q: %w", s[i:j], err)
			}
			part.lit, part.re, i = lit, re, j
		}
		if count < len(parts) {
			parts[count] = part
		}
		count++
		if i == len(s) {
			break
		}
		// s[i] == '.': quotedIdent and the unquoted loop stop only there.
		i++
		if i == len(s) {
			return fmt.Errorf("empty name part in %q: want %s", s, shape)
		}
	}
	if count != len(parts) {
		return fmt.Errorf("%q has %d name parts, want %s", s, count, shape)
	}
	return nil
}

// quotedIdent reads the double-quoted identifier starting at s[i] and returns
// its name and the index after the closing quote, which must be followed by a
// dot or the end of s.
func quotedIdent(s string, i int) (string, int, error) {
	var b strings.Builder
	j := i + 1
	for {
		if j >= len(s) {
			return "", 0, fmt.Errorf("unterminated quoted identifier in %q", s)
		}
		if s[j] == '"' {
			if j+1 < len(s) && s[j+1] == '"' {
				b.WriteByte('"')
				j += 2
				continue
			}
			j++
			break
		}
		b.WriteByte(s[j])
		j++
	}
	if b.Len() == 0 {
		return "", 0, fmt.Errorf("empty quoted identifier in %q", s)
	}
	if j < len(s) && s[j] != '.' {
		return "", 0, fmt.Errorf("unexpected %q after quoted identifier in %q", s[j], s)
	}
	return b.String(), j, nil
}

// compileGlob compiles a glob to an anchored regexp. A glob without wildcards
// (escapes only) is returned as its literal name with a nil regexp.
func compileGlob(g string) (string, *regexp.Regexp, error) {
	var re, lit strings.Builder
	wild := false
	re.WriteString(`^(?s:`)
	for i := 0; i < len(g); {
		switch g[i] {
		case '*':
			wild = true
			re.WriteString(`.*`)
			i++
		case '?':
			wild = true
			re.WriteString(`.`)
			i++
		case '[':
			wild = true
			cls, n, err := globClass(g[i:])
			if err != nil {
				return "", nil, err
			}
			re.WriteString(cls)
			i += n
		case ']':
			return "", nil, errors.New("unmatched ']'")
		case '\\':
			if i+1 == len(g) {
				return "", nil, errors.New("trailing backslash")
			}
			i++
			fallthrough
		default:
			_, size := utf8.DecodeRuneInString(g[i:])
			re.WriteString(regexp.QuoteMeta(g[i : i+size]))
			lit.WriteString(g[i : i+size])
			i += size
		}
	}
	if !wild {
		return lit.String(), nil, nil
	}
	re.WriteString(`)$`)
	r, err := regexp.Compile(re.String())
	if err != nil {
		return "", nil, err
	}
	return "", r, nil
}

// globClass translates the character class at the start of s ("[...]") and
// returns it with the number of bytes it spans. A ']' first in the class is a
// member; '-' between two members is a range.
func globClass(s string) (string, int, error) {
	var b strings.Builder
	b.WriteByte('[')
	i := 1
	if i < len(s) && (s[i] == '!' || s[i] == '^') {
		b.WriteByte('^')
		i++
	}
	first := true
	for {
		if i >= len(s) {
			return "", 0, errors.New("unterminated character class")
		}
		if s[i] == ']' && !first {
			i++
			break
		}
		first = false
		lo, n, err := classChar(s[i:])
		if err != nil {
			return "", 0, err
		}
		i += n
		if i+1 < len(s) && s[i] == '-' && s[i+1] != ']' {
			hi, n, err := classChar(s[i+1:])
			if err != nil {
				return "", 0, err
			}
			if hi < lo {
				return "", 0, fmt.Errorf("bad range %q-%q in character class", lo, hi)
			}
			i += 1 + n
			fmt.Fprintf(&b, `\x{%x}-\x{%x}`, lo, hi)
			continue
		}
		fmt.Fprintf(&b, `\x{%x}`, lo)
	}
	b.WriteByte(']')
	return b.String(), i, nil
}

// classChar reads one possibly escaped member of a character class.
func classChar(s string) (rune, int, error) {
	n := 0
	if s[0] == '\\' {
		if len(s) == 1 {
			return 0, 0, errors.New("unterminated character class")
		}
		n = 1
	}
	r, size := utf8.DecodeRuneInString(s[n:])
	if r == utf8.RuneError && size <= 1 {
		return 0, 0, errors.New("invalid UTF-8 in character class")
	}
	return r, n + size, nil
}
