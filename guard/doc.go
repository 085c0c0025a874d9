// Package guard is pgwarden's inspector: it implements proxy.Inspector with
// the policy's logic. For every statement it counts what the session
// receives (rows, bytes, PII rows, PII values per category, distinct data
// subjects, tables touched), rolls the figures up per employee in sliding
// windows, and records each statement in the audit trail.
//
// What flows in: the RowDescription of each result (resolved to catalog
// names through proxy/catalog and classified by the policy: a declared
// column is counted without looking at its values, an excluded one is
// skipped, any other is scanned by the content detectors, after decoding
// when its type can hide text: bytea, base64 or hex text, binary arrays and
// composites, see policy/decode), every DataRow and every CopyData line. What flows out: a Figures per statement, handed to the
// per-employee windows (policy/window) and to the audit log when one is
// configured.
//
// Counting is done on the relay's server -> client goroutine, before the
// row is forwarded, so a later issue's limits can stop the row that crosses
// them.
//
// # Audit
//
// Each statement's "statement" event is written when its batch's
// ReadyForQuery arrives, before the client is told the batch is done.
// Failing closed (Config.AuditFailOpen unset), a "statement_start" event
// is written before the statement is forwarded, and a statement it cannot
// be written for is refused (SQLSTATE 42501) without reaching the server.
// A statement the client sent just before Terminate or closing the
// connection runs upstream though the relay stops before its result: the
// guard keeps the statements it let through until they are recorded, and
// EndSession records the rest ("outcome": "no_result", or "incomplete"
// when the result was cut short) before session_end.
//
// # Identity
//
// Figures, windows, norms, quarantine, holds, decisions and audit events
// are keyed on an employee: the session's (proxy.SessionInfo's Employee),
// unless the session's database role is one of the policy's service
// accounts. Then each statement may name its own, with a tag signed by the
// application (package identity/tag, keys in Config.ServiceKeys): a
// comment at the start or end of the statement, or SET application_name
// for the statements that follow (SET LOCAL: until the transaction ends).
// Statement decides whom a statement is counted against, on the goroutine
// reading the client, and keeps it with the statement (identity.go): with
// pipelining, rows arrive for one employee's statement while another's
// has been sent, and each is counted, limited and recorded as its own. A
// tagged employee who is quarantined is refused statement by statement; a
// rejected tag is ignored (the statement is the service account's) and
// alerted as rule identity:forged-tag. Every decision and audit event
// names the employee, how they were identified (role, certificate, login
// or tag), the database role, the client address and the application.
package guard
