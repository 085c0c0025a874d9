package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/internal/cli"
	"github.com/pgwarden/pgwarden/server"
)

// serveCommand runs the proxy: config, then server.New, then Run.
func serveCommand() *cobra.Command {
	c := &cobra.Command{Use: "serve [flags]", Short: "run the proxy in front of a PostgreSQL server", Long: `Runs the proxy: clients connect to --listen as they would to PostgreSQL and
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

`}
	load := configFlags(c)
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := noArgs(c, args); err != nil {
			return err
		}
		fc, err := load()
		if err != nil {
			return err
		}
		if fc.Upstream.URL == "" {
			return cli.Usagef(c, "--upstream (or upstream.url in the config file) is required")
		}
		if err := fc.Validate(); err != nil {
			return err
		}
		logger, err := fc.Logger(os.Stderr)
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
	return c
}

// configFlags defines --config and the configuration's flags on c; load
// reads the configuration: the file, the flags over it, the defaults.
func configFlags(c *cobra.Command) (load func() (*config.Config, error)) {
	path := c.Flags().String("config", os.Getenv("PGWARDEN_CONFIG"), "YAML config `file`")
	gfs := flag.NewFlagSet(c.Name(), flag.ContinueOnError)
	flags := config.RegisterFlags(gfs)
	c.Flags().AddGoFlagSet(gfs)
	return func() (*config.Config, error) {
		cfg := &config.Config{}
		if *path != "" {
			var err error
			if cfg, err = config.Load(*path); err != nil {
				return nil, err
			}
		}
		flags.Apply(cfg)
		cfg.SetDefaults()
		return cfg, nil
	}
}

// noArgs is a usage error when args has any.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return cli.Usagef(c, "unexpected argument %q", args[0])
	}
	return nil
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
