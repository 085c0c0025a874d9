package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestSlackBody(t *testing.T) {
	var (
		mu   sync.Mutex
		body []byte
		hdr  http.Header
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		body, hdr = b, r.Header
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	s, err := NewSlack(SlackConfig{URL: srv.URL + "/services/T/B/X"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "slack" {
		t.Errorf("name %q", s.Name())
	}
	a := testAlert("slack-1")
	a.Reason = "alice <script> received 1,200 emails & more; the limit is 1,000"
	if err := s.Deliver(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hdr.Get("Content-Type") != "application/json" || hdr.Get(HeaderSignature) != "" {
		t.Errorf("headers %v", hdr)
	}
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
			Fields []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"fields"`
			Elements []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"elements"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	for _, want := range []string{"[BLOCK] alice", a.Reason, "observed 1,200", "limit 1,000", "rule email-bulk", "session s-42", "client 10.1.2.3:51234 (psql)"} {
		if !strings.Contains(msg.Text, want) {
			t.Errorf("text %q lacks %q", msg.Text, want)
		}
	}
	var types []string
	for _, b := range msg.Blocks {
		types = append(types, b.Type)
	}
	if got := strings.Join(types, ","); got != "header,section,section,section,context" {
		t.Fatalf("block types %s", got)
	}
	if h := msg.Blocks[0].Text; h.Type != "plain_text" || h.Text != "pgwarden: BLOCK alice" {
		t.Errorf("header %+v", h)
	}
	if r := msg.Blocks[1].Text; r.Type != "mrkdwn" || r.Text != "alice &lt;script&gt; received 1,200 emails &amp; more; the limit is 1,000" {
		t.Errorf("reason %+v", r)
	}
	var fields []string
	for _, f := range msg.Blocks[2].Fields {
		if f.Type != "mrkdwn" {
			t.Errorf("field type %q", f.Type)
		}
		fields = append(fields, f.Text)
	}
	wantFields := []string{
		"*Action*\nBLOCK",
		"*Employee*\nalice (role app_ro)",
		"*Observed / limit*\n1,200 / 1,000 pii_values.email per statement",
		"*Rule*\nemail-bulk",
		"*Session*\ns-42",
		"*Client*\n10.1.2.3:51234 (psql)",
		"*Database*\ncrm",
		"*Severity*\nhigh",
	}
	if strings.Join(fields, "|") != strings.Join(wantFields, "|") {
		t.Errorf("fields\n%q\nwant\n%q", fields, wantFields)
	}
	if st := msg.Blocks[3].Text.Text; st != "```SELECT email FROM customers WHERE id &gt; $1```" {
		t.Errorf("statement block %q", st)
	}
	if c := msg.Blocks[4].Elements; len(c) != 1 || !strings.Contains(c[0].Text, "alert slack-1 at 2026-03-01T12:00:00Z") {
		t.Errorf("context %+v", c)
	}
}

func TestSlackShadowAndNorm(t *testing.T) {
	a := testAlert("s")
	a.Action, a.Shadow, a.Rule, a.Statement = "block", true, "", ""
	m := slackMessage(a)
	if !strings.HasPrefix(m.Text, "[BLOCK (shadow)] alice") || !strings.Contains(m.Text, "rule (norm)") {
		t.Errorf("text %q", m.Text)
	}
	if len(m.Blocks) != 4 {
		t.Errorf("%d blocks, want 4 (no statement)", len(m.Blocks))
	}
}

func TestFormatInt(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", -1234567: "-1,234,567", 100000: "100,000"} {
		if got := formatInt(n); got != want {
			t.Errorf("formatInt(%d) = %q, want %q", n, got, want)
		}
	}
}
