package detect

import (
	"fmt"
	"regexp"

	"github.com/pgwarden/pgwarden/policy/pii"
)

// MaxCustomMatches bounds the matches one custom pattern counts in one
// field, so a pathological pattern cannot make a single Scan unbounded. A
// field that reaches it is far past any sane per-statement limit anyway.
const MaxCustomMatches = 1 << 16

// Custom describes a policy-defined detector: every non-empty,
// non-overlapping match of Pattern counts one value of Category, unless a
// built-in detector already counted those bytes.
type Custom struct {
	Name     string       // the rule's name, used in errors
	Category pii.Category // may be a built-in category (e.g. a non-US national_id)
	Pattern  string       // Go regexp (RE2) syntax
}

type compiledCustom struct {
	cat     pii.Category
	builtin int // index when cat is a built-in category, else -1
	re      *regexp.Regexp
}

// Set is a compiled, immutable collection of detectors. It is safe for
// concurrent use; each goroutine brings its own Counts.
type Set struct {
	enabled [numBuiltin]bool
	email   bool // enabled[idxEmail]
	digits  bool // any detector other than email is enabled
	custom  []compiledCustom
}

// Default returns a Set with every built-in detector and no custom ones.
func Default() *Set { return defaultSet }

var defaultSet = func() *Set {
	s, err := New(pii.Detectable(), nil)
	if err != nil {
		panic(err)
	}
	return s
}()

// New compiles a Set from the built-in categories to enable and the custom
// detectors to add. It fails on a category without a built-in detector, a custom
// detector without a name or category, or a pattern that does not compile;
// the error names the offending detector and pattern.
func New(builtinCats []pii.Category, custom []Custom) (*Set, error) {
	s := &Set{}
	for _, cat := range builtinCats {
		i := cat.Index()
		if !cat.Detectable() {
			return nil, fmt.Errorf("detect: no built-in detector for category %q", cat)
		}
		s.enabled[i] = true
		if i != idxEmail {
			s.digits = true
		}
	}
	s.email = s.enabled[idxEmail]
	for _, c := range custom {
		if c.Name == "" {
			return nil, fmt.Errorf("detect: custom detector with pattern %q has no name", c.Pattern)
		}
		if c.Category == "" {
			return nil, fmt.Errorf("detect: custom detector %q has no category", c.Name)
		}
		if c.Pattern == "" {
			return nil, fmt.Errorf("detect: custom detector %q: empty pattern", c.Name)
		}
		re, err := regexp.Compile(c.Pattern)
		if err != nil {
			return nil, fmt.Errorf("detect: custom detector %q: bad pattern %q: %w", c.Name, c.Pattern, err)
		}
		s.custom = append(s.custom, compiledCustom{cat: c.Category, builtin: c.Category.Index(), re: re})
	}
	return s, nil
}

// Scan adds to counts every PII value found in b and returns the number
// found. b is one field's bytes in text form: a DataRow value, a COPY line,
// a notice message. Every value inside it counts, so a field packing 500
// emails (string_agg, json_agg, an array literal, a CSV line) adds 500.
// A byte range counts once, in the most specific category.
//
// Built-in detectors never allocate. Custom patterns use package regexp,
// which allocates a little per match.
func (s *Set) Scan(b []byte, counts *Counts) int {
	track := len(s.custom) > 0
	at := indexAt(b, 0)
	if at < 0 && !track {
		// Most values hold no '@': scan them whole.
		if s.digits {
			return s.scanSegment(b, 0, counts, false)
		}
		return 0
	}
	if track {
		counts.spans = counts.spans[:0]
	}
	n := 0
	pos := 0 // bytes before pos are claimed or scanned
	for {
		es, ee := -1, -1
		// Emails are matched even when not counted, so that the digits
		// of a local part are never taken for a phone or an id. at is
		// the next '@' to try, or -1.
		for at >= 0 {
			if st, e, ok := matchEmail(b, pos, at); ok {
				es, ee = st, e
				break
			}
			at = indexAt(b, at+1)
		}
		end := len(b)
		if es >= 0 {
			end = es
		}
		if s.digits && end > pos {
			n += s.scanSegment(b[:end], pos, counts, track)
		}
		if es < 0 {
			break
		}
		n += s.hit(idxEmail, es, ee, counts, track)
		pos = ee
		if at = -1; ee < len(b) {
			at = indexAt(b, ee)
		}
	}
	if track {
		n += s.scanCustom(b, counts)
	}
	return n
}

// hit counts one value of built-in category i at [start, end) if that
// category is enabled and returns how many values it counted (0 or 1).
func (s *Set) hit(i, start, end int, c *Counts, track bool) int {
	if !s.enabled[i] {
		return 0
	}
	c.builtin[i]++
	if track {
		c.spans = append(c.spans, span{start, end})
	}
	return 1
}

// scanCustom runs every custom pattern over b, skipping matches that
// overlap a range a built-in detector counted in this Scan.
func (s *Set) scanCustom(b []byte, c *Counts) int {
	total := 0
	for _, cc := range s.custom {
		found := 0
		for off := 0; off <= len(b) && found < MaxCustomMatches; {
			loc := cc.re.FindIndex(b[off:])
			if loc == nil {
				break
			}
			ms, me := off+loc[0], off+loc[1]
			if me == ms {
				off = me + 1
				continue
			}
			off = me
			if overlaps(c.spans, ms, me) {
				continue
			}
			found++
		}
		if found == 0 {
			continue
		}
		if cc.builtin >= 0 {
			c.builtin[cc.builtin] += found
		} else {
			c.Add(cc.cat, found)
		}
		total += found
	}
	return total
}

// overlaps reports whether [start, end) overlaps any span in spans, which
// are sorted and disjoint.
func overlaps(spans []span, start, end int) bool {
	lo, hi := 0, len(spans)
	for lo < hi { // first span whose end is past start
		m := int(uint(lo+hi) >> 1)
		if spans[m].end <= start {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(spans) && spans[lo].start < end
}
