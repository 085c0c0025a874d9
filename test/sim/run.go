package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

const employeePassword = "sim-password-1"

// stmtTimeout bounds one statement in wall time: a hold action waits for a
// virtual clock that stands still while the statement runs.
const stmtTimeout = 20 * time.Second

// outcome is what the client saw of one statement of an episode.
type outcome struct {
	Rows    int    `json:"rows"`
	PII     int    `json:"pii"`
	Blocked bool   `json:"blocked,omitempty"` // SQLSTATE 42501 from pgwarden (ERROR or FATAL)
	Killed  bool   `json:"killed,omitempty"`  // the session ended (FATAL, or the connection dropped)
	Refused bool   `json:"refused,omitempty"` // the connection was refused (quarantine)
	Err     string `json:"error,omitempty"`
	order   int64  // completion order, for parallel sessions
}

func (o outcome) stopped() bool { return o.Blocked || o.Killed || o.Refused }

// normalStop is a statement of normal work that pgwarden blocked.
type normalStop struct {
	Emp string
	At  time.Time
	Err string
}

// runStats counts what ran.
type runStats struct {
	Statements       int     `json:"statements"`
	NormalStatements int     `json:"normal_statements"`
	AttackStatements int     `json:"attack_statements"`
	NormalBlocked    int     `json:"normal_statements_blocked"` // client-side: normal work refused by pgwarden
	NormalRefused    int     `json:"normal_connections_refused"`
	Errors           int     `json:"unexpected_errors"`
	Connections      int     `json:"connections"`
	ClockPosts       int     `json:"clock_posts"`
	Events           int     `json:"events"`
	ElapsedSeconds   float64 `json:"elapsed_seconds"`
	VirtualStart     string  `json:"virtual_start"`
	VirtualEnd       string  `json:"virtual_end"`
}

type pgwardenProc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logFile string
	argv    []string
}

func (p *pgwardenProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *pgwardenProc) stop() {
	if p == nil || p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *pgwardenProc) logTail() string {
	b, _ := os.ReadFile(p.logFile)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return strings.TrimSpace(string(b))
}

func freePort() (int, error) {
	addr, err := pgtest.FreeAddr()
	if err != nil {
		return 0, err
	}
	return addr.Port, nil
}

// buildPgwarden builds ./cmd/pgwarden of the module the go command finds
// from the current directory.
func buildPgwarden(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", errors.New("run from inside the pgwarden module, or pass --pgwarden")
	}
	bin := filepath.Join(dir, "pgwarden")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/pgwarden")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/pgwarden: %w\n%s", err, bytes.TrimSpace(out))
	}
	return bin, nil
}

// startPgwarden runs `pgwarden serve` on a virtual clock with its admin API,
// and waits until both listeners accept connections.
func startPgwarden(ctx context.Context, bin string, args []string, token, listen, admin string, logFile string) (*pgwardenProc, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "PGWARDEN_ADMIN_TOKEN="+token)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pgwarden: %w", err)
	}
	p := &pgwardenProc{cmd: cmd, done: make(chan struct{}), logFile: logFile, argv: append([]string{bin}, args...)}
	go func() { p.waitErr = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range []string{listen, admin} {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if p.exited() {
				return nil, fmt.Errorf("pgwarden exited before listening on %s (%v):\n%s", addr, p.waitErr, p.logTail())
			}
			if time.Now().After(deadline) {
				p.stop()
				return nil, fmt.Errorf("pgwarden does not listen on %s:\n%s", addr, p.logTail())
			}
			select {
			case <-ctx.Done():
				p.stop()
				return nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return p, nil
}

// clockClient moves pgwarden's virtual clock.
type clockClient struct {
	url   string
	token string
	http  *http.Client
	now   time.Time
	posts int
}

func (c *clockClient) set(ctx context.Context, t time.Time) error {
	if !t.After(c.now) {
		return nil
	}
	body, _ := json.Marshal(map[string]string{"time": t.UTC().Format(time.RFC3339Nano)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/v1/clock", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("POST /v1/clock: %w", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /v1/clock %s: %s: %s", t.Format(time.RFC3339), resp.Status, bytes.TrimSpace(b))
	}
	c.now = t
	c.posts++
	return nil
}

func (c *clockClient) get(ctx context.Context) (time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/v1/clock", nil)
	if err != nil {
		return time.Time{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	var st struct {
		Time    time.Time `json:"time"`
		Virtual bool      `json:"virtual"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return time.Time{}, err
	}
	if !st.Virtual {
		return time.Time{}, errors.New("pgwarden's clock is not virtual")
	}
	return st.Time, nil
}

// runner runs the events through pgwarden.
type runner struct {
	w       *world
	super   string // superuser DSN, for the role change
	host    string
	port    int
	db      string
	clock   *clockClient
	logf    func(string, ...any)
	verbose bool
	mu      sync.Mutex // guards conns, stats, results during parallel events
	conns   map[string]*pgx.Conn
	side    map[*pgx.Conn]*sideCount // what each connection received besides results
	stats   runStats
	results [][]outcome // per episode
	stopped []bool      // per episode: the attacker was stopped, the episode goes no further
	// normalStops: normal statements pgwarden stopped, for the evaluation.
	normalStops []normalStop
	order       atomic.Int64
	errShown    int
}

func (r *runner) connect(ctx context.Context, emp string, s session) (*pgx.Conn, error) {
	u := &url.URL{Scheme: "postgres", User: url.UserPassword(emp, employeePassword),
		Host: net.JoinHostPort(r.host, strconv.Itoa(r.port)), Path: "/" + r.db}
	q := url.Values{"sslmode": {"disable"}, "application_name": {s.App}, "connect_timeout": {"20"}}
	u.RawQuery = q.Encode()
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, err
	}
	if s.Simple {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	}
	if s.LocalIP != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(s.LocalIP)}, KeepAlive: 5 * time.Minute}
		cfg.DialFunc = d.DialContext
	}
	sc := &sideCount{}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		sc.pii.Add(int64(r.w.countPII([]byte(errorText((*pgconn.PgError)(n))))))
	}
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		sc.pii.Add(int64(r.w.countPII([]byte(n.Payload))))
	}
	cctx, cancel := context.WithTimeout(ctx, stmtTimeout)
	defer cancel()
	c, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, err
	}
	sc.app = c.PgConn().ParameterStatus("application_name")
	r.mu.Lock()
	r.side[c] = sc
	r.mu.Unlock()
	return c, nil
}

// sideCount is the PII a connection received in notices and
// notifications, and the last application_name the server reported
// (ParameterStatus), whose changes are counted too.
type sideCount struct {
	pii atomic.Int64
	app string
}

// errorText is every field of an error or notice a client shows.
func errorText(e *pgconn.PgError) string {
	return strings.Join([]string{e.Message, e.Detail, e.Hint, e.Where}, "\n")
}

func (r *runner) closeAll(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, c := range r.conns {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c.Close(cctx)
		cancel()
		delete(r.conns, k)
		delete(r.side, c)
	}
}

// exec runs stmts on the session key of employee emp, reconnecting when
// needed, and returns one outcome per statement run. It stops at the first
// statement pgwarden stopped when stopOnBlock is set.
func (r *runner) exec(ctx context.Context, emp string, s session, key string, stmts []stmt, stopOnBlock bool) []outcome {
	var outs []outcome
	ck := emp + "|" + key
	for _, st := range stmts {
		r.mu.Lock()
		c := r.conns[ck]
		r.mu.Unlock()
		if c == nil || c.IsClosed() {
			var err error
			c, err = r.connect(ctx, emp, s)
			r.mu.Lock()
			r.stats.Connections++
			r.mu.Unlock()
			if err != nil {
				o := outcome{Err: err.Error(), order: r.order.Add(1)}
				if strings.Contains(err.Error(), "quarantine") || isPgwardenRefusal(err) {
					o.Refused = true
				} else {
					r.unexpected(emp, "connect", err)
				}
				outs = append(outs, o)
				if stopOnBlock {
					return outs
				}
				continue
			}
			r.mu.Lock()
			r.conns[ck] = c
			r.mu.Unlock()
		}
		r.mu.Lock()
		sc := r.side[c]
		r.mu.Unlock()
		o := r.run(ctx, c, sc, st)
		if o.Err != "" && !o.stopped() && !st.Fails {
			r.unexpected(emp, st.SQL, errors.New(o.Err))
		}
		if c.IsClosed() {
			if !o.Blocked && o.Err == "" {
				o.Killed = true
			}
			if o.Err != "" {
				o.Killed = o.Killed || o.Blocked
			}
			r.mu.Lock()
			delete(r.conns, ck)
			delete(r.side, c)
			r.mu.Unlock()
		}
		outs = append(outs, o)
		if stopOnBlock && o.stopped() {
			return outs
		}
	}
	return outs
}

func isPgwardenRefusal(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42501" && strings.HasPrefix(pe.Message, "pgwarden")
}

func (r *runner) unexpected(emp, what string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Errors++
	if r.errShown < 10 || r.verbose {
		r.errShown++
		r.logf("unexpected error: %s: %.80s: %v", emp, what, err)
	}
}

// run runs one statement and counts what the client received: rows, COPY
// data, and through sc notices, notifications, parameter status and the
// text of an error.
func (r *runner) run(ctx context.Context, c *pgx.Conn, sc *sideCount, st stmt) outcome {
	ctx, cancel := context.WithTimeout(ctx, stmtTimeout)
	defer cancel()
	var o outcome
	var err error
	if sc != nil {
		sc.pii.Store(0)
	}
	switch {
	case st.Copy:
		cw := &copyCounter{count: r.w.countPII}
		_, err = c.PgConn().CopyTo(ctx, cw, st.SQL)
		o.Rows, o.PII = cw.rows, cw.pii
	case st.Binary:
		res := c.PgConn().ExecParams(ctx, st.SQL, nil, nil, nil, []int16{1}).Read()
		for _, row := range res.Rows {
			o.Rows++
			for _, v := range row {
				if t, ok := binaryArrayText(v); ok {
					v = t
				}
				o.PII += r.w.countPII(v)
			}
		}
		err = res.Err
	default:
		var rows pgx.Rows
		rows, err = c.Query(ctx, st.SQL, st.Args...)
		if err == nil {
			for rows.Next() {
				o.Rows++
				for _, v := range rows.RawValues() {
					o.PII += r.w.countPII(v)
				}
			}
			rows.Close()
			err = rows.Err()
		}
	}
	o.order = r.order.Add(1)
	if sc != nil {
		o.PII += int(sc.pii.Load())
		if app := c.PgConn().ParameterStatus("application_name"); app != sc.app {
			o.PII += r.w.countPII([]byte(app))
			sc.app = app
		}
	}
	if err == nil {
		o.PII += st.Infers
	}
	if err != nil {
		o.Err = err.Error()
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			o.PII += r.w.countPII([]byte(errorText(pe)))
		}
		if errors.As(err, &pe) && pe.Code == "42501" && strings.HasPrefix(pe.Message, "pgwarden") {
			o.Blocked = true
			if pe.Severity == "FATAL" {
				o.Killed = true
			}
		}
	}
	return o
}

// copyCounter receives COPY TO STDOUT data: one CopyData message per row.
type copyCounter struct {
	rows, pii int
	count     func([]byte) int
}

func (w *copyCounter) Write(b []byte) (int, error) {
	w.rows++
	w.pii += w.count(b)
	return len(b), nil
}

// runEvent runs one event.
func (r *runner) runEvent(ctx context.Context, ev *event) {
	e := &r.w.employees[ev.Emp]
	attack := ev.Episode >= 0
	if attack && r.stopped[ev.Episode] {
		return
	}
	var outs []outcome
	if ev.Parallel == nil {
		outs = r.exec(ctx, e.Name, ev.Sess, ev.Sess.Key, ev.Stmts, attack)
	} else {
		var wg sync.WaitGroup
		parts := make([][]outcome, len(ev.Parallel))
		for k, stmts := range ev.Parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				parts[k] = r.exec(ctx, e.Name, ev.Sess, fmt.Sprintf("%s-%d", ev.Sess.Key, k), stmts, true)
			}()
		}
		wg.Wait()
		for _, p := range parts {
			outs = append(outs, p...)
		}
	}
	r.stats.Events++
	for _, o := range outs {
		if o.Refused && o.Rows == 0 && o.Err != "" && !attack {
			r.stats.NormalRefused++
			continue
		}
		r.stats.Statements++
		if attack {
			r.stats.AttackStatements++
		} else {
			r.stats.NormalStatements++
			if o.stopped() {
				r.stats.NormalBlocked++
				r.normalStops = append(r.normalStops, normalStop{Emp: e.Name, At: ev.At, Err: firstLine(o.Err)})
			}
		}
	}
	if attack {
		r.results[ev.Episode] = append(r.results[ev.Episode], outs...)
		for _, o := range outs {
			if o.stopped() {
				r.stopped[ev.Episode] = true
			}
		}
		if r.verbose {
			for _, o := range outs {
				r.logf("  episode %d %s %s %s: rows %d pii %d blocked %v killed %v %s", ev.Episode+1, r.w.episodes[ev.Episode].Type, e.Name,
					ev.At.Format("01-02 15:04:05"), o.Rows, o.PII, o.Blocked, o.Killed, firstLine(o.Err))
			}
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// jobRole is the PostgreSQL role of a job.
func jobRole(job string) string { return "job_" + job }

// changeRoles moves the employees whose role changes on day to their new
// job's role, as an administrator would.
func (r *runner) changeRoles(ctx context.Context, day int) error {
	for _, e := range r.w.employees {
		if e.ChangeDay == 0 || e.ChangeDay != day {
			continue
		}
		conn, err := pgx.Connect(ctx, r.super)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, fmt.Sprintf("REVOKE %s FROM %s; GRANT %s TO %s", jobRole(e.Role), e.Name, jobRole(e.ChangeRole), e.Name))
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("role change of %s: %w", e.Name, err)
		}
		r.logf("role change: %s from %s to %s", e.Name, e.Role, e.ChangeRole)
	}
	return nil
}

// runAll moves the clock and runs every event in time order.
func (r *runner) runAll(ctx context.Context, t0 time.Time) error {
	curDay := -1
	nextLog := time.Now()
	for i := range r.w.events {
		if err := ctx.Err(); err != nil {
			return err
		}
		ev := &r.w.events[i]
		if d := r.w.dayOf(ev.At); d != curDay {
			// Sessions last a working day.
			r.closeAll(ctx)
			for day := curDay + 1; day <= d; day++ {
				if err := r.changeRoles(ctx, day); err != nil {
					return err
				}
				if day == d || time.Now().After(nextLog) {
					r.logf("virtual day %d/%d (%s): %d statements run, %d blocked of normal work, elapsed %s",
						day+1, r.w.cfg.days, r.w.date(day).Format("Mon 2006-01-02"), r.stats.Statements, r.stats.NormalBlocked,
						time.Since(t0).Round(time.Second))
					nextLog = time.Now().Add(2 * time.Second)
				}
			}
			curDay = d
		}
		if err := r.clock.set(ctx, ev.At); err != nil {
			return err
		}
		r.runEvent(ctx, ev)
	}
	r.closeAll(ctx)
	return r.clock.set(ctx, r.w.date(r.w.cfg.days))
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// setupDatabase seeds customers and creates the employees' roles.
func setupDatabase(ctx context.Context, cluster *pgtest.Cluster, w *world) error {
	conn, err := pgx.Connect(ctx, cluster.DSN(pgtest.SuperUser))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if w.cfg.org == orgB {
		return execAll(ctx, conn, setupSQLB(w))
	}
	sqls := append(seedSQL(w.cfg.customers), w.ticketsSQL()...)
	sqls = append(sqls,
		"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'customers_owner') THEN CREATE ROLE customers_owner NOLOGIN; END IF; END$$",
		"ALTER TABLE customers OWNER TO customers_owner")
	// Each job is a PostgreSQL role the employees are members of: the
	// policy's groups, and the peer groups of the norms, are those roles.
	for _, job := range []string{roleSupport, roleAnalyst, roleDBA, roleBilling} {
		sqls = append(sqls, fmt.Sprintf("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[1]s NOLOGIN; END IF; END$$", jobRole(job)))
	}
	for _, e := range w.employees {
		sqls = append(sqls, fmt.Sprintf("DROP ROLE IF EXISTS %s", e.Name),
			fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", e.Name, employeePassword),
			fmt.Sprintf("GRANT %s TO %s", jobRole(e.Role), e.Name))
		if e.Role == roleDBA {
			sqls = append(sqls, fmt.Sprintf("GRANT customers_owner, pg_read_all_stats TO %s", e.Name))
		}
	}
	return execAll(ctx, conn, sqls)
}

func execAll(ctx context.Context, conn *pgx.Conn, sqls []string) error {
	for _, s := range sqls {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%.60s: %w", s, err)
		}
	}
	return nil
}

// setupSQLB seeds organisation B: its tables, its job roles, its
// employees and accounts. The DBAs are superusers; the developers own the
// application's tables (app_owner), for their migrations.
func setupSQLB(w *world) []string {
	sqls := seedSQLB(w.cfg.customers)
	role := func(name, opts string) []string {
		return []string{fmt.Sprintf("DROP ROLE IF EXISTS %s", name), fmt.Sprintf("CREATE ROLE %s %s", name, opts)}
	}
	sqls = append(sqls, "DROP TABLE IF EXISTS schema_migrations",
		"CREATE TABLE schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
	for _, r := range []string{"app_owner", jobRole(roleSupport), jobRole(roleAnalyst), jobRole(roleDeveloper), jobRole(roleDBA)} {
		sqls = append(sqls, fmt.Sprintf("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[1]s NOLOGIN; END IF; END$$", r))
	}
	sqls = append(sqls,
		"ALTER TABLE orders OWNER TO app_owner", "ALTER TABLE payments OWNER TO app_owner", "ALTER TABLE schema_migrations OWNER TO app_owner",
		"GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC",
		"GRANT CREATE ON SCHEMA public TO app_owner")
	for _, e := range w.employees {
		login := fmt.Sprintf("LOGIN PASSWORD '%s'", employeePassword)
		switch e.Role {
		case roleDBA:
			sqls = append(sqls, role(e.Name, "SUPERUSER "+login)...)
		default:
			sqls = append(sqls, role(e.Name, login)...)
		}
		switch e.Role {
		case roleSupport, roleAnalyst, roleDBA:
			sqls = append(sqls, fmt.Sprintf("GRANT %s TO %s", jobRole(e.Role), e.Name))
		case roleDeveloper:
			sqls = append(sqls, fmt.Sprintf("GRANT %s, app_owner TO %s", jobRole(e.Role), e.Name))
		case roleBatch:
			sqls = append(sqls, fmt.Sprintf("GRANT UPDATE ON orders TO %s", e.Name))
		}
	}
	return sqls
}
