package decode

import (
	"bytes"
	"testing"
)

// FuzzDecode: no value makes Scan or Rewrite panic, scan more bytes than
// the value holds (twice: as sent and as decoded), or rewrite into a value
// that still holds what was masked.
func FuzzDecode(f *testing.F) {
	f.Add(uint32(1009), []byte("\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x19\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x07a@x.com"))
	f.Add(uint32(2249), record(oidText, "a@x.com", oidRecord, record(oidVarchar, "b@y.org")))
	f.Add(uint32(16400), []byte{0x12, 0, 0, 0, 3, 'a', '@', 'b'})
	f.Add(uint32(25), []byte("YWxpY2VAZXhhbXBsZS5jb20="))
	f.Fuzz(func(t *testing.T, oid uint32, v []byte) {
		var d Decoder
		for _, format := range []int16{0, 1} {
			k := For(oid, format)
			raw, decoded := 0, 0
			d.Scan(k, oid, v, func(p []byte, dec bool) int {
				if dec {
					decoded += len(p)
				} else {
					raw += len(p)
				}
				return bytes.Count(p, []byte("@"))
			})
			if raw > len(v) || decoded > len(v) {
				t.Fatalf("kind %d: scanned %d raw and %d decoded bytes of %d", k, raw, decoded, len(v))
			}
		}
		decoded := d.Scan(Encoded, oidText, v, func(p []byte, _ bool) int { return 1 })
		if decoded > 0 && !MayBeEncoded(v) {
			t.Fatalf("%q decodes, but MayBeEncoded says it cannot", v)
		}
		if For(oid, 1) != Binary {
			return
		}
		out, _, ok := d.Rewrite(oid, v, maskAt)
		if !ok {
			return
		}
		if _, changed, ok := d.Rewrite(oid, out, maskAt); !ok || changed {
			t.Fatalf("rewrite of a rewritten value: changed %v ok %v\nin  % x\nout % x", changed, ok, v, out)
		}
	})
}
