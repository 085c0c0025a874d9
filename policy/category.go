package policy

import "strings"

// Category is the kind of personal data a column or value carries: one of the
// built-in categories below, or "custom:<name>" for a category the policy
// defines itself.
type Category string

// Built-in categories.
const (
	CategoryEmail       Category = "email"
	CategoryName        Category = "name"
	CategoryPhone       Category = "phone"
	CategoryNationalID  Category = "national_id"
	CategoryCard        Category = "card"
	CategoryAddress     Category = "address"
	CategoryDateOfBirth Category = "date_of_birth"
	CategoryIP          Category = "ip"
	CategoryIBAN        Category = "iban"
)

// customPrefix starts every custom category.
const customPrefix = "custom:"

// builtinCategories lists the built-in categories in documentation order.
var builtinCategories = []Category{
	CategoryEmail, CategoryName, CategoryPhone, CategoryNationalID, CategoryCard,
	CategoryAddress, CategoryDateOfBirth, CategoryIP, CategoryIBAN,
}

// detectorCategories are the built-in categories that have a content
// detector; name, address and date_of_birth are recognised only by
// declaration because their values have no reliable shape.
var detectorCategories = []string{
	string(CategoryEmail), string(CategoryPhone), string(CategoryNationalID),
	string(CategoryCard), string(CategoryIBAN), string(CategoryIP),
}

// IsCustom reports whether c is a policy-defined category ("custom:<name>").
func (c Category) IsCustom() bool {
	return strings.HasPrefix(string(c), customPrefix)
}

// Valid reports whether c is a built-in category or a custom category whose
// name is a non-empty run of ASCII letters, digits, '_' and '-'.
func (c Category) Valid() bool {
	if c.IsCustom() {
		return validIdent(string(c)[len(customPrefix):])
	}
	for _, b := range builtinCategories {
		if c == b {
			return true
		}
	}
	return false
}

// validIdent reports whether s is a non-empty run of ASCII letters, digits,
// '_' and '-': the shape of custom category and detector names.
func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func isDetectorCategory(s string) bool {
	for _, d := range detectorCategories {
		if s == d {
			return true
		}
	}
	return false
}
