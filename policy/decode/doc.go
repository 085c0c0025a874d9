// Package decode finds the text a client will see inside a result value
// whose bytes do not show it: a bytea in hex or escape form, a text column
// holding base64 or hex (encode(...)), and binary-format arrays,
// composites and ranges, whose elements sit between length words, and the
// bytea and base64 elements of text-format arrays, composites and json. The
// guard scans what it yields with the detectors, so array_agg(email) read
// in binary counts as many emails as in text, and lo_get of a large object
// staged from a table counts the table.
//
// What flows in is one value: its type OID and format code from
// RowDescription, and its bytes from DataRow. For decides once per column
// whether a value can hide text (Kind); Decoder.Scan hands each piece of
// text to a scan function; Decoder.Rewrite re-encodes a binary value with
// the pieces a mask function replaced, same type and dimensions, for the
// redact action.
//
// Values come from the server, but a hostile user can shape them, so
// every walk is bounded: nesting stops at MaxDepth, element counts are
// checked against the bytes present before anything is trusted, a length
// that does not fit makes the value opaque (scanned as raw bytes, never an
// error), and decoding works in chunks of a fixed buffer, so no value
// makes the guard allocate more than a chunk or recurse past MaxDepth.
//
// Plain scalars (numbers, dates, times, uuids, booleans) are never
// decoded. Types the package does not know (enums, user composites and
// ranges; domains arrive as their base type) are read by their shape when
// their bytes are exactly one, and scanned as raw bytes otherwise.
package decode
