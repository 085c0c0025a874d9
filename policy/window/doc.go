// Package window rolls per-statement counts up into sliding windows of 1
// minute, 10 minutes, 1 hour and 24 hours, per employee (or per session: the
// key is any string), with the clock injected by the caller.
//
// What flows in: for each statement, a Figures value (statements, rows, PII
// rows, PII values per category, bytes to the client, and the distinct data
// subjects as hashes or as an hll.Counter) and the time it was counted. What
// flows out: Sum, the Figures of a window ending now, and Registry.Get, the
// four windows of one key at once, which the norms and limits of policy
// compare with thresholds.
//
// A Window is a ring of Buckets (60) buckets of span/60 each: 1 s for the
// minute, 10 s for ten minutes, 1 min for the hour, 24 min for the day. A
// bucket holds counters and, once a subject is seen in it, an hll.Counter:
// the exact set of the subjects' hashes up to hll.ExactLimit (4096), then a
// sketch of precision DefaultPrecision (10: 1 KiB, 3.25% standard error).
// Sum merges the counters of the live buckets, so a subject seen in several
// buckets counts once, and a window of up to 4096 subjects counts them
// exactly (a limit of 500 fires at 501, never at 500). Time only moves forward for a window:
//
//   - Sum(now) covers the 60 buckets ending with the one holding now, that is
//     (now-span, now] to within one bucket width (span/60) at the old end: an
//     event of age a = now-t is counted when a < span-width and never when
//     a >= span; in between it depends on where now falls in its bucket.
//     Events after now (from a clock that moved back) are counted too.
//   - Add with a time older than the newest bucket but inside the span lands
//     in its own bucket (out-of-order arrival). A time a whole span or more
//     behind the newest bucket means the clock went backward: it is added to
//     the newest bucket, so nothing is lost and nothing is counted twice.
//   - A time a whole span or more ahead of the newest bucket expires every
//     bucket.
//
// Memory, per key (Set: four windows), on amd64: 240 buckets of 176 bytes,
// 41.3 KiB, allocated when the key is first seen; plus, per bucket in which
// subjects were counted, the set of their hashes (about 16 bytes each, at
// most 64 KiB) or a 1 KiB sketch (and a map per bucket with custom
// categories), kept for reuse when the bucket expires. The exact sets bound
// a key at 240 x 64 KiB = 15 MiB, reached only by an employee receiving
// 4096 distinct subjects in every bucket of every window. An employee counted
// only now and then costs about 44 KiB; one active every second of the day
// at most 41.3 + 240 = 282 KiB (so 1000 busy employees: about 282 MB, 1000
// occasional ones: about 44 MB). Registry.Sweep frees the keys idle for more
// than 24 hours, whose windows are all empty by then.
//
// Cost: Registry.Add is a few hundred nanoseconds with the key's windows in
// cache, about 1 µs when they are not, and allocates only for a new key or a
// bucket's first counter. Sum merges the counter of each live bucket
// holding subjects: its hashes while exact, its registers once a sketch.
// For a key reading a new subject every second of the day that is 86,400
// hashes and about 2 ms (0.5 ms when every bucket held a sketch, before
// counts were exact); GetCounts and SumCounts skip the subjects and take
// about 2 µs.
//
// Registry is safe for concurrent use (keys spread over sharded mutexes);
// Window and Set are not.
package window
