package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// dsnEnv names the environment variable that makes Main adopt an existing server
// instead of starting one. Its value is a superuser URL.
const dsnEnv = "PGWARDEN_TEST_DSN"

// startTimeout bounds the startup of the shared cluster.
const startTimeout = 2 * time.Minute

// The shared cluster: Main enables it, the first Shared starts it (or
// adopts the server of PGWARDEN_TEST_DSN), Main stops it.
var (
	mainCalled bool
	sharedOnce sync.Once
	shared     *Cluster
	sharedErr  error
)

// Main runs the tests of a package whose tests use the shared cluster,
// then stops the cluster, removes its directory and returns the exit code.
// Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// The cluster starts at the first Shared, or adopts the server that
// PGWARDEN_TEST_DSN points at: a run of tests that need no PostgreSQL (the
// guard's rule engine through guard/guardtest, say) starts none. When the
// cluster cannot start, every test that asks for it fails with the reason.
// A test binary that dies before Main returns (a panicking test, -timeout)
// leaks no cluster either: the watchdog that Start runs beside the server
// stops it.
func Main(m *testing.M) (code int) {
	mainCalled = true
	defer func() {
		if shared == nil {
			return
		}
		if err := shared.Stop(); err != nil {
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

// Shared returns the package's shared cluster, starting it on first use. It
// fails t when TestMain does not call Main (tests that need PostgreSQL fail
// rather than skip) or when the cluster cannot start.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if !mainCalled {
		t.Fatal("pgtest: no shared cluster; call os.Exit(pgtest.Main(m)) from TestMain")
	}
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		shared, sharedErr = startShared(ctx)
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}
