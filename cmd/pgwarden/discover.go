package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/discover"
	"github.com/pgwarden/pgwarden/internal/cli"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Type() string   { return "string" }
func (s *stringList) Set(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	*s = append(*s, v)
	return nil
}

// discoverCommand runs pgwarden discover: it prints the proposed policy to
// stdout and progress and warnings to stderr.
func discoverCommand() *cobra.Command {
	c := &cobra.Command{Use: "discover --dsn URL [flags]", Short: "propose a PII classification by sampling a database", Long: `Proposes a PII classification for a database: lists the columns of its
tables, views and materialized views, guesses a category from each column's
name, samples the values of text and JSON columns with pgwarden's content
detectors, and prints a policy YAML fragment (version: 1, pii: columns:) with
the evidence for each entry as a comment. Review it before use: names are
guesses and shares come from a sample.

A column is proposed when the share of its sampled non-null values that a
detector recognises is at least --min-share, or when its name matches a
known PII name (marked "name only" when no value confirms it). Relations the
role may not read are skipped with a warning. Progress goes to stderr.

Environment:
  PGPASSWORD   password, when the URL has none (as libpq)

`}
	var (
		dsn     string
		schemas stringList
		cfg     discover.Config
		timeout time.Duration
	)
	fs := c.Flags()
	fs.StringVar(&dsn, "dsn", "", "PostgreSQL `URL` to scan, postgres://user@host:port/db")
	fs.Var(&schemas, "schema", "scan only this `schema` (repeatable; default: all but the system schemas)")
	fs.IntVar(&cfg.Sample, "sample", discover.DefaultSample, "sample at most this many `rows` per relation")
	fs.Float64Var(&cfg.MinShare, "min-share", discover.DefaultMinShare, "propose a column when at least this `share` (0-1] of its sampled values match")
	fs.DurationVar(&timeout, "timeout", 10*time.Minute, "give up when the whole scan takes longer than this")
	c.RunE = func(c *cobra.Command, args []string) error {
		cfg.Schemas = schemas
		return runDiscover(c, args, dsn, cfg, timeout)
	}
	return c
}

func runDiscover(c *cobra.Command, args []string, dsn string, cfg discover.Config, timeout time.Duration) error {
	stdout, stderr := c.OutOrStdout(), c.ErrOrStderr()
	switch {
	case len(args) > 0:
		return cli.Usagef(c, "unexpected argument %q", args[0])
	case dsn == "":
		return cli.Usagef(c, "--dsn is required")
	case cfg.Sample < 1:
		return cli.Usagef(c, "--sample must be at least 1")
	case !(cfg.MinShare > 0 && cfg.MinShare <= 1):
		return cli.Usagef(c, "--min-share must be in (0, 1]")
	case timeout <= 0:
		return cli.Usagef(c, "--timeout must be positive")
	}
	var err error
	if cfg.Conn, err = pgx.ParseConfig(dsn); err != nil {
		return fmt.Errorf("discover: bad --dsn: %w", err)
	}
	cfg.Logf = func(format string, args ...any) {
		fmt.Fprintf(stderr, "pgwarden discover: "+format+"\n", args...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	rep, err := discover.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return fmt.Errorf("discover: timed out after %v (raise --timeout, narrow --schema or lower --sample): %w", timeout, err)
		}
		return fmt.Errorf("discover: %w", err)
	}
	if err := rep.WritePolicy(stdout); err != nil {
		return fmt.Errorf("discover: %w", err)
	}
	fmt.Fprintf(stderr, "pgwarden discover: scanned %d relations (%d skipped), %d columns, %d rows sampled; proposed %d columns in %v\n",
		rep.Scanned, rep.Skipped, rep.Columns, rep.Rows, rep.Proposed(), time.Since(start).Round(time.Millisecond))
	return nil
}
