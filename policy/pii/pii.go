// Package pii is the one vocabulary for kinds of personal data. A Category
// names what a column or value carries: one of the built-in categories, or
// "custom:<name>" for one a policy defines itself. The policy file, the
// content detectors (policy/detect), the sliding windows (policy/window), the
// guard and the audit log all use this type and its names.
//
// The built-in categories have a dense index, 0 to NumBuiltin-1 in the order
// of Builtins, so counters can keep them in fixed arrays and reach a slot
// without a map; custom categories have no index and are counted by name.
package pii

import "strings"

// Category is the kind of personal data a column or value carries.
type Category string

// Built-in categories.
const (
	Email       Category = "email"
	Name        Category = "name"
	Phone       Category = "phone"
	NationalID  Category = "national_id"
	Card        Category = "card"
	Address     Category = "address"
	DateOfBirth Category = "date_of_birth"
	IP          Category = "ip"
	IBAN        Category = "iban"
)

// Dense indexes of the built-in categories: Builtins()[i].Index() == i.
const (
	IdxEmail = iota
	IdxName
	IdxPhone
	IdxNationalID
	IdxCard
	IdxAddress
	IdxDateOfBirth
	IdxIP
	IdxIBAN
	NumBuiltin
)

// CustomPrefix starts every custom category.
const CustomPrefix = "custom:"

var builtins = [NumBuiltin]Category{Email, Name, Phone, NationalID, Card, Address, DateOfBirth, IP, IBAN}

// detectable lists the built-in categories that have a content detector, in
// the order the policy documents them; name, address and date_of_birth are
// recognised only by declaration because their values have no reliable shape.
var detectable = []Category{Email, Phone, NationalID, Card, IBAN, IP}

// Builtins returns the built-in categories in index order (also the order the
// documentation lists them).
func Builtins() []Category {
	out := make([]Category, NumBuiltin)
	copy(out, builtins[:])
	return out
}

// Builtin returns the built-in category with index i (0 <= i < NumBuiltin).
func Builtin(i int) Category { return builtins[i] }

// Detectable returns the built-in categories that have a content detector.
func Detectable() []Category { return append([]Category(nil), detectable...) }

// Index returns the dense index of a built-in category, or -1 for any other.
// A switch compiles to a length test and at most a couple of comparisons:
// counters call it for every PII value.
func (c Category) Index() int {
	switch c {
	case Email:
		return IdxEmail
	case Name:
		return IdxName
	case Phone:
		return IdxPhone
	case NationalID:
		return IdxNationalID
	case Card:
		return IdxCard
	case Address:
		return IdxAddress
	case DateOfBirth:
		return IdxDateOfBirth
	case IP:
		return IdxIP
	case IBAN:
		return IdxIBAN
	}
	return -1
}

// IsCustom reports whether c is a policy-defined category ("custom:<name>").
func (c Category) IsCustom() bool {
	return strings.HasPrefix(string(c), CustomPrefix)
}

// Detectable reports whether c is a built-in category with a content detector.
func (c Category) Detectable() bool {
	for _, d := range detectable {
		if c == d {
			return true
		}
	}
	return false
}

// Valid reports whether c is a built-in category or a custom category whose
// name is a non-empty run of ASCII letters, digits, '_' and '-'.
func (c Category) Valid() bool {
	if c.IsCustom() {
		return ValidName(string(c)[len(CustomPrefix):])
	}
	return c.Index() >= 0
}

// ValidName reports whether s is a non-empty run of ASCII letters, digits,
// '_' and '-': the shape of custom category and detector names.
func ValidName(s string) bool {
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
