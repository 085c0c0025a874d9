package detect

// matchEmail tries to read an email address around the '@' at b[at],
// expanding left no further than lo. It returns the address's byte range.
//
// The local part is a run of letters, digits and ._%+- (leading dots
// trimmed); the domain is two or more non-empty labels of letters, digits
// and '-', the last of which (the TLD) is 2-63 letters. A trailing '.' or
// '-' is taken as punctuation; when the last label starts with letters and
// goes on with digits or '-', the address ends after those letters. Quoted local parts and IP-literal domains
// are not recognised.
func matchEmail(b []byte, lo, at int) (start, end int, ok bool) {
	start = at
	for start > lo && class[b[start-1]]&clLocal != 0 {
		start--
	}
	for start < at && b[start] == '.' {
		start++
	}
	if start == at {
		return 0, 0, false
	}
	end = at + 1
	for end < len(b) && class[b[end]]&clDomain != 0 {
		end++
	}
	for end > at+1 && (b[end-1] == '.' || b[end-1] == '-') {
		end--
	}
	// Walk the labels: none empty, at least two, the last alphabetic.
	labels, labelStart, tldStart := 0, at+1, at+1
	letters, tldLetters := true, true
	for k := at + 1; k <= end; k++ {
		if k == end || b[k] == '.' {
			if k == labelStart {
				return 0, 0, false
			}
			labels++
			tldStart, labelStart = labelStart, k+1
			tldLetters, letters = letters, true
			continue
		}
		if !isLetter(b[k]) {
			letters = false
		}
	}
	if !tldLetters && labels >= 2 {
		// A value glued to the address ("ann@x.com415-555-0101", from a
		// concatenation): end the address after the TLD's letters.
		k := tldStart
		for k < end && isLetter(b[k]) {
			k++
		}
		end, tldLetters = k, true
	}
	tld := end - tldStart
	if labels < 2 || !tldLetters || tld < 2 || tld > 63 {
		return 0, 0, false
	}
	return start, end, true
}
