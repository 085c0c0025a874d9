package admin

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestClient calls a handler through Client: an answer is decoded, an
// error answer carries the server's message, a wrong token is refused.
func TestClient(t *testing.T) {
	token := []byte("0123456789abcdef-token")
	h, err := New(Config{Token: token,
		Alerts: func(f AlertFilter) (any, int) {
			return []map[string]any{{"id": "a1", "employee": f.Employee}}, 1
		},
		Ack: func(id, by, note string) error { return ErrNotFound }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx := context.Background()

	var list []struct{ ID, Employee string }
	if err := NewClient(srv.URL+"/", token).Do(ctx, "GET", "/v1/alerts?employee=alice", &list); err != nil || len(list) != 1 || list[0].ID != "a1" || list[0].Employee != "alice" {
		t.Errorf("list: %+v, %v", list, err)
	}
	if err := NewClient(srv.URL, token).Do(ctx, "POST", "/v1/alerts/nope/ack", nil); err == nil || !strings.HasPrefix(err.Error(), "admin API: ") || strings.HasSuffix(err.Error(), "Not Found") {
		t.Errorf("ack of an unknown alert: %v; want the server's message", err)
	}
	if err := NewClient(srv.URL, []byte("wrong-token-0123456789")).Do(ctx, "GET", "/v1/alerts", nil); err == nil {
		t.Error("a wrong token was accepted")
	}
	// Nothing listening: the error says how to point the client elsewhere.
	down := httptest.NewServer(h)
	url := down.URL
	down.Close()
	if err := NewClient(url, token).Do(ctx, "GET", "/v1/alerts", nil); err == nil || !strings.Contains(err.Error(), "--admin-listen") ||
		!strings.Contains(err.Error(), "PGWARDEN_ADMIN_URL") {
		t.Errorf("no admin API listening: %v", err)
	}
}
