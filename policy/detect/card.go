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
	n := len(d)
	p2 := int(d[0])*10 + int(d[1])
	p4 := p2*100 + int(d[2])*10 + int(d[3])
	switch {
	case d[0] == 4: // Visa
		return n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return n == 16
	case p2 == 34 || p2 == 37: // American Express
		return n == 15
	case p2 == 36 || p2 == 38 || p2 == 39 || (p4 >= 3000 && p4 <= 3059): // Diners
		return n >= 14 && n <= 19
	case p4 >= 3528 && p4 <= 3589: // JCB
		return n >= 16 && n <= 19
	case p4 == 6011 || p2 == 65 || (p4 >= 6440 && p4 <= 6499), p2 == 62: // Discover, UnionPay
		return n >= 16 && n <= 19
	case p2 == 50 || (p2 >= 56 && p2 <= 58) || p2 == 63 || p2 == 67: // Maestro
		return n >= 13 && n <= 19
	}
	return false
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
