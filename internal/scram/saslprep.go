package scram

//go:generate python3 gen_saslprep_tables.py

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// normalizePassword prepares a password the way PostgreSQL's pg_saslprep does
// before it derives the SCRAM secret (src/common/saslprep.c): ASCII passwords
// are used unchanged; otherwise SASLprep (RFC 4013) maps, applies NFKC and
// checks prohibited, unassigned and bidirectional characters. A password that
// is not valid UTF-8 or that SASLprep rejects is used as it is, as PostgreSQL
// does, so that any password the server accepted still authenticates.
//
// PRECIS OpaqueString (RFC 8265) is not a substitute: it normalises with NFC,
// not NFKC, so passwords with compatibility characters (U+FB01, full-width
// letters) would hash differently from the secret PostgreSQL stored.
func normalizePassword(password string) string {
	if isASCII(password) || !utf8.ValidString(password) {
		return password
	}
	prepared, ok := saslprep(password)
	if !ok {
		return password
	}
	return prepared
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// saslprep applies RFC 4013 to a valid UTF-8 string. It reports false where
// pg_saslprep reports SASLPREP_PROHIBITED, including for an empty result.
func saslprep(s string) (string, bool) {
	// 1) Map: non-ASCII spaces to SPACE, B.1 characters to nothing.
	mapped := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case unicode.Is(nonASCIISpace, r):
			mapped = append(mapped, ' ')
		case unicode.Is(mappedToNothing, r):
		default:
			mapped = utf8.AppendRune(mapped, r)
		}
	}
	if len(mapped) == 0 {
		return "", false
	}

	// 2) Normalize with NFKC.
	out := norm.NFKC.String(string(mapped))

	// 3) Prohibit, including code points unassigned in Unicode 3.2 (the
	// stored-strings rule of RFC 3454 section 7).
	hasRandAL := false
	for _, r := range out {
		if unicode.Is(prohibitedOutput, r) || unicode.Is(unassigned, r) {
			return "", false
		}
		if unicode.Is(randALCat, r) {
			hasRandAL = true
		}
	}

	// 4) Bidi (RFC 3454 section 6): a string with any RandALCat character has
	// no LCat character and starts and ends with a RandALCat character.
	if hasRandAL {
		for _, r := range out {
			if unicode.Is(lCat, r) {
				return "", false
			}
		}
		first, _ := utf8.DecodeRuneInString(out)
		last, _ := utf8.DecodeLastRuneInString(out)
		if !unicode.Is(randALCat, first) || !unicode.Is(randALCat, last) {
			return "", false
		}
	}
	return out, true
}
