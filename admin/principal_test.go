package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestScopes: each scope reaches what it should and gets 403 on the
// rest; every change names who made it, in the answer and the audit
// event; approve, deny, release and kill need a reason.
func TestScopes(t *testing.T) {
	secret := []byte("0123456789abcdef-secret")
	type audited struct {
		action string
		data   map[string]any
	}
	var trail []audited
	h, err := New(Config{Token: secret,
		Audit:       func(a string, d map[string]any) { trail = append(trail, audited{a, d}) },
		Sessions:    func() any { return []string{} },
		KillSession: func(id, reason string) bool { return id == "s1" },
		Release:     func(who string) (bool, error) { return who == "mallory", nil },
		DecideHold:  func(id string, approve bool, by, via, reason string) (string, error) { return "erin", nil },
		Ack:         func(id, by, note string) error { return nil },
		Policy:      func() any { return map[string]any{"name": "p"} },
		Reload:      func() error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	tok := func(name string, s Scope, ttl time.Duration) string {
		t.Helper()
		v, err := IssueToken(secret, Claims{Name: name, Scope: s, Expires: time.Now().Add(ttl)})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	rita, carol, ada := tok("rita", ScopeRead, time.Hour), tok("carol", ScopeAct, time.Hour), tok("ada", ScopeAdmin, time.Hour)
	call := func(tk, method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tk)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	changes := []struct{ method, path string }{
		{"DELETE", "/v1/sessions/s1"}, {"DELETE", "/v1/quarantine/mallory"}, {"POST", "/v1/holds/h1/approve"},
		{"POST", "/v1/holds/h1/deny"}, {"POST", "/v1/alerts/a1/ack"},
	}
	for _, c := range changes {
		if code, _ := call(rita, c.method, c.path+"?reason=x", ""); code != http.StatusForbidden {
			t.Errorf("read token %s %s: %d, want 403", c.method, c.path, code)
		}
	}
	for _, p := range []string{"/v1/policy/reload", "/v1/clock"} {
		if code, _ := call(carol, "POST", p, `{"advance":"1m"}`); code != http.StatusForbidden {
			t.Errorf("act token POST %s: %d, want 403", p, code)
		}
	}
	if code, m := call(rita, "GET", "/v1/sessions", ""); code != 200 {
		t.Errorf("read token GET /v1/sessions: %d %v", code, m)
	}
	for _, c := range changes[:4] {
		if code, m := call(carol, c.method, c.path, ""); code != http.StatusBadRequest || !strings.Contains(m["error"].(string), "reason is required") {
			t.Errorf("%s %s without a reason: %d %v", c.method, c.path, code, m)
		}
	}
	trail = nil
	for _, c := range changes {
		code, m := call(carol, c.method, c.path, `{"reason":"case 42"}`)
		if code != 200 || m["by"] != "carol" || m["via"] != "token" || m["reason"] != "case 42" || m["at"] == nil {
			t.Errorf("%s %s: %d %v", c.method, c.path, code, m)
		}
	}
	if len(trail) != len(changes) {
		t.Fatalf("audited %d changes, want %d", len(trail), len(changes))
	}
	if trail[2].action != "hold_approved" || trail[3].action != "hold_denied" || trail[2].data["employee"] != "erin" {
		t.Errorf("hold decisions audited as %s and %s", trail[2].action, trail[3].action)
	}
	for _, a := range trail {
		if a.data["by"] != "carol" || a.data["reason"] != "case 42" || a.data["scope"] != "act" {
			t.Errorf("audit event %s: %v", a.action, a.data)
		}
	}
	if trail[1].data["employee"] != "mallory" {
		t.Errorf("the release is not about mallory: %v", trail[1].data)
	}
	if code, m := call(ada, "POST", "/v1/policy/reload?reason=new+rule", ""); code != 200 || m["by"] != "ada" || m["name"] != "p" {
		t.Errorf("reload by ada: %d %v", code, m)
	}
	if code, m := call(string(secret), "POST", "/v1/policy/reload", ""); code != 200 || m["by"] != "admin" || m["via"] != "secret" {
		t.Errorf("reload with the secret: %d %v", code, m)
	}
	expired := tok("old", ScopeAdmin, -time.Second)
	if code, m := call(expired, "GET", "/v1/sessions", ""); code != 401 || !strings.Contains(m["error"].(string), "expired") {
		t.Errorf("expired token: %d %v", code, m)
	}
	other, _ := IssueToken([]byte("another-secret-0123456789"), Claims{Name: "carol", Scope: ScopeAdmin, Expires: time.Now().Add(time.Hour)})
	if code, _ := call(other, "GET", "/v1/sessions", ""); code != 401 {
		t.Errorf("token of another secret: %d", code)
	}
	// A token whose claims were changed (scope raised) no longer verifies.
	parts := strings.Split(rita, ".")
	raised, _ := IssueToken(secret, Claims{Name: "rita", Scope: ScopeAdmin, Expires: time.Now().Add(time.Hour)})
	tampered := parts[0] + "." + strings.Split(raised, ".")[1] + "." + parts[2]
	if code, _ := call(tampered, "DELETE", "/v1/sessions/s1?reason=x", ""); code != 401 {
		t.Errorf("tampered token: %d", code)
	}
	if _, err := IssueToken(secret, Claims{Name: "", Scope: ScopeRead, Expires: time.Now().Add(time.Hour)}); err == nil {
		t.Error("a token without a name was issued")
	}
}

// TestDashboardFiles: the dashboard is served as files, with a CSP that
// allows no inline script or style.
func TestDashboardFiles(t *testing.T) {
	h, err := New(Config{Token: []byte("0123456789abcdef-secret")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, f := range []struct{ path, typ string }{{"/ui/", "text/html"}, {"/ui/app.js", "text/javascript"}, {"/ui/app.css", "text/css"}} {
		resp, err := http.Get(srv.URL + f.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), f.typ) || strings.Contains(csp, "unsafe-inline") ||
			!strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: %d %q csp %q", f.path, resp.StatusCode, resp.Header.Get("Content-Type"), csp)
		}
		if f.typ == "text/html" && (strings.Contains(string(body), "<script>") || strings.Contains(string(body), "<style>") || strings.Contains(string(body), " style=")) {
			t.Errorf("%s has inline script or style", f.path)
		}
	}
	if resp, err := http.Get(srv.URL + "/ui/..%2fadmin.go"); err != nil || resp.StatusCode != 404 {
		t.Errorf("a file outside the dashboard: %v %v", resp.StatusCode, err)
	}
}
