package pii

import "testing"

func TestIndex(t *testing.T) {
	seen := map[Category]bool{}
	for i, c := range Builtins() {
		if got := c.Index(); got != i {
			t.Errorf("%s.Index() = %d, want %d", c, got, i)
		}
		if Builtin(i) != c || !c.Valid() || c.IsCustom() || seen[c] {
			t.Errorf("%s: Builtin, Valid, IsCustom or uniqueness wrong", c)
		}
		seen[c] = true
	}
	for _, c := range Detectable() {
		if c.Index() < 0 || !c.Detectable() {
			t.Errorf("detectable %s is not a built-in", c)
		}
	}
	for _, c := range []Category{Name, Address, DateOfBirth, "custom:x", "emails"} {
		if c.Detectable() {
			t.Errorf("%s.Detectable() = true", c)
		}
	}
}

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		c    Category
		want bool
	}{
		{"email", true},
		{"custom:loyalty_id", true},
		{"custom:a-b9", true},
		{"custom:", false},
		{"custom:a b", false},
		{"Email", false},
		{"", false},
	} {
		if got := tc.c.Valid(); got != tc.want {
			t.Errorf("Category(%q).Valid() = %v, want %v", tc.c, got, tc.want)
		}
		if got := tc.c.Index() >= 0; got && tc.c.IsCustom() {
			t.Errorf("custom %q has an index", tc.c)
		}
	}
}
