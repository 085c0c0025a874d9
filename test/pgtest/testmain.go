package pgtest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// dsnEnv names the environment variable that makes Main adopt an existing server
// instead of starting one. Its value is a superuser URL.
const dsnEnv = "PGWARDEN_TEST_DSN"

// startTimeout bounds Main's startup of the shared cluster.
const startTimeout = 2 * time.Minute

// shared is the cluster Main started or adopted.
var shared *Cluster

// Main starts the package's shared cluster, or adopts the server that
// PGWARDEN_TEST_DSN points at, runs the tests, stops the cluster, removes its
// directory and returns the exit code. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// When the cluster cannot start, no test runs and the code is 1. A test binary that
// dies before Main returns (a panicking test, -timeout) leaks no cluster either:
// the watchdog that Start runs beside the server stops it.
func Main(m *testing.M) (code int) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	c, err := startShared(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	shared = c
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}()
	return m.Run()
}

func startShared(ctx context.Context) (*Cluster, error) {
	if dsn := os.Getenv(dsnEnv); dsn != "" {
		return adopt(ctx, dsn)
	}
	return Start(ctx, Options{})
}

// Shared returns the cluster that Main started. It fails t when there is none,
// because TestMain does not call Main: tests that need PostgreSQL fail rather than
// skip.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if shared == nil {
		t.Fatal("pgtest: no shared cluster; call os.Exit(pgtest.Main(m)) from TestMain")
	}
	return shared
}
