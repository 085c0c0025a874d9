// Command cmd fuzzes pgwarden against PostgreSQL for a while: it starts a
// throwaway cluster and pgwardens in front of it (no inspector, the guard,
// and a guard that blocks large results: see protofuzz.Env), sends random
// message sequences to each and to PostgreSQL, minimizes the sequences
// whose answers differ, and prints them.
//
//	go run ./test/protofuzz/cmd -duration 30m -seed 1 -report /tmp/divergences.md
//
// It exits 1 when it found a divergence.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/protofuzz"
)

func main() {
	var (
		duration = flag.Duration("duration", time.Minute, "how long to fuzz")
		count    = flag.Int("count", 0, "stop after this many sequences (0: no limit)")
		seed     = flag.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the first sequence")
		maxAtoms = flag.Int("max-steps", 8, "longest sequence, in steps")
		budget   = flag.Duration("minimize", time.Minute, "time bound for minimizing one divergence")
		silence  = flag.Duration("silence", 4*time.Second, "silence after which a target counts as hung")
		proxies  = flag.String("proxies", "plain,guard,limit", "proxies to compare with PostgreSQL")
		report   = flag.String("report", "", "append each divergence to this Markdown file")
		logs     = flag.Bool("log", false, "send the proxies' debug logs to stderr")
		skip     = flag.String("skip", "", "families of known divergences not to minimize nor report: "+
			strings.Join([]string{protofuzz.FamilyFailedCopy, protofuzz.FamilyBlock, protofuzz.FamilyTerminate}, ","))
	)
	flag.Parse()
	var logger *slog.Logger
	if *logs {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	skipped := map[string]bool{}
	for _, f := range strings.Split(*skip, ",") {
		if f != "" {
			skipped[f] = true
		}
	}
	found, err := run(*duration, *count, *seed, *maxAtoms, *budget, *silence, *proxies, *report, logger, skipped)
	if err != nil {
		fmt.Fprintln(os.Stderr, "protofuzz:", err)
		os.Exit(2)
	}
	if found {
		os.Exit(1)
	}
}

func run(duration time.Duration, count int, seed uint64, maxAtoms int, budget, silence time.Duration, proxies, report string, logger *slog.Logger, skip map[string]bool) (found bool, err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	c, err := pgtest.Start(startCtx, pgtest.Options{})
	cancel()
	if err != nil {
		return false, err
	}
	defer c.Stop()
	env, err := protofuzz.NewEnv(ctx, c, logger)
	if err != nil {
		return false, err
	}
	defer env.Close()
	env.Runner.Silence = silence
	var keep []protofuzz.Target
	for _, name := range strings.Split(proxies, ",") {
		keep = append(keep, env.Proxy(name))
	}
	env.Proxies = keep

	fmt.Printf("protofuzz: seed %d, for %v, proxies %s\n", seed, duration, proxies)
	sum := env.Fuzz(ctx, protofuzz.Config{
		Seed: seed, Count: count, Duration: duration, MaxAtoms: maxAtoms, MinimizeBudget: budget,
		Skip: func(d *protofuzz.Divergence) bool { return skip[protofuzz.Family(d)] },
		OnDivergence: func(d *protofuzz.Divergence) {
			text := fmt.Sprintf("## seed %d\n\n%s\n", d.Seed, d.Report())
			fmt.Print(text)
			if report != "" {
				if err := appendFile(report, text); err != nil {
					fmt.Fprintln(os.Stderr, "protofuzz: report:", err)
				}
			}
		},
		Progress: func(s protofuzz.Summary) { fmt.Println("protofuzz:", s) },
	})
	fmt.Println("protofuzz: done:", sum)
	for _, err := range sum.Errors {
		fmt.Println("protofuzz: error:", err)
	}
	return len(sum.Unique) > 0, nil
}

func appendFile(name, text string) error {
	f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
