package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// TestHoldApprovedFromSlack runs the binary with the Slack sink and
// --admin-public-url: a held statement's Slack message carries an approve
// link; following it and giving a name and a reason lets the employee's
// rows go on, and the trail and the employee's notice name "NAME (via
// slack link)", via slack, the reason and the employee's own.
func TestHoldApprovedFromSlack(t *testing.T) {
	c := pgtest.Shared(t)
	var (
		mu   sync.Mutex
		msgs []string
	)
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		msgs = append(msgs, string(b))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	defer slack.Close()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(`version: 1
rules:
  - name: hold-emails
    when:
      pii_values: {email: 5}
    action: hold
    hold_timeout: 60s
`), 0o600)
	listen, adminAddr := freeAddr(t), freeAddr(t)
	const token = "test-admin-token-0123456789"
	cmd, stderr := startBinary(t, []string{"PGWARDEN_ADMIN_TOKEN=" + token, "PGWARDEN_AUDIT_KEY=" + strings.Repeat("cd", 32),
		"PGWARDEN_SLACK_URL=" + slack.URL + "/services/T/B/X"},
		"serve", "--listen", listen, "--upstream", "postgres://"+c.Addr(), "--policy", pol, "--admin-listen", adminAddr,
		"--admin-public-url", "http://"+adminAddr, "--state-dir", filepath.Join(dir, "state"), "--audit-dir", filepath.Join(dir, "audit"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	dsn := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pgtest.TrustUser, listen, c.Database)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		notices = append(notices, n.Message)
		mu.Unlock()
	}
	connectThrough(t, ctx, c, listen, stderr).Close(ctx)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		rows, err := conn.Query(ctx, "SELECT 'person' || i || '@example.com' FROM generate_series(1, 100) i /* pgwarden.reason: ticket 4711 */")
		if err != nil {
			done <- result{0, err}
			return
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		done <- result{n, rows.Err()}
	}()

	var approve string
	link := regexp.MustCompile(`<([^|>]+)\|Approve>`)
	proxytest.Eventually(t, 15*time.Second, "a Slack message with an approve link", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			var msg struct {
				Blocks []struct {
					Text *struct{ Text string } `json:"text"`
				} `json:"blocks"`
			}
			json.Unmarshal([]byte(m), &msg)
			var text strings.Builder
			for _, b := range msg.Blocks {
				if b.Text != nil {
					text.WriteString(b.Text.Text + "\n")
				}
			}
			if l := link.FindStringSubmatch(text.String()); l != nil {
				approve = strings.ReplaceAll(l[1], "&amp;", "&")
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d messages: %q", len(msgs), msgs)
	})
	u, err := url.Parse(approve)
	if err != nil || u.Host != adminAddr {
		t.Fatalf("approve link %q", approve)
	}
	resp, err := http.Get(approve)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "ticket 4711") || !strings.Contains(string(page), "hold-emails") ||
		!strings.Contains(string(page), `name="name"`) {
		t.Fatalf("approve page: %d %s", resp.StatusCode, page)
	}
	form := url.Values{"exp": {u.Query().Get("exp")}, "sig": {u.Query().Get("sig")}, "name": {"Carol Ortiz"}, "reason": {"legal asked, ticket 4711"}}
	u.RawQuery = ""
	resp, err = http.PostForm(u.String(), form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	select {
	case r := <-done:
		if r.err != nil || r.n != 100 {
			t.Fatalf("the held statement: %d rows, %v", r.n, r.err)
		}
	case <-ctx.Done():
		t.Fatal("the held statement never ended")
	}
	mu.Lock()
	if len(notices) != 2 || !strings.Contains(notices[1], "approved by Carol Ortiz (via slack link): legal asked, ticket 4711") {
		t.Errorf("notices %q", notices)
	}
	t.Logf("the employee's notices: %q", notices)
	mu.Unlock()

	events := func(typ string) []map[string]any {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/v1/audit?type="+typ, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var evs []struct {
			Employee string         `json:"employee"`
			Data     map[string]any `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&evs); err != nil {
			t.Fatal(err)
		}
		var out []map[string]any
		for _, e := range evs {
			e.Data["employee"] = e.Employee
			out = append(out, e.Data)
		}
		return out
	}
	var approved, outcome map[string]any
	proxytest.Eventually(t, 10*time.Second, "the approval and the hold's outcome in the trail", func() (bool, string) {
		for _, d := range events("admin") {
			if d["action"] == "hold_approved" {
				approved = d
			}
		}
		for _, d := range events("decision") {
			if d["outcome"] == "approved" {
				outcome = d
			}
		}
		return approved != nil && outcome != nil, fmt.Sprintf("approval %v, outcome %v", approved, outcome)
	})
	if approved["by"] != "Carol Ortiz (via slack link)" || approved["via"] != "slack" || approved["reason"] != "legal asked, ticket 4711" ||
		approved["employee"] != pgtest.TrustUser || approved["scope"] != "act" {
		t.Errorf("the approval in the trail: %v", approved)
	}
	if outcome["decided_by"] != "Carol Ortiz (via slack link)" || outcome["decision_reason"] != "legal asked, ticket 4711" || outcome["justification"] != "ticket 4711" {
		t.Errorf("the hold's outcome in the trail: %v", outcome)
	}
	t.Logf("the trail's approval: %v", approved)
	t.Logf("the trail's outcome: %v", outcome)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}
