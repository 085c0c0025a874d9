#!/usr/bin/env bash
# A throwaway PostgreSQL with a customers table, pgwarden in front of it, and
# psql through pgwarden: a point lookup passes, a bulk read is blocked
# mid-result, the session carries on, and the audit log shows the PII each
# statement sent. Everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building pgwarden and the throwaway-cluster tool"
go build -o "$work/pgwarden" ./cmd/pgwarden
go build -o "$work/pgcluster" ./test/pgtest/cmd/pgcluster

step "starting a throwaway PostgreSQL"
"$work/pgcluster" >"$work/env" 2>"$work/cluster.log" &
pids+=($!)
for _ in $(seq 1 120); do grep -q PGWARDEN_TEST_DSN "$work/env" 2>/dev/null && break; sleep 0.5; done
grep -q PGWARDEN_TEST_DSN "$work/env" || { cat "$work/cluster.log"; exit 1; }
# shellcheck disable=SC1091
. "$work/env"
echo "PostgreSQL on $PGHOST:$PGPORT"

step "seeding 10,000 customers"
psql -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE customers (id int PRIMARY KEY, full_name text, email text, phone text);
INSERT INTO customers
SELECT i, 'Customer ' || i, 'customer' || i || '@example.com', '+1555' || lpad(i::text, 7, '0')
FROM generate_series(1, 10000) i;
SQL

cat >"$work/policy.yaml" <<'YAML'
version: 1
pii:
  columns:
    - match: public.customers.email
      category: email
    - match: public.customers.full_name
      category: name
    - match: public.customers.phone
      category: phone
YAML
export PGWARDEN_AUDIT_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')

listen=127.0.0.1:${PGWARDEN_DEMO_PORT:-6432}
step "starting pgwarden on $listen (policy: customers' email, name and phone; limit: 100 rows per statement)"
"$work/pgwarden" serve --listen "$listen" --upstream "postgres://$PGHOST:$PGPORT" \
  --policy "$work/policy.yaml" --catalog-url "$PGWARDEN_TEST_DSN" --audit-dir "$work/audit" \
  --max-rows-per-statement 100 2>"$work/pgwarden.log" &
pids+=($!)
for _ in $(seq 1 50); do psql -h "${listen%:*}" -p "${listen#*:}" -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done

step "an employee looks up one customer, then dumps the table, through pgwarden"
set +e
psql -h "${listen%:*}" -p "${listen#*:}" -e <<'SQL'
SELECT id, full_name, email FROM customers WHERE id = 42;
SELECT * FROM customers;
SELECT count(*) AS customers_total FROM customers;
SELECT string_agg(email, ',') AS packed FROM customers WHERE id <= 60 \gset
SELECT length(:'packed') AS packed_length;
SQL
set -e

step "what pgwarden recorded: every statement, with the PII it sent (hash-chained audit log)"
kill "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true
"$work/pgwarden" audit query "$work/audit" --type statement
"$work/pgwarden" audit verify "$work/audit"

step "pgwarden's log"
cat "$work/pgwarden.log"
