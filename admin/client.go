package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// Client calls a running pgwarden's admin API, as pgwarden sessions and
// pgwarden alerts do.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client of the API at base (http://host:port) that
// authenticates with token: the admin secret or a token IssueToken made.
func NewClient(base string, token []byte) *Client {
	return &Client{base: strings.TrimRight(base, "/"), token: string(token), http: &http.Client{Timeout: 30 * time.Second}}
}

// Do calls method path and decodes a JSON answer into out, unless out is
// nil; an error answer becomes an error carrying the server's message.
func (c *Client) Do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("admin API: nothing listens at %s: start serve with --admin-listen, or point --admin (or PGWARDEN_ADMIN_URL) at its address: %w", c.base, err)
		}
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin API: %s", e.Error)
		}
		return fmt.Errorf("admin API: %s", resp.Status)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}
