package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestVerifySignature(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	ts := []byte(strconv.FormatInt(now.Unix(), 10))
	body := []byte(`{"id":"a1"}`)
	sig := Sign(testSecret, ts, body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("signature %q", sig)
	}
	if err := VerifySignature(testSecret, ts, body, sig, now.Add(30*time.Second), time.Minute); err != nil {
		t.Fatalf("valid signature: %v", err)
	}
	bad := []struct {
		name      string
		secret    []byte
		ts, body  []byte
		header    string
		now       time.Time
		maxSkew   time.Duration
		substring string
	}{
		{"wrong secret", []byte("other"), ts, body, sig, now, time.Minute, "mismatch"},
		{"tampered body", testSecret, ts, []byte(`{"id":"a2"}`), sig, now, time.Minute, "mismatch"},
		{"tampered timestamp", testSecret, []byte("1700000001"), body, sig, now, 0, "mismatch"},
		{"old", testSecret, ts, body, sig, now.Add(10 * time.Minute), time.Minute, "away from now"},
		{"future", testSecret, ts, body, sig, now.Add(-10 * time.Minute), time.Minute, "away from now"},
		{"no prefix", testSecret, ts, body, strings.TrimPrefix(sig, "sha256="), now, time.Minute, "sha256="},
		{"bad hex", testSecret, ts, body, "sha256=zz", now, time.Minute, "hex"},
		{"bad timestamp", testSecret, []byte("yesterday"), body, sig, now, time.Minute, "timestamp"},
		{"empty", testSecret, ts, body, "", now, time.Minute, "sha256="},
	}
	for _, tc := range bad {
		err := VerifySignature(tc.secret, tc.ts, tc.body, tc.header, tc.now, tc.maxSkew)
		if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), tc.substring) {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
	// maxSkew 0 skips the time check.
	if err := VerifySignature(testSecret, ts, body, sig, now.Add(24*time.Hour), 0); err != nil {
		t.Errorf("maxSkew 0: %v", err)
	}
}

func TestWebhookRequest(t *testing.T) {
	var (
		mu  sync.Mutex
		req *http.Request
		raw []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		req, raw = r, b
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	w, err := NewWebhook(WebhookConfig{URL: srv.URL + "/hook?token=abc", Secret: testSecret,
		Headers: map[string]string{"Authorization": "Bearer t", HeaderSignature: "forged"}})
	if err != nil {
		t.Fatal(err)
	}
	a := testAlert("req-1")
	a.AuditSeqs = nil
	if err := w.Deliver(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if req.Method != http.MethodPost || req.URL.Path != "/hook" || req.URL.Query().Get("token") != "abc" {
		t.Errorf("request %s %s", req.Method, req.URL)
	}
	h := req.Header
	if h.Get("Content-Type") != "application/json" || h.Get("Authorization") != "Bearer t" || h.Get(HeaderAlertID) != "req-1" {
		t.Errorf("headers %v", h)
	}
	if err := VerifySignature(testSecret, []byte(h.Get(HeaderTimestamp)), raw, h.Get(HeaderSignature), time.Now(), time.Minute); err != nil {
		t.Errorf("signature: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "id", "time", "action", "shadow", "employee", "role", "rule", "reason",
		"observed", "limit", "measure", "scope", "session_id", "client_addr", "application", "database",
		"statement", "audit_seqs", "severity"} {
		if _, ok := m[k]; !ok {
			t.Errorf("body lacks %q: %s", k, raw)
		}
	}
	if len(m) != 20 {
		t.Errorf("body has %d fields, want 20: %s", len(m), raw)
	}
	if m["version"] != 1.0 || m["session_id"] != "s-42" || m["observed"] != 1200.0 {
		t.Errorf("body %s", raw)
	}
	if seqs, ok := m["audit_seqs"].([]any); !ok || len(seqs) != 0 {
		t.Errorf("audit_seqs = %v, want []", m["audit_seqs"])
	}
}

func TestWebhookErrorsHideURLSecrets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such hook", http.StatusNotFound)
	}))
	defer srv.Close()
	w, err := NewWebhook(WebhookConfig{URL: srv.URL + "/services/T0/B0/topsecret?token=hush", Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Deliver(context.Background(), testAlert("x"))
	if !IsPermanent(err) || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "no such hook") {
		t.Errorf("404: err = %v", err)
	}
	if strings.Contains(err.Error(), "topsecret") || strings.Contains(err.Error(), "hush") {
		t.Errorf("error leaks the URL: %v", err)
	}

	srv.Close() // network error
	err = w.Deliver(context.Background(), testAlert("x"))
	if err == nil || IsPermanent(err) || strings.Contains(err.Error(), "topsecret") || strings.Contains(err.Error(), "hush") {
		t.Errorf("network error: %v", err)
	}

	if _, err := NewWebhook(WebhookConfig{URL: "ftp://example.com/x", Secret: testSecret}); err == nil {
		t.Error("ftp URL: no error")
	}
	if _, err := NewWebhook(WebhookConfig{URL: "http://example.com/%zz?token=hush", Secret: testSecret}); err == nil || strings.Contains(err.Error(), "hush") {
		t.Errorf("bad URL: err = %v", err)
	}
	if _, err := NewWebhook(WebhookConfig{URL: "https://example.com/"}); err == nil {
		t.Error("no secret: no error")
	}
}

func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	var hits sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path, true)
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/new", http.StatusTemporaryRedirect)
		}
	}))
	defer srv.Close()
	w := newWebhook(t, srv.URL+"/old")
	err := w.Deliver(context.Background(), testAlert("x"))
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "307") {
		t.Errorf("err = %v", err)
	}
	if _, ok := hits.Load("/new"); ok {
		t.Error("redirect followed")
	}
}
