package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// simulate runs the whole simulation and prints the report to stdout,
// progress to stderr.
func simulate(ctx context.Context, cfg config, stdout, stderr io.Writer) (rep *report, err error) {
	t0 := time.Now()
	logf := func(format string, args ...any) {
		d := time.Since(t0).Round(time.Second)
		fmt.Fprintf(stderr, "[%02d:%02d] %s\n", int(d.Minutes()), int(d.Seconds())%60, fmt.Sprintf(format, args...))
	}
	w := buildWorld(cfg)
	logf("organisation %s, seed %d: %d employees, %d days from %s, %d events, %d attack episodes (%d customers)",
		cfg.org, cfg.seed, len(w.employees), cfg.days, cfg.start.Format("2006-01-02"), len(w.events), len(w.episodes), cfg.customers)

	tmp, err := os.MkdirTemp("", "pgwarden-sim-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	bin := cfg.pgwarden
	if bin == "" {
		logf("building pgwarden")
		if bin, err = buildPgwarden(ctx, tmp); err != nil {
			return nil, err
		}
	}
	policyText := simPolicy
	policyName := "built-in sim policy"
	if cfg.org == orgB {
		policyText, policyName = simPolicyB, "organisation B's policy"
	}
	if cfg.policyPath != "" {
		b, err := os.ReadFile(cfg.policyPath)
		if err != nil {
			return nil, err
		}
		policyText, policyName = string(b), cfg.policyPath
	}
	policyFile := filepath.Join(tmp, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(policyText), 0o600); err != nil {
		return nil, err
	}

	logf("starting PostgreSQL")
	cluster, err := pgtest.Start(ctx, pgtest.Options{ExtraConf: []string{"autovacuum = off", "jit = off"}})
	if err != nil {
		return nil, err
	}
	defer func() {
		err = errors.Join(err, cluster.Stop())
	}()
	logf("seeding %d customers and %d employee roles", cfg.customers, len(w.employees))
	if err := setupDatabase(ctx, cluster, w); err != nil {
		return nil, err
	}

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	aport, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	adminAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(aport))
	decisionLog := filepath.Join(tmp, "decisions.jsonl")
	stateDir := filepath.Join(tmp, "state")
	token := randomToken()
	args := []string{"serve",
		"--listen", listen,
		"--upstream", "postgres://" + cluster.Addr(),
		"--policy", policyFile,
		"--catalog-url", cluster.DSN(pgtest.SuperUser),
		"--clock", "virtual", "--clock-start", cfg.start.Format(time.RFC3339),
		"--admin-listen", adminAddr,
		"--decision-log", decisionLog,
		"--state-dir", stateDir,
		"--log-level", "warn",
	}
	logFile := filepath.Join(tmp, "pgwarden.log")
	proc, err := startPgwarden(ctx, bin, args, token, listen, adminAddr, logFile)
	if err != nil {
		return nil, err
	}
	defer proc.stop()
	logf("pgwarden on %s, admin API on %s, policy: %s", listen, adminAddr, policyName)

	clock := &clockClient{url: "http://" + adminAddr, token: token, http: &http.Client{Timeout: 10 * time.Second}, now: cfg.start}
	if got, err := clock.get(ctx); err != nil {
		return nil, fmt.Errorf("GET /v1/clock: %w", err)
	} else if !got.Equal(cfg.start) {
		return nil, fmt.Errorf("pgwarden's virtual clock shows %s, want %s", got, cfg.start)
	}
	r := &runner{w: w, side: map[*pgx.Conn]*sideCount{}, super: cluster.DSN(pgtest.SuperUser), host: "127.0.0.1", port: port, db: cluster.Database, clock: clock, logf: logf, verbose: cfg.verbose,
		conns: map[string]*pgx.Conn{}, results: make([][]outcome, len(w.episodes)), stopped: make([]bool, len(w.episodes))}
	runStart := time.Now()
	runErr := r.runAll(ctx, runStart)
	r.stats.ClockPosts = clock.posts
	r.stats.ElapsedSeconds = time.Since(runStart).Round(100 * time.Millisecond).Seconds()
	r.stats.VirtualStart = cfg.start.Format(time.RFC3339)
	if vt, err := clock.get(ctx); err == nil {
		r.stats.VirtualEnd = vt.Format(time.RFC3339)
	}
	if proc.exited() {
		return nil, fmt.Errorf("pgwarden exited during the run (%v):\n%s", proc.waitErr, proc.logTail())
	}
	proc.stop()
	if runErr != nil {
		return nil, runErr
	}
	decisions, err := readDecisions(decisionLog)
	if err != nil {
		return nil, fmt.Errorf("reading the decision log: %w", err)
	}
	logf("run done: %d statements, %d clock moves, %d decisions, %s", r.stats.Statements, clock.posts, len(decisions), time.Since(runStart).Round(time.Second))

	rep = evaluate(w, r, decisions)
	rep.Run = r.stats
	rep.Meta = reportMeta{Org: cfg.org, Command: cfg.reproduce(), Seed: cfg.seed, Employees: len(w.employees), Days: cfg.days,
		Start: cfg.start.Format("2006-01-02"), Customers: cfg.customers, Policy: policyName, Pgwarden: proc.argv,
		Holidays: w.holidays, Date: time.Now().Format(time.RFC3339)}
	if cfg.pgwarden == "" {
		rep.Meta.Commit = gitRevision()
	}
	rep.print(stdout)
	if cfg.jsonPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return rep, fmt.Errorf("the report as JSON: %w", err)
		}
		if err := os.WriteFile(cfg.jsonPath, append(b, '\n'), 0o644); err != nil {
			return rep, err
		}
	}
	if cfg.keepDir != "" {
		if err := keep(cfg.keepDir, w, r, decisionLog, logFile, policyFile); err != nil {
			return rep, err
		}
		logf("decision log, pgwarden log, policy and ground truth kept in %s", cfg.keepDir)
	}
	return rep, nil
}

func keep(dir string, w *world, r *runner, files ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			return err
		}
	}
	type truth struct {
		Employees []employee  `json:"employees"`
		Holidays  []int       `json:"holidays"`
		Episodes  []episode   `json:"episodes"`
		Outcomes  [][]outcome `json:"outcomes"`
		Stats     runStats    `json:"stats"`
	}
	b, _ := json.MarshalIndent(truth{Employees: w.employees, Holidays: w.holidays, Episodes: w.episodes, Outcomes: r.results, Stats: r.stats}, "", "  ")
	return os.WriteFile(filepath.Join(dir, "episodes.json"), b, 0o644)
}

// gitRevision returns the commit of the work tree pgwarden is built from,
// "-dirty" when it has changes, or "" when git cannot tell.
func gitRevision() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		rev += "-dirty"
	}
	return rev
}
