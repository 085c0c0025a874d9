package main

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// healthCommand probes the admin API's health or readiness endpoint.
func healthCommand() *cobra.Command {
	c := &cobra.Command{Use: "health [--ready] [--admin URL] [--timeout D]", Short: "ask a running pgwarden whether it is alive, or ready",
		Long: `Asks a running pgwarden's admin API whether it is alive (GET /v1/health) or,
with --ready, ready to serve (GET /v1/ready: upstream, audit log, catalog and
state database), and exits 0 if so, 1 if not. No token is needed. For probes
where there is no curl: the container image's HEALTHCHECK runs it.
`}
	base := c.Flags().String("admin", cmp.Or(os.Getenv("PGWARDEN_ADMIN_URL"), "http://127.0.0.1:7070"), "admin API base `URL` (default $PGWARDEN_ADMIN_URL)")
	ready := c.Flags().Bool("ready", false, "check readiness (/v1/ready) instead of liveness (/v1/health)")
	timeout := c.Flags().Duration("timeout", 3*time.Second, "give up after this long")
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := noArgs(c, args); err != nil {
			return err
		}
		path := "/v1/health"
		if *ready {
			path = "/v1/ready"
		}
		client := &http.Client{Timeout: *timeout}
		resp, err := client.Get(strings.TrimRight(*base, "/") + path)
		if err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		fmt.Fprintln(c.OutOrStdout(), strings.TrimSpace(string(body)))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		return nil
	}
	return c
}
