// Package e2e runs real PostgreSQL clients (pgx, pgconn, psql and hand-written
// wire transcripts) through an in-process pgwarden against the PostgreSQL
// server that package pgtest starts, and compares what they see with the same
// through a direct connection.
//
// Every test starts its own proxy.Server on a 127.0.0.1:0 listener
// (proxytest.Start), with the proxy's logs sent to the test log, and shuts
// it down when the test ends. The suites:
//
//   - query_test.go: simple and extended protocol in every pgx exec mode,
//     prepared statements, batches, pgconn pipelines, multi-statement queries,
//     the common types, errors, notices, portals with row limits;
//   - copy_test.go: COPY in and out, LISTEN/NOTIFY, cursors, a large result;
//   - cancel_test.go: cancel requests, right and wrong keys;
//   - tls_test.go: TLS on either side and every authentication method;
//   - block_test.go: proxytest.RowLimit stopping a result mid-stream;
//   - inspector_test.go: what an Inspector is shown, against what the
//     client received, and the comparisons again through an inspecting proxy;
//   - psql_test.go: the same core cases with the psql binary;
//   - badinput_test.go and lifecycle_test.go: malformed input, limits,
//     timeouts, upstream failures and graceful shutdown.
//
// Every test has a deadline; nothing here can hang for longer than its
// context allows.
package e2e
