package guard

import (
	"slices"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/policy/norm"
)

// TestNormTables: a temporary table is named by pg_temp whichever
// backend's schema holds it; other names are left as they are.
func TestNormTables(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{nil, nil},
		{[]string{"public.customers"}, []string{"public.customers"}},
		{[]string{"pg_temp_29.agg_by_product", "public.orders"}, []string{"pg_temp.agg_by_product", "public.orders"}},
		{[]string{"pg_temp_3.agg", "pg_temp_41.agg", "public.a"}, []string{"pg_temp.agg", "public.a"}},
		{[]string{"pg_temp_.x", "pg_temp_x1.y", "pg_toast_temp_3.t", "pg_temp_7"}, []string{"pg_temp_.x", "pg_temp_x1.y", "pg_toast_temp_3.t", "pg_temp_7"}},
	} {
		if got := normTables(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("normTables(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestOrgKeyOfOffHours: off-hours work of one peer group on one day is one
// change, whatever the hour; another day, another group, or no group is
// not the same change.
func TestOrgKeyOfOffHours(t *testing.T) {
	at := time.Date(2026, 3, 18, 22, 10, 0, 0, time.UTC)
	key := func(peer string, at time.Time) string {
		_, v, ok := orgKey(norm.Anomaly{Kind: "off_hours", Subject: peer, At: at})
		if !ok {
			return ""
		}
		return v
	}
	same := key("support-north", at)
	if same == "" || key("support-north", at.Add(90*time.Minute)) != same {
		t.Errorf("the same team the same day: %q, %q", same, key("support-north", at.Add(90*time.Minute)))
	}
	for _, other := range []string{key("support-north", at.Add(24*time.Hour)), key("support-south", at)} {
		if other == same {
			t.Errorf("another day or team folded with %q", same)
		}
	}
	if key("", at) != "" {
		t.Errorf("an employee without a peer group is folded")
	}
}
