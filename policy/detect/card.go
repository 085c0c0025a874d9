package detect

// matchCard reads a payment card number at b[i]: 13-19 digits, bare or
// grouped by single spaces or single dashes (one kind throughout) in the
// printed layouts 4-4-4-4(-3), 4-6-5 (Amex) and 4-6-4 (Diners), with an
// issuer prefix (IIN) and length that some network issues, and a valid
// Luhn check digit.
func matchCard(b []byte, i int) (int, bool) {
	var (
		digits [19]byte
		groups [6]uint8 // digits per group
		ends   [6]int   // end of each group in b
		counts [6]int   // digits up to the end of each group
	)
	nd, ng := 0, 0
	var sep byte
	truncated := false // more groups follow the ones read
	j := i
	for {
		k := j
		for k < len(b) && isDigit(b[k]) {
			if nd == len(digits) {
				if ng == 0 {
					return 0, false
				}
				truncated = true // too long with this group: cut before it
				break
			}
			digits[nd] = b[k] - '0'
			nd++
			k++
		}
		if truncated {
			break
		}
		groups[ng], ends[ng], counts[ng] = uint8(k-j), k, nd
		ng++
		j = k
		if j+1 >= len(b) || !isDigit(b[j+1]) || (b[j] != ' ' && b[j] != '-') || (sep != 0 && b[j] != sep) {
			break
		}
		if ng == len(groups) {
			truncated = true
			break
		}
		sep = b[j]
		j++
	}
	// Take the longest run of groups that is a card number; a shorter one
	// may end only at a space, as in string_agg(card, ' ').
	for cut := ng; cut >= 1; cut-- {
		e := ends[cut-1]
		if cut == ng && !truncated {
			if !rightOK(b, e) {
				continue
			}
		} else if sep != ' ' {
			continue
		}
		d := digits[:counts[cut-1]]
		if len(d) >= 13 && cardGrouping(groups[:cut]) && cardIIN(d) && luhn(d) {
			return e, true
		}
	}
	return 0, false
}

// cardGrouping reports whether the group lengths are a printed card layout.
func cardGrouping(g []uint8) bool {
	switch {
	case len(g) == 1:
		return true
	case len(g) == 3 && g[0] == 4 && g[1] == 6 && (g[2] == 5 || g[2] == 4):
		return true
	}
	for k, l := range g {
		if k < len(g)-1 && l != 4 || l == 0 || l > 4 {
			return false
		}
	}
	return true
}

// cardIIN reports whether d starts with an issuer prefix of a major network
// and has a length that network issues.
func cardIIN(d []byte) bool {
	return cardLengths(d)>>len(d)&1 != 0
}

// cardLengths returns the lengths, as a bit set (bit n for n digits), of
// the card numbers a major network issues under the issuer prefix that
// starts d, at least four digits, or 0 when no network uses that prefix.
// d holds the digits as values 0-9 or as ASCII '0'-'9'.
func cardLengths(d []byte) uint32 {
	const (
		l13to19 = 1<<20 - 1<<13
		l14to19 = 1<<20 - 1<<14
		l16to19 = 1<<20 - 1<<16
	)
	d0, d1 := int(d[0]&0xf), int(d[1]&0xf)
	p2 := d0*10 + d1
	p4 := p2*100 + int(d[2]&0xf)*10 + int(d[3]&0xf)
	switch {
	case d0 == 4: // Visa
		return 1<<13 | 1<<16 | 1<<19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return 1 << 16
	case p2 == 34 || p2 == 37: // American Express
		return 1 << 15
	case p2 == 36 || p2 == 38 || p2 == 39 || (p4 >= 3000 && p4 <= 3059): // Diners
		return l14to19
	case p4 >= 3528 && p4 <= 3589: // JCB
		return l16to19
	case p4 == 6011 || p2 == 65 || (p4 >= 6440 && p4 <= 6499), p2 == 62: // Discover, UnionPay
		return l16to19
	case p2 == 50 || (p2 >= 56 && p2 <= 58) || p2 == 63 || p2 == 67: // Maestro
		return l13to19
	}
	return 0
}

// luhn reports whether the digits carry a valid Luhn check digit.
func luhn(d []byte) bool {
	sum := 0
	double := false
	for k := len(d) - 1; k >= 0; k-- {
		v := int(d[k])
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}
