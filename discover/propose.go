package discover

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/pgwarden/pgwarden/policy/pii"
)

// propose picks the category to declare for c, or "" for none: the detector
// category with the largest share at or above minShare, else the category the
// name suggests.
func propose(c *column, minShare float64) (pii.Category, bool) {
	var best pii.Category
	bestHits := 0
	for cat, k := range c.hits {
		if float64(k) >= minShare*float64(c.nonNull) && (k > bestHits || k == bestHits && cat < best) {
			best, bestHits = cat, k
		}
	}
	if best != "" {
		return best, true
	}
	return c.nameCat, false
}

// evidence describes why c was (or was not) proposed, for a YAML comment.
func evidence(c *column) string {
	var parts []string
	if c.sampled {
		switch {
		case c.nonNull == 0:
			parts = append(parts, "no non-null values sampled")
		case len(c.hits) == 0:
			parts = append(parts, fmt.Sprintf("0/%d sampled values match a detector", c.nonNull))
		default:
			// The proposed category first, then the others by count.
			cats := make([]pii.Category, 0, len(c.hits))
			for cat := range c.hits {
				cats = append(cats, cat)
			}
			slices.SortFunc(cats, func(x, y pii.Category) int {
				if (x == c.proposal) != (y == c.proposal) {
					if x == c.proposal {
						return -1
					}
					return 1
				}
				if d := c.hits[y] - c.hits[x]; d != 0 {
					return d
				}
				return strings.Compare(string(x), string(y))
			})
			for _, cat := range cats {
				parts = append(parts, fmt.Sprintf("%d/%d sampled values look like %s", c.hits[cat], c.nonNull, cat))
			}
		}
	} else if !sampledTypes[c.typ] {
		parts = append(parts, "not sampled (type "+c.typ+")")
	} else if !c.readable {
		parts = append(parts, "not sampled (no SELECT privilege)")
	} else {
		parts = append(parts, "not sampled (relation skipped)")
	}
	switch {
	case c.nameCat == "":
	case c.proposal == c.nameCat && !c.byValue:
		parts = append(parts, "name only: name matches "+string(c.nameCat))
	default:
		parts = append(parts, "name matches "+string(c.nameCat))
	}
	return strings.Join(parts, "; ")
}

// WritePolicy writes the proposal as a policy YAML fragment (version: 1,
// pii: columns:) that policy.Parse reads: each proposed column with its
// evidence as a comment, then, as comments, the columns some of whose values
// matched a detector but fewer than the minimum share.
func (r *Report) WritePolicy(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# pgwarden discover: database %s, %d relations scanned, up to %d rows sampled per relation, --min-share %g.\n",
		yamlComment(r.Database), r.Scanned, r.sample, r.minShare)
	fmt.Fprintln(&b, "# Review every entry before use: names are guesses and shares come from a sample.")
	fmt.Fprintln(&b, "version: 1")
	fmt.Fprintln(&b, "pii:")
	if r.Proposed() == 0 {
		fmt.Fprintln(&b, "  columns: []")
	} else {
		fmt.Fprintln(&b, "  columns:")
	}
	var below []*column
	for _, rel := range r.rels {
		for _, c := range rel.cols {
			if c.proposal == "" {
				if len(c.hits) > 0 {
					below = append(below, c)
				}
				continue
			}
			fmt.Fprintf(&b, "    # %s\n", yamlComment(evidence(c)))
			fmt.Fprintf(&b, "    - match: %s\n", yamlScalar(matchString(c.schema, c.table, c.name)))
			fmt.Fprintf(&b, "      category: %s\n", c.proposal)
		}
	}
	if len(below) > 0 {
		fmt.Fprintf(&b, "# Not proposed, some values matched but fewer than --min-share %g:\n", r.minShare)
		for _, c := range below {
			fmt.Fprintf(&b, "#   %s: %s\n", yamlComment(matchString(c.schema, c.table, c.name)), yamlComment(evidence(c)))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// matchString writes schema.table.column in the policy's match syntax:
// parts other than plain lower-case identifiers are double-quoted, so that
// dots, glob characters and case are taken literally.
func matchString(schema, table, column string) string {
	return matchPart(schema) + "." + matchPart(table) + "." + matchPart(column)
}

func matchPart(s string) string {
	plain := s != ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '$') {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// yamlScalar returns s as a YAML plain scalar when that reads back as the
// same string, single-quoted when it is printable, else double-quoted.
func yamlScalar(s string) string {
	plain, printable := s != "" && s[0] != '"', true
	for _, r := range s {
		plain = plain && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '$' || r == '.' || r == '"')
		printable = printable && unicode.IsPrint(r)
	}
	switch {
	case plain:
		return s
	case printable:
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	default:
		return strconv.Quote(s) // Go's escapes are all valid in a YAML double-quoted scalar
	}
}

// yamlComment makes s safe to follow '#' on one line.
func yamlComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
}
