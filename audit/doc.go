// Package audit records what pgwarden saw and decided in an append-only,
// hash-chained JSON Lines log that an operator can verify offline.
//
// # What flows in
//
// The proxy calls (*Log).Append with an Event (session start and end,
// statement, decision, ...). Append fills the sequence number, the time (from
// Config.Now) and Prev, the hex SHA-256 of the previous line's exact bytes,
// writes one line, and returns once the line is as durable as Config.Sync
// says. An error from Append means the event is not recorded: the caller
// applies its fail-open or fail-closed setting. AppendWritten returns once
// the line is written, before its fsync, for a record that the next
// Append's fsync makes durable.
//
// # Unavailable and resumed
//
// After a write or fsync error (a full disk) the Log refuses every event
// ("audit_unavailable") rather than write a chain with a hole in it, and
// probes every Config.ProbeInterval, once Config.ProbeMinFree bytes are
// free (a disk with room for the probe's checkpoint only would fail again
// at once): it reopens the directory as Open does
// after a restart (a line torn by the failed write is truncated away) and
// writes a "recover" checkpoint. Once that is fsynced the Log takes events
// again ("audit_resumed"). Config.OnChange hears of each transition once.
//
// # The files
//
// DIR/audit-<first seq, 20 digits>-<UTC time>.jsonl, mode 0600 in a 0700
// directory, opened O_APPEND. Every file starts with a "file_start" event
// whose Prev is the hash of the previous file's last line (64 zeros for the
// very first event), so removing or reordering whole files breaks the chain.
// Every Config.CheckpointEvery events, and before a file is rotated (by size
// or age) or the Log closed, a "checkpoint" event carries an HMAC-SHA256,
// under Config.Key, of its type, seq, Prev and checkpoint interval; file_start
// events carry one too. Someone who edits an event and recomputes the whole
// chain without the key is caught at the next HMAC. The events after the last
// HMAC of the newest file, and a truncation of the newest file's tail, cannot
// be told from a log that simply ended there: ship checkpoints elsewhere if
// that matters.
//
// # Durability (Config.Sync)
//
//   - SyncAlways (default): Append returns after fsync(2). Concurrent Appends
//     share one fsync (group commit): while one caller syncs, the others
//     write their lines and the next fsync covers them all.
//   - SyncInterval: Append returns after write(2); a background goroutine
//     fsyncs at least every Config.SyncInterval (default 100ms), so a machine
//     crash loses at most that much acknowledged history; a process crash
//     (kill -9) loses nothing, as the data is in the page cache.
//   - SyncNever: fsync only at rotation and Close.
//
// # Restart
//
// Open resumes an existing directory: it reads the newest file's last lines to
// continue the sequence and the chain. A final line without its newline is a
// write torn by a crash (never acknowledged): it is truncated away and logged.
// Any other damage makes Open fail, because appending to a broken chain would
// hide it. Open then writes a "resume" checkpoint, which marks the restart in
// the log.
//
// # Copies
//
// Config.Tap hears of every line as it is written, in seq order (serve
// streams the trail to SIEMs with it); DurableSeq says how far the lines
// are on stable storage; ReadLines and a LineReader read the lines back,
// byte for byte, from any seq on.
//
// # Checking
//
// Verify walks every file in sequence order and reports the first problem
// with its file, line and seq; Read streams events for queries. Both are
// used by `pgwarden audit verify` and `pgwarden audit query`.
package audit
