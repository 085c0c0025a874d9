package discover

import (
	"strings"
	"unicode"

	"github.com/pgwarden/pgwarden/policy/pii"
)

// nameRules map the words of a column name to a category, most specific
// first: email_address is an email, ip_address an ip. A rule matches when
// its words appear consecutively among the name's words, or, with whole,
// when they are all of them.
var nameRules = []struct {
	words string
	cat   pii.Category
	whole bool
}{
	{"email", pii.Email, false},
	{"e mail", pii.Email, false},
	{"mail", pii.Email, false},
	{"ip", pii.IP, false},
	{"card number", pii.Card, false},
	{"cc number", pii.Card, false},
	{"credit card", pii.Card, false},
	{"pan", pii.Card, false},
	{"ssn", pii.NationalID, false},
	{"social security", pii.NationalID, false},
	{"iban", pii.IBAN, false},
	{"phone", pii.Phone, false},
	{"mobile", pii.Phone, false},
	{"tel", pii.Phone, false},
	{"telephone", pii.Phone, false},
	{"dob", pii.DateOfBirth, false},
	{"birth date", pii.DateOfBirth, false},
	{"date of birth", pii.DateOfBirth, false},
	{"birthdate", pii.DateOfBirth, false},
	{"birthday", pii.DateOfBirth, false},
	{"first name", pii.Name, false},
	{"last name", pii.Name, false},
	{"full name", pii.Name, false},
	{"given name", pii.Name, false},
	{"family name", pii.Name, false},
	{"customer name", pii.Name, false},
	{"contact name", pii.Name, false},
	{"firstname", pii.Name, false},
	{"lastname", pii.Name, false},
	{"fullname", pii.Name, false},
	{"surname", pii.Name, false},
	{"name", pii.Name, true},
	{"address", pii.Address, false},
	{"street", pii.Address, false},
	{"city", pii.Address, false},
	{"zip", pii.Address, false},
	{"zipcode", pii.Address, false},
	{"postcode", pii.Address, false},
	{"postal code", pii.Address, false},
}

// nameCategory returns the category a column name suggests, or "".
func nameCategory(name string) pii.Category {
	words := nameWords(name)
	for _, r := range nameRules {
		rw := strings.Fields(r.words)
		if r.whole {
			if strings.Join(words, " ") == r.words {
				return r.cat
			}
			continue
		}
		for i := 0; i+len(rw) <= len(words); i++ {
			if strings.Join(words[i:i+len(rw)], " ") == r.words {
				return r.cat
			}
		}
	}
	return ""
}

// nameWords splits a column name into lower-case words at non-alphanumeric
// characters, lower-to-upper case changes (camelCase) and letter-digit
// boundaries: "billingEMail2" -> billing, e, mail, 2.
func nameWords(name string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(name)
	for i, r := range rs {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush()
			continue
		}
		if i > 0 && len(cur) > 0 {
			p := rs[i-1]
			if unicode.IsLower(p) && unicode.IsUpper(r) || unicode.IsDigit(p) != unicode.IsDigit(r) ||
				// "EMail": an upper-case run followed by lower case starts a new word at its last letter.
				unicode.IsUpper(p) && unicode.IsUpper(r) && i+1 < len(rs) && unicode.IsLower(rs[i+1]) {
				flush()
			}
		}
		cur = append(cur, r)
	}
	flush()
	return words
}
