package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// benchTable is the table of the select and copy workloads, about 150 bytes
// a row on the wire either way.
const benchTable = "bench_rows"

// -data hex: an int and 140 characters of md5 hex (digit-rich, which keeps
// the digit scanners busy, and no PII).
const (
	hexTable = " (id int NOT NULL, a text NOT NULL)"
	hexRows  = "SELECT g, left(repeat(md5(g::text), 5), 140) FROM generate_series(1, %d) g"
)

// -data pii: synthetic people, every row a name, an email, a phone number,
// a US SSN and a postal address.
const (
	piiTable = " (id int NOT NULL, full_name text NOT NULL, email text NOT NULL, phone text NOT NULL, ssn text NOT NULL, address text NOT NULL)"
	piiRows  = `SELECT g, f || ' ' || l,
  lower(f) || '.' || lower(l) || g || '@example.com',
  '+1 415 555 ' || lpad((mod(g, 10000))::text, 4, '0'),
  (100 + mod(g, 500)) || '-' || lpad((1 + mod(g, 98))::text, 2, '0') || '-' || lpad((1 + mod(g, 9998))::text, 4, '0'),
  (100 + mod(g, 9000)) || ' ' || s || ' Street, Apt ' || (1 + mod(g, 300)) || ', Springfield, IL 62' || lpad((mod(g, 1000))::text, 3, '0')
FROM generate_series(1, %d) g,
  LATERAL (SELECT (ARRAY['Maria','James','Wei','Aisha','Olga','Carlos','Yuki','Fatima','John','Priya'])[1 + mod(g, 10)] AS f,
    (ARRAY['Garcia','Smith','Zhang','Okafor','Ivanova','Silva','Tanaka','Haddad','Miller','Patel'])[1 + mod(g / 10, 10)] AS l,
    (ARRAY['Oak','Maple','Cedar','Elm','Pine','Birch','Walnut','Willow'])[1 + mod(g / 100, 8)] AS s) p`
)

// detectPolicy is the policy of -guard detect: the built-in one's
// detectors, nothing declared.
const detectPolicy = `version: 1
`

// benchRules are the built-in policy's threshold rules with limits no
// workload reaches: every row with PII is checked against five rules, as
// with the built-in policy, and nothing is blocked.
const benchRules = `rules:
  - {name: statement-alert, when: {pii_values: 1000000000000}, action: alert}
  - {name: statement-block, when: {pii_values: 1000000000000}, action: block}
  - {name: session-alert, scope: session, when: {pii_values: 1000000000000}, action: alert}
  - {name: daily-alert, scope: 24h, when: {pii_values: 1000000000000}, action: alert}
  - {name: daily-block, scope: 24h, when: {pii_values: 1000000000000}, action: block}
  - {name: server-egress, when: {statements: [server_egress]}, action: block}
`

// declaredPolicy is the policy of -guard declared: every column of the
// benchmark's tables is declared PII, detectors are off, so each value is
// counted by declaration (with a distinct-subject estimate) and none is
// scanned.
const declaredPolicy = `version: 1
pii:
  columns:
    - match: public.bench_rows.*
      category: custom:bench
    - match: public.pgbench_accounts.*
      category: custom:bench
  detectors:
    enabled: false
`

// declaredPIIPolicy is declaredPolicy for -data pii: the people's columns
// declared with their categories, the id not.
const declaredPIIPolicy = `version: 1
pii:
  columns:
    - {match: public.bench_rows.full_name, category: name}
    - {match: public.bench_rows.email, category: email}
    - {match: public.bench_rows.phone, category: phone}
    - {match: public.bench_rows.ssn, category: national_id}
    - {match: public.bench_rows.address, category: address}
    - match: public.pgbench_accounts.*
      category: custom:bench
  detectors:
    enabled: false
`

// measurement is what one run of a workload against one target yields.
type measurement struct {
	value float64 // in the workload's unit
	units int64   // transactions, rows or connections: what CPU time is divided by
}

// workload is one line of the table.
type workload struct {
	key, group, title string
	unit              string // of value
	cpuUnit           string // of units
	lowerIsBetter     bool   // the value is a time, not a rate
	run               func(ctx context.Context, b *bench, t *target, m *meter) (measurement, error)
}

// allWorkloads in table order.
var allWorkloads = []workload{
	pgbenchWorkload("simple", 1, 1),
	pgbenchWorkload("simple", 8, 2),
	pgbenchWorkload("prepared", 1, 1),
	pgbenchWorkload("prepared", 8, 2),
	{key: "select", group: "select", title: "select rows (pgx)", unit: "rows/s", cpuUnit: "row", run: selectRows},
	{key: "copy", group: "copy", title: "copy to stdout (pgconn)", unit: "MB/s", cpuUnit: "row", run: copyOut},
	{key: "connect", group: "connect", title: "connect+select 1+close", unit: "ms/conn", cpuUnit: "conn", lowerIsBetter: true, run: connectLoop},
	{key: "connect-login", group: "connect-login", title: "connect (SCRAM)+select 1+close", unit: "ms/conn", cpuUnit: "conn", lowerIsBetter: true, run: connectLoginLoop},
}

func workloadByKey(key string) *workload {
	for i := range allWorkloads {
		if allWorkloads[i].key == key {
			return &allWorkloads[i]
		}
	}
	return nil
}

func pgbenchWorkload(mode string, clients, threads int) workload {
	return workload{
		key:     fmt.Sprintf("pgbench-%s-c%d", mode, clients),
		group:   "pgbench",
		title:   fmt.Sprintf("pgbench -S %s -c%d", mode, clients),
		unit:    "tps",
		cpuUnit: "txn",
		run: func(ctx context.Context, b *bench, t *target, m *meter) (measurement, error) {
			return b.pgbench(ctx, t, m, mode, clients, threads)
		},
	}
}

var (
	tpsRE    = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	txnsRE   = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	failedRE = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
)

// pgbench runs pgbench -S against t for -T seconds.
func (b *bench) pgbench(ctx context.Context, t *target, m *meter, mode string, clients, threads int) (measurement, error) {
	args := []string{"-n", "-S", "-M", mode,
		"-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads), "-T", strconv.Itoa(b.cfg.seconds),
		"-h", t.host, "-p", strconv.Itoa(t.port), "-U", t.user, t.db}
	cmd := b.libpqCommand(ctx, b.pgbenchBin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	m.start()
	err := cmd.Run()
	m.stop()
	if err != nil {
		return measurement{}, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, tail(out.Bytes()))
	}
	tps := tpsRE.FindSubmatch(out.Bytes())
	txns := txnsRE.FindSubmatch(out.Bytes())
	if tps == nil || txns == nil {
		return measurement{}, fmt.Errorf("pgbench: no tps or transaction count in its output:\n%s", tail(out.Bytes()))
	}
	if f := failedRE.FindSubmatch(out.Bytes()); f != nil && string(f[1]) != "0" {
		return measurement{}, fmt.Errorf("pgbench: %s failed transactions:\n%s", f[1], tail(out.Bytes()))
	}
	v, err := strconv.ParseFloat(string(tps[1]), 64)
	if err != nil {
		return measurement{}, fmt.Errorf("pgbench: tps %q: %w", tps[1], err)
	}
	n, _ := strconv.ParseInt(string(txns[1]), 10, 64)
	return measurement{value: v, units: n}, nil
}

// libpqCommand returns a command for a libpq client (pgbench) that does not try
// GSSAPI or TLS: pgwarden and PgBouncer are reached in plain TCP here, and so must
// PostgreSQL be, which would otherwise accept TLS. PG* variables of the caller's
// environment are dropped. The command runs in a process group of its own, which
// is killed when ctx ends.
func (b *bench) libpqCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PGSSLMODE=disable", "PGGSSENCMODE=disable")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// selectRows reads the whole table with pgx (extended protocol, the default
// statement cache), touching each value's bytes but decoding none.
func selectRows(ctx context.Context, b *bench, t *target, m *meter) (measurement, error) {
	conn, err := pgx.Connect(ctx, t.dsn())
	if err != nil {
		return measurement{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n, size int64
	m.start()
	rows, err := conn.Query(ctx, "SELECT * FROM "+benchTable)
	if err == nil {
		for rows.Next() {
			for _, v := range rows.RawValues() {
				size += int64(len(v))
			}
			n++
		}
		rows.Close()
		err = rows.Err()
	}
	m.stop()
	if err != nil {
		return measurement{}, err
	}
	if n != int64(b.cfg.rows) || size == 0 {
		return measurement{}, fmt.Errorf("read %d rows (%d bytes), want %d", n, size, b.cfg.rows)
	}
	return measurement{value: float64(n) / m.elapsed().Seconds(), units: n}, nil
}

// countingDiscard is io.Discard that counts.
type countingDiscard struct{ n int64 }

func (w *countingDiscard) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// copyOut streams the whole table with COPY TO STDOUT in text format.
func copyOut(ctx context.Context, b *bench, t *target, m *meter) (measurement, error) {
	conn, err := pgx.Connect(ctx, t.dsn())
	if err != nil {
		return measurement{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var w countingDiscard
	m.start()
	tag, err := conn.PgConn().CopyTo(ctx, &w, "COPY "+benchTable+" TO STDOUT")
	m.stop()
	if err != nil {
		return measurement{}, err
	}
	if n := tag.RowsAffected(); n != int64(b.cfg.rows) {
		return measurement{}, fmt.Errorf("copied %d rows, want %d", n, b.cfg.rows)
	}
	return measurement{value: float64(w.n) / 1e6 / m.elapsed().Seconds(), units: tag.RowsAffected()}, nil
}

// connectLoop opens -connections connections one after the other; each runs
// SELECT 1 (pgx sends a query without arguments as a simple Query) and closes.
func connectLoop(ctx context.Context, b *bench, t *target, m *meter) (measurement, error) {
	return connectN(ctx, b, t.dsn(), m)
}

// connectLoginLoop is connectLoop with a password checked by SCRAM-SHA-256:
// direct, as pgw_scram; through pgwarden, as a login of pgwarden's own
// mapped to pgw_scram, its upstream connections reused (--login-reuse);
// through PgBouncer, as connect (trust), its server connections pooled.
func connectLoginLoop(ctx context.Context, b *bench, t *target, m *meter) (measurement, error) {
	return connectN(ctx, b, t.loginDSN(), m)
}

func connectN(ctx context.Context, b *bench, dsn string, m *meter) (measurement, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return measurement{}, err
	}
	m.start()
	for i := range b.cfg.conns {
		conn, err := pgx.ConnectConfig(ctx, cc)
		if err != nil {
			m.stop()
			return measurement{}, fmt.Errorf("connection %d: %w", i+1, err)
		}
		_, err = conn.Exec(ctx, "SELECT 1")
		cerr := conn.Close(ctx)
		if err == nil {
			err = cerr
		}
		if err != nil {
			m.stop()
			return measurement{}, fmt.Errorf("connection %d: %w", i+1, err)
		}
	}
	m.stop()
	n := int64(b.cfg.conns)
	ms := float64(m.elapsed()) / float64(time.Millisecond) / float64(n)
	return measurement{value: ms, units: n}, nil
}

// tail returns the last lines of a command's output, for error messages.
func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}
