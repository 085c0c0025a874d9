package guard

import (
	"bytes"
	"fmt"
	"github.com/pgwarden/pgwarden/policy"
	"unicode/utf8"

	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/proxy"
)

// textual reports whether a type's values, text or binary, are its text:
// a masked string is then a valid value of the column.
func textual(oid uint32) bool {
	switch oid {
	case 25, 1043, 1042, 19, 0, 705: // text, varchar, bpchar, name, unspecified, unknown
		return true
	}
	return false
}

// redact forwards the row with its PII values masked (or NULL), counts it
// as a row received, and its PII values as redacted, not received.
func (s *session) redact(f *Figures, values [][]byte) proxy.Verdict {
	e := &s.enf
	out := e.redacted[:0]
	out = append(out, values...)
	null := e.redacting.RedactWith == "null"
	var n int
	e.row.Each(func(_ pii.Category, k int) { n += k })
	pol := s.cc()
	for _, i := range e.piiCols {
		var c colPlan
		if i < len(s.plan) {
			c = s.plan[i]
		} else if s.plan == nil {
			c.textual = true
		}
		if null {
			out[i] = nil
			continue
		}
		out[i] = s.dec.masked(pol, c, values[i])
	}
	e.redacted = out
	var size int64
	for _, v := range out {
		size += int64(len(v))
	}
	f.Rows++
	f.Bytes += size
	f.Redacted += int64(n)
	return proxy.Verdict{Action: proxy.Rewrite, Values: out}
}

// maskWith hides a value in the policy's format for its category: f
// empty masks it by its shape (mask). A value packing several is "***"
// whatever the format, and MaskNull gives NULL (nil).
func maskWith(v []byte, f policy.MaskFormat) []byte {
	switch {
	case f == policy.MaskNull:
		return nil
	case f == "":
		return mask(v)
	case f == policy.MaskHidden || packed(v):
		return []byte("***")
	}
	switch f {
	case policy.MaskKeepDomain:
		if at := bytes.IndexByte(v, '@'); at > 0 {
			return append(initial(v), v[at:]...)
		}
		return initial(v)
	case policy.MaskLast4:
		if out, ok := lastFour(v); ok {
			return out
		}
		return []byte("***")
	}
	return initial(v)
}

// packed reports whether v holds several values (string_agg, json).
func packed(v []byte) bool {
	return len(v) > 64 || bytes.Count(v, []byte("@")) > 1 || bytes.ContainsAny(v, ",;{}[]\n\t")
}

// initial is v's first letter and "***".
func initial(v []byte) []byte {
	r, size := utf8.DecodeRune(v)
	if r == utf8.RuneError || len(v) == 0 {
		return []byte("***")
	}
	return append(append([]byte(nil), v[:size]...), "***"...)
}

// lastFour keeps the last four digits of v and its punctuation, and
// masks every other character; false with fewer than four digits.
func lastFour(v []byte) ([]byte, bool) {
	digits := 0
	for _, b := range v {
		if b >= '0' && b <= '9' {
			digits++
		}
	}
	if digits < 4 {
		return nil, false
	}
	out := make([]byte, len(v))
	seen := 0
	for i, b := range v {
		switch {
		case b >= '0' && b <= '9':
			if seen < digits-4 {
				out[i] = '*'
			} else {
				out[i] = b
			}
			seen++
		case b == '-' || b == ' ' || b == '.' || b == '(' || b == ')' || b == '+' || b == '/':
			out[i] = b
		default:
			out[i] = '*'
		}
	}
	return out, true
}

// mask hides a value but its shape: the first letter and the domain of an
// address (j***@example.com), the last four digits of a number
// (***-**-1234), the first letter of anything else (J***). A value packing
// several (string_agg, json) becomes "***".
func mask(v []byte) []byte {
	if packed(v) {
		return []byte("***")
	}
	if at := bytes.IndexByte(v, '@'); at > 0 {
		return append(initial(v), v[at:]...)
	}
	if out, ok := lastFour(v); ok {
		return out
	}
	return initial(v)
}

// cannotRedact blocks a result whose PII cannot be masked in place (COPY
// data, a fast-path result): the rule asked for the values to be hidden.
func (s *session) cannotRedact(st *proxy.Statement, what string) proxy.Verdict {
	r := s.enf.redacting
	reason := fmt.Sprintf("%s received PII past the limit of rule %s, and %s cannot be redacted", s.employee(st), r.Name, what)
	if !r.Thresholded() {
		reason = fmt.Sprintf("rule %s masks %s's PII, and %s cannot be masked in place (a SELECT of the same rows is masked)", r.Name, s.employee(st), what)
	}
	s.log.Warn("redaction_impossible", "rule", r.Name, "statement_seq", seqOf(st))
	return proxy.Verdict{Action: proxy.Block, Reason: "statement blocked: " + reason}
}
