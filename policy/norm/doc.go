// Package norm learns what is normal for each employee (the "norms" of the
// design) and reports what is not: pure logic, no network, no wall clock;
// every time comes from the caller.
//
// What flows in: one Observation per statement (who, peer group, when, from
// which client and application, and the Features it contributed: PII values
// per category, PII rows, subjects, bytes, statements, failures, COPY, the
// tables touched; the model also counts the statements that returned PII), and Advance(now) once a minute. What flows out:
// Anomalies, each with a Score (>= 1: alert-worthy; the caller maps kind
// and score to an action) and an explanation with the numbers; Norm, what
// was learned, for the admin API; Snapshot/Restore of the whole state.
//
// # Buckets and history
//
// Per employee, the open 10-minute, hour and day buckets (aligned on the
// wall clock of Config.Location) sum the features. When a 10-minute or hour
// bucket closes, it only raises the day's maximum for its window; when a day
// closes, an active day (one with a statement) becomes one record of the
// history: per feature, the day's total, its largest 10-minute bucket, its
// largest hour, and the hours of the day with activity. Days without
// activity (weekends, holidays, leave) leave no record, so they never drag a
// norm down. History keeps HistoryDays days; tables, client addresses and
// applications not seen for as long are forgotten too. Buckets close lazily
// on the employee's next Observe, or on Advance.
//
// # The norm
//
// At each day close the employee's norm is relearned from the records, per
// window (10m, 1h, 1d) and feature: Median is the median daily maximum (or
// total), High, the threshold, is max(floor, 3*q75, 1.5*q95) of the daily
// maxima (4*q75 and 2*q95 for bytes, statements and failures). The absolute
// floors (50 PII values in 10 minutes, 100 an hour, 300 a day; see floors)
// keep small noisy norms from alerting: an analyst who reads 3 emails is
// not an anomaly. Seasonality is learned as hour types: an hour of the day
// is "usual" for an employee when, on at least max(2, 10%) of the active
// days, the employee was active in it or in an hour next to it, and
// weekends are usual once two weekend days are active (judged only when the
// history spans two weeks). Volume is compared with the one norm of the
// employee's usual hours; PII in an unusual hour is its own kind, off_hours
// (at least 20 PII values in the hour). So the billing batch at 02:00 is
// normal for the batch account and off-hours for a day-shift agent.
//
// Rise cap: every High and the usual daily total rise by at most
// MaxDailyRise per relearn (per active day) over the previous norm, so an
// attacker who ramps up slowly does not become normal; a norm falls freely.
//
// Whose norm: an employee's own once it has MinActiveDays active days under
// its current peer group; before that the peer group's (a new hire from the
// first statement), once two of its members are established: per window and
// feature the upper quartile of its established members' thresholds, the median of their usual figures, the
// hours a quarter of them usually work in. When an employee's Peer changes
// (a role change: a non-empty Peer different from the last), its history is
// dropped and the new group's norm is used until MinActiveDays active days
// accumulate. With neither, a provisional own norm from the days so far is
// used (never for off-hours), and on the very first day a default of four
// times the floors, reported at most once a day.
//
// # Anomalies
//
//   - volume (failed_statements for failures): a feature of an open bucket
//     at or above High. Score = observed/High. One statement yields at most
//     one anomaly per kind (the highest score); each (kind, feature, window,
//     bucket) is reported once, again only when its score has doubled. The
//     PII features (values, per category, rows, subjects) rise together and
//     count as one feature there; and once a PII volume or off-hours
//     anomaly is reported, every open bucket's current PII score counts as
//     reported, so that ordinary work after an alerted burst does not alert
//     the hour or the day again (only a doubling does).
//   - off_hours: PII in an unusual hour or on an unusual weekend; Score
//     1 + log10(values/20).
//   - novel_table, novel_client, novel_application: a first use in
//     HistoryDays, after the learning period (tables and applications only
//     when no member of the peer group uses them), reported by the first
//     statement that brings PII through it: a first use without PII (a
//     catalog view in an incident, a driver's first statements from a new
//     address) is neither reported nor learned, and the PII that follows
//     it is the novelty; copy: a first COPY TO
//     STDOUT carrying PII where neither the employee nor the peer group has
//     used COPY; novel_category: a PII category (Subject) of which the
//     employee received at least 10 values in a day, after the learning
//     period, which they read on no day of their history and the other
//     members of their peer group on fewer than two (an agent whose work
//     never touches social security numbers reading fifty), judged once
//     per category and day, when the day's values cross 10. Score 1.05: alert, do not block. Subject names
//     what is new, so that the caller can tell a change many employees
//     share (an office's renumbered addresses) from one employee's.
//   - drift (slow-and-low): when a day closes, the totals of PII values,
//     of statements that returned PII (the lookups: their number varies
//     less from day to day than what each returns) and, with
//     explained_access, of statements that returned rows no recorded
//     reason explains (a slow reader's lookups stand out against the few
//     of an employee's work), over the last N = 2, 3, 7
//     and 14 active days are compared with N times the usual daily total
//     (the larger of median and 20%-trimmed mean of the days before those
//     N, and no more than the rise-capped norm). The excess must pass
//     max(3.5 sd, rel*N*usual, floor), where sd = sigma*sqrt(N + 1.2*N^2/h)
//     counts the day-to-day variation (sigma the larger of the standard
//     deviation and 1.4826 MAD, since daily totals are skewed by the odd
//     list; at least 20% of the usual) and the error of a usual figure
//     learned from h days; rel is 0.6 (0.4 for 7 and 14 days, 1 against
//     a peer group); the floors are 120, 150, 250 and 400 PII values, 30,
//     40, 70 and 120 statements with PII, 15, 20, 30 and 50 unexplained
//     statements. Days with a reported PII volume or off-hours anomaly are left
//     out (of the N days and of the days before): their excess was told as
//     it happened, and is not told again for a week as drift; a day that is
//     itself such a day is not judged. Score = excess/margin; the highest
//     per day is reported.
//     Drift found while closing days is returned by Advance (even when an
//     Observe closed the day), with At = the end of the day.
//
// In the first LearningDays after an employee's first observation,
// anomalies carry Learning=true (alert only) and novelty is learned silently.
//
// # Determinism, memory, cost
//
// The same calls give the same results: employees are visited in sorted
// order, anomalies of Advance are sorted, new PII categories are numbered
// in name order, and peer norms are recomputed from the members whenever
// one of them changes. Snapshot writes JSON with sorted keys (version 2;
// Restore also reads version 1); Restore of it continues identically. Per
// employee: HistoryDays records of 3 vectors of 7+categories int64 (under
// 15 KiB for 30 days and a dozen categories), the novelty sets, and a small
// map of what was reported today. Observe takes one mutex and, below every
// threshold, does not allocate: about 0.7 µs (BenchmarkObserve); a day close
// relearns in a few microseconds.
package norm
