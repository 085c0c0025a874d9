package e2e

import (
	"os"
	"testing"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
