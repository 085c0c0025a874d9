package admin

import (
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pgwarden/pgwarden/internal/clock"
	"github.com/pgwarden/pgwarden/internal/crash"
)

func TestAuthAndClock(t *testing.T) {
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	vc := clock.NewVirtual(start)
	var audited []string
	h, err := New(Config{Token: []byte("0123456789abcdef-token"), Clock: vc, Now: vc.Now,
		Audit: func(a string, _ map[string]any) { audited = append(audited, a) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	do := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp.StatusCode, b.String()
	}
	if code, _ := do("GET", "/v1/health", "", ""); code != 200 {
		t.Errorf("health: %d", code)
	}
	for _, tok := range []string{"", "wrong", "0123456789abcdef-toke", "0123456789abcdef-tokenX"} {
		if code, _ := do("GET", "/v1/clock", tok, ""); code != 401 {
			t.Errorf("token %q: %d, want 401", tok, code)
		}
	}
	const tok = "0123456789abcdef-token"
	if code, body := do("POST", "/v1/clock", tok, `{"advance": "90m"}`); code != 200 || !strings.Contains(body, "2026-01-05T10:30:00Z") {
		t.Errorf("advance: %d %s", code, body)
	}
	if code, _ := do("POST", "/v1/clock", tok, `{"time": "2026-01-01T00:00:00Z"}`); code != 409 {
		t.Errorf("backwards: %d", code)
	}
	if code, _ := do("POST", "/v1/clock", tok, `{"time": "2026-02-01T00:00:00Z", "advance": "1m"}`); code != 400 {
		t.Errorf("both: %d", code)
	}
	if code, _ := do("POST", "/v1/clock", tok, `{"bogus": 1}`); code != 400 {
		t.Errorf("unknown field: %d", code)
	}
	if code, body := do("POST", "/v1/clock", tok, `{"time": "2026-02-01T00:00:00Z"}`); code != 200 || !vc.Now().Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("set: %d %s", code, body)
	}
	if len(audited) != 2 {
		t.Errorf("audited %v", audited)
	}
	if _, err := New(Config{Token: []byte("short")}); err == nil {
		t.Error("short token accepted")
	}
	wall, _ := New(Config{Token: []byte(tok)})
	ws := httptest.NewServer(wall)
	defer ws.Close()
	req, _ := http.NewRequest("POST", ws.URL+"/v1/clock", strings.NewReader(`{"advance":"1m"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 409 {
		t.Errorf("wall clock set: %v %v", resp.StatusCode, err)
	}
}

// TestOpenAPICoversRoutes keeps docs/openapi.yaml in step with the routes
// New registers.
func TestOpenAPICoversRoutes(t *testing.T) {
	src, err := os.ReadFile("admin.go")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(spec, &doc); err != nil {
		t.Fatal(err)
	}
	routes := regexp.MustCompile(`Handle(?:Func)?\("(GET|POST|PUT|DELETE) ([^"]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(routes) < 10 {
		t.Fatalf("found %d routes in admin.go", len(routes))
	}
	for _, r := range routes {
		method, path := strings.ToLower(r[1]), strings.TrimSuffix(r[2], "{$}")
		if _, ok := doc.Paths[path][method]; !ok {
			t.Errorf("%s %s is not in docs/openapi.yaml", r[1], path)
		}
	}
}

// TestHandlerPanicAnswers500: a bug in one handler answers that request
// with 500 and is counted; the next request is served.
func TestHandlerPanicAnswers500(t *testing.T) {
	h, err := New(Config{Token: []byte("0123456789abcdef-token"),
		Employees: func() any { panic("a bug in a handler") }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	before := crash.Total()
	get := func(path string) int {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer 0123456789abcdef-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/v1/employees"); code != http.StatusInternalServerError {
		t.Errorf("GET /v1/employees = %d, want 500", code)
	}
	if crash.Total() != before+1 {
		t.Errorf("crash.Total = %d, want %d", crash.Total(), before+1)
	}
	if code := get("/v1/health"); code != http.StatusOK {
		t.Errorf("GET /v1/health after the panic = %d, want 200", code)
	}
}

// TestPprofOptIn: the profiles are served only when asked for, and only
// with the token.
func TestPprofOptIn(t *testing.T) {
	for _, on := range []bool{false, true} {
		h, err := New(Config{Token: []byte("0123456789abcdef-token"), Pprof: on})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		for _, tc := range []struct {
			path, token string
			want        int
		}{
			{"/debug/pprof/", "", 401},
			{"/debug/pprof/", "0123456789abcdef-token", 200},
			{"/debug/pprof/goroutine?debug=1", "0123456789abcdef-token", 200},
			{"/debug/pprof/profile?seconds=1", "0123456789abcdef-token", 200},
		} {
			req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := tc.want
			if !on {
				want = 404
			}
			if resp.StatusCode != want {
				t.Errorf("pprof %v: %s: %d, want %d", on, tc.path, resp.StatusCode, want)
			}
		}
		srv.Close()
	}
}
