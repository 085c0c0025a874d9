#!/usr/bin/env bash
# A throwaway PostgreSQL with 10,000 customers and pgwarden in front of it,
# running its built-in policy. Two support agents and an analyst do their
# normal work; an insider tries to take the customer list several ways. The
# demo shows what was blocked, what security was alerted about, and the
# audit trail. Everything is removed on exit.
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

step "building pgwarden and the demo tools"
go build -o "$work/pgwarden" ./cmd/pgwarden
go build -o "$work/pgcluster" ./test/pgtest/cmd/pgcluster
go build -o "$work/alertsink" ./test/cmd/alertsink

step "starting a throwaway PostgreSQL"
"$work/pgcluster" >"$work/env" 2>"$work/cluster.log" &
pids+=($!)
for _ in $(seq 1 120); do grep -q PGWARDEN_TEST_DSN "$work/env" 2>/dev/null && break; sleep 0.5; done
grep -q PGWARDEN_TEST_DSN "$work/env" || { cat "$work/cluster.log"; exit 1; }
# shellcheck disable=SC1091
. "$work/env"
echo "PostgreSQL on $PGHOST:$PGPORT"

step "seeding 10,000 customers; employees alice and bob (support), carol (analyst), mallory"
psql -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE customers (id int PRIMARY KEY, full_name text, email text, phone text, city text);
INSERT INTO customers
SELECT i, 'Customer ' || i, 'customer' || i || '@example.com', '+1 415 555 ' || lpad((i % 10000)::text, 4, '0'),
       (ARRAY['Lyon', 'Oslo', 'Austin', 'Osaka'])[1 + i % 4]
FROM generate_series(1, 10000) i;
CREATE ROLE alice LOGIN PASSWORD 'demo';
CREATE ROLE bob LOGIN PASSWORD 'demo';
CREATE ROLE carol LOGIN PASSWORD 'demo';
CREATE ROLE mallory LOGIN PASSWORD 'demo';
GRANT SELECT ON customers TO alice, bob, carol, mallory;
SQL

export PGWARDEN_AUDIT_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export PGWARDEN_WEBHOOK_SECRET=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
hook=127.0.0.1:${PGWARDEN_DEMO_HOOK_PORT:-8099}
"$work/alertsink" --listen "$hook" >"$work/alerts.txt" 2>"$work/alertsink.log" &
pids+=($!)

listen=127.0.0.1:${PGWARDEN_DEMO_PORT:-6432}
step "starting pgwarden on $listen with its built-in policy (pgwarden policy default)"
"$work/pgwarden" policy default | sed -n '/^rules:/,$p' | grep -E '^  - name:|action:|pii_values:|statements:' | sed 's/^/    /'
# Repeated alerts of one employee and rule are folded into a summary at the
# end of a window (1 minute by default; 2 seconds here, for the demo).
printf 'notify:\n  dedupe_window: 2s\n' >"$work/pgwarden.yaml"
"$work/pgwarden" serve --config "$work/pgwarden.yaml" --listen "$listen" --upstream "postgres://$PGHOST:$PGPORT" \
  --audit-dir "$work/audit" --state-dir "$work/state" --webhook-url "http://$hook/alerts" \
  2>"$work/pgwarden.log" &
pwpid=$!
pids+=($pwpid)
for _ in $(seq 1 50); do PGPASSWORD=demo psql -h "${listen%:*}" -p "${listen#*:}" -U alice -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done

as() { # as USER: run psql through pgwarden as an employee, SQL on stdin
  PGPASSWORD=demo psql -h "${listen%:*}" -p "${listen#*:}" -U "$1" -X -q -e 2>&1 | sed 's/^/    /' || true
}

step "normal work: support agents look up single customers, the analyst counts"
as alice <<'SQL'
SELECT id, full_name, email, phone FROM customers WHERE id = 42;
SELECT id, full_name, email FROM customers WHERE email = 'customer777@example.com';
SQL
as bob <<'SQL'
SELECT full_name, phone FROM customers WHERE id IN (10, 11, 12);
SQL
as carol <<'SQL'
SELECT city, count(*) FROM customers GROUP BY city ORDER BY city;
SELECT split_part(email, '@', 2) AS domain, count(DISTINCT email) FROM customers GROUP BY 1;
SQL

step "mallory tries to take the customer list"
as mallory <<'SQL'
\echo '-- 1. the whole table: stopped mid-result at the statement limit'
SELECT * FROM customers \g /dev/null
\echo '-- 2. COPY to a file on the server, where pgwarden could not count it: refused before it runs'
COPY customers TO '/tmp/customers.csv';
\echo '-- 3. COPY to the client: stopped at the same limit'
COPY customers TO STDOUT \g /dev/null
\echo '-- 4. 3,000 emails packed into one value: each counted; under the block limit, so security is alerted'
SELECT string_agg(email, ',') AS packed FROM customers WHERE id <= 3000 \g /dev/null
SQL

sleep 4 # notifications are delivered asynchronously, from a durable outbox
step "what security received (signed webhook deliveries)"
sed 's/^/    /' "$work/alerts.txt"

step "the decisions in the hash-chained audit trail"
kill -TERM "$pwpid"; wait "$pwpid" 2>/dev/null || true
"$work/pgwarden" audit query "$work/audit" --type decision
"$work/pgwarden" audit verify "$work/audit"

step "what mallory received, statement by statement"
"$work/pgwarden" audit query "$work/audit" --type statement --user mallory

echo
echo "pgwarden's log: $work/pgwarden.log (removed on exit); run 'make demo' again to repeat."
