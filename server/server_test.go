package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestUpstreamSettings(t *testing.T) {
	tests := []struct {
		url, mode, ca string
		addr          string
		want          proxy.TLSMode
	}{
		{"postgres://db:6543/app", "", "", "db:6543", proxy.TLSDisable},
		{"postgresql://db", "", "", "db:5432", proxy.TLSDisable},
		{"postgres://db?sslmode=require", "", "", "db:5432", proxy.TLSRequire},
		{"postgres://db?sslmode=require", "verify-full", "", "db:5432", proxy.TLSVerifyFull},
		{"postgres://[::1]:5433", "disable", "", "[::1]:5433", proxy.TLSDisable},
		{"127.0.0.1:5432", "", "", "127.0.0.1:5432", proxy.TLSDisable},
		{"db.internal", "require", "", "db.internal:5432", proxy.TLSRequire},
		{"[::1]:5433", "", "", "[::1]:5433", proxy.TLSDisable},
	}
	for _, tt := range tests {
		addr, mode, tc, err := upstreamSettings(tt.url, tt.mode, tt.ca, "")
		if err != nil || addr != tt.addr || mode != tt.want || (mode == proxy.TLSDisable) != (tc == nil) {
			t.Errorf("upstreamSettings(%q, %q) = %q, %q, %v, %v; want %q, %q", tt.url, tt.mode, addr, mode, tc != nil, err, tt.addr, tt.want)
		}
	}
}

// TestRunAndShutdown runs a server in front of the test cluster with a
// state directory and the state database: a statement is relayed, and
// when Run's context ends the sessions close, Run returns nil, and the
// norms are saved to both. The state database is reached through one
// pool, sized for its users.
func TestRunAndShutdown(t *testing.T) {
	c := pgtest.Shared(t)
	var cfg config.Config
	cfg.Listen = "127.0.0.1:0"
	cfg.Upstream.URL = "postgres://" + c.Addr()
	cfg.StateDir = t.TempDir()
	cfg.StateURL = c.DSN(pgtest.SuperUser)
	cfg.Limits.ShutdownTimeout = config.Duration(5 * time.Second)
	cfg.SetDefaults()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs syncBuffer
	srv, err := New(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// Without notifications or an audit log, serve says so once at start.
	for _, want := range []string{"msg=alerts_go_nowhere", "msg=no_audit_trail"} {
		if n := strings.Count(logs.String(), want); n != 1 {
			t.Errorf("%s logged %d times at start, want once:\n%s", want, n, logs.String())
		}
	}
	c.Exec(t, "DELETE FROM pgwarden_state WHERE name = 'norms'")
	if got := srv.statePool.Config().MaxConns; got != 4 {
		t.Errorf("state pool of %d connections; want 4", got)
	}
	runCtx, stop := context.WithCancelCause(ctx)
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(runCtx) }()

	dsn := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pgtest.TrustUser, srv.Addr(), c.Database)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM generate_series(1, 10)").Scan(&n); err != nil || n != 10 {
		t.Fatalf("through the server: %d, %v", n, err)
	}

	stop(fmt.Errorf("test over"))
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("the session outlived the shutdown")
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, NormsFile)); err != nil {
		t.Errorf("norms not saved at exit: %v", err)
	}
	admin, err := pgx.Connect(ctx, c.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var saved bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pgwarden_state WHERE name = 'norms')").Scan(&saved); err != nil || !saved {
		t.Errorf("norms in the state database: %v, %v", saved, err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
