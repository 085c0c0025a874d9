package guard

import (
	"regexp"
	"strings"
	"unicode"
)

// maxJustification bounds the reason an employee gives for a held
// statement.
const maxJustification = 500

// An employee says why a statement should be approved, without another
// tool, in the statement itself (a comment) or before it:
//
//	SELECT ... /* pgwarden.reason: ticket 4711, customer asked for a copy */
//	SET pgwarden.reason = 'ticket 4711';
//
// PostgreSQL takes pgwarden.reason as a custom setting, so the SET runs
// as any other; pgwarden reads it on its way.
var (
	reasonBlock = regexp.MustCompile(`(?is)/\*\s*pgwarden\.reason\s*[:=]\s*(.*?)\s*\*/`)
	reasonLine  = regexp.MustCompile(`(?im)--\s*pgwarden\.reason\s*[:=]\s*(.*?)\s*$`)
	reasonSet   = regexp.MustCompile(`(?is)^\s*set\s+(?:session\s+|local\s+)?pgwarden\.reason\s*(?:=|to)\s*'((?:[^']|'')*)'\s*;?\s*$`)
)

// justificationIn is the reason a statement's text gives in a comment.
func justificationIn(sql string) string {
	if !mentionsReason(sql) {
		return ""
	}
	for _, re := range []*regexp.Regexp{reasonBlock, reasonLine} {
		if m := re.FindStringSubmatch(sql); m != nil {
			return cleanJustification(m[1])
		}
	}
	return ""
}

// justificationSet is the reason a SET pgwarden.reason statement gives,
// and whether it is one.
func justificationSet(sql string) (string, bool) {
	if !mentionsReason(sql) {
		return "", false
	}
	m := reasonSet.FindStringSubmatch(sql)
	if m == nil {
		return "", false
	}
	return cleanJustification(strings.ReplaceAll(m[1], "''", "'")), true
}

// mentionsReason reports, without allocating, whether sql names
// pgwarden.reason in any case.
func mentionsReason(sql string) bool {
	const name = "pgwarden.reason"
	for i := 0; i+len(name) <= len(sql); i++ {
		if strings.EqualFold(sql[i:i+len(name)], name) {
			return true
		}
	}
	return false
}

// cleanJustification keeps a reason printable and short.
func cleanJustification(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > maxJustification {
		s = strings.ToValidUTF8(s[:maxJustification], "")
	}
	return strings.Join(strings.Fields(s), " ")
}
