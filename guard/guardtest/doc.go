// Package guardtest drives a guard the way the proxy does, without
// PostgreSQL, so that the rule engine's cases run in milliseconds: Catalog
// is a guard.Resolver answering from tables a test declares, and Session
// feeds a session's Statement, RowDescription, DataRow (or CopyData),
// CommandComplete and ReadyForQuery directly, acting on the verdicts as
// the relay would (Blocked, then the batch's ReadyForQuery for a block,
// the session's end for a kill). With guard.Config.Now set to a virtual
// clock (internal/clock), windows and norms see the time the test sets.
//
// What needs a real server (the relay's protocol, the catalog's queries,
// pg_query over SQL the server accepts, estimates) stays in the tests that
// start one (test/pgtest).
package guardtest
