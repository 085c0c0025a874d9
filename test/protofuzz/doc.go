// Package protofuzz is a differential fuzzer of pgwarden's protocol relay:
// it sends the same random sequence of client messages to PostgreSQL and
// through pgwarden, and compares the replies.
//
// What flows in: a seed (or a fuzzer's bytes) that Generate turns into a
// Sequence of valid frames in random order: Parse (named and unnamed,
// valid and invalid SQL, rows, COPY FROM STDIN and TO STDOUT), Bind
// (known and unknown statements, wrong parameter counts), Describe,
// Execute (with and without a row limit), Close, Sync, Flush, Query
// (several statements, errors, transactions, COPY, notices), CopyData,
// CopyDone and CopyFail in and out of COPY, FunctionCall and Terminate.
// A sequence is written in one write or in chunks, cut between frames or
// inside one, and may be settled: its trailer then waits for as many
// ReadyForQuery as PostgreSQL sent, as a client that counts them does.
//
// A run (Runner.Run) opens a raw connection as the trust user, creates the
// temporary table t that the statements write, sends the sequence and a
// trailer (CopyFail, Sync, then a Query for a marker row) that brings any
// session state back to idle, and reads up to the marker's ReadyForQuery,
// or to silence (a hang) or the end of the connection. The Transcript
// keeps message types, SQLSTATEs, command tags and row counts, and leaves
// out what differs by nature (ParameterStatus, error texts); afterwards it
// checks that the proxy's session and its backend ended with the client.
//
// What flows out: for each proxy of an Env (no inspector, the guard, a
// guard that blocks large results), a Class when its transcript differs
// from PostgreSQL's (hang, closed, leak, ReadyForQuery count, SQLSTATE,
// order, stall), and from Minimize the smallest sequence that still
// diverges the same way (delta debugging over messages and cuts). The
// blocking proxy is held to PostgreSQL's answer to the sequence's
// ErrorTwin, where each blocked statement fails on the row that the block
// stops at instead.
//
// The package's tests run regression cases and a few hundred seeded
// sequences; FuzzAgainstPostgres and the command in cmd run for longer
// (make fuzz).
package protofuzz
