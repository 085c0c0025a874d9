package decode

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// collect scans a value and returns the pieces handed over, and the
// number of '@' in them (a stand-in for the detectors).
func collect(t *testing.T, k Kind, oid uint32, v []byte) (pieces []string, ats int) {
	t.Helper()
	var d Decoder
	n := d.Scan(k, oid, v, func(p []byte, _ bool) int {
		pieces = append(pieces, string(p))
		return bytes.Count(p, []byte("@"))
	})
	for _, p := range pieces {
		ats += strings.Count(p, "@")
	}
	if n != ats {
		t.Fatalf("Scan returned %d, the pieces hold %d", n, ats)
	}
	return pieces, ats
}

func encodeBinary(t *testing.T, oid uint32, v any) []byte {
	t.Helper()
	b, err := pgtype.NewMap().Encode(oid, pgtype.BinaryFormatCode, v, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func be32(vs ...int32) []byte {
	var out []byte
	for _, v := range vs {
		out = binary.BigEndian.AppendUint32(out, uint32(v))
	}
	return out
}

// record encodes a binary composite of (oid, value) fields; a nil value
// is NULL.
func record(fields ...any) []byte {
	out := be32(int32(len(fields) / 2))
	for i := 0; i < len(fields); i += 2 {
		out = append(out, be32(int32(fields[i].(int)))...)
		switch v := fields[i+1].(type) {
		case nil:
			out = append(out, be32(-1)...)
		case string:
			out = append(append(out, be32(int32(len(v)))...), v...)
		case []byte:
			out = append(append(out, be32(int32(len(v)))...), v...)
		}
	}
	return out
}

func TestFor(t *testing.T) {
	for _, tc := range []struct {
		oid    uint32
		format int16
		want   Kind
	}{
		{oidText, 0, Encoded},
		{oidVarchar, 1, Encoded},
		{oidBytea, 0, Bytea},
		{oidBytea, 1, None}, // raw bytes: scanned as they are
		{oidInt4, 0, None},
		{oidInt8, 1, None},
		{oidFloat8, 1, None},
		{oidTimestamptz, 1, None},
		{oidUUID, 1, None},
		{1007, 1, None}, // int4[]
		{3904, 1, None}, // int4range
		{1009, 1, Binary},
		{1009, 0, Nested},
		{1007, 0, None},
		{oidRecord, 1, Binary},
		{oidRecord, 0, Nested},
		{oidJSON, 0, Nested},
		{16385, 0, Nested},
		{16385, 1, Binary}, // a user type
		{oidJSON, 1, None},
	} {
		if got := For(tc.oid, tc.format); got != tc.want {
			t.Errorf("For(%d, %d) = %d, want %d", tc.oid, tc.format, got, tc.want)
		}
	}
}

func TestEncodedText(t *testing.T) {
	emails := "alice@example.com,bob@example.org"
	long := strings.Repeat("carol.smith@example.com,", 20)
	// encode(..., 'base64') breaks lines every 76 characters.
	wrapped := base64.StdEncoding.EncodeToString([]byte(long))
	var lines []string
	for len(wrapped) > 76 {
		lines, wrapped = append(lines, wrapped[:76]), wrapped[76:]
	}
	lines = append(lines, wrapped)
	for _, tc := range []struct {
		name string
		v    string
		ats  int
	}{
		{"base64", base64.StdEncoding.EncodeToString([]byte(emails)), 2},
		{"base64 unpadded length", base64.StdEncoding.EncodeToString([]byte("dave@example.net")), 1},
		{"base64 with line breaks", strings.Join(lines, "\n"), 20},
		{"hex", hex.EncodeToString([]byte(emails)), 2},
		{"hex upper case", strings.ToUpper(hex.EncodeToString([]byte(emails))), 2},
		{"bytea hex as text", `\x` + hex.EncodeToString([]byte(emails)), 2},
		{"plain text", "Maria Garcia lives on Oak Street", 0},
		{"short", "YUBiLmNv", 0},
		{"odd hex", hex.EncodeToString([]byte(emails))[1:], 0},
		{"padding inside", "YWxpY2=VAZXhhbXBsZS5jb20=", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ats := collect(t, Encoded, oidText, []byte(tc.v))
			if ats != tc.ats {
				t.Errorf("found %d addresses, want %d", ats, tc.ats)
			}
		})
	}
}

func TestBytea(t *testing.T) {
	for _, tc := range []struct {
		name, v, want string
	}{
		{"hex", `\x` + hex.EncodeToString([]byte("alice@example.com")), "alice@example.com"},
		{"escape", `alice@example.com\\x\000\303\251`, "alice@example.com\\x\x00\xc3\xa9"},
		{"escape, bad octal kept", `a\9b\`, `a\9b\`},
		{"empty hex", `\x`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pieces, _ := collect(t, Bytea, oidBytea, []byte(tc.v))
			if got := strings.Join(pieces, ""); got != tc.want {
				t.Errorf("decoded %q, want %q", got, tc.want)
			}
		})
	}
}

// TestChunks: a value longer than a chunk is decoded in chunks cut
// between values, so every address is seen whole, and the buffer does
// not grow.
func TestChunks(t *testing.T) {
	var b strings.Builder
	const n = 10000
	for i := range n {
		fmt.Fprintf(&b, "person.number%d@example.com,", i)
	}
	v := []byte(`\x` + hex.EncodeToString([]byte(b.String())))
	var d Decoder
	whole := 0
	got := d.Scan(Bytea, oidBytea, v, func(p []byte, decoded bool) int {
		if !decoded || len(p) > chunkSize {
			t.Fatalf("piece of %d bytes, decoded %v", len(p), decoded)
		}
		for _, f := range strings.Split(string(p), ",") {
			if strings.HasPrefix(f, "person.number") && strings.HasSuffix(f, "@example.com") {
				whole++
			}
		}
		return bytes.Count(p, []byte("@"))
	})
	if got != n || whole != n {
		t.Errorf("counted %d addresses, %d whole, want %d", got, whole, n)
	}
	if cap(d.sink.buf) != chunkSize {
		t.Errorf("buffer grew to %d", cap(d.sink.buf))
	}
}

func TestBinaryArrays(t *testing.T) {
	emails := []string{"alice@example.com", "bob@example.org", "carol@example.net"}
	for _, tc := range []struct {
		name   string
		oid    uint32
		v      []byte
		pieces []string
	}{
		{"text[]", 1009, encodeBinary(t, 1009, emails), emails},
		{"varchar[] two dimensions", 1015, encodeBinary(t, 1015, [][]string{{"a@x.com", "b@x.com"}, {"c@x.com", "d@x.com"}}),
			[]string{"a@x.com", "b@x.com", "c@x.com", "d@x.com"}},
		{"text[] with NULL", 1009, encodeBinary(t, 1009, []*string{&emails[0], nil, &emails[1]}), emails[:2]},
		{"empty", 1009, encodeBinary(t, 1009, []string{}), nil},
		{"bytea[]", 1001, encodeBinary(t, 1001, [][]byte{[]byte("alice@example.com")}), []string{"alice@example.com"}},
		{"int4[]", 1007, encodeBinary(t, 1007, []int32{1, 2}), nil},
		{"array of a user type read by shape", 16400, encodeBinary(t, 1009, emails), emails},
		{"text[] of base64", 1009, encodeBinary(t, 1009, []string{base64.StdEncoding.EncodeToString([]byte(emails[0]))}),
			[]string{base64.StdEncoding.EncodeToString([]byte(emails[0])), emails[0]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := For(tc.oid, 1)
			pieces, _ := collect(t, k, tc.oid, tc.v)
			if !slices.Equal(pieces, tc.pieces) {
				t.Errorf("pieces %q, want %q", pieces, tc.pieces)
			}
		})
	}
}

func TestBinaryComposites(t *testing.T) {
	inner := record(oidText, "Alice Smith", oidVarchar, "alice@example.com", oidInt4, be32(7), oidText, nil)
	for _, tc := range []struct {
		name   string
		oid    uint32
		v      []byte
		pieces []string
	}{
		{"record", oidRecord, inner, []string{"Alice Smith", "alice@example.com"}},
		{"table row type", 16390, inner, []string{"Alice Smith", "alice@example.com"}},
		{"record in record", oidRecord, record(oidRecord, inner, oidBytea, "bob@example.org"),
			[]string{"Alice Smith", "alice@example.com", "bob@example.org"}},
		{"record[]", 2287, encodeArray(oidRecord, [][]byte{inner, inner}),
			[]string{"Alice Smith", "alice@example.com", "Alice Smith", "alice@example.com"}},
		{"range of a user type", 16500, append(append([]byte{0x02 | rangeUBInf}, be32(7)...), "a@x.com"...), []string{"a@x.com"}},
		{"enum label", 16600, []byte("alice@example.com"), []string{"alice@example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pieces, _ := collect(t, For(tc.oid, 1), tc.oid, tc.v)
			if !slices.Equal(pieces, tc.pieces) {
				t.Errorf("pieces %q, want %q", pieces, tc.pieces)
			}
		})
	}
}

// encodeArray encodes a one-dimensional binary array of elem; a nil
// element is NULL.
func encodeArray(elem uint32, elems [][]byte) []byte {
	hasNull := int32(0)
	for _, e := range elems {
		if e == nil {
			hasNull = 1
		}
	}
	out := be32(1, hasNull, int32(elem), int32(len(elems)), 1)
	for _, e := range elems {
		out = appendElement(out, e, e == nil)
	}
	return out
}

// TestHostile: values no server sends, shaped to make a decoder allocate
// or recurse without bound, are scanned as raw bytes, whole, once.
func TestHostile(t *testing.T) {
	valid := encodeBinary(t, 1009, []string{"alice@example.com", "bob@example.org"})
	deep := []byte("alice@example.com")
	for range 1000 {
		deep = record(oidRecord, deep)
	}
	deepArray := encodeBinary(t, 1009, []string{"alice@example.com"})
	for range 1000 {
		deepArray = encodeArray(2287, [][]byte{deepArray})
	}
	// Counted: ".com", which no length word holds.
	count := func(p []byte) int { return bytes.Count(p, []byte(".com")) }
	cases := []struct {
		name string
		oid  uint32
		v    []byte
		ats  int
	}{
		{"huge dimensions", 1009, append(be32(2, 0, oidText, 1<<30, 1, 1<<30, 1), []byte("\x00\x00\x00\x07a@x.com")...), 1},
		{"dimensions overflowing int", 1009, append(be32(6, 0, oidText, 0x7fffffff, 1, 0x7fffffff, 1, 0x7fffffff, 1, 0x7fffffff, 1, 0x7fffffff, 1, 0x7fffffff, 1),
			[]byte("a@x.com")...), 1},
		{"negative dimension", 1009, be32(1, 0, oidText, -1, 1), 0},
		{"too many dimensions", 1009, be32(7, 0, oidText, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 0},
		{"negative ndim", 1009, be32(-1, 0, oidText), 0},
		{"negative length", 1009, append(be32(1, 0, oidText, 1, 1, -2), "a@x.com"...), 1},
		{"length past the end", 1009, append(be32(1, 0, oidText, 1, 1, 1000), "a@x.com"...), 1},
		{"trailing bytes", 1009, append(slices.Clone(valid), "c@x.com"...), 2},
		{"record with negative count", oidRecord, append(be32(-5), "a@x.com"...), 1},
		{"record with huge count", oidRecord, append(be32(1<<30), "a@x.com"...), 1},
		{"deeply nested records", oidRecord, deep, 1},
		{"deeply nested arrays", 2287, deepArray, 1},
	}
	for i := 4; i < len(valid); i += 3 {
		cases = append(cases, struct {
			name string
			oid  uint32
			v    []byte
			ats  int
		}{fmt.Sprintf("truncated at %d", i), 1009, valid[:i], count(valid[:i])})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var d Decoder
			calls, seen := 0, 0
			n := d.Scan(For(tc.oid, 1), tc.oid, tc.v, func(p []byte, _ bool) int {
				calls++
				seen += len(p)
				return count(p)
			})
			if n != tc.ats {
				t.Errorf("found %d, want %d", n, tc.ats)
			}
			if seen > len(tc.v) {
				t.Errorf("scanned %d bytes of a %d-byte value", seen, len(tc.v))
			}
			out, _, ok := d.Rewrite(tc.oid, tc.v, maskAt)
			switch {
			case strings.HasPrefix(tc.name, "deeply"):
				// Valid, but past MaxDepth: the deepest value is NULL.
				if !ok || bytes.Contains(out, []byte("@")) {
					t.Errorf("rewrite of a deep value: ok %v, %q", ok, out)
				}
			case ok && tc.ats > 0 && !strings.HasPrefix(tc.name, "trailing"):
				// A rewrite of a malformed value would re-encode a lie.
				t.Errorf("rewrote a malformed value")
			}
		})
	}
}

// maskAt masks text holding '@' as "***", and anything else holding one
// as NULL.
func maskAt(p []byte, l Leaf) ([]byte, bool) {
	if !bytes.Contains(p, []byte("@")) {
		return nil, false
	}
	if l == LeafText || l == LeafBytes {
		return []byte("***"), true
	}
	return nil, true
}

func TestRewriteArray(t *testing.T) {
	m := pgtype.NewMap()
	in := [][]string{{"alice@example.com", "Alice"}, {"bob@example.org", "Bob"}}
	v := encodeBinary(t, 1009, in)
	var d Decoder
	out, changed, ok := d.Rewrite(1009, v, maskAt)
	if !ok || !changed {
		t.Fatalf("rewrite: changed %v ok %v", changed, ok)
	}
	var got [][]string
	if err := m.Scan(1009, pgtype.BinaryFormatCode, out, &got); err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"***", "Alice"}, {"***", "Bob"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// The dimensions and lower bounds are kept.
	if !bytes.Equal(out[:12+16], v[:12+16]) {
		t.Errorf("header changed: % x, was % x", out[:28], v[:28])
	}
	// Unchanged: nothing reported.
	if _, changed, ok := d.Rewrite(1009, encodeBinary(t, 1009, []string{"x"}), maskAt); !ok || changed {
		t.Errorf("no PII: changed %v ok %v", changed, ok)
	}
}

func TestRewriteToNull(t *testing.T) {
	// An element of an unknown type cannot be masked: it becomes NULL, and
	// the array says it has NULLs.
	v := encodeArray(16700, [][]byte{[]byte("alice@example.com"), []byte("x")})
	var d Decoder
	out, changed, ok := d.Rewrite(1009, v, maskAt)
	if !ok || !changed {
		t.Fatalf("changed %v ok %v", changed, ok)
	}
	want := encodeArray(16700, [][]byte{nil, []byte("x")})
	if !bytes.Equal(out, want) {
		t.Errorf("got % x, want % x", out, want)
	}
}

func TestRewriteRecord(t *testing.T) {
	v := record(oidText, "Alice Smith", oidVarchar, "alice@example.com", oidBytea, "bob@example.org", oidInt4, be32(7), oidText, nil)
	var d Decoder
	out, changed, ok := d.Rewrite(oidRecord, v, maskAt)
	if !ok || !changed {
		t.Fatalf("changed %v ok %v", changed, ok)
	}
	want := record(oidText, "Alice Smith", oidVarchar, "***", oidBytea, "***", oidInt4, be32(7), oidText, nil)
	if !bytes.Equal(out, want) {
		t.Errorf("got % x, want % x", out, want)
	}
	// An opaque value of an unknown type has nothing to rewrite.
	if _, _, ok := d.Rewrite(16600, []byte("alice@example.com"), maskAt); ok {
		t.Error("rewrote an opaque value")
	}
}

// TestNested: the hex and base64 elements of text-format arrays,
// composites and json values are decoded.
func TestNested(t *testing.T) {
	a, b := hex.EncodeToString([]byte("alice@example.com")), hex.EncodeToString([]byte("bob@example.org"))
	b64 := base64.StdEncoding.EncodeToString([]byte("carol@example.net"))
	for _, tc := range []struct {
		name, v string
		ats     int
	}{
		{"bytea[]", `{"\\x` + a + `","\\x` + b + `"}`, 2},
		{"record with bytea", `(1,"Alice","\\x` + a + `")`, 1},
		{"json with bytea", `{"f1":1,"f2":"\\x` + a + `"}`, 1},
		{"text[] of base64 and hex", `{` + b64 + `,` + a + `,plain}`, 2},
		{"nothing encoded", `{"Alice Smith",Bob,"x y z"}`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ats := collect(t, Nested, oidRecord, []byte(tc.v)); ats != tc.ats {
				t.Errorf("found %d, want %d", ats, tc.ats)
			}
		})
	}
}

// TestBinaryNotDecoded: an encoded value whose first bytes are not text (a
// hash, a key, an image) is not decoded further nor scanned; text, in any
// script, is.
func TestBinaryNotDecoded(t *testing.T) {
	sum := md5.Sum([]byte("customer42@example.com"))
	digest := hex.EncodeToString(sum[:]) + hex.EncodeToString(sum[:]) + hex.EncodeToString(sum[:])
	var d Decoder
	calls := 0
	scan := func(piece []byte, _ bool) int { calls++; return 0 }
	for _, v := range []string{digest, base64.StdEncoding.EncodeToString(append(sum[:], sum[:]...)),
		`\x` + hex.EncodeToString(append(sum[:], sum[:]...)) + hex.EncodeToString([]byte("eve@example.com"))} {
		calls = 0
		d.Scan(Encoded, oidText, []byte(v), scan)
		if calls != 0 {
			t.Errorf("%.20s...: binary bytes were scanned", v)
		}
	}
	for _, text := range []string{"Zoë Ångström <zoe@example.com>", "日本語のメール taro@example.jp, hanako@example.jp"} {
		if _, ats := collect(t, Encoded, oidText, []byte(hex.EncodeToString([]byte(text)))); ats != strings.Count(text, "@") {
			t.Errorf("%q in hex: found %d addresses", text, ats)
		}
	}
}
