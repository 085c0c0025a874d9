// Package guard is pgwarden's inspector: it implements proxy.Inspector with
// the policy's logic. For every statement it counts what the session
// receives (rows, bytes, PII rows, PII values per category, distinct data
// subjects, tables touched), rolls the figures up per employee in sliding
// windows, and records each statement in the audit trail.
//
// What flows in: the RowDescription of each result (resolved to catalog
// names through proxy/catalog and classified by the policy: a declared
// column is counted without looking at its values, an excluded one is
// skipped, any other is scanned by the content detectors), every DataRow and
// every CopyData line. What flows out: a Figures per statement, handed to the
// per-employee windows (policy/window) and to the audit log when one is
// configured.
//
// Counting is done on the relay's server -> client goroutine, before the
// row is forwarded, so a later issue's limits can stop the row that crosses
// them.
package guard
