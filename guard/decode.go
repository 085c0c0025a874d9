package guard

import (
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/decode"
	"github.com/pgwarden/pgwarden/policy/detect"
	"github.com/pgwarden/pgwarden/policy/pii"
)

// byteaOID is the type of lo_get, loread and decode() results.
const byteaOID = 17

// valueDecoder scans and masks the text that values hide from the
// detectors: hex and escape bytea, base64 and hex text, binary arrays,
// composites and ranges (package decode). One per session, used by the
// goroutine reading results; its scan function is bound once, so a row
// costs no allocation.
type valueDecoder struct {
	d decode.Decoder
	// The state of the value being scanned, for scanPiece.
	set      *detect.Set
	canaries *canarySet
	counts   *detect.Counts
	// short: the value is too short for canarySet.count to look inside
	// it, so its pieces are looked at one by one.
	short   bool
	whole   int
	hits    int
	scanFn  decode.ScanFunc
	maskFn  decode.MaskFunc
	scratch detect.Counts
	// masking is the policy's mask formats while a value is rewritten.
	masking policy.Masking
}

// scan counts the PII values (into counts) and canaries (into *canaries)
// that v, a value of column c, holds once decoded.
func (vd *valueDecoder) scan(pol *compiled, c *colPlan, v []byte, counts *detect.Counts, canaries *int) int {
	if vd.scanFn == nil {
		vd.scanFn = vd.scanPiece
	}
	vd.set, vd.canaries, vd.counts = pol.detectors, pol.canaries, counts
	vd.short, vd.whole, vd.hits = len(v) < packedLen, len(v), 0
	n := vd.d.Scan(c.dec, c.oid, v, vd.scanFn)
	*canaries += vd.hits
	vd.counts = nil
	return n
}

func (vd *valueDecoder) scanPiece(p []byte, decoded bool) int {
	if vd.canaries != nil && (decoded || vd.short && len(p) < vd.whole) {
		// Canaries in the bytes as sent were counted in the whole value.
		vd.hits += vd.canaries.count(p)
	}
	return vd.set.Scan(p, vd.counts)
}

// masked returns what replaces value v of column c in a redacted row:
// a binary value re-encoded with its PII pieces masked, a bytea of "***",
// a masked string, or NULL (nil) when nothing else is a valid value.
func (vd *valueDecoder) masked(pol *compiled, c colPlan, v []byte) []byte {
	switch {
	case c.dec == decode.Binary && pol.detectors != nil:
		if vd.maskFn == nil {
			vd.maskFn = vd.maskPiece
		}
		vd.set = pol.detectors
		vd.masking = pol.p.Masking()
		out, changed, ok := vd.d.Rewrite(c.oid, v, vd.maskFn)
		if !ok || !changed {
			return nil
		}
		return out
	case c.oid == byteaOID && c.dec == decode.Bytea:
		return []byte(`\x2a2a2a`)
	case c.oid == byteaOID:
		return []byte("***")
	case c.textual:
		return maskWith(v, vd.formatOf(pol, c, v))
	}
	return nil
}

// formatOf is the policy's mask format for value v of column c: its
// declared category's, else that of the one PII category the detectors
// find in it.
func (vd *valueDecoder) formatOf(pol *compiled, c colPlan, v []byte) policy.MaskFormat {
	m := pol.p.Masking()
	if c.declared != "" {
		return m.Format(c.declared)
	}
	vd.scratch.Reset()
	if pol.detectors != nil {
		pol.detectors.Scan(v, &vd.scratch)
	}
	return vd.scratchFormat(m)
}

// scratchFormat is m's format for what vd.scratch counted: its one PII
// category's, else m's default (by shape when m sets none).
func (vd *valueDecoder) scratchFormat(m policy.Masking) policy.MaskFormat {
	var cat pii.Category
	kinds := 0
	vd.scratch.Each(func(c pii.Category, n int) {
		if n > 0 {
			cat, kinds = c, kinds+1
		}
	})
	if kinds != 1 {
		cat = ""
	}
	return m.Format(cat)
}

// maskPiece masks an element of a binary value that holds PII.
func (vd *valueDecoder) maskPiece(p []byte, l decode.Leaf) ([]byte, bool) {
	vd.scratch.Reset()
	n := vd.set.Scan(p, &vd.scratch)
	if n == 0 && l == decode.LeafText {
		n = vd.d.Scan(decode.Encoded, 0, p, func(q []byte, _ bool) int { return vd.set.Scan(q, &vd.scratch) })
	}
	if n == 0 {
		return nil, false
	}
	switch l {
	case decode.LeafText:
		if f := vd.scratchFormat(vd.masking); f != policy.MaskNull {
			return maskWith(p, f), true
		}
		return []byte("***"), true
	case decode.LeafBytes:
		return []byte("***"), true
	}
	return nil, true
}
