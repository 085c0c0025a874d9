package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReady(t *testing.T) {
	const tok = "0123456789abcdef-token"
	var catalogDown atomic.Bool
	var logs bytes.Buffer
	h, err := New(Config{Token: []byte(tok), ReadyTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Ready: []ReadyCheck{
			{Name: "upstream", Check: func(context.Context) error { return nil }},
			{Name: "catalog", Check: func(context.Context) error {
				if catalogDown.Load() {
					return errors.New("dial tcp 10.1.2.3:5432: connection refused")
				}
				return nil
			}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	type answer struct {
		Ready    bool          `json:"ready"`
		NotReady []string      `json:"not_ready"`
		Checks   []CheckResult `json:"checks"`
	}
	get := func(token string) (int, answer) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/v1/ready", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a answer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, a
	}

	if code, a := get(""); code != 200 || !a.Ready || len(a.NotReady) != 0 || len(a.Checks) != 2 {
		t.Errorf("all ready: %d %+v", code, a)
	}
	catalogDown.Store(true)
	code, a := get("")
	if code != 503 || a.Ready || strings.Join(a.NotReady, ",") != "catalog" {
		t.Errorf("catalog down: %d %+v", code, a)
	}
	for _, c := range a.Checks {
		if strings.Contains(c.Error, "10.1.2.3") {
			t.Errorf("the error's text is shown without a token: %+v", c)
		}
	}
	if _, a := get(tok); !strings.Contains(a.Checks[1].Error, "10.1.2.3:5432: connection refused") {
		t.Errorf("with the token the error is told: %+v", a.Checks)
	}
	if _, a := get("wrong-token-0123456789"); strings.Contains(a.Checks[1].Error, "10.1.2.3") {
		t.Errorf("a wrong token is shown the error: %+v", a.Checks)
	}
	catalogDown.Store(false)
	if code, _ := get(""); code != 200 {
		t.Errorf("catalog back: %d", code)
	}
	if n := strings.Count(logs.String(), "msg=not_ready"); n != 1 {
		t.Errorf("a dependency going down is logged %d times over three probes, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "msg=ready_again dependency=catalog") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
}

// TestReadyTimeout: a check that hangs makes the answer 503 within the
// timeout, not a probe that times out.
func TestReadyTimeout(t *testing.T) {
	h, err := New(Config{Token: []byte("0123456789abcdef-token"), ReadyTimeout: 100 * time.Millisecond,
		Ready: []ReadyCheck{{Name: "state", Check: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/ready", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"not_ready":["state"]`) {
		t.Errorf("hung check: %d %s", rec.Code, rec.Body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("answered after %v", d)
	}
}
