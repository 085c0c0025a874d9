package detect

// maxPhoneGroups bounds the digit groups of one phone number.
const maxPhoneGroups = 7

// matchPhone reads a phone number at b[i], which is '+', '(' or a digit.
//
// A number is digit groups joined by single separators: a space, '-' or
// '.' ('.' never mixed with the others, as it is in amounts), with at most
// one parenthesised group of 1-4 digits among the first two, optionally
// followed by a space or dash. It is accepted as:
//
//   - international (E.164): a leading '+', 8-15 digits, first digit not 0,
//     any grouping or none: +14155550101, +44 20 7946 0958,
//     +44 (0)20 7946 0958, +1 (415) 555-0101;
//   - North American: groups 3-3-4 with an area code starting 2-9, or
//     1-3-3-4 after a leading 1: (415) 555-0101, 415-555-0101,
//     415.555.0101, 415 555 0101, 1-415-555-0101;
//   - European national with a trunk 0: 10-11 digits in 2-6 groups, the
//     first of 2-5 digits, each of 2-8: 020 7946 0958, 06 12 34 56 78,
//     07700 900123, (030) 1234567.
//
// Numbers without a separator or '+' (ids, order numbers), dates, times
// and amounts do not fit these shapes.
func matchPhone(b []byte, i int) (int, bool) {
	var (
		groups [maxPhoneGroups]uint8 // digits per group
		nds    [maxPhoneGroups]uint8 // digits up to the end of each group
		ends   [maxPhoneGroups]int   // end of each group in b
		seps   [maxPhoneGroups]uint8 // separators used up to each group: 1 space, 2 dash, 4 dot
		spaced uint16                // bit k: a space precedes group k
	)
	ng, nd := 0, 0
	short := maxPhoneGroups // the first group not of 2-8 digits
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
		if ng == maxPhoneGroups {
			truncated = true
			break
		}
		afterParen = false
		var d int // digits in this group
		if j < len(b) && b[j] == '(' {
			if paren || ng > 1 {
				return 0, false
			}
			k := j + 1
			for k < len(b) && isDigit(b[k]) {
				k++
			}
			d = k - j - 1
			if d < 1 || d > 4 || k >= len(b) || b[k] != ')' {
				return 0, false
			}
			if ng == 0 {
				first = b[j+1]
			}
			paren, afterParen = true, true
			j = k + 1
		} else {
			k := j
			for k < len(b) && isDigit(b[k]) && k-j <= 12 {
				k++
			}
			d = k - j
			if d == 0 || d > 12 {
				return 0, false
			}
			if ng == 0 {
				first = b[j]
			}
			j = k
		}
		nd += d
		if (d < 2 || d > 8) && short == maxPhoneGroups {
			short = ng
		}
		groups[ng], ends[ng], seps[ng], nds[ng] = uint8(d), j, used, uint8(nd)
		ng++
		if j >= len(b) {
			break
		}
		c := b[j]
		if afterParen && isDigit(c) {
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
		if n := b[j+1]; isDigit(n) || (n == '(' && !paren) {
			if !afterParen {
				used |= sep
			}
			if sep == 1 {
				spaced |= 1 << ng
			}
			j++
			continue
		}
		break
	}
	// Take the longest run of groups that is a phone number; a shorter one
	// may end only where a space follows, as in string_agg(phone, ' ').
	// The shapes are those of the doc comment, tested on the digit
	// counts and group lengths kept while reading.
	for cut := ng; cut >= 1; cut-- {
		if cut < ng && spaced&(1<<cut) == 0 {
			continue
		}
		if cut == ng && (truncated && spaced&(1<<ng) == 0 || !truncated && !rightOK(b, ends[cut-1])) {
			continue
		}
		nd, sp := nds[cut-1], seps[cut-1]
		if nd > 15 || sp&4 != 0 && sp != 4 {
			continue
		}
		if plus {
			if nd >= 8 && first != '0' {
				return ends[cut-1], true
			}
			continue
		}
		if cut >= 2 && (nd == 10 && cut == 3 && groups[0] == 3 && groups[1] == 3 && groups[2] == 4 && first >= '2' ||
			nd == 11 && cut == 4 && first == '1' && groups[0] == 1 && groups[1] == 3 && groups[2] == 3 && groups[3] == 4 ||
			first == '0' && (nd == 10 || nd == 11) && cut <= 6 && groups[0] >= 2 && groups[0] <= 5 && cut <= short) {
			return ends[cut-1], true
		}
	}
	return 0, false
}
