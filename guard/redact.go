package guard

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"github.com/pgwarden/pgwarden/policy"

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

// redactCopy masks a COPY TO STDOUT's data (copyout.go). Data whose
// values it masked is counted as redact counts a row, and done is set:
// the verdict forwards it masked. Otherwise the data is counted as
// received, out being what to forward in its place (a line whose end is
// yet to come is held back). Data that cannot be masked blocks the
// statement. final is set at the end of the data (CopyDone).
func (s *session) redactCopy(st *proxy.Statement, f *Figures, data []byte, final bool) (v proxy.Verdict, out []byte, done bool) {
	out, masked, why := s.maskCopy(st, data, final)
	if why != "" {
		return s.cannotMask(st, why), nil, true
	}
	if masked == 0 {
		return proxy.Verdict{}, out, false
	}
	n := 0
	s.enf.row.Each(func(_ pii.Category, k int) { n += k })
	if !final {
		f.Rows++
	}
	f.Bytes += int64(len(out))
	f.Redacted += int64(max(n, masked))
	return proxy.Verdict{Action: proxy.Rewrite, Values: [][]byte{out}}, out, true
}

// CopyDone sends the end of a COPY line held back, masked.
func (s *session) CopyDone(st *proxy.Statement) proxy.Verdict {
	if s.enf.redacting == nil || s.copy.st != st || len(s.copy.partial) == 0 {
		return proxy.Verdict{}
	}
	s.enf.row.Reset()
	f := s.figures(st)
	v, out, done := s.redactCopy(st, f, nil, true)
	if !done {
		f.Bytes += int64(len(out))
		v = proxy.Verdict{Action: proxy.Rewrite, Values: [][]byte{out}}
	}
	return v
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

// cannotRedact blocks a result whose PII cannot be masked in place (binary
// COPY data, a fast-path result): the rule asked for the values to be
// hidden.
func (s *session) cannotRedact(st *proxy.Statement, what string) proxy.Verdict {
	return s.cannotMask(st, what+" cannot be masked in place (a SELECT of the same rows is masked)")
}

// cannotMask blocks a result whose PII cannot be masked, why saying so.
func (s *session) cannotMask(st *proxy.Statement, why string) proxy.Verdict {
	r := s.enf.redacting
	reason := fmt.Sprintf("%s received PII past the limit of rule %s, and %s", s.employee(st), r.Name, why)
	if !r.Thresholded() {
		reason = fmt.Sprintf("rule %s masks %s's PII, and %s", r.Name, s.employee(st), why)
	}

	s.log.Warn("redaction_impossible", "rule", r.Name, "statement_seq", seqOf(st))
	return proxy.Verdict{Action: proxy.Block, Reason: "statement blocked: " + reason}
}
