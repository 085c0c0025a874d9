package guard

import (
	"slices"
	"testing"
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
