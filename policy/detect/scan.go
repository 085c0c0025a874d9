package detect

// scanSegment finds the digit-based values (phone, national id, card,
// IBAN, IP) in b[start:], a stretch holding no email, counts them and
// returns how many it counted. It walks the bytes once, skipping eight
// at a time where none is a trigger; only the trigger bytes 0-9 + ( :
// make it look closer, and each candidate is tried against
// the most specific shape first (IBAN, SSN, IPv4, card, then phone), so a
// byte range is claimed once.
func (s *Set) scanSegment(b []byte, start int, c *Counts, track bool) int {
	n := 0
	i := start
	for i < len(b) {
		if class[b[i]]&clTrigger == 0 {
			if i = nextTrigger(b, i+1); i >= len(b) {
				break
			}
		}
		switch ch := b[i]; ch {
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
			j := i + 1
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			// Only runs of 13-19 digits (a card) or of at most 5 followed
			// by ' ', '-' or '.' can begin a value: see matchDigits.
			if d := j - i; d >= 13 && d <= 19 || d <= 5 && j < len(b) && (b[j] == ' ' || b[j] == '-' || b[j] == '.') {
				if cat, e := matchDigits(b, i, j); cat >= 0 {
					n += s.hit(cat, i, e, c, track)
					i = e
					continue
				}
			}
			i = skipToken(b, j)
		}
	}
	return n
}

// matchDigits tries the digit-led shapes at b[i], a digit at a word
// boundary followed by digits up to b[j], and returns the category index
// and end of the first that matches, or category -1.
//
// Each shape is tried only when the digit run and the byte after it can
// begin it: an SSN needs 3 digits and '-', an IPv4 address 1-3 and '.', a
// card 13-19 digits or 4 and ' ' or '-', a phone number 1-5 digits and
// ' ', '-' or '.'. No value begins with a run of 6-12 digits.
func matchDigits(b []byte, i, j int) (cat, end int) {
	n := j - i
	var next byte
	if j < len(b) {
		next = b[j]
	}
	switch next {
	case '-', '.', ' ', '(', ')':
	default:
		// No separator follows: only a bare card number can match.
		if n >= 13 && n <= 19 {
			if e, ok := matchCard(b, i); ok {
				return idxCard, e
			}
		}
		return -1, 0
	}
	if n == 3 && next == '-' {
		if e, ok := matchSSN(b, i); ok {
			return idxNationalID, e
		}
	}
	if n <= 3 && next == '.' {
		if e, ok := matchIPv4(b, i); ok {
			return idxIP, e
		}
	}
	// A card is one run of 13-19 digits or groups led by 4 digits and
	// joined by ' ' or '-'; its first four digits must be an issuer's.
	if n >= 13 && n <= 19 || n == 4 && (next == ' ' || next == '-') && cardLengths(b[i:i+4]) != 0 {
		if e, ok := matchCard(b, i); ok {
			return idxCard, e
		}
	}
	// A phone number led by a digit has two or more groups, the first
	// joined by ' ', '-' or '.' to a digit or '(' and starting one of the
	// shapes matchPhone accepts without a '+': 3 digits from 2-9, a
	// single 1, or 2-5 digits from a trunk 0.
	if next != '(' && next != ')' && j+1 < len(b) && (isDigit(b[j+1]) || b[j+1] == '(') {
		if d := b[i]; n == 3 && d >= '2' || n == 1 && d == '1' || d == '0' && n >= 2 && n <= 5 {
			if e, ok := matchPhone(b, i); ok {
				return idxPhone, e
			}
		}
	}
	return -1, 0
}

// matchSSN reads a US social security number in its dashed form
// ddd-dd-dddd at b[i], rejecting the numbers the SSA never issues: area
// 000, 666 or 900-999, group 00, serial 0000.
func matchSSN(b []byte, i int) (int, bool) {
	if i+11 > len(b) {
		return 0, false
	}
	v := b[i : i+11 : i+11]
	if v[3] != '-' || v[6] != '-' ||
		!isDigit(v[0]) || !isDigit(v[1]) || !isDigit(v[2]) || !isDigit(v[4]) || !isDigit(v[5]) ||
		!isDigit(v[7]) || !isDigit(v[8]) || !isDigit(v[9]) || !isDigit(v[10]) {
		return 0, false
	}
	if !rightOK(b, i+11) {
		return 0, false
	}
	area := string(v[:3])
	if area == "000" || area == "666" || v[0] == '9' ||
		string(v[4:6]) == "00" || string(v[7:11]) == "0000" {
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
