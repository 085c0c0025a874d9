package decode

import "encoding/binary"

// Leaf says what a piece handed to a MaskFunc is.
type Leaf uint8

// Leaves.
const (
	// LeafText is a text element: a masked string is a valid value.
	LeafText Leaf = iota
	// LeafBytes is a bytea element: any bytes are a valid value.
	LeafBytes
	// LeafOther is an element of another type (json, jsonb, a type not
	// known): only NULL replaces it.
	LeafOther
)

// MaskFunc is told each piece of text of a binary value, what it is, and
// returns its replacement when it must change: repl, or NULL when repl is
// nil.
type MaskFunc func(piece []byte, l Leaf) (repl []byte, change bool)

// Rewrite returns a binary value of type oid (whose column For classified
// as Binary) with the pieces mask changes replaced, re-encoded as the same
// type with the same dimensions, fields and bounds; changed is false when
// nothing changed. ok is false when v has no structure to rewrite (an
// opaque value of an unknown type, or a piece that must change and cannot
// be NULL, a range bound): the caller then replaces the value whole.
func (d *Decoder) Rewrite(oid uint32, v []byte, mask MaskFunc) (out []byte, changed, ok bool) {
	r := rewriter{mask: mask}
	out, null, ok := r.value(leafOf(oid), v, 0)
	if !ok || null {
		return nil, false, false
	}
	return out, r.changed, true
}

type rewriter struct {
	mask    MaskFunc
	changed bool
}

// value rewrites a piece of kind l: its new bytes, or null.
func (r *rewriter) value(l leaf, v []byte, depth int) (out []byte, null, ok bool) {
	leafMask := func(kind Leaf) ([]byte, bool, bool) {
		repl, change := r.mask(v, kind)
		if !change {
			return v, false, true
		}
		r.changed = true
		return repl, repl == nil, true
	}
	switch l {
	case leafText:
		return leafMask(LeafText)
	case leafBytes:
		return leafMask(LeafBytes)
	case leafOpaque:
		return leafMask(LeafOther)
	case leafNone:
		return v, false, true
	}
	if depth >= MaxDepth {
		return leafMask(LeafOther)
	}
	if l == leafSniff {
		if l = sniff(v); l == leafBytes {
			return leafMask(LeafOther)
		}
	}
	switch l {
	case leafArray:
		a, valid := parseArray(v)
		if !valid {
			return leafMask(LeafOther)
		}
		return r.array(a, v, depth)
	case leafRecord:
		if !validRecord(v) {
			return leafMask(LeafOther)
		}
		return r.record(v, depth)
	case leafRange:
		if !validRange(v) {
			return leafMask(LeafOther)
		}
		return r.rangeValue(v, depth)
	}
	return leafMask(LeafOther)
}

func (r *rewriter) array(a array, v []byte, depth int) ([]byte, bool, bool) {
	el := leafOf(a.elem)
	if el == leafNone {
		return v, false, true
	}
	out := make([]byte, a.body, len(v))
	copy(out, v[:a.body])
	off := a.body
	hasNull := false
	for i := 0; i < a.count; i++ {
		n := int32(binary.BigEndian.Uint32(v[off:]))
		off += 4
		if n < 0 {
			out = binary.BigEndian.AppendUint32(out, 0xffffffff)
			hasNull = true
			continue
		}
		p, null, ok := r.value(el, v[off:off+int(n)], depth+1)
		off += int(n)
		if !ok {
			return nil, false, false
		}
		out = appendElement(out, p, null)
		hasNull = hasNull || null
	}
	if hasNull {
		binary.BigEndian.PutUint32(out[4:], 1)
	}
	return out, false, true
}

func (r *rewriter) record(v []byte, depth int) ([]byte, bool, bool) {
	n := int(binary.BigEndian.Uint32(v))
	out := make([]byte, 4, len(v))
	copy(out, v[:4])
	off := 4
	for i := 0; i < n; i++ {
		oid := binary.BigEndian.Uint32(v[off:])
		size := int32(binary.BigEndian.Uint32(v[off+4:]))
		off += 8
		out = binary.BigEndian.AppendUint32(out, oid)
		if size < 0 {
			out = binary.BigEndian.AppendUint32(out, 0xffffffff)
			continue
		}
		p, null, ok := r.value(leafOf(oid), v[off:off+int(size)], depth+1)
		off += int(size)
		if !ok {
			return nil, false, false
		}
		out = appendElement(out, p, null)
	}
	return out, false, true
}

// rangeValue rewrites a range's bounds; a bound cannot be NULL, so one
// that must become NULL fails the rewrite.
func (r *rewriter) rangeValue(v []byte, depth int) ([]byte, bool, bool) {
	out := append(make([]byte, 0, len(v)), v[0])
	if v[0]&rangeEmpty != 0 {
		return out, false, true
	}
	off := 1
	for _, inf := range []byte{rangeLBInf, rangeUBInf} {
		if v[0]&inf != 0 {
			continue
		}
		n := int(binary.BigEndian.Uint32(v[off:]))
		p, null, ok := r.value(leafSniff, v[off+4:off+4+n], depth+1)
		off += 4 + n
		if !ok || null {
			return nil, false, false
		}
		out = appendElement(out, p, false)
	}
	return out, false, true
}

func appendElement(out, p []byte, null bool) []byte {
	if null {
		return binary.BigEndian.AppendUint32(out, 0xffffffff)
	}
	out = binary.BigEndian.AppendUint32(out, uint32(len(p)))
	return append(out, p...)
}
