package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/internal/buildinfo"
)

func TestVersionCommand(t *testing.T) {
	want := buildinfo.Get().String()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		code, stdout, stderr := runCLI(args...)
		if code != 0 || strings.TrimSpace(stdout) != want || stderr != "" {
			t.Errorf("pgwarden %q: exit %d, stdout %q, stderr %q; want %q", args, code, stdout, stderr, want)
		}
	}
	code, stdout, _ := runCLI("version", "--json")
	var got buildinfo.Info
	if err := json.Unmarshal([]byte(stdout), &got); code != 0 || err != nil || got != buildinfo.Get() {
		t.Errorf("version --json: exit %d, %q (%v)", code, stdout, err)
	}
	if code, _, stderr := runCLI("version", "extra"); code != 2 || !strings.Contains(stderr, `unexpected argument "extra"`) {
		t.Errorf("version extra: exit %d, %q", code, stderr)
	}
}

// TestMakeBuildStamps builds pgwarden as make build does and checks that
// the stamped version reaches pgwarden version, serve's first log line and
// the pgwarden_build_info metric.
func TestMakeBuildStamps(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	bin := filepath.Join(t.TempDir(), "pgwarden")
	const version, commit, date = "v9.8.7-test", "0123456789abcdef0123456789abcdef01234567", "2026-12-01T10:00:00Z"
	build := exec.Command("make", "-C", "../..", "--no-print-directory", "build", "BIN="+bin,
		"VERSION="+version, "COMMIT="+commit, "DATE="+date)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var got buildinfo.Info
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.Version != version || got.Commit != commit || got.Date != date {
		t.Errorf("stamped binary says %+v", got)
	}

	listen, adminAddr := freeAddr(t), freeAddr(t)
	const token = "test-admin-token-0123456789"
	cmd := exec.Command(bin, "serve", "--listen", listen, "--upstream", "postgres://127.0.0.1:1", "--admin-listen", adminAddr)
	cmd.Env = append(os.Environ(), "PGWARDEN_ADMIN_TOKEN="+token)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var sawListening bool
	for line := range lines {
		if strings.Contains(line, "msg=listening") {
			if !strings.Contains(line, "version="+version) {
				t.Errorf("startup line without the version: %s", line)
			}
			sawListening = true
		}
		if strings.Contains(line, "msg=admin_listening") {
			break
		}
	}
	go func() {
		for range lines {
		}
	}()
	if !sawListening {
		t.Fatal("no listening line")
	}
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	wantMetric := `pgwarden_build_info{build_date="` + date + `",goversion="` + got.GoVersion + `",revision="` + commit + `",version="` + version + `"} 1`
	if !strings.Contains(string(body), wantMetric) {
		t.Errorf("/metrics lacks %s", wantMetric)
	}
}
