// Package proxytest holds what tests need to run traffic through pgwarden:
// a proxy in front of the shared test cluster (Start, with options for an
// inspector, TLS on either side and its captured logs), clients that close
// with the test (Connect, ConnectPg, SuperConn), a raw protocol client for
// transcripts and input no driver would send (RawConn), assertions on
// PostgreSQL errors (WantCode, Code), a polling helper for what happens
// asynchronously (Eventually), and RowLimit, the smallest inspector that
// blocks.
//
// The end-to-end suite (test/e2e), the guard's tests and the binary's tests
// use it; the cluster comes from test/pgtest.
package proxytest
