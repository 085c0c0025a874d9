package decode

import "encoding/binary"

// MaxDepth bounds how deep arrays, composites and ranges nested in one
// another are walked; deeper values are scanned as raw bytes.
const MaxDepth = 8

// maxDims is PostgreSQL's MAXDIM: no array has more dimensions.
const maxDims = 6

// Range flags (rangetypes.h).
const (
	rangeEmpty = 0x01
	rangeLBInf = 0x08
	rangeUBInf = 0x10
	rangeKnown = 0x1f
)

// ScanFunc is told each piece of text a value holds; decoded is set when
// the piece was decoded from hex, base64 or escapes (its bytes are not in
// the value as sent). It returns the PII values it found. A piece is
// valid only during the call.
type ScanFunc func(piece []byte, decoded bool) int

// Decoder decodes values, reusing one chunk buffer; it is not safe for
// concurrent use. The zero value is ready to use.
type Decoder struct {
	sink sink
}

// Scan hands scan each piece of text v, a value of type oid whose column
// For classified as k, holds as a client decoding it would see it, and
// returns the sum of what scan returned. For Encoded and Nested the value
// itself is not handed over (the caller scanned it), only what it decodes
// to.
func (d *Decoder) Scan(k Kind, oid uint32, v []byte, scan ScanFunc) int {
	switch k {
	case Encoded:
		return d.unwrap(v, scan)
	case Bytea:
		return d.bytea(v, scan)
	case Binary:
		return d.walk(leafOf(oid), v, scan, 0)
	case Nested:
		return d.tokens(v, scan)
	}
	return 0
}

// walk scans a binary value of kind l.
func (d *Decoder) walk(l leaf, v []byte, scan ScanFunc, depth int) int {
	switch l {
	case leafText:
		if n := scan(v, false); n > 0 {
			return n
		}
		return d.unwrap(v, scan)
	case leafBytes, leafOpaque:
		return scan(v, false)
	case leafNone:
		return 0
	}
	if depth >= MaxDepth {
		return scan(v, false)
	}
	if l == leafSniff {
		l = sniff(v)
	}
	n := 0
	switch l {
	case leafArray:
		a, ok := parseArray(v)
		if !ok {
			break
		}
		el := leafOf(a.elem)
		if el == leafNone {
			return 0
		}
		a.each(v, func(p []byte) { n += d.walk(el, p, scan, depth+1) })
		return n
	case leafRecord:
		if !validRecord(v) {
			break
		}
		eachField(v, func(oid uint32, p []byte) { n += d.walk(leafOf(oid), p, scan, depth+1) })
		return n
	case leafRange:
		if !validRange(v) {
			break
		}
		eachBound(v, func(p []byte) { n += d.walk(leafSniff, p, scan, depth+1) })
		return n
	}
	return scan(v, false)
}

// sniff names the shape of a value of an unknown type: an array, a
// composite or a range when its bytes are exactly one, else opaque bytes.
func sniff(v []byte) leaf {
	if _, ok := parseArray(v); ok {
		return leafArray
	}
	if validRecord(v) {
		return leafRecord
	}
	if validRange(v) {
		return leafRange
	}
	return leafBytes
}

// array is the header of a binary array.
// https://github.com/postgres/postgres/blob/master/src/backend/utils/adt/arrayfuncs.c (array_send)
type array struct {
	elem  uint32
	body  int // offset of the first element
	count int
}

// parseArray reads a binary array's header and checks that its elements
// fill the value exactly: ndim, has-null flag, element type, ndim pairs of
// (size, lower bound), then each element as a length (-1: NULL) and bytes.
func parseArray(v []byte) (array, bool) {
	if len(v) < 12 {
		return array{}, false
	}
	ndim := int32(binary.BigEndian.Uint32(v))
	flags := binary.BigEndian.Uint32(v[4:])
	a := array{elem: binary.BigEndian.Uint32(v[8:]), body: 12}
	if ndim < 0 || ndim > maxDims || flags > 1 {
		return array{}, false
	}
	if len(v) < 12+8*int(ndim) {
		return array{}, false
	}
	// Each element takes at least its 4-byte length: a count past that is
	// a lie, caught before it is multiplied further.
	limit := (len(v) - 12 - 8*int(ndim)) / 4
	a.count = 0
	if ndim > 0 {
		a.count = 1
	}
	for i := 0; i < int(ndim); i++ {
		dim := int32(binary.BigEndian.Uint32(v[a.body:]))
		a.body += 8
		if dim < 0 || int(dim) > limit || dim > 0 && a.count > limit/int(dim) {
			return array{}, false
		}
		a.count *= int(dim)
	}
	off := a.body
	for i := 0; i < a.count; i++ {
		next, ok := element(v, off)
		if !ok {
			return array{}, false
		}
		off = next
	}
	return a, off == len(v)
}

// element returns the offset after the length-prefixed element at off.
func element(v []byte, off int) (int, bool) {
	if off+4 > len(v) {
		return 0, false
	}
	n := int32(binary.BigEndian.Uint32(v[off:]))
	off += 4
	if n == -1 {
		return off, true
	}
	if n < 0 || int(n) > len(v)-off {
		return 0, false
	}
	return off + int(n), true
}

// each calls f with each non-NULL element of a parsed array.
func (a array) each(v []byte, f func(p []byte)) {
	off := a.body
	for i := 0; i < a.count; i++ {
		n := int32(binary.BigEndian.Uint32(v[off:]))
		off += 4
		if n >= 0 {
			f(v[off : off+int(n)])
			off += int(n)
		}
	}
}

// validRecord checks that a binary composite's fields fill it exactly: a
// field count, then each field as type OID, length (-1: NULL) and bytes.
// https://github.com/postgres/postgres/blob/master/src/backend/utils/adt/rowtypes.c (record_send)
func validRecord(v []byte) bool {
	if len(v) < 4 {
		return false
	}
	n := int32(binary.BigEndian.Uint32(v))
	if n < 0 || int(n) > (len(v)-4)/8 {
		return false
	}
	off := 4
	for i := 0; i < int(n); i++ {
		next, ok := element(v, off+4)
		if !ok {
			return false
		}
		off = next
	}
	return off == len(v)
}

// eachField calls f with the type and bytes of each non-NULL field of a
// valid record.
func eachField(v []byte, f func(oid uint32, p []byte)) {
	n := int(binary.BigEndian.Uint32(v))
	off := 4
	for i := 0; i < n; i++ {
		oid := binary.BigEndian.Uint32(v[off:])
		size := int32(binary.BigEndian.Uint32(v[off+4:]))
		off += 8
		if size >= 0 {
			f(oid, v[off:off+int(size)])
			off += int(size)
		}
	}
}

// validRange checks that a binary range's bounds fill it exactly: a flags
// byte, then the lower and upper bounds, each unless empty or infinite,
// as a length and bytes.
// https://github.com/postgres/postgres/blob/master/src/backend/utils/adt/rangetypes.c (range_send)
func validRange(v []byte) bool {
	if len(v) < 1 || v[0]&^rangeKnown != 0 {
		return false
	}
	flags := v[0]
	if flags&rangeEmpty != 0 {
		return len(v) == 1
	}
	off := 1
	for _, inf := range []byte{rangeLBInf, rangeUBInf} {
		if flags&inf != 0 {
			continue
		}
		next, ok := element(v, off)
		if !ok || next == off+4 && int32(binary.BigEndian.Uint32(v[off:])) == -1 {
			return false
		}
		off = next
	}
	return off == len(v) && off > 1
}

// eachBound calls f with the bytes of each finite bound of a valid range.
func eachBound(v []byte, f func(p []byte)) {
	flags := v[0]
	if flags&rangeEmpty != 0 {
		return
	}
	off := 1
	for _, inf := range []byte{rangeLBInf, rangeUBInf} {
		if flags&inf != 0 {
			continue
		}
		n := int(binary.BigEndian.Uint32(v[off:]))
		f(v[off+4 : off+4+n])
		off += 4 + n
	}
}
