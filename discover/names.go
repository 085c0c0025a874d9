package discover

import (
	"strings"
	"unicode"

	"github.com/pgwarden/pgwarden/policy"
)

// nameRules map the words of a column name to a category, most specific
// first: email_address is an email, ip_address an ip. A rule matches when
// its words appear consecutively among the name's words, or, with whole,
// when they are all of them.
var nameRules = []struct {
	words string
	cat   policy.Category
	whole bool
}{
	{"email", policy.CategoryEmail, false},
	{"e mail", policy.CategoryEmail, false},
	{"mail", policy.CategoryEmail, false},
	{"ip", policy.CategoryIP, false},
	{"card number", policy.CategoryCard, false},
	{"cc number", policy.CategoryCard, false},
	{"credit card", policy.CategoryCard, false},
	{"pan", policy.CategoryCard, false},
	{"ssn", policy.CategoryNationalID, false},
	{"social security", policy.CategoryNationalID, false},
	{"iban", policy.CategoryIBAN, false},
	{"phone", policy.CategoryPhone, false},
	{"mobile", policy.CategoryPhone, false},
	{"tel", policy.CategoryPhone, false},
	{"telephone", policy.CategoryPhone, false},
	{"dob", policy.CategoryDateOfBirth, false},
	{"birth date", policy.CategoryDateOfBirth, false},
	{"date of birth", policy.CategoryDateOfBirth, false},
	{"birthdate", policy.CategoryDateOfBirth, false},
	{"birthday", policy.CategoryDateOfBirth, false},
	{"first name", policy.CategoryName, false},
	{"last name", policy.CategoryName, false},
	{"full name", policy.CategoryName, false},
	{"given name", policy.CategoryName, false},
	{"family name", policy.CategoryName, false},
	{"customer name", policy.CategoryName, false},
	{"contact name", policy.CategoryName, false},
	{"firstname", policy.CategoryName, false},
	{"lastname", policy.CategoryName, false},
	{"fullname", policy.CategoryName, false},
	{"surname", policy.CategoryName, false},
	{"name", policy.CategoryName, true},
	{"address", policy.CategoryAddress, false},
	{"street", policy.CategoryAddress, false},
	{"city", policy.CategoryAddress, false},
	{"zip", policy.CategoryAddress, false},
	{"zipcode", policy.CategoryAddress, false},
	{"postcode", policy.CategoryAddress, false},
	{"postal code", policy.CategoryAddress, false},
}

// nameCategory returns the category a column name suggests, or "".
func nameCategory(name string) policy.Category {
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
