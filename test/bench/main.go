// Command bench compares PostgreSQL reached directly, through pgwarden and through
// PgBouncer in session mode, in one run on one throwaway cluster. Each round runs
// every workload against every target, rotating the order of the targets from
// round to round, so that drift on the machine falls on all of them alike. It
// reports, per workload, the median across rounds of each target's figure, the
// median of the paired ratios target/direct (both from the same round), and the
// CPU time the proxy processes spent per unit of work. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

const usage = `Usage: go run ./test/bench [flags]        (or: make bench BENCH_FLAGS='...')

Starts a throwaway PostgreSQL (test/pgtest), pgwarden (built from this module, run
as its own process with a row limit so high that its inspection hook decodes and
counts every row) and PgBouncer in session mode. Loads pgbench data and a table of
~150-byte rows, then runs each selected workload against each target for -rounds
rounds, rotating the order of the targets every round. Results go to stdout,
progress to stderr. Ctrl-C stops everything and removes the temporary files.

Workloads (-workloads, comma-separated; a group name selects all its members):
  pgbench   pgbench-simple-c1 pgbench-simple-c8 pgbench-prepared-c1 pgbench-prepared-c8
            pgbench -n -S -M simple|prepared -c 1 -j 1 | -c 8 -j 2 -T <-T>
  select    pgx reads the whole -rows table:           rows/s, proxy CPU us/row
  copy      COPY (SELECT ...) TO STDOUT via pgconn:    MB/s, proxy CPU us/row
  connect   -connections x (connect, SELECT 1, close): ms/conn, proxy CPU us/conn
  connect-login  connect with a SCRAM password: direct as pgw_scram, through
            pgwarden as its own login (--login --login-reuse; the baseline
            without --login-reuse), through PgBouncer as connect (trust)

Targets (-targets): direct (always), pgwarden, pgbouncer (skipped with a note when
the pgbouncer binary is missing: apt-get install pgbouncer). -baseline BIN adds
baseline: another pgwarden binary, started with the same flags.

Flags:
`

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2)
	}
	if cfg.render != "" {
		if err := renderMarkdown(cfg.render, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is what the flags say.
type config struct {
	seconds     int      // -T: duration of each pgbench run
	rounds      int      // -rounds
	workloads   []string // keys of the selected workloads, in table order
	targets     []string // "direct" first, then the proxies asked for
	jsonPath    string   // -json: "" none, "-" stdout instead of the table
	scale       int      // pgbench -i -s
	rows        int      // rows of bench_rows
	conns       int      // connections of the connect workload
	pgwardenBin string   // prebuilt binary; "" builds ./cmd/pgwarden
	baselineBin string   // -baseline: another pgwarden, run as the target baseline
	guard       string   // -guard: default, detect or declared
	data        string   // -data: hex (md5 text) or pii (people)
	render      string   // -render: a JSON report to print as Markdown, nothing run
	verbose     bool
	args        []string // the command line, for the report
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var (
		cfg       config
		workloads = fs.String("workloads", "pgbench,select,copy,connect", "comma-separated `list` of workloads or groups to run")
		targets   = fs.String("targets", "direct,pgwarden,pgbouncer", "comma-separated `list` of targets; direct is always included")
	)
	fs.IntVar(&cfg.seconds, "T", 10, "duration of each pgbench run in `seconds`")
	fs.IntVar(&cfg.rounds, "rounds", 3, "number of rounds; the order of the targets rotates each round")
	fs.StringVar(&cfg.jsonPath, "json", "", "also write the results as JSON to `file` (\"-\": JSON on stdout instead of the table)")
	fs.IntVar(&cfg.scale, "scale", 10, "pgbench -i scale factor")
	fs.IntVar(&cfg.rows, "rows", 1_000_000, "rows in the table read by the select and copy workloads")
	fs.IntVar(&cfg.conns, "connections", 500, "sequential connections made by the connect workload")
	fs.StringVar(&cfg.pgwardenBin, "pgwarden", "", "use this pgwarden `binary` instead of building ./cmd/pgwarden")
	fs.StringVar(&cfg.baselineBin, "baseline", "", "also run this pgwarden `binary` (an older build, say), with pgwarden's flags, as the target baseline in the same rounds: before and after from one run")
	fs.BoolVar(&cfg.verbose, "v", false, "also log the cluster's startup steps")
	fs.StringVar(&cfg.guard, "guard", "default", "pgwarden's counting: `detect` (built-in detectors scan every value, five threshold rules no workload reaches), default (serve exactly as a user starts it: no --policy, the built-in policy with its norms, and --catalog-url) or declared (the tables' columns declared PII, detectors off, resolved through a catalog connection)")
	fs.StringVar(&cfg.render, "render", "", "run nothing: print the JSON report `file` (written by -json) as the Markdown of docs/performance.md")
	fs.StringVar(&cfg.data, "data", "hex", "rows of the select and copy workloads: `hex` (an int and 140 characters of md5 hex) or pii (id, name, email, phone, SSN, address of synthetic people)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	fail := func(format string, a ...any) (config, error) {
		err := fmt.Errorf(format, a...)
		fmt.Fprintln(stderr, "bench:", err)
		fs.Usage()
		return cfg, err
	}
	if cfg.guard != "detect" && cfg.guard != "declared" && cfg.guard != "default" {
		return fail("-guard %q: want detect, default or declared", cfg.guard)
	}
	if cfg.guard == "default" && cfg.data == "pii" {
		return fail("-guard default -data pii: the built-in policy blocks reads of a million people, as it should")
	}
	if cfg.data != "hex" && cfg.data != "pii" {
		return fail("-data %q: want hex or pii", cfg.data)
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	if cfg.seconds < 1 || cfg.rounds < 1 || cfg.scale < 1 || cfg.rows < 1 || cfg.conns < 1 {
		return fail("-T, -rounds, -scale, -rows and -connections must be at least 1")
	}
	for _, s := range splitList(*workloads) {
		n := 0
		for _, w := range allWorkloads {
			if (w.key == s || w.group == s) && !slices.Contains(cfg.workloads, w.key) {
				cfg.workloads = append(cfg.workloads, w.key)
			}
			if w.key == s || w.group == s {
				n++
			}
		}
		if n == 0 {
			return fail("unknown workload %q", s)
		}
	}
	if len(cfg.workloads) == 0 {
		return fail("no workload selected")
	}
	// Keep the table order whatever the order of the list.
	var ordered []string
	for _, w := range allWorkloads {
		if slices.Contains(cfg.workloads, w.key) {
			ordered = append(ordered, w.key)
		}
	}
	cfg.workloads = ordered
	cfg.targets = []string{targetDirect}
	for _, s := range splitList(*targets) {
		switch s {
		case targetDirect:
		case targetPgwarden, targetPgbouncer:
			if !slices.Contains(cfg.targets, s) {
				cfg.targets = append(cfg.targets, s)
			}
		default:
			return fail("unknown target %q (direct, pgwarden, pgbouncer)", s)
		}
	}
	if cfg.baselineBin != "" {
		if !slices.Contains(cfg.targets, targetPgwarden) {
			return fail("-baseline needs the pgwarden target")
		}
	}
	cfg.args = args
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
