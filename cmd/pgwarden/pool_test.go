package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/identity/tag"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// TestServeServiceAccountPool: serve reads a service account's key from the
// environment; a pool of connections under that one role serves two
// employees whose tagged statements count apart, and a forged tag is
// decided and named as such.
func TestServeServiceAccountPool(t *testing.T) {
	c := pgtest.Shared(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(`version: 1
service_accounts:
  - role: `+pgtest.TrustUser+`
    key_env: PGWARDEN_TEST_POOL_KEY
rules:
  - name: hourly-emails
    scope: 1h
    when:
      pii_values: {email: 50}
    action: block
`), 0o600)
	key := []byte("a-key-of-at-least-sixteen-bytes!")
	decisions := filepath.Join(dir, "decisions.jsonl")
	// Refused before listening: the key missing.
	if code, _, errOut := runCLI("serve", "--upstream", "postgres://"+c.Addr(), "--policy", pol); code != 1 || !strings.Contains(errOut, "PGWARDEN_TEST_POOL_KEY") {
		t.Errorf("without the key: %d %q", code, errOut)
	}
	listen := freeAddr(t)
	cmd, stderr := startBinary(t, []string{"PGWARDEN_TEST_POOL_KEY=" + string(key)}, "serve", "--listen", listen,
		"--upstream", "postgres://"+c.Addr(), "--policy", pol, "--decision-log", decisions)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connectThrough(t, ctx, c, listen, stderr).Close(ctx)
	cfg, err := pgxpool.ParseConfig(fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable&pool_max_conns=2", pgtest.TrustUser, listen, c.Database))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	read := func(employee string, n int, k []byte) error {
		q := fmt.Sprintf("SELECT '%s' || i || '@example.com' FROM generate_series(1, %d) i", employee, n)
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		rows, err := c.Query(ctx, tag.Sign(k, employee, c.Conn().PgConn().PID(), time.Now(), q))
		if err != nil {
			return err
		}
		for rows.Next() {
		}
		rows.Close()
		return rows.Err()
	}
	// 40 each: under the hour's 50 for each, over it for the account.
	for _, e := range []string{"alice", "bob"} {
		if err := read(e, 40, key); err != nil {
			t.Fatalf("%s's first 40: %v", e, err)
		}
	}
	if err := read("alice", 20, key); err == nil || !strings.Contains(err.Error(), "hourly-emails") {
		t.Errorf("alice past her 50: %v", err)
	}
	if err := read("bob", 5, key); err != nil {
		t.Errorf("bob's next 5: %v", err)
	}
	// A tag signed with another key names nobody: counted against the
	// service account and decided as forged.
	read("carol", 1, []byte("not-the-key-but-long-enough"))
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	f, err := os.Open(decisions)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var d struct {
			Employee     string `json:"employee"`
			Rule         string `json:"rule"`
			IdentifiedBy string `json:"identified_by"`
		}
		json.Unmarshal(sc.Bytes(), &d)
		seen[d.Rule] = d.Employee + "/" + d.IdentifiedBy
	}
	if seen["hourly-emails"] != "alice/tag" || !strings.HasPrefix(seen["identity:forged-tag"], pgtest.TrustUser+"/") {
		t.Errorf("decisions %v; want alice's block by tag, and a forged tag counted against %s", seen, pgtest.TrustUser)
	}
}
