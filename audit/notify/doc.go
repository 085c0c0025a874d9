// Package notify delivers pgwarden's alerts and blocks to security staff:
// signed JSON webhooks (Webhook), Slack-compatible incoming webhooks (Slack)
// and syslog, as RFC 5424 or CEF (Syslog).
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
// bbolt transaction, and Notify returns after bbolt has fsync'd it. Notify
// never waits for delivery; it fails only if the outbox cannot be written,
// and then the alert was not accepted and the caller decides what to do.
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
// The outbox is the bucket "notify_outbox" in the bbolt database the caller
// opens and passes as Config.DB, with one nested bucket per sink, named by
// Sink.Name; keys are increasing sequence numbers. Sink names must therefore
// be unique and stable across restarts. Entries for a sink that is no longer
// configured stay in the outbox (New logs them). Every change is an fsync'd
// bbolt transaction, unless the caller set DB.NoSync, which gives up
// durability across machine crashes.
//
// To shut down, call Flush with a deadline, then cancel Run's context and
// wait for Run to return before closing the database. Whatever Flush did not
// deliver stays in the outbox for the next process; the counts of dedupe and
// rate-limit windows still open are not sent (they remain in Stats).
package notify
