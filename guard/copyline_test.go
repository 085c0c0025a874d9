package guard

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestCopyFieldRoundTrip: a value written by appendValue is read back the
// same by splitLine and value, in text and CSV with their options, NULL
// kept apart from every string.
func TestCopyFieldRoundTrip(t *testing.T) {
	opts := []copyOptions{
		{delim: '\t', null: []byte(`\N`)},
		{delim: '|', null: []byte("nil")},
		{csv: true, delim: ',', null: []byte{}, quote: '"', escape: '"'},
		{csv: true, delim: ';', null: []byte("NULL"), quote: '\'', escape: '\\'},
		{csv: true, delim: ',', null: []byte{}, quote: '"', escape: '"', forceQuote: true},
	}
	alphabet := []byte("ab,;|'\"\\\t\n\r\bNUL \x01é")
	r := rand.New(rand.NewPCG(1, 2))
	for _, o := range opts {
		c := &copyOut{opts: o}
		for range 2000 {
			vals := make([][]byte, 1+r.IntN(4))
			for i := range vals {
				if r.IntN(6) == 0 {
					continue // NULL
				}
				v := []byte{}
				for range r.IntN(6) {
					v = append(v, alphabet[r.IntN(len(alphabet))])
				}
				vals[i] = v
			}
			var line []byte
			for i, v := range vals {
				if i > 0 {
					line = append(line, o.delim)
				}
				line = c.appendValue(line, v, true)
			}
			if !o.csv && bytes.ContainsAny(line, "\n\r") {
				t.Fatalf("%+v: %q written with a raw newline", o, line)
			}
			fields := c.splitLine(nil, line)
			if len(fields) != len(vals) {
				t.Fatalf("%+v: %q read as %d fields, want %d", o, line, len(fields), len(vals))
			}
			for i, f := range fields {
				v, null := c.value(f)
				if null != (vals[i] == nil) || !bytes.Equal(v, vals[i]) {
					t.Fatalf("%+v: field %d of %q read as %q (null %v), want %q", o, i, line, v, null, vals[i])
				}
			}
			if end, next := c.lineEnd(append(line, '\n')); end != len(line) || next != len(line)+1 {
				t.Fatalf("%+v: %q ends at %d, want %d", o, line, end, len(line))
			}
		}
	}
}
