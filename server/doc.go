// Package server is pgwarden serve's composition root: from one
// config.Config it builds the proxy, the guard it inspects with, and what
// the guard writes to (the audit trail, the state directory and database,
// the alert queue and its notifier, the norms, the catalogs, the admin
// API), runs them, and stops them in order.
//
// The phases of a Server:
//
//   - New opens everything the configuration names and listens; it starts
//     no goroutine. One pool is opened per database: the catalog's, the
//     central audit table's and the state database's, which windows, norms,
//     the quarantine list and the shared outbox all use.
//   - Run starts the loops in stages (delivery of alerts, sharing with the
//     other instances, the guard's upkeep, then serving clients and the
//     admin API) and, once its context is done, stops them in the reverse
//     order: sessions end first, so their last statements are recorded,
//     counted and shared, and their alerts delivered.
//   - Reload applies the policy file again (SIGHUP, the admin API); Hurry
//     closes the sessions a graceful shutdown is waiting for.
//   - Close releases files, databases and pools, in order.
package server
