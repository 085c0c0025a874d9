package sqltext

import "strings"

// Limits on the statements the parser is asked about. pg_query's cost,
// and the Go-side walk of its tree, grow with the tokens of a text: a
// statement of 200,000 literals takes a second to read, where PostgreSQL
// runs it in a tenth of that. Texts past either limit are not parsed;
// their Info is a conservative reading of their words (Skipped says so).
const (
	// MaxAnalyzedBytes is the longest text parsed.
	MaxAnalyzedBytes = 4 << 20
	// MaxAnalyzedTokens is the most tokens (keywords, names, literals,
	// operators and punctuation; comments and whitespace not counted) in
	// a text parsed: far above hand-written SQL, about 10,000 values in
	// an IN list.
	MaxAnalyzedTokens = 20000
	// MaxAnalyzedRelations is the most distinct relations a text parsed
	// names: each is a catalog lookup the first time it is seen.
	MaxAnalyzedRelations = 200
	// maxWords bounds the distinct words kept of a skipped text.
	maxWords = 4096
)

// Reasons a text is not analyzed, as Info.Skipped gives them.
const (
	SkippedSize      = "size"
	SkippedTokens    = "tokens"
	SkippedRelations = "relations"
)

// overLimits returns why sql is not to be parsed, or "".
func overLimits(sql string) string {
	if len(sql) > MaxAnalyzedBytes {
		return SkippedSize
	}
	if countTokens(sql, MaxAnalyzedTokens+1) > MaxAnalyzedTokens {
		return SkippedTokens
	}
	return ""
}

// countTokens counts the tokens of sql as PostgreSQL's scanner splits them,
// up to max: a quoted string, quoted identifier or number is one token,
// comments and whitespace none. Operators are counted a character each, a
// slight overcount.
func countTokens(sql string, max int) int {
	n := 0
	for i := 0; i < len(sql) && n < max; {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
			continue
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			i = skipBlockComment(sql, i)
			continue
		case c == '\'':
			i = skipQuoted(sql, i, '\'', false)
		case c == '"':
			i = skipQuoted(sql, i, '"', false)
		case (c == 'e' || c == 'E') && i+1 < len(sql) && sql[i+1] == '\'':
			i = skipQuoted(sql, i+1, '\'', true)
		case c == '$' && dollarTag(sql, i) > 0:
			i = skipDollar(sql, i, dollarTag(sql, i))
		case isWordByte(c):
			for i < len(sql) && (isWordByte(sql[i]) || sql[i] == '.' && i+1 < len(sql) && isDigit(sql[i+1]) && isDigit(c)) {
				i++
			}
		default:
			i++
		}
		n++
	}
	return n
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// skipBlockComment returns the index past the comment opened at i;
// comments nest.
func skipBlockComment(sql string, i int) int {
	depth := 0
	for i < len(sql) {
		switch {
		case strings.HasPrefix(sql[i:], "/*"):
			depth++
			i += 2
		case strings.HasPrefix(sql[i:], "*/"):
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return i
}

// skipQuoted returns the index past the quoted token opened at i; a
// doubled quote stands for one, and with backslash (E”) a backslash
// escapes the next byte.
func skipQuoted(sql string, i int, q byte, backslash bool) int {
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
			return i + 1
		}
	}
	return i
}

// dollarTag returns the length of the $tag$ opening a dollar-quoted string
// at i, or 0.
func dollarTag(sql string, i int) int {
	if i > 0 && isWordByte(sql[i-1]) {
		return 0 // a $ inside a name, or a parameter's digits
	}
	for j := i + 1; j < len(sql); j++ {
		c := sql[j]
		switch {
		case c == '$':
			return j - i + 1
		case c == '_' || c >= 0x80 || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) && j > i+1:
		default:
			return 0
		}
	}
	return 0
}

func skipDollar(sql string, i, tagLen int) int {
	tag := sql[i : i+tagLen]
	if end := strings.Index(sql[i+tagLen:], tag); end >= 0 {
		return i + tagLen + end + tagLen
	}
	return len(sql)
}

// skim reads a text too large to parse, without the parser: every run of
// letters, digits, '_' and '$' in it, inside literals, quoted names and
// comments included, lower-cased, is a word. Whatever the text says, in
// whatever quoting, its names are among these words, so what is concluded
// from them errs on the side of more kinds and more columns, never fewer.
// It returns the kinds the words allow (skimKind), and the distinct words
// that may be names (not all digits), or any set when they do not tell: a
// name spelled with Unicode escapes (U&"..."), which no word shows, or
// more distinct words than are kept.
func skim(sql string) (kinds []string, words []string, any bool) {
	seen := make(map[string]struct{})
	var k skimKinds
	for i := 0; i < len(sql); {
		if !isWordByte(sql[i]) {
			i++
			continue
		}
		start := i
		digits := true
		for i < len(sql) && isWordByte(sql[i]) {
			digits = digits && isDigit(sql[i])
			i++
		}
		if digits {
			continue
		}
		w := strings.ToLower(sql[start:i])
		if w == "u" && i+1 < len(sql) && sql[i] == '&' && (sql[i+1] == '"' || sql[i+1] == '\'') {
			k.unicode = true
		}
		k.add(w)
		if any {
			continue
		}
		if _, ok := seen[w]; !ok {
			if len(seen) == maxWords {
				any, words = true, nil
				continue
			}
			seen[w] = struct{}{}
			words = append(words, w)
		}
	}
	return k.kinds(), words, any || k.unicode
}

// skimKinds finds the kinds a skipped text may be: a kind is included when
// a word that must appear in its statements does, so that a rule on kinds
// (server_egress above all) cannot be passed by making a statement too
// large to parse.
type skimKinds struct {
	set                    map[string]bool
	copy, program, unicode bool
}

func (k *skimKinds) add(w string) {
	var ks []string
	switch w {
	case "select", "values", "table", "with":
		ks = []string{KindSelect}
	case "copy":
		k.copy = true
		ks = []string{KindCopyToStdout, KindCopyToFile, KindCopyFrom}
	case "program":
		k.program = true
	case "into":
		ks = []string{KindCreateTableAs}
	case "insert":
		ks = []string{KindDML, KindInsertSelect}
	case "update", "delete", "merge":
		ks = []string{KindDML}
	case "lo_export":
		ks = []string{KindLoExport}
	case "lo_from_bytea", "lo_put", "lowrite":
		ks = []string{KindCreateTableAs}
	case "foreign", "server", "mapping":
		ks = []string{KindDblink, KindDDL}
	case "create":
		ks = []string{KindDDL, KindCreateTableAs}
	case "alter", "drop", "grant", "revoke", "truncate", "comment", "reindex", "cluster", "vacuum", "refresh", "security":
		ks = []string{KindDDL}
	default:
		if strings.HasPrefix(w, "dblink") {
			ks = []string{KindDblink}
		}
	}
	if len(ks) == 0 {
		return
	}
	if k.set == nil {
		k.set = make(map[string]bool)
	}
	for _, kind := range ks {
		k.set[kind] = true
	}
}

// kinds lists the kinds found, in the order of the kind constants; with
// Unicode escapes, every kind.
func (k *skimKinds) kinds() []string {
	all := []string{KindSelect, KindCopyToStdout, KindCopyToFile, KindCopyToProgram, KindCopyFrom, KindCreateTableAs,
		KindInsertSelect, KindLoExport, KindDblink, KindDDL, KindDML, KindOther}
	if k.unicode {
		return all
	}
	if k.copy && k.program {
		k.set[KindCopyToProgram] = true // copy made the set
	}
	var out []string
	for _, kind := range all {
		if k.set[kind] || kind == KindOther {
			out = append(out, kind)
		}
	}
	return out
}
