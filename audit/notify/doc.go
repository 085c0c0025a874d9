// Package notify delivers pgwarden's alerts and blocks to security staff:
// signed JSON webhooks (Webhook), Slack-compatible incoming webhooks (Slack)
// and syslog, as RFC 5424 or CEF (Syslog); and streams the whole audit
// trail to SIEMs (Stream).
//
// # Accepting an alert
//
// The proxy calls (*Notifier).Notify with an Alert. Notify first applies two
// in-memory filters. Alerts with the same (Employee, Rule, Action) within
// Config.DedupeWindow of one that was sent are counted, not sent; when the
// window ends a summary alert ("and N more within 1m0s; the latest: ...")
// goes out. At most Config.RatePerEmployee alerts per employee per minute are
// sent; the rest are counted, one "rate limited" notice is sent when the limit
// is first hit, and a count follows when the minute ends. This state is per
// process and is lost on restart, which at worst sends a duplicate.
//
// An alert that passes is written to the outbox, once per sink, in a single
// transaction, and Notify returns after it committed (for bbolt, after the
// fsync). Notify never waits for delivery; it fails only if the outbox cannot
// be written, and then the alert was not accepted and the caller decides what
// to do. serve puts a Spool in front: it holds such alerts in memory, in
// order and bounded, and hands them over once the outbox takes them again
// (a full disk freed), so they are lost only if the process ends first.
//
// # Delivery guarantees
//
// Delivery is at least once. An entry leaves a sink's queue in the outbox
// only after that sink acknowledged it (a 2xx response for the HTTP sinks,
// an accepted write for syslog), so an alert accepted before a crash, a
// restart or an outage of the receiver is delivered when Run next runs. A
// crash between the acknowledgement and the deletion sends the alert again
// with the same Alert.ID: receivers dedupe on it. The exceptions are explicit:
// an alert is dropped for a sink after a permanent failure (an HTTP 4xx other
// than 408 and 429, or an error a custom Sink wrapped with Permanent), or
// after Config.MaxAttempts failed attempts if that is set; both are logged at
// error level and counted in Stats. Plain syslog has no acknowledgement, so
// for that sink "delivered" means the kernel accepted the write.
//
// Each sink has its own queue and goroutine: a sink that is down delays only
// itself. Within a sink, alerts are delivered one at a time, oldest first,
// and a failing alert is retried (with exponential backoff and jitter between
// Config.MinBackoff and Config.MaxBackoff) before any later one is tried, so
// a receiver sees alerts in the order they were accepted, apart from the
// repeats that at-least-once delivery implies.
//
// # The outbox
//
// The outbox holds one queue per sink, named by Sink.Name, so sink names must
// be unique and stable across restarts. Entries for a sink that is no longer
// configured stay in the outbox (New logs them). It lives in one of two
// places, behind a small internal interface.
//
// With Config.DB it is the bucket "notify_outbox" in the bbolt database the
// caller opens, with one nested bucket per sink; keys are increasing sequence
// numbers. Every change is an fsync'd bbolt transaction, unless the caller
// set DB.NoSync, which gives up durability across machine crashes.
//
// # Several instances
//
// With Config.Pool it is in pgwarden's own PostgreSQL database, shared by the
// instances behind a load balancer: table pgwarden_outbox (id bigserial,
// sink, alert jsonb, attempts, enqueued_at), a queue being one sink's rows in
// id order, and one lease per sink in pgwarden_leases (a state/cluster Lease
// named "outbox:" and the sink's name). Enqueues take a transaction-level
// advisory lock, so ids follow commit order and a
// queue is delivered in the order its entries were committed, whichever
// instance enqueued them. Only the instance holding a sink's lease delivers
// that sink's queue: it takes or renews the lease with one conditional
// upsert on the database's clock, renews it while it works, and releases it
// when Run returns. If it dies, another instance takes over once the lease
// (Config.Lease, 10s) expires. Instances without the lease, and a holder
// whose queue is empty, look again every Config.PollInterval (1s), or at
// once after a local Notify; so an alert enqueued by one instance may wait up
// to a poll interval for the holder on another. Every instance must
// configure the same sinks under the same names: an alert is enqueued for
// the enqueuing instance's sinks.
//
// Each alert is delivered once in normal operation. Twice is possible when a
// holder loses its lease in the middle of a delivery (it could not renew for
// a whole lease: its database connection or its process stalled), when a
// delivery is interrupted by the end of Run after the receiver got it, and
// when the deletion after an acknowledgement fails: the next holder sends the
// entry again, with the same Alert.ID. While the database is unreachable,
// Notify returns an error and the workers retry at least once per lease,
// resuming when it returns. Stats' Pending counts the shared queues (read
// every PollInterval while Run runs), Flush waits for them to be empty
// whoever delivers them, and the other counters are this instance's.
//
// Deduplication and rate limits stay in each instance's memory: with N
// instances, an employee's alerts are rate limited per instance (up to N
// times RatePerEmployee per minute in all), and the same (Employee, Rule,
// Action) seen by two instances within DedupeWindow is sent by each.
//
// # Streaming the trail
//
// A Stream carries every line of the audit trail, not only alerts, to
// BatchSinks: HTTPStream (batches as Splunk HEC events, Elasticsearch bulk
// creates or NDJSON) and SyslogStream (RFC 5424 over TCP or TLS). The
// trail's writer offers each line (audit.Config.Tap); Offer only appends
// to a bounded queue per sink in memory, so the relay never waits for a
// receiver. Past half of the bound the oldest lines spill to this
// package's outbox (the bucket "stream_outbox" beside "notify_outbox", or
// the table pgwarden_stream_outbox beside pgwarden_outbox); past the bound
// they are left out, and the sink reads them from the Trail, the
// authoritative copy, when their turn comes. Each sink delivers in seq
// order, retrying with backoff, and after each acknowledged batch stores
// its cursor (the last seq it has) with the outbox, in the transaction
// that removes the batch from it; a new Stream goes on after the cursor.
// Delivery is at least once: a batch whose acknowledgement came but whose
// cursor was not stored is sent again after a restart. Only lines the
// Trail reports durable are sent or spilled.
//
// To shut down, call Flush with a deadline, then cancel Run's context and
// wait for Run to return before closing the database. Whatever Flush did not
// deliver stays in the outbox for the next process (or, with a shared
// outbox, for the other instances); the counts of dedupe and
// rate-limit windows still open are not sent (they remain in Stats).
package notify
