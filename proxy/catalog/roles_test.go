package catalog

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestRoleMembershipsFollowGrants: a superuser is a member only of the
// roles granted to them, not of every role as pg_has_role says; a role
// granted through another role counts.
func TestRoleMembershipsFollowGrants(t *testing.T) {
	e := newEnv(t)
	e.db.Exec(t, `DROP ROLE IF EXISTS pgw_cat_dba, pgw_cat_agent, pgw_cat_tier1, pgw_cat_support, pgw_cat_ops;
CREATE ROLE pgw_cat_support NOLOGIN;
CREATE ROLE pgw_cat_ops NOLOGIN;
CREATE ROLE pgw_cat_tier1 NOLOGIN IN ROLE pgw_cat_support;
CREATE ROLE pgw_cat_agent LOGIN IN ROLE pgw_cat_tier1;
CREATE ROLE pgw_cat_dba LOGIN SUPERUSER IN ROLE pgw_cat_ops`)
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := e.pool.Exec(ctx, "DROP ROLE IF EXISTS pgw_cat_dba, pgw_cat_agent, pgw_cat_tier1, pgw_cat_support, pgw_cat_ops"); err != nil {
			t.Errorf("drop roles: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := []string{"pgw_cat_support", "pgw_cat_ops", "pgw_cat_dba", "pgw_cat_agent"}
	for _, tc := range []struct {
		user string
		want []string
	}{
		{"pgw_cat_dba", []string{"pgw_cat_dba", "pgw_cat_ops"}},
		{"pgw_cat_agent", []string{"pgw_cat_agent", "pgw_cat_support"}},
		{"pgw_cat_nobody", nil},
	} {
		got, err := e.r.RoleMemberships(ctx, tc.user, want)
		if err != nil {
			t.Fatalf("%s: %v", tc.user, err)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s is a member of %v, want %v", tc.user, got, tc.want)
		}
	}
}

// TestRoleFactsCached: a role's search_path setting and memberships are
// read once for many sessions, and read again after an invalidation (a DDL
// statement through pgwarden), or once roleTTL has passed.
func TestRoleFactsCached(t *testing.T) {
	e := newEnv(t)
	e.db.Exec(t, `DROP ROLE IF EXISTS pgw_cat_cached, pgw_cat_group;
CREATE ROLE pgw_cat_group NOLOGIN;
CREATE ROLE pgw_cat_cached LOGIN;
ALTER ROLE pgw_cat_cached SET search_path = first_path`)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := e.pool.Exec(ctx, "DROP ROLE IF EXISTS pgw_cat_cached, pgw_cat_group"); err != nil {
			t.Errorf("drop roles: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := e.db.Database
	check := func(what, wantPath string, wantMember bool) {
		t.Helper()
		path, _, err := e.r.RoleSearchPath(ctx, "pgw_cat_cached", db)
		if err != nil {
			t.Fatal(err)
		}
		roles, err := e.r.RoleMemberships(ctx, "pgw_cat_cached", []string{"pgw_cat_group"})
		if err != nil {
			t.Fatal(err)
		}
		if path != wantPath || slices.Contains(roles, "pgw_cat_group") != wantMember {
			t.Errorf("%s: search_path %q, memberships %v; want %q, member %v", what, path, roles, wantPath, wantMember)
		}
	}
	check("first read", "first_path", false)
	e.db.Exec(t, `ALTER ROLE pgw_cat_cached SET search_path = second_path; GRANT pgw_cat_group TO pgw_cat_cached`)
	check("cached", "first_path", false)
	e.r.Invalidate()
	check("after an invalidation", "second_path", true)
	e.db.Exec(t, `ALTER ROLE pgw_cat_cached SET search_path = third_path; REVOKE pgw_cat_group FROM pgw_cat_cached`)
	e.clock.Advance(roleTTL + time.Second)
	check("after roleTTL", "third_path", false)
}
