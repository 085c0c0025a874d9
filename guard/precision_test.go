package guard_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// TestIrreversibleTransformsNotCounted: a hash salted with a fresh random
// value and a prefix too short to tell people apart are not the PII they
// are computed from, so 100 of them pass a 50-value block; a hash without
// salt (a dictionary inverts it) and reversible transforms are counted and
// blocked.
func TestIrreversibleTransformsNotCounted(t *testing.T) {
	ev, conn := setup(t, withRules(t, `rules:
  - name: pii-bulk
    when:
      pii_values: 50
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pass := []string{
		"SELECT id, md5(email || gen_random_uuid()::text) FROM customers WHERE id <= 100",
		"SELECT id, sha256(convert_to(email || gen_random_uuid()::text, 'UTF8')) FROM customers WHERE id <= 100",
		"SELECT id, left(email, 3), substr(full_name, 1, 3) FROM customers WHERE id <= 100",
		"WITH h AS (SELECT md5(concat(email, gen_random_uuid())) AS k FROM customers WHERE id <= 100) SELECT k FROM h",
	}
	for _, q := range pass {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			n, err := countRows(ctx, conn, q, mode)
			if err != nil || n != 100 {
				t.Fatalf("%s (%v): %d rows, %v; want 100 rows, not blocked", q, mode, n, err)
			}
			if got := ev.last(t); got.PIIValues["email"] != 0 || got.PIIValues["name"] != 0 {
				t.Errorf("%s (%v): counted %v, want no PII", q, mode, got.PIIValues)
			}
		}
	}
	ev.decisions(t)
	blocked := []string{
		"SELECT id, md5(email) FROM customers WHERE id <= 100",
		"SELECT id, md5(email || now()::text) FROM customers WHERE id <= 100",
		"SELECT id, md5(email || random()::text) FROM customers WHERE id <= 100",
		"SELECT id, upper(email) FROM customers WHERE id <= 100",
		"SELECT id, left(email, 12) FROM customers WHERE id <= 100",
		"SELECT id, md5(email) || gen_random_uuid()::text FROM customers WHERE id <= 100",
	}
	for _, q := range blocked {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			n, err := countRows(ctx, conn, q, mode)
			wantRuleBlock(t, err, "pii-bulk")
			if n > 50 {
				t.Errorf("%s (%v): %d rows delivered, limit 50", q, mode, n)
			}
			if d := ev.decisions(t); len(d) != 1 || d[0]["rule"] != "pii-bulk" {
				t.Errorf("%s (%v): decisions %v", q, mode, d)
			}
		}
	}
}

// TestServerAddressesNotPII: the client addresses in the server's own
// statistics views (a DBA's look at pg_stat_activity) name database
// sessions, not data subjects, so they are not IP addresses of PII; the
// same address in a user table is, and so is the address made text.
func TestServerAddressesNotPII(t *testing.T) {
	db := pgtest.Shared(t)
	db.Exec(t, `DROP TABLE IF EXISTS visits; CREATE TABLE visits (id int, addr inet);
INSERT INTO visits SELECT i, ('203.0.113.' || i)::inet FROM generate_series(1, 5) i;
GRANT SELECT ON visits TO `+pgtest.TrustUser)
	defer db.Exec(t, "DROP TABLE visits")
	ev, conn := setup(t, withRules(t, `rules:
  - name: any-ip
    when:
      pii_values: {ip: 1}
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		q := "SELECT pid, usename, client_addr, state FROM pg_stat_activity WHERE client_addr IS NOT NULL"
		n, err := countRows(ctx, conn, q, mode)
		if err != nil || n == 0 {
			t.Fatalf("%s (%v): %d rows, %v; want the TCP sessions, not blocked", q, mode, n, err)
		}
		if got := ev.last(t); got.PIIValues["ip"] != 0 {
			t.Errorf("%s (%v): counted %v, want no PII", q, mode, got.PIIValues)
		}
		for _, q := range []string{
			"SELECT id, addr FROM visits ORDER BY id",
			"SELECT pid, client_addr::text, host(client_addr) FROM pg_stat_activity WHERE client_addr IS NOT NULL",
		} {
			if mode != pgx.QueryExecModeSimpleProtocol && strings.Contains(q, "visits") {
				continue // a binary inet is counted when declared (policy/decode)
			}
			_, err := countRows(ctx, conn, q, mode)
			wantRuleBlock(t, err, "any-ip")
		}
	}
}
