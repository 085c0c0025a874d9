package decode

// Kind says how the values of a column can hide text.
type Kind uint8

// Kinds.
const (
	// None: the value's bytes are all there is to scan, or it holds no
	// text (numbers, dates, arrays of them).
	None Kind = iota
	// Encoded is a text value: scanned as it is, and, when it is all
	// base64 or hex (encode(...)), decoded and scanned again.
	Encoded
	// Bytea is a bytea in text format: hex (\x...) or escape.
	Bytea
	// Binary is a binary-format array, composite, range or multirange, or
	// a value of a type this package does not know.
	Binary
	// Nested is a text-format array, composite or json value: scanned as
	// it is, and its hex (\x...) and base64 elements decoded too.
	Nested
)

// Type OIDs (pg_type.dat).
const (
	oidBytea       = 17
	oidName        = 19
	oidInt8        = 20
	oidInt4        = 23
	oidText        = 25
	oidJSON        = 114
	oidXML         = 142
	oidFloat8      = 701
	oidUnknown     = 705
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidTimestamptz = 1184
	oidRecord      = 2249
	oidCString     = 2275
	oidUUID        = 2950
	oidJSONB       = 3802
	oidTSVector    = 3614
	oidTSQuery     = 3615
	oidJSONPath    = 4072

	// FirstUserOID is the first OID of an object created after initdb
	// (FirstNormalObjectId): types from here on are user types.
	FirstUserOID = 16384
)

// leaf is what a piece of a binary value is, by its type.
type leaf uint8

const (
	leafNone   leaf = iota // no text: skipped
	leafText               // text bytes: scanned, and decoded if encoded
	leafBytes              // bytea: scanned; any bytes replace it
	leafOpaque             // json, jsonb, xml, tsvector: scanned; only NULL replaces it
	leafArray              // a binary array
	leafRecord             // a binary composite
	leafRange              // a binary range of an unknown element type
	leafMulti              // a binary multirange of an unknown element type
	leafSniff              // an unknown type: read by its shape, else scanned raw
)

// leafOf classifies a type OID as an element of a binary value.
func leafOf(oid uint32) leaf {
	switch oid {
	case oidText, oidVarchar, oidBPChar, oidName, oidUnknown, oidCString:
		return leafText
	case oidBytea:
		return leafBytes
	case oidJSON, oidXML, oidJSONB, oidJSONPath, oidTSVector, oidTSQuery:
		return leafOpaque
	case oidRecord:
		return leafRecord
	}
	if textArrays[oid] {
		return leafArray
	}
	if oid >= FirstUserOID {
		return leafSniff
	}
	// Every other built-in type: numbers, times, geometry, network
	// addresses, bit strings, arrays and ranges of them, internal types.
	return leafNone
}

// textArrays are the built-in array types whose elements may hold text.
var textArrays = map[uint32]bool{
	1009: true, // text[]
	1015: true, // varchar[]
	1014: true, // bpchar[]
	1003: true, // name[]
	1001: true, // bytea[]
	199:  true, // json[]
	3807: true, // jsonb[]
	143:  true, // xml[]
	2287: true, // record[]
	1263: true, // cstring[]
	3643: true, // tsvector[]
	3645: true, // tsquery[]
	4073: true, // jsonpath[]
}

// For returns how a column's values can hide text, from its type OID and
// format code (0 text, 1 binary) in RowDescription. A text-format
// composite or array shows its elements' text and is scanned as it is.
func For(oid uint32, format int16) Kind {
	if format == 0 {
		switch oid {
		case oidBytea:
			return Bytea
		case oidText, oidVarchar, oidBPChar, oidName, oidUnknown, 0:
			return Encoded
		case oidRecord, oidJSON, oidJSONB:
			return Nested
		}
		if textArrays[oid] || oid >= FirstUserOID {
			return Nested
		}
		return None
	}
	switch leafOf(oid) {
	case leafText:
		return Encoded
	case leafArray, leafRecord, leafSniff:
		return Binary
	}
	return None
}

// Raw reports whether a binary-format value of the type is bytes the
// detectors can read as they are: text types, bytea, jsonb, tsvector.
func Raw(oid uint32) bool {
	l := leafOf(oid)
	return l == leafText || l == leafBytes || l == leafOpaque
}
