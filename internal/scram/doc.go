// Package scram is the client side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS
// (RFC 5802, RFC 7677, with tls-server-end-point channel binding from RFC 5929)
// as PostgreSQL speaks it in SASL authentication.
//
// The proxy needs it where it terminates the client's TLS and must log in to
// the upstream PostgreSQL itself, with the password the client gave it: the
// client's own SCRAM exchange cannot be relayed, because channel binding ties
// it to the TLS connection the client sees, which is the proxy's.
//
// One exchange, driven by the caller over the wire (see
// https://www.postgresql.org/docs/current/sasl-authentication.html):
//
//	server -> AuthenticationSASL            mechanisms    NewClient
//	client -> SASLInitialResponse           Mechanism, ClientFirst
//	server -> AuthenticationSASLContinue    server-first  ServerFirst returns client-final
//	client -> SASLResponse                  client-final
//	server -> AuthenticationSASLFinal       server-final  ServerFinal verifies the server
//	server -> AuthenticationOk
//
// An AuthenticationOk is only to be believed after ServerFinal returned nil:
// that is when the server has proved it holds the password's secret, and
// what Verified reports.
//
// Passwords are prepared with SASLprep exactly as PostgreSQL prepares them when
// it stores the secret, including its rule that a password SASLprep rejects is
// used unchanged. The RFC 3454 tables in saslprep_tables.go are generated from
// Python's stringprep module, which is pinned to Unicode 3.2 as SASLprep is.
package scram
