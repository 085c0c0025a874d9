// Package detect recognises personal data inside the bytes of a field, so
// pgwarden counts PII that reaches a client even when no declared PII
// column carries it: lower(email), email || ”, casts, string_agg,
// array_agg, json_agg, row_to_json, query_to_xml, COPY output, notices.
//
// What flows in is one field in text form (a DataRow value, a COPY line, a
// notice message); what flows out is a count per Category added to a
// Counts. Every value counts: a field packing 500 emails adds 500, which is
// how one DataRow holding a whole table is judged before it is forwarded
// (threat classes P and X in THREATS.md).
//
// # Detectors
//
// The built-in detectors are hand-written scanners, not regular
// expressions. Scan makes one pass over the field:
//
//   - bytes.IndexByte finds each '@'; an email is expanded left over
//     local-part characters and right over a dotted domain whose last label
//     is 2+ letters.
//   - between emails, everything but the trigger bytes 0-9 + ( and ':' is
//     skipped eight bytes at a time (one uint64 test per eight bytes). At
//     a digit that starts a word the candidate is tried against the shapes
//     from most to least specific: SSN (ddd-dd-dddd), IPv4, card, phone,
//     each only when the digit run and the byte after it can begin it. A
//     digit right after two upper-case letters may start an IBAN; a ':'
//     may sit in an IPv6 address.
//
// A field without '@' and digits therefore costs a few operations per
// eight bytes, and Scan never allocates for the built-ins. Each byte range
// counts once, in its most specific category; a Set that leaves a built-in
// out still runs its scanner so that, say, a card number is never counted
// as a phone.
//
// Custom detectors are RE2 patterns from the policy. They run after the
// built-ins over the whole field and count non-overlapping, non-empty
// matches that do not overlap a value a built-in detector counted.
//
// # Decisions
//
//   - National id is the US SSN in its dashed form only. Nine bare digits
//     are not counted, even as a whole field: they are as often order ids,
//     ZIP+4 codes or account numbers, and a declared ssn column is counted
//     by declaration anyway.
//   - Phone numbers need a '+' or a separator: E.164 (+, 8-15 digits, any
//     grouping), North American 3-3-4 and 1-3-3-4 (with an area code in
//     parentheses allowed), and European national numbers with a trunk 0
//     (10-11 digits in groups of 2-8). A bare digit run is an id, not a
//     phone.
//   - Cards are 13-19 digits with a known issuer prefix and length and a
//     valid Luhn digit, bare or in the printed groupings (4-4-4-4, 4-6-5,
//     4-6-4) with one kind of separator.
//   - IBANs use upper-case letters, bare or in groups of four, with the
//     registry length for the country and a mod-97 remainder of 1.
//   - IPv4 is exactly four octets 0-255 without leading zeros; IPv6 needs
//     two written groups or "::" and one, which keeps casts like
//     'x'::text out.
//
// # Known misses
//
// Values that are encoded (base64, hex, md5, percent or JSON \u escapes),
// reversed, split across fields, or glued to a neighbouring value without
// any separator are not recognised (string_agg(email, ”) counts only the
// first address). Formats outside those above (e.g. phone numbers written
// with letters, national ids other than the SSN unless a custom pattern
// adds them) are missed. Likely false positives: 13-19 digit ids with a
// card prefix that happen to pass Luhn (one in ten), 10-digit numbers
// written 3-3-4 or with a leading 0 and spaces, dotted quads that are not
// addresses (e.g. some four-part version numbers such as 1.2.3.4).
package detect
