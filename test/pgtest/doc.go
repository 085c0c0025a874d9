// Package pgtest starts a throwaway PostgreSQL cluster for tests, benchmarks and
// scripts, so that `go test ./...` needs nothing running beforehand, only the
// PostgreSQL server binaries (version 13 or later, found on PATH or under
// /usr/lib/postgresql/*/bin).
//
// A test package shares one cluster among its tests, started by the first test
// that asks for it (Shared) and stopped by Main when the tests are done:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		c := pgtest.Shared(t)
//		conn, err := pgx.Connect(t.Context(), c.DSN(pgtest.ScramUser, "sslmode=verify-full"))
//		...
//	}
//
// What Start does, in order:
//
//  1. Makes a temporary directory (Cluster.Dir). initdb and postgres refuse to run
//     as root, so when the effective uid is 0 the directory is handed to the
//     `postgres` system user and every server binary runs through
//     `runuser -u postgres --`.
//  2. Runs initdb with the bootstrap superuser "postgres", then generates an ECDSA
//     P-256 certificate authority and a server certificate for localhost, 127.0.0.1
//     and ::1 (CAFile, CAKeyFile, ServerCertFile, ServerKeyFile).
//  3. Writes a lean postgresql.conf (no fsync, 128MB of shared buffers, 300
//     connections, TLS on, TCP on 127.0.0.1 only, the socket in Dir) and a pg_hba.conf
//     that gives each test role its own authentication method: TrustUser trust,
//     PlainUser cleartext password, MD5User md5, ScramUser scram-sha-256, SuperUser
//     trust. "host" lines match with and without TLS.
//  4. Starts the server with pg_ctl on a free port, polls until a connection
//     succeeds, and creates the database Database and the roles, with Password for
//     the three password roles and CREATE on schema public for all of them.
//
// Stop shuts the server down (pg_ctl stop -m fast) and removes Dir. A small watchdog
// process started alongside the server does the same if the test binary dies
// without calling Stop (a panicking test, a -timeout, a signal), so no cluster
// outlives its tests.
//
// When PGWARDEN_TEST_DSN holds a superuser URL, Shared adopts that server instead of
// starting one: the setup SQL (which is idempotent) runs against it, Host, Port and
// Database come from the URL (Database defaults to "pgwarden_test"), the TLS fields
// stay empty and IssueCert fails. The server's pg_hba.conf must then provide the
// authentication methods above for the tests that depend on them.
//
// The command test/pgtest/cmd/pgcluster runs a cluster for scripts: it prints shell
// export lines, including PGWARDEN_TEST_DSN, and keeps the cluster up until it is
// signalled.
package pgtest
