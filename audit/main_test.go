package audit

import (
	"os"
	"testing"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// TestMain starts the PostgreSQL cluster of the PGSink tests, except in the
// child process of TestKill9, which needs none.
func TestMain(m *testing.M) {
	if os.Getenv(crashDirEnv) != "" {
		os.Exit(m.Run())
	}
	os.Exit(pgtest.Main(m))
}
