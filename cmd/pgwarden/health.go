package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

const healthUsage = `Usage: pgwarden health [--ready] [--admin URL] [--timeout D]

Asks a running pgwarden's admin API whether it is alive (GET /v1/health) or,
with --ready, ready to serve (GET /v1/ready: upstream, audit log, catalog and
state database), and exits 0 if so, 1 if not. No token is needed. For probes
where there is no curl: the container image's HEALTHCHECK runs it.

Flags:
`

// runHealth probes the admin API's health or readiness endpoint.
func runHealth(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, healthUsage); fs.PrintDefaults() }
	base := fs.String("admin", orDefault(os.Getenv("PGWARDEN_ADMIN_URL"), "http://127.0.0.1:7070"), "admin API base `URL` (default $PGWARDEN_ADMIN_URL)")
	ready := fs.Bool("ready", false, "check readiness (/v1/ready) instead of liveness (/v1/health)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "pgwarden health: unexpected argument %q\n", pos[0])
		return errUsage
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
	fmt.Fprintln(stdout, strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}
