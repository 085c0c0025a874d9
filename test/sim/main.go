// Command sim evaluates pgwarden's detection quality: it starts a throwaway
// PostgreSQL (test/pgtest) with a seeded customers table, builds and starts a
// real pgwarden binary in front of it on a virtual clock, and replays a
// month of simulated employee work with labelled attack episodes on top,
// moving pgwarden's clock through its admin API before each event. It then
// reads pgwarden's decision log and scores it against the ground truth:
// recall per attack type, false alerts and false blocks on normal traffic,
// PII leaked before the first block, and how long slow-and-low leaks go
// unnoticed.
//
//	go run ./test/sim                                  # 50 employees, 30 days
//	go run ./test/sim --employees 8 --days 5 --attacks bulk,paging
//	go run ./test/sim --policy my-policy.yaml --json /tmp/sim.json
//
// The run is deterministic given --seed (the same events, statements and
// times), up to the interleaving of parallel-session attacks.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// config is the command line.
type config struct {
	org         string // "a" (default) or "b", see orgb.go
	seed        uint64
	employees   int
	days        int
	start       time.Time
	customers   int
	attacks     []string
	episodes    int
	slowFrom    int // first day (from 1) of the slow-and-low reads
	policyPath  string
	pgwarden    string
	jsonPath    string
	keepDir     string
	verbose     bool
	printPolicy bool
	render      string // reports to render as docs/evaluation.md's tables
	args        []string
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err == flag.ErrHelp {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(2)
	}
	if cfg.render != "" {
		runs, err := parseRenderRuns(cfg.render)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sim:", err)
			os.Exit(2)
		}
		render(os.Stdout, runs)
		return
	}
	if cfg.printPolicy {
		if cfg.org == orgB {
			fmt.Print(simPolicyB)
		} else {
			fmt.Print(simPolicy)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := simulate(ctx, cfg, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
	if rep.Run.Errors > 0 {
		fmt.Fprintf(os.Stderr, "sim: %d statements failed unexpectedly (see above)\n", rep.Run.Errors)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.StringVar(&cfg.org, "org", "a", "organisation: a, the company pgwarden was tuned to, or b, one it was not (other roles, schema, events, channel attacks and policy; defaults --employees 40 --customers 20000 --start 2026-03-02)")
	seed := fs.Uint64("seed", 1, "random seed: the same seed gives the same employees, events and attacks")
	fs.IntVar(&cfg.employees, "employees", 50, "number of employees (support agents, analysts, DBAs, one billing batch account); at least 6")
	fs.IntVar(&cfg.days, "days", 30, "simulated days")
	start := fs.String("start", "2026-01-05", "first simulated day, a Monday (YYYY-MM-DD, UTC)")
	fs.IntVar(&cfg.customers, "customers", 50000, "rows seeded into the customers table")
	attacks := fs.String("attacks", "all", "comma-separated attack types to inject, \"all\" or \"none\": "+strings.Join(attackTypes, ","))
	fs.IntVar(&cfg.episodes, "episodes", 3, "episodes per attack type; slow-and-low gets one episode per factor (0.5x, 1x, 2x) per 3 episodes, at least one each")
	fs.IntVar(&cfg.slowFrom, "slow-from", 8, "the day (from 1) the slow-and-low reads begin: the days before are the employees' only history")
	fs.StringVar(&cfg.policyPath, "policy", "", "pgwarden policy file to evaluate (default: the built-in sim policy, see --print-policy)")
	fs.StringVar(&cfg.pgwarden, "pgwarden", "", "pgwarden binary (default: go build ./cmd/pgwarden of this module)")
	fs.StringVar(&cfg.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&cfg.keepDir, "keep", "", "copy the decision log, pgwarden's log, the policy and the ground truth (episodes.json) into this directory")
	fs.BoolVar(&cfg.verbose, "v", false, "verbose: log every episode statement and unexpected errors in full")
	fs.BoolVar(&cfg.printPolicy, "print-policy", false, "print the built-in sim policy and exit")
	fs.StringVar(&cfg.render, "render", "", "run nothing: print the Markdown tables of docs/evaluation.md from --json reports, \"LABEL=FILE,LABEL=FILE\"")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: go run ./test/sim [flags]

Drives a real pgwarden in front of a real, throwaway PostgreSQL with a
virtual clock: simulated employees do their normal work for --days days and
labelled attacks are injected; the decision log is then scored against the
ground truth (recall, false alerts and blocks per employee-day, PII leaked
before the first block, slow-and-low time to detection).

Needs the PostgreSQL server binaries (as the tests do) and the go command
unless --pgwarden is given.

Attack types: %s
With --org b: %s

Flags:
`, strings.Join(attackTypes, ", "), strings.Join(attackTypesB, ", "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch cfg.org {
	case "a":
	case orgB:
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["employees"] {
			cfg.employees = bEmployees
		}
		if !set["customers"] {
			cfg.customers = bPatients
		}
		if !set["start"] {
			*start = bStart
		}
	default:
		return cfg, fmt.Errorf("--org: want a or b, not %q", cfg.org)
	}
	cfg.seed = *seed
	cfg.args = args
	t, err := time.Parse("2006-01-02", *start)
	if err != nil {
		return cfg, fmt.Errorf("--start: %w", err)
	}
	if t.Weekday() != time.Monday {
		return cfg, fmt.Errorf("--start %s is a %s, not a Monday", *start, t.Weekday())
	}
	cfg.start = t
	if cfg.employees < 6 || cfg.org == orgB && cfg.employees < 12 {
		return cfg, fmt.Errorf("--employees must be at least 6 (12 for --org b)")
	}
	if cfg.days < 1 {
		return cfg, fmt.Errorf("--days must be at least 1")
	}
	if cfg.customers < 3000 {
		return cfg, fmt.Errorf("--customers must be at least 3000 (the attacks read that many)")
	}
	if cfg.episodes < 0 {
		return cfg, fmt.Errorf("--episodes must not be negative")
	}
	if cfg.slowFrom < 2 {
		return cfg, fmt.Errorf("--slow-from must be at least 2: the reads need a day of history before them")
	}
	switch *attacks {
	case "all":
		cfg.attacks = typesOf(cfg.org)
	case "none", "":
	default:
		for _, a := range strings.Split(*attacks, ",") {
			a = strings.TrimSpace(a)
			if !slices.Contains(typesOf(cfg.org), a) {
				return cfg, fmt.Errorf("--attacks: unknown type %q (known: %s)", a, strings.Join(typesOf(cfg.org), ", "))
			}
			cfg.attacks = append(cfg.attacks, a)
		}
	}
	return cfg, nil
}

// reproduce returns the command that repeats this run.
func (cfg config) reproduce() string {
	words := []string{"go run ./test/sim"}
	hasSeed := false
	for _, a := range cfg.args {
		if strings.HasPrefix(a, "--seed") || strings.HasPrefix(a, "-seed") {
			hasSeed = true
		}
		words = append(words, shellQuote(a))
	}
	if !hasSeed {
		words = append(words, fmt.Sprintf("--seed %d", cfg.seed))
	}
	return strings.Join(words, " ")
}

func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=+.,:/@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
