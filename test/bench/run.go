package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// clusterConf is appended to pgtest's postgresql.conf: room for the whole working
// set (pgbench at scale 10 plus the row table) in shared buffers, and nothing that
// starts by itself in the middle of a run.
var clusterConf = []string{
	"shared_buffers = 512MB",
	"autovacuum = off",
	"jit = off",
}

// bench is one run of the benchmark.
type bench struct {
	cfg        config
	prog       *progress
	pgbenchBin string
	targets    []*target
	rep        report
}

func run(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	b := &bench{cfg: cfg, prog: &progress{w: stderr, t0: time.Now()}}
	b.rep.Meta = newMeta(cfg)
	err := b.run(ctx)
	b.rep.Meta.LoadEnd = loadAvg()
	b.rep.Meta.ElapsedSeconds = time.Since(b.prog.t0).Round(time.Second).Seconds()
	if ctx.Err() != nil {
		err = errors.New("interrupted")
	}
	if b.rep.hasSamples() {
		if werr := b.rep.write(stdout, cfg.jsonPath); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	if err == nil && len(b.rep.Errors) > 0 {
		err = fmt.Errorf("%d runs failed (listed above)", len(b.rep.Errors))
	}
	return err
}

// run sets everything up, runs the rounds and tears everything down, also when
// ctx is cancelled.
func (b *bench) run(ctx context.Context) (err error) {
	cfg := b.cfg
	tmp, err := os.MkdirTemp("", "pgwarden-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	if b.selected("pgbench") {
		if b.pgbenchBin, err = findPgbench(); err != nil {
			return err
		}
	}
	var bouncerBin string
	if slices.Contains(cfg.targets, targetPgbouncer) {
		bouncerBin, b.rep.Meta.PgBouncer = findPgbouncer()
		if bouncerBin == "" {
			note := "pgbouncer not found (apt-get install pgbouncer): its column is skipped"
			b.rep.Meta.Notes = append(b.rep.Meta.Notes, note)
			b.prog.logf("%s", note)
		}
	}
	pgwardenBin := cfg.pgwardenBin
	if slices.Contains(cfg.targets, targetPgwarden) {
		if pgwardenBin == "" {
			b.prog.logf("building pgwarden")
			var root string
			if pgwardenBin, root, err = buildPgwarden(ctx, tmp); err != nil {
				return err
			}
			b.rep.Meta.PgwardenRev = gitRevision(root)
		} else if pgwardenBin, err = filepath.Abs(pgwardenBin); err != nil {
			return err
		}
	}

	b.prog.logf("starting PostgreSQL")
	logf := func(string, ...any) {}
	if cfg.verbose {
		logf = b.prog.logf
	}
	cluster, err := pgtest.Start(ctx, pgtest.Options{Logf: logf, ExtraConf: clusterConf})
	if err != nil {
		return err
	}
	defer func() {
		b.prog.logf("stopping PostgreSQL")
		err = errors.Join(err, cluster.Stop())
	}()
	direct := &target{name: targetDirect, host: cluster.Host, port: cluster.Port, db: cluster.Database, user: pgtest.TrustUser,
		login: pgtest.ScramUser, password: pgtest.Password}
	b.targets = append(b.targets, direct)
	if err := b.prepare(ctx, cluster, direct); err != nil {
		return err
	}

	if pgwardenBin != "" {
		pol := filepath.Join(tmp, "policy.yaml")
		text := detectPolicy
		extra := []string{"--policy", pol}
		switch b.cfg.guard {
		case "declared":
			text = declaredPolicy
			if b.cfg.data == "pii" {
				text = declaredPIIPolicy
			}
			extra = append(extra, "--catalog-url", cluster.DSN(pgtest.SuperUser))
		case "default":
			// What a user gets: the built-in policy, norms on.
			extra = []string{"--catalog-url", cluster.DSN(pgtest.SuperUser)}
		}
		if err := os.WriteFile(pol, []byte(text+benchRules), 0o600); err != nil {
			return err
		}
		var login []string
		if b.selected("connect-login") {
			if login, err = b.loginFlags(ctx, pgwardenBin, tmp); err != nil {
				return err
			}
		}
		bins := []string{pgwardenBin}
		if cfg.baselineBin != "" {
			base, err := filepath.Abs(cfg.baselineBin)
			if err != nil {
				return err
			}
			bins = append(bins, base)
		}
		for i, bin := range bins {
			name := targetPgwarden
			if i == 1 {
				name = targetBaseline
			}
			flags := extra
			if login != nil {
				flags = append(slices.Clone(extra), login...)
				if i == 0 {
					// The baseline, an older build perhaps, logs in
					// without reuse.
					flags = append(flags, "--login-reuse")
				}
			}
			p, port, err := startPgwarden(ctx, name, bin, tmp, cluster.Addr(), flags...)
			if err != nil {
				return err
			}
			defer p.stop()
			if i == 0 {
				b.rep.Meta.Pgwarden = strings.Join(p.argv, " ")
			} else {
				b.rep.Meta.Baseline = strings.Join(p.argv, " ")
			}
			t := &target{name: name, host: "127.0.0.1", port: port, db: cluster.Database, user: pgtest.TrustUser, proc: p}
			if login != nil {
				t.login, t.password = benchLogin, benchLoginPassword
			}
			b.targets = append(b.targets, t)
			b.prog.logf("%s listening on 127.0.0.1:%d (pid %d)", name, port, p.pid)
		}
	}
	if bouncerBin != "" {
		p, port, dir, err := startPgbouncer(ctx, bouncerBin, tmp, cluster.Port, []string{pgtest.TrustUser, pgtest.SuperUser})
		if dir != "" {
			defer os.RemoveAll(dir)
		}
		if err != nil {
			return err
		}
		defer p.stop()
		b.rep.Meta.PgBouncerCmd = strings.Join(p.argv, " ")
		b.targets = append(b.targets, &target{name: targetPgbouncer, host: "127.0.0.1", port: port, db: cluster.Database, user: pgtest.TrustUser, proc: p})
		b.prog.logf("pgbouncer listening on 127.0.0.1:%d (pid %d)", port, p.pid)
	}
	for _, t := range b.targets {
		if err := t.check(ctx); err != nil {
			return err
		}
		b.rep.Meta.Targets = append(b.rep.Meta.Targets, t.name)
	}
	return b.rounds(ctx)
}

// The login of the connect-login workload through pgwarden, mapped to
// pgtest.ScramUser.
const (
	benchLogin         = "bench"
	benchLoginPassword = "bench-login-password"
)

// loginFlags writes a logins file holding benchLogin and returns the flags
// of pgwarden serve for its own login, under which the trust user's
// sessions (every other workload's) are still relayed; the role's
// password reaches pgwarden through its environment.
func (b *bench) loginFlags(ctx context.Context, bin, dir string) ([]string, error) {
	users := filepath.Join(dir, "users.json")
	cmd := exec.CommandContext(ctx, bin, "users", "add", benchLogin, "--role", pgtest.ScramUser, "--users-file", users)
	cmd.Stdin = strings.NewReader(benchLoginPassword + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgwarden users add: %w\n%s", err, tail(out))
	}
	if err := os.Setenv("PGWARDEN_ROLE_PASSWORD_PGW_SCRAM", pgtest.Password); err != nil {
		return nil, err
	}
	return []string{"--login", "--users-file", users, "--login-relay", "*/" + pgtest.TrustUser}, nil
}

// selected reports whether a workload of group is to run.
func (b *bench) selected(group string) bool {
	for _, key := range b.cfg.workloads {
		if workloadByKey(key).group == group {
			return true
		}
	}
	return false
}

// prepare loads the data of the selected workloads, directly, and reads it into
// shared buffers.
func (b *bench) prepare(ctx context.Context, cluster *pgtest.Cluster, direct *target) error {
	var rels []string
	if b.selected("pgbench") {
		b.prog.logf("pgbench -i -s %d", b.cfg.scale)
		args := []string{"-i", "-q", "-s", strconv.Itoa(b.cfg.scale),
			"-h", direct.host, "-p", strconv.Itoa(direct.port), "-U", direct.user, direct.db}
		if out, err := b.libpqCommand(ctx, b.pgbenchBin, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("pgbench -i: %w\n%s", err, tail(out))
		}
		rels = append(rels, "pgbench_accounts", "pgbench_accounts_pkey", "pgbench_branches", "pgbench_tellers")
	}
	conn, err := pgx.Connect(ctx, direct.dsn())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&b.rep.Meta.PostgreSQL); err != nil {
		return err
	}
	if b.selected("select") || b.selected("copy") {
		b.prog.logf("creating %s: %d rows of ~150 bytes", benchTable, b.cfg.rows)
		create, fill := hexTable, hexRows
		if b.cfg.data == "pii" {
			create, fill = piiTable, piiRows
		}
		for _, sql := range []string{
			"DROP TABLE IF EXISTS " + benchTable,
			"CREATE TABLE " + benchTable + create,
			fmt.Sprintf("INSERT INTO %s "+fill, benchTable, b.cfg.rows),
			// Sets the hint bits now, so that the first scan does not write.
			"VACUUM (FREEZE, ANALYZE) " + benchTable,
		} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				return fmt.Errorf("%s: %w", sql, err)
			}
		}
		rels = append(rels, benchTable)
	}
	if len(rels) == 0 {
		return nil
	}
	// pg_prewarm is contrib; without it the first round reads from the page cache.
	su, err := pgx.Connect(ctx, cluster.DSN(pgtest.SuperUser))
	if err != nil {
		return err
	}
	defer su.Close(context.WithoutCancel(ctx))
	if _, err := su.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_prewarm"); err != nil {
		b.prog.logf("no pg_prewarm, not prewarming: %v", err)
		return nil
	}
	for _, rel := range rels {
		if _, err := su.Exec(ctx, "SELECT pg_prewarm($1)", rel); err != nil {
			return fmt.Errorf("pg_prewarm(%s): %w", rel, err)
		}
	}
	return nil
}

// rounds runs every selected workload against every target, cfg.rounds times. The
// order of the targets rotates by one each round.
func (b *bench) rounds(ctx context.Context) error {
	cfg := b.cfg
	total := cfg.rounds * len(cfg.workloads) * len(b.targets)
	est := 0
	for _, key := range cfg.workloads {
		if workloadByKey(key).group == "pgbench" {
			est += cfg.seconds
		} else {
			est += 3
		}
	}
	est *= cfg.rounds * len(b.targets)
	b.prog.logf("%d runs in %d rounds, roughly %s", total, cfg.rounds, (time.Duration(est) * time.Second).String())
	for _, key := range cfg.workloads {
		w := workloadByKey(key)
		b.rep.Workloads = append(b.rep.Workloads, workloadResult{
			Key: w.key, Title: w.title, Unit: w.unit, CPUUnit: w.cpuUnit, LowerIsBetter: w.lowerIsBetter,
			Samples: map[string][]sample{},
		})
	}
	k := 0
	for r := range cfg.rounds {
		n := r % len(b.targets)
		order := append(slices.Clone(b.targets[n:]), b.targets[:n]...)
		var names []string
		for _, t := range order {
			names = append(names, t.name)
		}
		b.prog.logf("round %d/%d, targets in the order %s", r+1, cfg.rounds, strings.Join(names, ", "))
		for i := range b.rep.Workloads {
			wr := &b.rep.Workloads[i]
			w := workloadByKey(wr.Key)
			for pos, t := range order {
				k++
				b.prog.startf("round %d/%d [%d/%d] %-24s via %-9s ", r+1, cfg.rounds, k, total, w.title, t.name)
				s := b.runOne(ctx, w, t)
				if ctx.Err() != nil {
					b.prog.endf("interrupted")
					return ctx.Err()
				}
				s.Round, s.Position = r+1, pos+1
				wr.Samples[t.name] = append(wr.Samples[t.name], s)
				if s.Error != "" {
					first, _, _ := strings.Cut(s.Error, "\n")
					b.prog.endf("ERROR %s", first)
					b.rep.Errors = append(b.rep.Errors, fmt.Sprintf("round %d, %s via %s: %s", r+1, w.title, t.name, s.Error))
					continue
				}
				msg := fmtValue(w.unit, s.Value) + " " + w.unit
				if s.CPUPerUnitUS != nil {
					msg += fmt.Sprintf(", %s CPU %s us/%s", t.name, fmtCPU(*s.CPUPerUnitUS), w.cpuUnit)
				}
				b.prog.endf("%s", msg)
			}
		}
	}
	return nil
}

// runOne runs w once against t.
func (b *bench) runOne(ctx context.Context, w *workload, t *target) sample {
	m := &meter{}
	if t.proc != nil {
		m.pid = t.proc.pid
	}
	meas, err := w.run(ctx, b, t, m)
	if err == nil && m.err != nil {
		err = fmt.Errorf("reading the CPU time of %s: %w", t.name, m.err)
	}
	if t.proc != nil && t.proc.exited() {
		err = errors.Join(err, fmt.Errorf("%s exited (%v):\n%s", t.name, t.proc.waitErr, t.proc.logTail()))
	}
	if err != nil {
		return sample{Error: err.Error()}
	}
	s := sample{Value: meas.value, Units: meas.units, WallSeconds: m.elapsed().Seconds()}
	if t.proc != nil && meas.units > 0 {
		cpu := m.cpu().Seconds()
		per := cpu * 1e6 / float64(meas.units)
		s.ProxyCPUSeconds, s.CPUPerUnitUS = &cpu, &per
	}
	return s
}

// findPgbench returns pgbench from PATH, or from the newest PostgreSQL under
// /usr/lib/postgresql.
func findPgbench() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	best, bestV := "", 0
	for _, p := range dirs {
		if v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p)))); err == nil && v > bestV {
			best, bestV = p, v
		}
	}
	if best == "" {
		return "", errors.New("pgbench not found on PATH nor in /usr/lib/postgresql/*/bin (apt-get install postgresql-contrib or postgresql-client)")
	}
	return best, nil
}

// progress writes what is going on to stderr, prefixed with the time since start.
type progress struct {
	w  io.Writer
	t0 time.Time
}

func (p *progress) stamp() string {
	d := time.Since(p.t0).Round(time.Second)
	return fmt.Sprintf("[%02d:%02d]", int(d.Minutes()), int(d.Seconds())%60)
}

func (p *progress) logf(format string, args ...any) {
	fmt.Fprintf(p.w, "%s %s\n", p.stamp(), fmt.Sprintf(format, args...))
}

// startf begins a line that endf finishes.
func (p *progress) startf(format string, args ...any) {
	fmt.Fprintf(p.w, "%s %s", p.stamp(), fmt.Sprintf(format, args...))
}

func (p *progress) endf(format string, args ...any) {
	fmt.Fprintf(p.w, "%s\n", fmt.Sprintf(format, args...))
}

// newMeta describes the machine and the command.
func newMeta(cfg config) meta {
	argv0 := os.Args[0]
	if strings.Contains(argv0, "go-build") {
		argv0 = "go run ./test/bench"
	}
	words := []string{argv0}
	for _, a := range cfg.args {
		words = append(words, shellQuote(a))
	}
	var pgbench []string
	for _, key := range cfg.workloads {
		if w := workloadByKey(key); w.group == "pgbench" {
			pgbench = append(pgbench, w.key)
		}
	}
	m := meta{
		Command:   strings.Join(words, " "),
		Date:      time.Now().Format(time.RFC3339),
		GoVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		CPUs:      runtime.NumCPU(),
		CPUModel:  cpuModel(),
		Rounds:    cfg.rounds,
		Seconds:   cfg.seconds,
		Workloads: cfg.workloads,
		LoadStart: loadAvg(),
	}
	if len(pgbench) > 0 {
		m.Pgbench = fmt.Sprintf("pgbench -n -S -M simple|prepared -c 1 -j 1|-c 8 -j 2 -T %d (after pgbench -i -s %d)", cfg.seconds, cfg.scale)
	}
	return m
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// gitRevision returns the commit of the work tree at root, "-dirty" when it has
// changes, or "" when git cannot tell.
func gitRevision(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		rev += "-dirty"
	}
	return rev
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
