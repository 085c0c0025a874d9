package tools

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/proxytest"
)

// TestDumpRestore dumps the source database through pgwarden in the plain
// format (with COPY, and with INSERTs read through a cursor), the custom
// and directory formats (the last again with TLS on both sides of
// pgwarden), restores each into a database made with createdb through
// pgwarden, compares everything with the source, and drops the copy with
// dropdb through pgwarden.
func TestDumpRestore(t *testing.T) {
	ctx := testCtx(t)
	src := source(t)
	w := startWarden(t)
	want := sourceFingerprint(t, ctx, src)
	admin := connect(t, ctx, direct(t), src)
	dir := t.TempDir()
	tlsWarden := startWarden(t, tlsFlags(t)...)
	var upstreamTLS bool
	if err := connect(t, ctx, tlsWarden.endpoint, src).QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&upstreamTLS); err != nil || !upstreamTLS {
		t.Fatalf("pgwarden with --upstream-tls-mode verify-full: upstream TLS %v, %v", upstreamTLS, err)
	}
	for _, tc := range []struct {
		name    string
		dump    []string // pg_dump arguments besides the database
		restore func(db, file string) (string, []string)
		tls     bool
	}{
		{"plain", []string{"--format", "plain"}, func(db, file string) (string, []string) {
			return "psql", []string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", file}
		}, false},
		{"inserts", []string{"--format", "plain", "--rows-per-insert", "50"}, func(db, file string) (string, []string) {
			return "psql", []string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", file}
		}, false},
		{"custom", []string{"-Fc"}, func(db, file string) (string, []string) {
			return "pg_restore", []string{"--exit-on-error", "-d", db, file}
		}, false},
		{"directory", []string{"-Fd", "-j", "2"}, func(db, file string) (string, []string) {
			return "pg_restore", []string{"--exit-on-error", "-j", "2", "-d", db, file}
		}, false},
		{"directory_tls", []string{"-Fd", "-j", "2"}, func(db, file string) (string, []string) {
			return "pg_restore", []string{"--exit-on-error", "--single-transaction", "-d", db, file}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := w
			if tc.tls {
				w = tlsWarden
			}
			file := filepath.Join(dir, tc.name+".dump")
			mustRun(t, ctx, w.endpoint, "pg_dump", append(tc.dump, "-f", file, "-d", src)...)
			db := "restored_" + tc.name
			if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
				t.Fatal(err)
			}
			mustRun(t, ctx, w.endpoint, "createdb", "-T", "template0", db)
			if !databaseExists(t, ctx, admin, db) {
				t.Fatalf("createdb through pgwarden: no database %s", db)
			}
			program, args := tc.restore(db, file)
			mustRun(t, ctx, w.endpoint, program, args...)
			compareFingerprints(t, tc.name+" dump restored", want, fingerprint(t, ctx, db))
			mustRun(t, ctx, w.endpoint, "dropdb", db)
			if databaseExists(t, ctx, admin, db) {
				t.Errorf("dropdb through pgwarden: database %s is still there", db)
			}
		})
	}
	proxytest.Eventually(t, 10*time.Second, "an alert for dumping the customers", func() (bool, string) {
		a, ok := w.alerts.find("statement-pii-alert")
		return ok && a.Action == "alert", fmt.Sprintf("%+v", a)
	})
}
