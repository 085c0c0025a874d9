package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// The targets, in the order of the table's columns.
const (
	targetDirect    = "direct"
	targetPgwarden  = "pgwarden"
	targetPgbouncer = "pgbouncer"
	targetBaseline  = "baseline" // -baseline: a second pgwarden binary
)

// maxRowsPerStatement is pgwarden's row limit in the benchmark: never reached, but
// set, so that the inspection hook decodes and counts every row.
const maxRowsPerStatement = "1000000000000"

const readyTimeout = 30 * time.Second // how long a proxy may take to accept connections

// target is one way to reach the cluster.
type target struct {
	name string
	host string
	port int
	db   string
	user string
	proc *proxyProc // nil for direct
	// login and password are what the connect-login workload connects
	// as; "" is the trust user, as dsn.
	login, password string
}

// dsn returns the URL pgx connects with: plain TCP, the trust user, no password.
func (t *target) dsn() string {
	u := &url.URL{
		Scheme:   "postgres",
		User:     url.User(t.user),
		Host:     net.JoinHostPort(t.host, strconv.Itoa(t.port)),
		Path:     "/" + t.db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// loginDSN returns the URL of the connect-login workload.
func (t *target) loginDSN() string {
	if t.login == "" {
		return t.dsn()
	}
	u := &url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(t.login, t.password),
		Host:     net.JoinHostPort(t.host, strconv.Itoa(t.port)),
		Path:     "/" + t.db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// check connects through t and asks who it is, to fail early on a broken target.
func (t *target) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, t.dsn())
	if err != nil {
		return fmt.Errorf("%s: connect: %w", t.name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var who string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil {
		return fmt.Errorf("%s: SELECT current_user: %w", t.name, err)
	}
	if who != t.user {
		return fmt.Errorf("%s: connected as %q, want %q", t.name, who, t.user)
	}
	return nil
}

// proxyProc is a proxy process that the benchmark started and stops.
type proxyProc struct {
	name    string
	argv    []string
	cmd     *exec.Cmd
	pid     int    // the process whose CPU time is reported: the proxy itself, not runuser
	logFile string // its stdout and stderr (pgbouncer also logs to its own logfile)
	done    chan struct{}
	waitErr error // valid once done is closed
}

// start runs argv in a process group of its own, so that a Ctrl-C at the terminal
// reaches only the benchmark, which then stops the proxy itself. Pdeathsig ends the
// proxy should the benchmark die without doing so.
func startProxy(name string, argv []string, logFile string, deathSig syscall.Signal) (*proxyProc, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proxyProc{name: name, argv: argv, cmd: cmd, pid: cmd.Process.Pid, logFile: logFile, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proxyProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL if it is still there after
// a few seconds. It is safe to call twice.
func (p *proxyProc) stop() {
	if p == nil || p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if p.pid != pgid {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		<-p.done
	}
}

// logTail returns the end of the process's output, for error messages.
func (p *proxyProc) logTail() string {
	b, err := os.ReadFile(p.logFile)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return strings.TrimSpace(string(b))
}

// waitListening waits until addr accepts TCP connections, failing if p exits first.
func waitListening(ctx context.Context, p *proxyProc, addr string) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before listening on %s (%v):\n%s", p.name, addr, p.waitErr, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not listen on %s after %s:\n%s", p.name, addr, readyTimeout, p.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// buildPgwarden builds ./cmd/pgwarden of the module that contains the working
// directory into dir.
func buildPgwarden(ctx context.Context, dir string) (bin, root string, err error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", "", fmt.Errorf("building pgwarden needs the go command (or pass -pgwarden): %w", err)
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", "", errors.New("run from inside the pgwarden module, or pass -pgwarden")
	}
	root = filepath.Dir(gomod)
	bin = filepath.Join(dir, "pgwarden")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/pgwarden")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build ./cmd/pgwarden: %w\n%s", err, bytes.TrimSpace(out))
	}
	return bin, root, nil
}

// startPgwarden runs `pgwarden serve` on a free port in front of upstream, as
// the target name (pgwarden or baseline).
func startPgwarden(ctx context.Context, name, bin, dir, upstream string, extra ...string) (*proxyProc, int, error) {
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, 0, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		argv := []string{bin, "serve",
			"--listen", addr,
			"--upstream", "postgres://" + upstream,
			"--max-rows-per-statement", maxRowsPerStatement,
			"--log-level", "warn"}
		argv = append(argv, extra...)
		p, err := startProxy(name, argv, filepath.Join(dir, name+".log"), syscall.SIGKILL)
		if err != nil {
			return nil, 0, err
		}
		err = waitListening(ctx, p, addr)
		if err == nil {
			return p, port, nil
		}
		p.stop()
		// Another process may have taken the port between freePort and the bind.
		if attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			continue
		}
		return nil, 0, err
	}
}

// findPgbouncer returns the pgbouncer binary and its version, or "" if there is none.
func findPgbouncer() (bin, version string) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer"} {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		return "", ""
	}
	out, _ := exec.Command(bin, "--version").Output()
	version, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	return bin, version
}

// pgbouncerIni is the configuration of the PgBouncer target. Connections and
// disconnections are not logged, to match pgwarden at --log-level warn.
const pgbouncerIni = `[databases]
* = host=127.0.0.1 port=%[1]d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[2]d
unix_socket_dir =
auth_type = trust
auth_file = %[3]s/userlist.txt
pool_mode = session
max_client_conn = 100
default_pool_size = 20
server_tls_sslmode = disable
client_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
logfile = %[3]s/pgbouncer.log
pidfile = %[3]s/pgbouncer.pid
`

// startPgbouncer runs PgBouncer in session mode on a free port in front of the
// server on upstreamPort. PgBouncer refuses to run as root, so then its files
// belong to the postgres system user and it runs through runuser. users are the
// names listed in the auth_file, which trust authentication still requires.
func startPgbouncer(ctx context.Context, bin, logDir string, upstreamPort int, users []string) (p *proxyProc, port int, dir string, err error) {
	dir, err = os.MkdirTemp("", "pgwarden-bench-pgbouncer-")
	if err != nil {
		return nil, 0, "", err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
			dir = ""
		}
	}()
	var uid, gid = -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, 0, dir, fmt.Errorf("pgbouncer refuses to run as root and there is no postgres user to run it as: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	for attempt := 1; ; attempt++ {
		if port, err = freePort(); err != nil {
			return nil, 0, dir, err
		}
		var list strings.Builder
		for _, u := range users {
			fmt.Fprintf(&list, "%q \"\"\n", u)
		}
		ini := filepath.Join(dir, "pgbouncer.ini")
		files := map[string]string{
			ini:                                fmt.Sprintf(pgbouncerIni, upstreamPort, port, dir),
			filepath.Join(dir, "userlist.txt"): list.String(),
		}
		for name, content := range files {
			if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
				return nil, 0, dir, err
			}
		}
		os.Remove(filepath.Join(dir, "pgbouncer.pid"))
		argv := []string{bin, ini}
		if uid >= 0 {
			for _, name := range []string{dir, ini, filepath.Join(dir, "userlist.txt")} {
				if err := os.Chown(name, uid, gid); err != nil {
					return nil, 0, dir, err
				}
			}
			argv = append([]string{"runuser", "-u", "postgres", "--"}, argv...)
		}
		// runuser passes a SIGTERM on to pgbouncer, for which it means an immediate
		// shutdown.
		p, err = startProxy(targetPgbouncer, argv, filepath.Join(logDir, "pgbouncer.out"), syscall.SIGTERM)
		if err != nil {
			return nil, 0, dir, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err = waitListening(ctx, p, addr); err == nil {
			err = p.readPidFile(ctx, filepath.Join(dir, "pgbouncer.pid"))
		}
		if err == nil {
			return p, port, dir, nil
		}
		p.stop()
		log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
		if attempt < 3 && bytes.Contains(log, []byte("in use")) {
			continue
		}
		return nil, 0, dir, fmt.Errorf("%w\n%s", err, bytes.TrimSpace(log))
	}
}

// readPidFile sets p.pid from PgBouncer's pidfile, since p.cmd may be runuser.
func (p *proxyProc) readPidFile(ctx context.Context, name string) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		b, err := os.ReadFile(name)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				p.pid = pid
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s wrote no pid to %s", p.name, name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	addr, err := pgtest.FreeAddr()
	if err != nil {
		return 0, err
	}
	return addr.Port, nil
}
