package tools

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/proxytest"
)

// TestPgbench initialises pgbench's tables through pgwarden, then runs the
// built-in TPC-B-like script in each query protocol, and a script in
// pipeline mode: every transaction completes and none fails.
func TestPgbench(t *testing.T) {
	ctx := testCtx(t)
	src := source(t)
	w := startWarden(t)
	admin := connect(t, ctx, direct(t), src)
	const db = "bench"
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, w.endpoint, "createdb", db)
	t.Cleanup(func() { admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db) })
	mustRun(t, ctx, w.endpoint, "pgbench", "-i", "-s", "1", "-q", db)
	var accounts int
	benchConn := connect(t, ctx, direct(t), db)
	if err := benchConn.QueryRow(ctx, "SELECT count(*) FROM pgbench_accounts").Scan(&accounts); err != nil || accounts != 100000 {
		t.Fatalf("pgbench -i through pgwarden: %d accounts, %v; want 100000", accounts, err)
	}
	benchConn.Close(ctx)
	const clients, perClient = 2, 100
	processed := regexp.MustCompile(`number of transactions actually processed: (\d+)/(\d+)`)
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			r := mustRun(t, ctx, w.endpoint, "pgbench", "-n", "-M", mode, "-c", fmt.Sprint(clients), "-j", "2",
				"-t", fmt.Sprint(perClient), db)
			m := processed.FindStringSubmatch(r.stdout)
			if want := fmt.Sprint(clients * perClient); m == nil || m[1] != want || m[2] != want {
				t.Errorf("pgbench -M %s: want %s transactions processed:\n%s", mode, want, r)
			}
			if strings.Contains(r.stdout, "number of failed transactions") && !strings.Contains(r.stdout, "number of failed transactions: 0 ") {
				t.Errorf("pgbench -M %s: failed transactions:\n%s", mode, r)
			}
		})
	}
	// libpq's pipeline mode, which needs the extended protocol.
	script := filepath.Join(t.TempDir(), "pipeline.sql")
	if err := os.WriteFile(script, []byte(pipelineScript), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"extended", "prepared"} {
		t.Run("pipeline "+mode, func(t *testing.T) {
			r := mustRun(t, ctx, w.endpoint, "pgbench", "-n", "-M", mode, "-c", fmt.Sprint(clients), "-j", "2",
				"-t", fmt.Sprint(perClient), "-f", script, db)
			m := processed.FindStringSubmatch(r.stdout)
			if want := fmt.Sprint(clients * perClient); m == nil || m[1] != want || m[2] != want {
				t.Errorf("pgbench -M %s with a pipeline: want %s transactions processed:\n%s", mode, want, r)
			}
		})
	}
	mustRun(t, ctx, w.endpoint, "dropdb", db)
	if databaseExists(t, ctx, admin, db) {
		t.Errorf("dropdb through pgwarden: database %s is still there", db)
	}
}

// pipelineScript is a pgbench transaction sent as one pipeline.
const pipelineScript = `\set aid random(1, 100000)
\set delta random(-5000, 5000)
\startpipeline
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT count(*) FROM pgbench_branches;
END;
\endpipeline
`

// TestVacuumdb vacuums and analyses the source through pgwarden, two jobs
// at a time, and every database of the cluster.
func TestVacuumdb(t *testing.T) {
	ctx := testCtx(t)
	src := source(t)
	w := startWarden(t)
	admin := connect(t, ctx, direct(t), src)
	var before int64
	if err := admin.QueryRow(ctx, "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'app.orders'::regclass").Scan(&before); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, ctx, w.endpoint, "vacuumdb", "-z", "-j", "2", "-d", src)
	if !strings.Contains(r.stdout, `vacuuming database "`+src+`"`) {
		t.Errorf("vacuumdb: %s", r)
	}
	proxytest.Eventually(t, 10*time.Second, "app.orders vacuumed", func() (bool, string) {
		var n int64
		if err := admin.QueryRow(ctx, "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'app.orders'::regclass").Scan(&n); err != nil {
			return false, err.Error()
		}
		return n > before, fmt.Sprintf("vacuum_count %d, %d before", n, before)
	})
	r = mustRun(t, ctx, w.endpoint, "vacuumdb", "--all", "--analyze-only")
	for _, db := range []string{"postgres", "template1", src} {
		if !strings.Contains(r.stdout, `database "`+db+`"`) {
			t.Errorf("vacuumdb --all did not reach %s:\n%s", db, r)
		}
	}
}
