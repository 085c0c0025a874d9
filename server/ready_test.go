package server

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// TestReadyChecksAgainstStoppedServer: the database check fails once its
// PostgreSQL server is stopped, and the upstream check fails for an
// address where nothing listens.
func TestReadyChecksAgainstStoppedServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	own, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer own.Stop()
	pool, err := probePool("state", own.DSN(pgtest.TrustUser), "PGWARDEN_STATE_PASSWORD")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("ping a running server: %v", err)
	}
	if err := upstreamCheck(own.Addr())(ctx); err != nil {
		t.Fatalf("upstream check of a running server: %v", err)
	}
	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	if err := pool.Ping(pctx); err == nil {
		t.Error("ping of a stopped server succeeded")
	}
	if err := upstreamCheck(own.Addr())(pctx); err == nil {
		t.Error("upstream check of a stopped server succeeded")
	}

	dir := t.TempDir()
	failed := errors.New("audit: log failed: no space left on device")
	var logErr error
	check := auditCheck(dir, func() error { return logErr })
	if err := check(ctx); err != nil {
		t.Errorf("writable audit directory: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the check left %d files behind", len(ents))
	}
	logErr = failed
	if err := check(ctx); !errors.Is(err, failed) {
		t.Errorf("failed audit log: %v", err)
	}
}
