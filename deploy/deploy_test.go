package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	binErr    error
	binDir    string
)

// pgwardenBinary builds cmd/pgwarden once for the package's tests.
func pgwardenBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "pgwarden-deploy-test-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "pgwarden")
		cmd := exec.Command("go", "build", "-o", binPath, "../cmd/pgwarden")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			binErr = err
			binPath = out.String()
		}
	})
	if binErr != nil {
		t.Fatalf("go build ../cmd/pgwarden: %v\n%s", binErr, binPath)
	}
	return binPath
}

// runPgwarden runs the built binary and fails t unless it exits 0.
func runPgwarden(t *testing.T, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pgwardenBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgwarden %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goDirective is the go line of the module's go.mod.
func goDirective(t *testing.T) string {
	t.Helper()
	for _, line := range strings.Split(readFile(t, "../go.mod"), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod has no go line")
	return ""
}
