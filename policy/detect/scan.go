package detect

// scanSegment finds the digit-based values (phone, national id, card,
// IBAN, IP) in b[start:], a stretch holding no email, counts them and
// returns how many it counted. It walks the bytes once; only the trigger
// bytes 0-9 + ( : make it look closer, and each candidate is tried against
// the most specific shape first (IBAN, SSN, IPv4, card, then phone), so a
// byte range is claimed once.
func (s *Set) scanSegment(b []byte, start int, c *Counts, track bool) int {
	n := 0
	i := start
	for i < len(b) {
		ch := b[i]
		if class[ch]&clTrigger == 0 {
			i++
			continue
		}
		switch ch {
		case ':':
			if st, e, ok := tryIPv6(b, start, i); ok {
				n += s.hit(idxIP, st, e, c, track)
				i = e
				continue
			}
			i++
		case '+', '(':
			if i+1 < len(b) && isDigit(b[i+1]) && (i == start || !isWord(b[i-1])) {
				if e, ok := matchPhone(b, i); ok {
					n += s.hit(idxPhone, i, e, c, track)
					i = e
					continue
				}
			}
			i++
		default: // a digit
			if i > start && isWord(b[i-1]) {
				// Inside a word: only an IBAN's check digits after its
				// two-letter country code start a value here.
				if i-2 >= start && isUpper(b[i-1]) && isUpper(b[i-2]) && (i-2 == start || !isWord(b[i-3])) {
					if e, ok := matchIBAN(b, i-2); ok {
						n += s.hit(idxIBAN, i-2, e, c, track)
						i = e
						continue
					}
				}
				i = skipToken(b, i)
				continue
			}
			if i-2 >= start && b[i-1] == '.' && isWord(b[i-2]) {
				i = skipToken(b, i) // "v1.10.0.0.1", "host.10.0.0.1"
				continue
			}
			if cat, e := matchDigits(b, i); e > 0 {
				n += s.hit(cat, i, e, c, track)
				i = e
				continue
			}
			i = skipToken(b, i)
		}
	}
	return n
}

// matchDigits tries the digit-led shapes at b[i], a digit at a word
// boundary, and returns the category index and end of the first that
// matches, or end 0.
func matchDigits(b []byte, i int) (cat, end int) {
	j := i
	for j < len(b) && isDigit(b[j]) {
		j++
	}
	run := j - i
	var next byte
	if j < len(b) {
		next = b[j]
	}
	switch next {
	case '-', '.', ' ', '(', ')':
	default:
		// No separator follows: only a bare card number can match.
		if run >= 13 && run <= 19 {
			if e, ok := matchCard(b, i); ok {
				return idxCard, e
			}
		}
		return 0, 0
	}
	if run == 3 && next == '-' {
		if e, ok := matchSSN(b, i); ok {
			return idxNationalID, e
		}
	}
	if run <= 3 && next == '.' {
		if e, ok := matchIPv4(b, i); ok {
			return idxIP, e
		}
	}
	if run == 4 || (run >= 13 && run <= 19) {
		if e, ok := matchCard(b, i); ok {
			return idxCard, e
		}
	}
	if e, ok := matchPhone(b, i); ok {
		return idxPhone, e
	}
	return 0, 0
}

// matchSSN reads a US social security number in its dashed form
// ddd-dd-dddd at b[i], rejecting the numbers the SSA never issues: area
// 000, 666 or 900-999, group 00, serial 0000.
func matchSSN(b []byte, i int) (int, bool) {
	if i+11 > len(b) || b[i+3] != '-' || b[i+6] != '-' {
		return 0, false
	}
	for _, k := range [...]int{0, 1, 2, 4, 5, 7, 8, 9, 10} {
		if !isDigit(b[i+k]) {
			return 0, false
		}
	}
	if !rightOK(b, i+11) {
		return 0, false
	}
	area := string(b[i : i+3])
	if area == "000" || area == "666" || b[i] == '9' ||
		string(b[i+4:i+6]) == "00" || string(b[i+7:i+11]) == "0000" {
		return 0, false
	}
	return i + 11, true
}

// matchIPv4 reads a dotted quad at b[i]: exactly four decimal octets of
// 0-255 without leading zeros, other than 0.0.0.0 and 255.255.255.255.
// A port (":5432") or prefix length ("/24")
// may follow; a fifth dotted part may not.
func matchIPv4(b []byte, i int) (int, bool) {
	j, ok := readQuad(b, i)
	if !ok || unspecifiedIPv4(b[i:j]) {
		return 0, false
	}
	if j+1 < len(b) && (b[j] == ':' || b[j] == '/') && isDigit(b[j+1]) {
		return j, true
	}
	if !rightOK(b, j) {
		return 0, false
	}
	return j, true
}

// unspecifiedIPv4 reports whether b is 0.0.0.0 or 255.255.255.255, which
// name no host.
func unspecifiedIPv4(b []byte) bool {
	return string(b) == "0.0.0.0" || string(b) == "255.255.255.255"
}

// readQuad reads four dot-separated octets at b[i] and returns their end.
func readQuad(b []byte, i int) (int, bool) {
	j := i
	for part := 0; part < 4; part++ {
		if part > 0 {
			if j >= len(b) || b[j] != '.' {
				return 0, false
			}
			j++
		}
		k, v := j, 0
		for k < len(b) && isDigit(b[k]) && k-j < 4 {
			v = v*10 + int(b[k]-'0')
			k++
		}
		d := k - j
		if d == 0 || d > 3 || v > 255 || (d > 1 && b[j] == '0') {
			return 0, false
		}
		j = k
	}
	return j, true
}
