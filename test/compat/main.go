// Command compat runs a real client's own test suite, pgx v5's, twice: directly
// against a throwaway PostgreSQL cluster and through pgwarden, and compares the
// results test by test. See README.md.
//
//	go run ./test/compat [flags]
//
// It exits 0 when every test that passes directly also passes through pgwarden,
// 1 when some do not (regressions), and 2 when the comparison could not be run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

const usage = `usage: go run ./test/compat [flags]

Runs pgx's own test suite (the pgx version in go.mod, copied out of the module
cache) twice with 'go test -json': directly against a throwaway PostgreSQL
cluster started with test/pgtest, and through pgwarden (built from ./cmd/pgwarden
and started as a child process in front of the same cluster). Prints passed,
failed and skipped tests per package for both runs side by side, and the tests
that pass directly but fail through pgwarden.

Exit status: 0 no regression, 1 some test passes directly but fails (or does not
run) through pgwarden, 2 the comparison could not be run.

Environment:
  COMPAT_PACKAGES   default for --packages
  COMPAT_RUN        default for --run

Flags:
`

// defaultPackages are the pgx packages whose tests use PGX_TEST_DATABASE.
// (pgproto3's and tracelog's each have one test that does.)
const defaultPackages = ". ./pgconn/... ./pgproto3/... ./pgtype/... ./pgxpool/... ./stdlib/... ./tracelog/..."

type options struct {
	packages      []string
	run           string
	timeout       time.Duration
	procs         int
	parallel      int
	mode          string
	pgxDir        string
	logDir        string
	pgwardenFlags []string
	pgwardenBin   string
	keepTail      int
	rerun         int
	allowFlaky    bool
	verbose       bool
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	log.SetFlags(0)
	log.SetPrefix("compat: ")
	var o options
	fs := flag.NewFlagSet("compat", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	pkgs := fs.String("packages", envOr("COMPAT_PACKAGES", defaultPackages),
		"space- or comma-separated pgx `packages` to test, relative to the pgx module root")
	fs.StringVar(&o.run, "run", os.Getenv("COMPAT_RUN"), "only tests matching this `regexp` (go test -run)")
	fs.DurationVar(&o.timeout, "timeout", 45*time.Minute, "go test -timeout, per test binary")
	fs.IntVar(&o.procs, "p", 1, "go test -p: test binaries run at a time")
	fs.IntVar(&o.parallel, "parallel", 0, "go test -parallel (default: GOMAXPROCS)")
	fs.StringVar(&o.mode, "mode", "both", "which runs: both, direct or pgwarden")
	fs.StringVar(&o.pgxDir, "pgx-dir", "", "pgx module `dir` to copy (default: the go.mod version in the module cache)")
	fs.StringVar(&o.logDir, "log-dir", "", "keep the go test -json streams, the pgwarden log and the cluster details in `dir` (default: a new temporary directory, kept only when there are regressions or the run fails)")
	fs.Var((*stringList)(&o.pgwardenFlags), "pgwarden-flag", "extra `flag` for 'pgwarden serve', e.g. --pgwarden-flag=--max-rows-per-statement=1000000000 (repeatable)")
	fs.StringVar(&o.pgwardenBin, "pgwarden-bin", "", "use this pgwarden `binary` instead of building ./cmd/pgwarden (to try a patched proxy)")
	fs.IntVar(&o.rerun, "rerun", 1, "run each test that regressed this many more `times` on its own through pgwarden, to tell flaky from consistent")
	fs.BoolVar(&o.allowFlaky, "allow-flaky", false, "exit 0 when every regressed test passed at least once when rerun")
	fs.IntVar(&o.keepTail, "output-lines", 15, "lines of test output shown per regression")
	fs.BoolVar(&o.verbose, "v", false, "print every test result as it arrives")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "compat: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		os.Exit(2)
	}
	o.packages = strings.FieldsFunc(*pkgs, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '\n' })
	if len(o.packages) == 0 {
		log.Print("--packages is empty")
		os.Exit(2)
	}
	switch o.mode {
	case "both", "direct", "pgwarden":
	default:
		log.Printf("--mode %q: want both, direct or pgwarden", o.mode)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// A second signal gets the default behaviour: exit at once.
		stop()
	}()
	code, err := run(ctx, &o, os.Stdout)
	if err != nil {
		if ctx.Err() != nil {
			log.Printf("interrupted: %v", err)
		} else {
			log.Print(err)
		}
		os.Exit(2)
	}
	os.Exit(code)
}

// rerunAlone runs each of tops o.rerun times on its own through pgwarden.
func rerunAlone(ctx context.Context, o *options, env *environment, pgx string, tops []testKey, logDir string) (map[testKey]rerun, error) {
	out := make(map[testKey]rerun)
	for i, top := range tops {
		one := *o
		one.packages = []string{top.pkg}
		one.run = "^" + regexp.QuoteMeta(top.name) + "$"
		rr := rerun{}
		for n := 1; n <= o.rerun; n++ {
			path := filepath.Join(logDir, fmt.Sprintf("rerun-%d-%d.json", i+1, n))
			r, err := runSuite(ctx, &one, "rerun", pgx, env.vars("pgwarden"), path)
			if err != nil {
				return nil, fmt.Errorf("rerun %s %s: %w", top.pkg, top.name, err)
			}
			rr.runs++
			if t := r.tests[top]; t != nil && t.action == "pass" {
				rr.passed++
			}
		}
		log.Printf("rerun %s %s through pgwarden: passed %d of %d", shortPkg(top.pkg), top.name, rr.passed, rr.runs)
		out[top] = rr
	}
	return out, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// run does the whole comparison and returns the exit code. Every resource it
// creates is released before it returns.
func run(ctx context.Context, o *options, out io.Writer) (code int, err error) {
	start := time.Now()
	repo, err := moduleRoot(ctx)
	if err != nil {
		return 0, err
	}
	if o.pgxDir == "" {
		if o.pgxDir, err = moduleDir(ctx, repo, "github.com/jackc/pgx/v5"); err != nil {
			return 0, err
		}
	}
	pgxVersion := filepath.Base(o.pgxDir)

	work, err := os.MkdirTemp("", "pgwarden-compat-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(work)

	logDir, keepLogs := o.logDir, o.logDir != ""
	if logDir == "" {
		if logDir, err = os.MkdirTemp("", "pgwarden-compat-logs-"); err != nil {
			return 0, err
		}
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return 0, err
	}
	defer func() {
		if keepLogs || code != 0 || (err != nil && ctx.Err() == nil) {
			log.Printf("logs kept in %s", logDir)
		} else {
			os.RemoveAll(logDir)
		}
	}()

	// 1. The pgx copy, the pgwarden binary and the compiled tests.
	pgx := filepath.Join(work, "pgx")
	log.Printf("copying %s to %s", o.pgxDir, pgx)
	if err := copyTree(o.pgxDir, pgx); err != nil {
		return 0, fmt.Errorf("copy pgx: %w", err)
	}
	bin := o.pgwardenBin
	if bin == "" {
		bin = filepath.Join(work, "pgwarden")
		log.Printf("building pgwarden")
		if err := goCmd(ctx, repo, nil, "build", "-o", bin, "./cmd/pgwarden"); err != nil {
			return 0, fmt.Errorf("build pgwarden: %w", err)
		}
	} else if bin, err = filepath.Abs(bin); err != nil {
		return 0, err
	}
	t0 := time.Now()
	log.Printf("compiling the pgx tests (%s)", strings.Join(o.packages, " "))
	if err := goCmd(ctx, pgx, testEnv(nil), append([]string{"test", "-count=1", "-run", "^$", "-p", "2"}, o.packages...)...); err != nil {
		return 0, fmt.Errorf("compile pgx tests: %w", err)
	}
	compileTime := time.Since(t0)

	// 2. The cluster, its setup, and pgwarden in front of it.
	env, err := startEnvironment(ctx, o, bin, logDir)
	if env != nil {
		defer env.close()
	}
	if err != nil {
		return 0, err
	}

	// 3. The two runs, one after the other.
	var runs []*runResult
	for _, target := range []string{"direct", "pgwarden"} {
		if o.mode != "both" && o.mode != target {
			continue
		}
		if err := env.resetDatabase(ctx); err != nil {
			return 0, fmt.Errorf("%s run: reset database: %w", target, err)
		}
		vars := env.vars(target)
		log.Printf("%s run: go test -p %d %s", target, o.procs, strings.Join(o.packages, " "))
		for _, k := range sortedKeys(vars) {
			log.Printf("  %s=%s", k, vars[k])
		}
		r, err := runSuite(ctx, o, target, pgx, vars, filepath.Join(logDir, target+".json"))
		if err != nil {
			return 0, fmt.Errorf("%s run: %w", target, err)
		}
		log.Printf("%s run took %s", target, r.elapsed.Round(time.Second))
		runs = append(runs, r)
		if err := env.checkAlive(); err != nil {
			return 0, fmt.Errorf("after the %s run: %w", target, err)
		}
	}

	// 4. Regressions again, each on its own.
	var reruns map[testKey]rerun
	if len(runs) == 2 && o.rerun > 0 {
		tops, _, _ := regressions(runs[0], runs[1])
		if reruns, err = rerunAlone(ctx, o, env, pgx, tops, logDir); err != nil {
			return 0, err
		}
	}

	// 5. The report.
	fmt.Fprintf(out, "\npgx %s test suite, PostgreSQL %s, go test -p %d, packages: %s\n",
		strings.TrimPrefix(pgxVersion, "v5@"), env.serverVersion, o.procs, strings.Join(o.packages, " "))
	if o.run != "" {
		fmt.Fprintf(out, "only tests matching %q\n", o.run)
	}
	if o.pgwardenBin != "" || len(o.pgwardenFlags) > 0 {
		fmt.Fprintf(out, "pgwarden: %s, extra flags: %s\n", orDefault(o.pgwardenBin, "built from ./cmd/pgwarden"), strings.Join(o.pgwardenFlags, " "))
	}
	fmt.Fprintf(out, "test compile time %s; total wall time %s\n", compileTime.Round(time.Second), time.Since(start).Round(time.Second))
	if n := report(out, o, runs, env, reruns); n > 0 {
		return 1, nil
	}
	return 0, nil
}
