package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/pgwarden/pgwarden/server"
)

const serveUsage = `Usage: pgwarden serve [flags]

Runs the proxy: clients connect to --listen as they would to PostgreSQL and
are relayed to --upstream. Flags override the --config file.

pgwarden counts the rows and PII values every statement sends: columns the
policy declares (resolved through --catalog-url) and values its content
detectors recognise, per employee in sliding windows, and records each
statement in the audit log when --audit-dir is given.

Policies: --policy FILE is reloaded on SIGHUP and when the file changes; a
file with errors is refused (logged, and alerted when notifications are on)
and the policy in force stays. Without --policy the built-in policy runs
(pgwarden policy default prints it).

Environment:
  PGWARDEN_CONFIG            config file, when --config is not given
  PGWARDEN_WEBHOOK_SECRET    webhook signing secret, when --webhook-secret-file is not given
  PGWARDEN_ADMIN_TOKEN       admin API bearer token, when --admin-token-file is not given
  PGWARDEN_STATE_PASSWORD    password for --state-url, when the URL has none
  PGWARDEN_SLACK_URL         Slack-compatible incoming webhook URL for alerts (notify.slack.url)
  PGWARDEN_CATALOG_PASSWORD  password for --catalog-url, when the URL has none
  PGWARDEN_AUDIT_KEY         audit checkpoint HMAC key in hex, when --audit-key-file is not given
  PGWARDEN_AUDIT_PASSWORD    password for --audit-url, when the URL has none

Flags:
`

func runServe(args []string, stdout, stderr io.Writer) error {
	fc, err := loadConfig("serve", serveUsage, args, stderr)
	if err != nil {
		return err
	}
	if fc.Upstream.URL == "" {
		fmt.Fprintln(stderr, "pgwarden serve: --upstream (or upstream.url in the config file) is required")
		return errUsage
	}
	if err := fc.Validate(); err != nil {
		return err
	}
	logger, err := newLogger(os.Stderr, fc.Log.Level, fc.Log.Format)
	if err != nil {
		return err
	}
	srv, err := server.New(context.Background(), *fc, logger)
	if err != nil {
		return err
	}
	defer srv.Close()
	ctx, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go handleSignals(sigs, srv, stop)
	return srv.Run(ctx)
}

// handleSignals reloads the policy on SIGHUP; the first SIGTERM or SIGINT
// shuts down gracefully, the second closes the remaining sessions at once.
func handleSignals(sigs <-chan os.Signal, srv *server.Server, stop context.CancelCauseFunc) {
	stopping := false
	for sig := range sigs {
		switch {
		case sig == syscall.SIGHUP:
			srv.Reload("SIGHUP")
		case stopping:
			srv.Hurry()
		default:
			stopping = true
			stop(fmt.Errorf("signal %s", sig))
		}
	}
}

// newLogger builds the process logger.
func newLogger(w *os.File, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(cmp.Or(level, "info")))); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch cmp.Or(format, "text") {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}
