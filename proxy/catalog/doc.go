// Package catalog resolves result columns to catalog names, so that policy can
// say "public.customers.email is PII" and the proxy can tell which columns of
// a result those are.
//
// What flows in: a RowDescription field's table OID and attribute number, as
// the proxy decodes them on the server -> client path. What flows out: a
// Column with schema, table, column name and the relation's kind (a view's
// columns resolve to the view, not to the tables beneath it).
//
// A Resolver reads pg_class, pg_namespace and pg_attribute through pgwarden's
// own connection pool, never through a client's session: one query per
// relation fetches the relation and all its live columns. Results, including
// "no such relation", are kept in an LRU cache for a TTL; concurrent lookups
// of the same uncached OID share one query. A cache hit takes no query and no
// allocation, so it is fit for every RowDescription of every session.
//
// Names go stale when DDL renames or drops things. The proxy calls Invalidate
// when a CommandComplete tag satisfies IsDDLTag; the TTL bounds staleness from
// DDL pgwarden does not see (other proxies, direct connections, functions).
// A field whose column the cached relation lacks makes the relation be read
// again, so an added column is found at once.
//
// Catalog reads take no lock on the relations they describe, but a view's
// definition, a planner estimate and the explained_access query do, and
// the session whose statement they are for may hold that lock itself (LOCK
// TABLE in its transaction): these run in a transaction with a short
// lock_timeout (Config.LockTimeout), fail with SQLSTATE 55P03 rather than
// wait on the session, and are not retried for a moment. The caller does
// without: the detectors count the result.
package catalog
