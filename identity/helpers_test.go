package identity

import (
	"path/filepath"
	"testing"

	"github.com/pgwarden/pgwarden/test/testca"
)

// tempFile writes data to a new file in a test directory and returns its name.
func tempFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	testca.WriteFile(t, p, data)
	return p
}
