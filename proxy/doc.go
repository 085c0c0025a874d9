// Package proxy is pgwarden's network and protocol layer: it accepts
// PostgreSQL clients, relays each one to the upstream server, and shows the
// traffic to an Inspector that may stop a result or end a session.
//
// # Phases of a session
//
// Startup. The client's first packets are read one at a time, never ahead:
// an SSLRequest is answered 'S' (then TLS with Config.ClientTLS) or 'N', a
// GSSENCRequest 'N' so that libpq falls back, a CancelRequest is mapped to the
// upstream key of the session it names and forwarded on a connection of its
// own. A StartupMessage of protocol 3.x opens a connection upstream (TLS as
// Config.UpstreamTLSMode says) and is forwarded.
//
// Authentication. The client authenticates to PostgreSQL, not to pgwarden:
// password, md5 and SCRAM messages pass through unchanged. SCRAM channel
// binding cannot cross a TLS-terminating proxy, so SCRAM-SHA-256-PLUS is never
// offered; when both sides are on TLS, where a client's "y" GS2 flag would be
// rejected by the server as a downgrade, pgwarden asks the client for the
// password over its TLS connection and runs SCRAM upstream itself (see
// auth.go). The server's BackendKeyData is replaced by one of pgwarden's own.
//
// Login. With Config.Login, pgwarden authenticates the employee itself
// instead, for the startups Login.Method picks: SCRAM-SHA-256 against the
// login's stored verifier (or, over TLS only, a cleartext password checked
// against it), with unknown names run against a stand-in verifier so that
// they fail like a wrong password, and failures throttled by the Accounts.
// Only then does it connect upstream, with the startup message's user
// replaced by the role the login maps to, and authenticate there with the
// configured password (cleartext, md5 or SCRAM), which the client never
// sees (see login.go).
//
// Reuse. With Config.Reuse, the server connection of a session under
// pgwarden's own login outlives the session when it ended cleanly (the
// client left outside any transaction, nothing in flight, no COPY, no
// block, no cancel): its cancel key is withdrawn, DISCARD ALL resets it,
// and it waits for the next session of the same role, database and
// startup parameters, which gets AuthenticationOk, the server's parameters
// as they stand, a cancel key of its own and ReadyForQuery (see reuse.go).
//
// Relay. One goroutine per direction (the client's on the session's own
// goroutine) reads whole frames (type, length, body) into a buffer it owns,
// forwards the bytes unchanged, and flushes its writer only when the reader
// has no complete frame left: one read and one write system call per
// buffer-full, not per message. On plain TCP those are raw system calls
// through the connection's RawConn (sockio_linux.go), which keep the Go
// scheduler out of each call's way. Every request the server
// answers leaves an entry in the pending queue (pipeline.go), so each
// response is matched to its statement however deeply the client pipelines.
// Without an Inspector nothing beyond the frame header and that queue is
// decoded.
//
// Inspection. With an Inspector, the relay decodes the client's Query, Parse,
// Bind, Execute, Describe and Close, and the server's RowDescription,
// DataRow, CopyOutResponse, CopyData, CommandComplete, ErrorResponse and
// ReadyForQuery, and shows them to the SessionInspector. A DataRow or
// CopyData is judged before it is forwarded. A Block verdict sends the client
// SQLSTATE 42501 ("pgwarden: ..."), cancels the upstream query, drops the rest
// of the result up to the ReadyForQuery of its batch, and forwards that
// ReadyForQuery with the true transaction status: the session stays usable.
// Kill ends the session with a FATAL error. Rewrite forwards a DataRow with
// other values, or CopyData with other data (masking); an inspector that is
// a CopyEnder may hold COPY data back and send it at CopyDone.
//
// Limits. Memory follows what a client has proved. Until it has
// authenticated, a client holds one of Config.MaxStartupPerAddress slots of
// its IP address and may send messages of at most 65,535 bytes, as
// PostgreSQL allows a password or SASL message; then Config.MaxMessageSize
// (64 MiB by default) caps each message, and a session stops reading its
// client while 65,536 requests await their answers (limits.go). A frame's
// buffer grows with the bytes that arrive, not with its length field.
//
// Teardown. The first direction to stop interrupts the other (a deadline in
// the past unblocks its read); both are joined, the client is told why if
// pgwarden ended the session, and the upstream session is cancelled if busy
// and ended with Terminate. A client's own Terminate is forwarded; the
// server's answers to requests still in flight are relayed until it closes
// (for at most a second), and with none in flight the session ends at once.
//
// Errors that the client must see get a wireError where they arise and are
// encoded in one place, errorFrame.
package proxy
