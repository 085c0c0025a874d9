package detect

// This file freezes the detectors as they were before the scanners were
// tuned for speed (8-byte skipping, early outs): refScan is the plain,
// byte-at-a-time Scan. TestScanMatchesReference checks that Scan finds
// exactly what refScan finds. Only the built-in detectors are covered;
// custom patterns run the same code in both.

import "bytes"

const refMaxPhoneGroups = 7

var refClass = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] |= clDigit | clHex | clLocal | clDomain | clTrigger | clWord
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= clUpper | clLocal | clDomain | clWord
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= clLower | clLocal | clDomain | clWord
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] |= clHex
		t[c-'a'+'A'] |= clHex
	}
	for _, c := range "._%+-" {
		t[c] |= clLocal
	}
	t['-'] |= clDomain
	t['.'] |= clDomain
	t['_'] |= clWord
	t['+'] |= clTrigger
	t['('] |= clTrigger
	t[':'] |= clTrigger
	return t
}()

func refScanSegment(s *Set, b []byte, start int, c *Counts, track bool) int {
	n := 0
	i := start
	for i < len(b) {
		ch := b[i]
		if refClass[ch]&clTrigger == 0 {
			i++
			continue
		}
		switch ch {
		case ':':
			if st, e, ok := refTryIPv6(b, start, i); ok {
				n += refHit(s, idxIP, st, e, c, track)
				i = e
				continue
			}
			i++
		case '+', '(':
			if i+1 < len(b) && refIsDigit(b[i+1]) && (i == start || !refIsWord(b[i-1])) {
				if e, ok := refMatchPhone(b, i); ok {
					n += refHit(s, idxPhone, i, e, c, track)
					i = e
					continue
				}
			}
			i++
		default: // a digit
			if i > start && refIsWord(b[i-1]) {
				// Inside a word: only an IBAN's check digits after its
				// two-letter country code start a value here.
				if i-2 >= start && refIsUpper(b[i-1]) && refIsUpper(b[i-2]) && (i-2 == start || !refIsWord(b[i-3])) {
					if e, ok := refMatchIBAN(b, i-2); ok {
						n += refHit(s, idxIBAN, i-2, e, c, track)
						i = e
						continue
					}
				}
				i = refSkipToken(b, i)
				continue
			}
			if i-2 >= start && b[i-1] == '.' && refIsWord(b[i-2]) {
				i = refSkipToken(b, i) // "v1.10.0.0.1", "host.10.0.0.1"
				continue
			}
			if cat, e := refMatchDigits(b, i); e > 0 {
				n += refHit(s, cat, i, e, c, track)
				i = e
				continue
			}
			i = refSkipToken(b, i)
		}
	}
	return n
}

func refMatchDigits(b []byte, i int) (cat, end int) {
	j := i
	for j < len(b) && refIsDigit(b[j]) {
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
			if e, ok := refMatchCard(b, i); ok {
				return idxCard, e
			}
		}
		return 0, 0
	}
	if run == 3 && next == '-' {
		if e, ok := refMatchSSN(b, i); ok {
			return idxNationalID, e
		}
	}
	if run <= 3 && next == '.' {
		if e, ok := refMatchIPv4(b, i); ok {
			return idxIP, e
		}
	}
	if run == 4 || (run >= 13 && run <= 19) {
		if e, ok := refMatchCard(b, i); ok {
			return idxCard, e
		}
	}
	if e, ok := refMatchPhone(b, i); ok {
		return idxPhone, e
	}
	return 0, 0
}

func refMatchSSN(b []byte, i int) (int, bool) {
	if i+11 > len(b) || b[i+3] != '-' || b[i+6] != '-' {
		return 0, false
	}
	for _, k := range [...]int{0, 1, 2, 4, 5, 7, 8, 9, 10} {
		if !refIsDigit(b[i+k]) {
			return 0, false
		}
	}
	if !refRightOK(b, i+11) {
		return 0, false
	}
	area := string(b[i : i+3])
	if area == "000" || area == "666" || b[i] == '9' ||
		string(b[i+4:i+6]) == "00" || string(b[i+7:i+11]) == "0000" {
		return 0, false
	}
	return i + 11, true
}

func refMatchIPv4(b []byte, i int) (int, bool) {
	j, ok := refReadQuad(b, i)
	if !ok || refUnspecifiedIPv4(b[i:j]) {
		return 0, false
	}
	if j+1 < len(b) && (b[j] == ':' || b[j] == '/') && refIsDigit(b[j+1]) {
		return j, true
	}
	if !refRightOK(b, j) {
		return 0, false
	}
	return j, true
}

func refUnspecifiedIPv4(b []byte) bool {
	return string(b) == "0.0.0.0" || string(b) == "255.255.255.255"
}

func refReadQuad(b []byte, i int) (int, bool) {
	j := i
	for part := 0; part < 4; part++ {
		if part > 0 {
			if j >= len(b) || b[j] != '.' {
				return 0, false
			}
			j++
		}
		k, v := j, 0
		for k < len(b) && refIsDigit(b[k]) && k-j < 4 {
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

func refMatchEmail(b []byte, lo, at int) (start, end int, ok bool) {
	start = at
	for start > lo && refClass[b[start-1]]&clLocal != 0 {
		start--
	}
	for start < at && b[start] == '.' {
		start++
	}
	if start == at {
		return 0, 0, false
	}
	end = at + 1
	for end < len(b) && refClass[b[end]]&clDomain != 0 {
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
		if !refIsLetter(b[k]) {
			letters = false
		}
	}
	if !tldLetters && labels >= 2 {
		// A value glued to the address ("ann@x.com415-555-0101", from a
		// concatenation): end the address after the TLD's letters.
		k := tldStart
		for k < end && refIsLetter(b[k]) {
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

func refMatchPhone(b []byte, i int) (int, bool) {
	var (
		groups [refMaxPhoneGroups]uint8    // digits per group
		ends   [refMaxPhoneGroups]int      // end of each group in b
		seps   [refMaxPhoneGroups]uint8    // separators used up to each group: 1 space, 2 dash, 4 dot
		spaced [refMaxPhoneGroups + 1]bool // a space precedes group k
	)
	ng := 0
	j := i
	plus := b[j] == '+'
	if plus {
		j++
	}
	var first byte // first digit
	paren, afterParen := false, false
	var used uint8
	truncated := false // more groups follow the ones read
	for {
		if ng == refMaxPhoneGroups {
			truncated = true
			break
		}
		afterParen = false
		if j < len(b) && b[j] == '(' {
			if paren || ng > 1 {
				return 0, false
			}
			k := j + 1
			for k < len(b) && refIsDigit(b[k]) {
				k++
			}
			d := k - j - 1
			if d < 1 || d > 4 || k >= len(b) || b[k] != ')' {
				return 0, false
			}
			if ng == 0 {
				first = b[j+1]
			}
			groups[ng] = uint8(d)
			paren, afterParen = true, true
			j = k + 1
		} else {
			k := j
			for k < len(b) && refIsDigit(b[k]) && k-j <= 12 {
				k++
			}
			d := k - j
			if d == 0 || d > 12 {
				return 0, false
			}
			if ng == 0 {
				first = b[j]
			}
			groups[ng] = uint8(d)
			j = k
		}
		ends[ng], seps[ng] = j, used
		ng++
		if j >= len(b) {
			break
		}
		c := b[j]
		if afterParen && refIsDigit(c) {
			continue // "(415)555-0101"
		}
		var sep uint8
		switch c {
		case ' ':
			sep = 1
		case '-':
			sep = 2
		case '.':
			sep = 4
		}
		if sep == 0 || j+1 >= len(b) {
			break
		}
		if n := b[j+1]; refIsDigit(n) || (n == '(' && !paren) {
			if !afterParen {
				used |= sep
			}
			spaced[ng] = sep == 1
			j++
			continue
		}
		break
	}
	// Take the longest run of groups that is a phone number; a shorter one
	// may end only where a space follows, as in string_agg(phone, ' ').
	for cut := ng; cut >= 1; cut-- {
		if cut < ng && !spaced[cut] {
			continue
		}
		if cut == ng && (truncated && !spaced[ng] || !truncated && !refRightOK(b, ends[cut-1])) {
			continue
		}
		if refPhoneShape(groups[:cut], seps[cut-1], first, plus) {
			return ends[cut-1], true
		}
	}
	return 0, false
}

func refPhoneShape(g []uint8, seps uint8, first byte, plus bool) bool {
	nd := 0
	for _, l := range g {
		nd += int(l)
	}
	if nd > 15 || seps&4 != 0 && seps != 4 {
		return false
	}
	if plus {
		return nd >= 8 && first != '0'
	}
	if len(g) < 2 {
		return false
	}
	switch {
	case nd == 10 && len(g) == 3 && g[0] == 3 && g[1] == 3 && g[2] == 4 && first >= '2':
		return true
	case nd == 11 && len(g) == 4 && first == '1' && g[0] == 1 && g[1] == 3 && g[2] == 3 && g[3] == 4:
		return true
	case first == '0' && (nd == 10 || nd == 11) && len(g) <= 6 && g[0] >= 2 && g[0] <= 5:
		for _, l := range g {
			if l < 2 || l > 8 {
				return false
			}
		}
		return true
	}
	return false
}

func refMatchCard(b []byte, i int) (int, bool) {
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
		for k < len(b) && refIsDigit(b[k]) {
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
		if j+1 >= len(b) || !refIsDigit(b[j+1]) || (b[j] != ' ' && b[j] != '-') || (sep != 0 && b[j] != sep) {
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
			if !refRightOK(b, e) {
				continue
			}
		} else if sep != ' ' {
			continue
		}
		d := digits[:counts[cut-1]]
		if len(d) >= 13 && refCardGrouping(groups[:cut]) && refCardIIN(d) && refLuhn(d) {
			return e, true
		}
	}
	return 0, false
}

func refCardGrouping(g []uint8) bool {
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

func refCardIIN(d []byte) bool {
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

func refLuhn(d []byte) bool {
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

func refMatchIBAN(b []byte, i int) (int, bool) {
	if i+4 > len(b) || !refIsDigit(b[i+2]) || !refIsDigit(b[i+3]) {
		return 0, false
	}
	want := int(ibanLengths[int(b[i]-'A')*26+int(b[i+1]-'A')]) // both upper-case
	if want == 0 {
		return 0, false
	}
	var buf [34]byte
	n, j := 0, i
	for n < want && j < len(b) {
		c := b[j]
		if refIsDigit(c) || refIsUpper(c) {
			buf[n] = c
			n++
			j++
			continue
		}
		if c == ' ' && n%4 == 0 && j+1 < len(b) && (refIsDigit(b[j+1]) || refIsUpper(b[j+1])) {
			j++
			continue
		}
		break
	}
	if n != want || !refRightOK(b, j) {
		return 0, false
	}
	// Move the first four characters to the end, read letters as 10-35.
	rem := 0
	for k := 4; k < n+4; k++ {
		c := buf[k%n]
		if refIsDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	return j, rem == 1
}

func refTryIPv6(b []byte, lo, colon int) (start, end int, ok bool) {
	if colon+1 >= len(b) {
		return 0, 0, false
	}
	start = colon
	for start > lo && colon-start < 4 && refIsHex(b[start-1]) {
		start--
	}
	if start == colon && b[colon+1] != ':' {
		return 0, 0, false
	}
	// The address must begin at a boundary, not inside a word, a longer
	// colon-separated run or a dotted number.
	if start > lo {
		if p := b[start-1]; refIsWord(p) || p == ':' || p == '.' {
			return 0, 0, false
		}
	}
	end, ok = refMatchIPv6(b, start)
	return start, end, ok
}

func refMatchIPv6(b []byte, s int) (int, bool) {
	j, groups := s, 0
	compressed := false
	if j+1 < len(b) && b[j] == ':' && b[j+1] == ':' {
		compressed = true
		j += 2
	}
	for j < len(b) {
		k := j
		for k < len(b) && k-j < 5 && refIsHex(b[k]) {
			k++
		}
		if k == j {
			break // "::" at the end
		}
		if k-j > 4 {
			return 0, false
		}
		if k < len(b) && b[k] == '.' {
			e, ok := refReadQuad(b, j)
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
			if refIsHex(b[j+1]) {
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
	if j < len(b) && (refIsWord(b[j]) || b[j] == ':' || b[j] == '.' && j+1 < len(b) && refIsDigit(b[j+1])) {
		return 0, false
	}
	return j, true
}

func refIsDigit(c byte) bool { return c-'0' < 10 }
func refIsUpper(c byte) bool { return refClass[c]&clUpper != 0 }
func refIsHex(c byte) bool   { return refClass[c]&clHex != 0 }
func refIsWord(c byte) bool  { return refClass[c]&clWord != 0 }
func refIsLetter(c byte) bool {
	return refClass[c]&(clUpper|clLower) != 0
}

func refRightOK(b []byte, j int) bool {
	if j >= len(b) {
		return true
	}
	c := b[j]
	if refIsWord(c) || c == '@' {
		return false
	}
	if j+1 < len(b) {
		switch n := b[j+1]; c {
		case '.', '-':
			return !refIsDigit(n)
		case ':', '/':
			return !refIsWord(n)
		}
	}
	return true
}

func refSkipToken(b []byte, i int) int {
	for i < len(b) && (refIsWord(b[i]) || b[i] == '.' || b[i] == '-') {
		i++
	}
	return i
}

func refScan(s *Set, b []byte, counts *Counts) int {
	track := len(s.custom) > 0
	if track {
		counts.spans = counts.spans[:0]
	}
	n := 0
	pos := 0    // bytes before pos are claimed or scanned
	atFrom := 0 // where to look for the next '@'
	for pos <= len(b) {
		es, ee := -1, -1
		// Emails are matched even when not counted, so that the digits
		// of a local part are never taken for a phone or an id.
		for atFrom < len(b) {
			k := bytes.IndexByte(b[atFrom:], '@')
			if k < 0 {
				atFrom = len(b)
				break
			}
			at := atFrom + k
			if st, e, ok := refMatchEmail(b, pos, at); ok {
				es, ee = st, e
				atFrom = e
				break
			}
			atFrom = at + 1
		}
		end := len(b)
		if es >= 0 {
			end = es
		}
		if s.digits && end > pos {
			n += refScanSegment(s, b[:end], pos, counts, track)
		}
		if es < 0 {
			break
		}
		n += refHit(s, idxEmail, es, ee, counts, track)
		pos = ee
	}
	if len(s.custom) > 0 {
		n += s.scanCustom(b, counts)
	}
	return n
}

func refHit(s *Set, i, start, end int, c *Counts, track bool) int {
	if !s.enabled[i] {
		return 0
	}
	c.builtin[i]++
	if track {
		c.spans = append(c.spans, span{start, end})
	}
	return 1
}
