package guard_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// TestPredicateProbesCountAsReads: a bisection that only counts rows
// (SELECT count(*) ... WHERE ssn < $1) returns no social security number,
// yet finds one; each statement probing ssn counts one national_id value,
// so forty probes cross a session limit of 30, in both protocols. A probe
// that returns no row is counted too, and a lookup that returns the
// probed column is not counted twice.
func TestPredicateProbesCountAsReads(t *testing.T) {
	pgtest.Shared(t).Exec(t, `DROP TABLE IF EXISTS pgw_people;
CREATE TABLE pgw_people (id int PRIMARY KEY, ssn text);
INSERT INTO pgw_people SELECT i, lpad((100000000 + i * 7919)::text, 9, '0') FROM generate_series(1, 1000) i;
GRANT SELECT ON pgw_people TO `+pgtest.TrustUser)
	ev, conn := setup(t, func(c *guard.Config) {
		p, err := policy.Parse("probes.yaml", []byte(`version: 1
pii:
  columns:
    - match: public.pgw_people.ssn
      category: national_id
    - match: public.customers.email
      category: email
rules:
  - name: ssn-session
    scope: session
    when:
      pii_values: {national_id: 30}
    action: block
`))
		if err != nil {
			t.Fatal(err)
		}
		c.Policy = p
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if _, err := countRows(ctx, conn, "SELECT id FROM pgw_people WHERE ssn = $1", pgx.QueryExecModeCacheStatement, "000000000"); err != nil {
		t.Fatal(err)
	}
	if got := ev.last(t); got.PIIValues["national_id"] != 1 || got.Rows != 0 {
		t.Errorf("a probe with no row: counted %+v, want 1 national_id", got)
	}
	if _, err := countRows(ctx, conn, "SELECT ssn FROM pgw_people WHERE ssn = $1", pgx.QueryExecModeCacheStatement, "100007919"); err != nil {
		t.Fatal(err)
	}
	if got := ev.last(t); got.PIIValues["national_id"] != 1 || got.Rows != 1 {
		t.Errorf("a lookup returning the ssn: counted %+v, want the 1 returned", got)
	}
	if _, err := countRows(ctx, conn, "SELECT count(*) FROM pgw_people WHERE id < $1", pgx.QueryExecModeCacheStatement, 500); err != nil {
		t.Fatal(err)
	}
	if got := ev.last(t); len(got.PIIValues) != 0 {
		t.Errorf("a predicate on a column that is no PII: counted %+v", got)
	}

	// Bisection of a number between the 1,000 rows' values: 28 probes
	// so far pass (2 counted above), the 29th reaches 30, the 30th is
	// blocked as it answers.
	bisect := func(mode pgx.QueryExecMode, literal bool) (probes int, blocked error) {
		lo, hi := 100000000, 108000000
		for probes < 40 {
			mid := (lo + hi) / 2
			var n int64
			var err error
			if literal {
				err = conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM pgw_people WHERE ssn < '%09d'", mid), mode).Scan(&n)
			} else {
				err = conn.QueryRow(ctx, "SELECT count(*) FROM pgw_people WHERE ssn < $1", mode, fmt.Sprintf("%09d", mid)).Scan(&n)
			}
			probes++
			if err != nil {
				return probes, err
			}
			if n >= 500 {
				hi = mid
			} else {
				lo = mid
			}
		}
		return probes, nil
	}
	n, err := bisect(pgx.QueryExecModeCacheStatement, false)
	wantRuleBlock(t, err, "ssn-session")
	if n != 29 {
		t.Errorf("blocked at probe %d, want 29 (30 with the 2 before, limit 30)", n)
	}

	// A new session; literal values, simple protocol.
	cfg := conn.Config().Copy()
	conn2, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	conn = conn2
	n, err = bisect(pgx.QueryExecModeSimpleProtocol, true)
	wantRuleBlock(t, err, "ssn-session")
	if n != 31 {
		t.Errorf("literal probes: blocked at %d, want 31", n)
	}
}
