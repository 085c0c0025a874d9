// Package tools runs PostgreSQL's own command-line tools and a non-Go driver
// through the pgwarden binary, as a DBA or an employee would, and compares
// what they produce with the same run direct to PostgreSQL.
//
// TestMain starts a PostgreSQL cluster (package pgtest) and builds
// cmd/pgwarden once. Each test starts `pgwarden serve` in front of the
// cluster with the guard on: a policy declaring the PII columns of the
// customers table, the catalog connected (--catalog-url), the decision log,
// a webhook for alerts and the admin listener for /metrics. The suites:
//
//   - dump_test.go: pg_dump plain, custom (-Fc) and directory (-Fd -j 2,
//     also over TLS), restored with psql or pg_restore into databases made
//     with createdb and removed with dropdb, all through pgwarden; row
//     counts, checksums, sequences and large objects compared with the
//     source;
//   - psql_test.go: meta-commands and \copy, output compared with direct;
//   - pgbench_test.go: pgbench -i and runs in the simple, extended and
//     prepared protocols and in pipeline mode; vacuumdb;
//   - psycopg_test.go: Python's psycopg 3 (text and binary results, a
//     server-side cursor, COPY both ways, pipeline mode, a notification),
//     compared with direct;
//   - rowlimit_test.go: --max-rows-per-statement spares results read only
//     from the system catalogs (pg_dump --schema-only) and still stops user
//     data, with the refusal recorded as a decision;
//   - catalog_test.go: declared columns are recognised on a database other
//     than the catalog URL's, and pgwarden's connection there does not
//     stop dropdb.
//
// The client tools are looked for in /usr/lib/postgresql/*/bin, newest
// first, then on PATH. A test whose tool is missing is skipped, unless
// PGWARDEN_REQUIRE_TOOLS=1 (set by CI), which makes it fail.
package tools
