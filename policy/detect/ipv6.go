package detect

// tryIPv6 looks for an IPv6 address around the ':' at b[colon], beginning
// at most one hex group before it and no earlier than lo, and returns its
// range.
func tryIPv6(b []byte, lo, colon int) (start, end int, ok bool) {
	if colon+1 >= len(b) {
		return 0, 0, false
	}
	start = colon
	for start > lo && colon-start < 4 && isHex(b[start-1]) {
		start--
	}
	if start == colon && b[colon+1] != ':' {
		return 0, 0, false
	}
	// The address must begin at a boundary, not inside a word, a longer
	// colon-separated run or a dotted number.
	if start > lo {
		if p := b[start-1]; isWord(p) || p == ':' || p == '.' {
			return 0, 0, false
		}
	}
	end, ok = matchIPv6(b, start)
	return start, end, ok
}

// matchIPv6 reads an IPv6 address at b[s] in RFC 4291 text form: eight
// groups of 1-4 hex digits, or fewer with one "::", the last two groups
// optionally written as a dotted quad. To keep Postgres casts ("abc::text")
// and the like out, it needs two written groups, or "::" and one
// ("::1").
func matchIPv6(b []byte, s int) (int, bool) {
	j, groups := s, 0
	compressed := false
	if j+1 < len(b) && b[j] == ':' && b[j+1] == ':' {
		compressed = true
		j += 2
	}
	for j < len(b) {
		k := j
		for k < len(b) && k-j < 5 && isHex(b[k]) {
			k++
		}
		if k == j {
			break // "::" at the end
		}
		if k-j > 4 {
			return 0, false
		}
		if k < len(b) && b[k] == '.' {
			e, ok := readQuad(b, j)
			if !ok {
				return 0, false
			}
			groups += 2
			j = e
			break
		}
		groups++
		j = k
		if j+1 < len(b) && b[j] == ':' {
			if b[j+1] == ':' {
				if compressed {
					return 0, false
				}
				compressed = true
				j += 2
				continue
			}
			if isHex(b[j+1]) {
				j++
				continue
			}
		}
		break
	}
	if compressed && groups > 7 || !compressed && groups != 8 {
		return 0, false
	}
	if groups < 2 && !(groups == 1 && b[s] == ':') {
		return 0, false
	}
	if j < len(b) && (isWord(b[j]) || b[j] == ':' || b[j] == '.' && j+1 < len(b) && isDigit(b[j+1])) {
		return 0, false
	}
	return j, true
}
