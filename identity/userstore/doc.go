// Package userstore keeps the employees who log in to pgwarden itself
// (pgwarden's own login, proxy.Login): for each, a SCRAM-SHA-256 verifier
// in PostgreSQL's format (never the password), the database role pgwarden
// connects upstream as on their behalf, and whether the login is disabled
// or locked out.
//
// # The file
//
// The store is one JSON file, 0600, that `pgwarden users add|passwd|remove|
// unlock|disable|enable` change while a server runs. Every change is a
// read-modify-write under an exclusive lock on a companion lock file
// (PATH.lock), written to a temporary file in the same directory, fsynced,
// renamed into place, and the directory fsynced: a reader sees the old file
// or the new one, never half of one. A serving Store looks at the file at
// most once a Recheck (a second) and rereads it when its modification time,
// size or inode changed; if the new file cannot be read, the last good one
// stands.
//
// The file also holds a random key from which stand-in verifiers are made
// for names that have no login (scram.MockVerifier), so that a name's salt
// is the same across restarts whether or not the login exists.
//
// # Throttling
//
// A serving Store counts failed attempts (wrong passwords, unknown names,
// disabled logins alike) per login name and per client address over a
// sliding Window, in memory. Each failure's answer is delayed by BaseDelay,
// doubling with every further failure of that name or address in the
// window, up to MaxDelay. MaxFailures failures of one name lock it out for
// Lockout: the lock is written to the file, where other instances and
// `pgwarden users logins` see it, and `pgwarden users unlock NAME` lifts it
// (and makes every instance forget the failures counted before). An
// address with AddrMaxFailures failures is refused for Lockout too, in
// memory only. Attempts in progress count against the limits, so that
// parallel connections cannot test more passwords than sequential ones.
//
// The Store implements proxy.Accounts: Lookup, then Admit before an
// attempt and exactly one of Failed, Succeeded or Abandoned after it.
package userstore
