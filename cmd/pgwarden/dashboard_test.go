package main

import (
	"context"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// browser returns Debian's chromium, or skips the test; CI sets
// PGWARDEN_REQUIRE_BROWSER so that a missing browser fails it there.
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PGWARDEN_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium installed (apt-get install chromium)")
	}
	t.Skip("no chromium installed")
	return ""
}

// TestDashboardInBrowser drives the dashboard in headless Chromium after a
// known workload: the alert queue, the live session and the employee's
// chart, which must be drawn with data.
func TestDashboardInBrowser(t *testing.T) {
	chromium := browser(t)
	c := pgtest.Shared(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(`version: 1
norms:
  learning_days: 1
rules:
  - {name: big-read, when: {pii_values: 40}, action: alert}
`), 0o600)
	listen, adminAddr := freeAddr(t), freeAddr(t)
	const token = "test-admin-token-0123456789"
	cmd, stderr := startBinary(t, []string{"PGWARDEN_ADMIN_TOKEN=" + token, "PGWARDEN_AUDIT_KEY=" + strings.Repeat("ef", 32)},
		"serve", "--listen", listen, "--upstream", "postgres://"+c.Addr(), "--policy", pol, "--admin-listen", adminAddr,
		"--clock", "virtual", "--clock-start", "2026-03-02T08:00:00Z", "--state-dir", filepath.Join(dir, "state"),
		"--audit-dir", filepath.Join(dir, "audit"))
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	advance := func(d string) {
		req, _ := http.NewRequest("POST", "http://"+adminAddr+"/v1/clock", strings.NewReader(`{"advance":"`+d+`"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	conn := connectThrough(t, ctx, c, listen, stderr)
	defer conn.Close(ctx)
	// Two days of work, a few lookups an hour, then a big read.
	for h := 0; h < 36; h++ {
		for k := 0; k < 1+h%3; k++ {
			if _, err := conn.Exec(ctx, fmt.Sprintf("SELECT 'd%d_%d@example.com'", h, k)); err != nil {
				t.Fatal(err)
			}
		}
		advance("1h")
	}
	if _, err := conn.Exec(ctx, "SELECT 'big' || i || '@example.com' FROM generate_series(1, 60) i"); err != nil {
		t.Fatal(err)
	}
	advance("5m")

	url := fmt.Sprintf("http://%s/ui/#token=%s&employee=%s", adminAddr, token, pgtest.TrustUser)
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=8000",
		"--user-data-dir=" + filepath.Join(dir, "chrome")}
	out, err := exec.CommandContext(ctx, chromium, append(args, "--dump-dom", url)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	dom := string(out)
	for _, want := range []string{
		`class="alert"`, "big-read", // the alert queue
		`class="session"`,                                  // the live session
		pgtest.TrustUser + ": 1", "PII values in 48 hours", // the chart's caption
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	if !strings.Contains(dom, `<span id="error"></span>`) {
		at := max(strings.Index(dom, `id="error"`), 0)
		t.Errorf("dashboard shows an error: %.200s", dom[at:])
	}

	shot := filepath.Join(dir, "dashboard.png")
	if p := os.Getenv("PGWARDEN_KEEP_SCREENSHOT"); p != "" {
		shot = p
	}
	if err := exec.CommandContext(ctx, chromium, append(args, "--window-size=1400,1100", "--screenshot="+shot, url)...).Run(); err != nil {
		t.Fatalf("chromium --screenshot: %v", err)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// The series is drawn in #1f77b4. A series of zeros is a flat line a
	// few pixels high; with data it climbs: count the rows it reaches.
	rows := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r>>8, 31) && near(g>>8, 119) && near(bl>>8, 180) {
				rows++
				break
			}
		}
	}
	if rows < 60 {
		t.Errorf("the chart's series spans %d pixel rows in the screenshot; want it drawn with data", rows)
	}
}

func near(v uint32, want int) bool {
	d := int(v) - want
	return d > -12 && d < 12
}
