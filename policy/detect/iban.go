package detect

// ibanLengths maps a country code (two upper-case letters, indexed as
// (c0-'A')*26+(c1-'A')) to the length of its IBANs, from the ISO 13616
// registry; 0 means no IBANs.
var ibanLengths [26 * 26]uint8

func init() {
	const table = "AD24AE23AL28AT20AZ28BA20BE16BG22BH22BR29BY28CH21CR22CY28CZ24DE22" +
		"DK18DO28EE20EG29ES24FI18FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28" +
		"IE22IL23IQ23IS26IT27JO30KW30KZ20LB28LC32LI21LT20LU20LV21LY25MC27" +
		"MD24ME22MK19MR27MT31MU30NL18NO15PK24PL28PS29PT25QA29RO24RS22SA24" +
		"SC31SE24SI19SK24SM27ST25SV28TL23TN24TR26UA29VA22VG24XK20"
	for k := 0; k+4 <= len(table); k += 4 {
		ibanLengths[int(table[k]-'A')*26+int(table[k+1]-'A')] = (table[k+2]-'0')*10 + table[k+3] - '0'
	}
}

// matchIBAN reads an IBAN at b[i]: a known country code, two check digits
// and the country's number of upper-case letters and digits, bare or in the
// printed groups of four separated by single spaces, whose ISO 7064 mod-97
// remainder is 1.
func matchIBAN(b []byte, i int) (int, bool) {
	if i+4 > len(b) || !isDigit(b[i+2]) || !isDigit(b[i+3]) {
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
		if isDigit(c) || isUpper(c) {
			buf[n] = c
			n++
			j++
			continue
		}
		if c == ' ' && n%4 == 0 && j+1 < len(b) && (isDigit(b[j+1]) || isUpper(b[j+1])) {
			j++
			continue
		}
		break
	}
	if n != want || !rightOK(b, j) {
		return 0, false
	}
	// Move the first four characters to the end, read letters as 10-35.
	rem := 0
	for k := 4; k < n+4; k++ {
		c := buf[k%n]
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	return j, rem == 1
}
