package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	minVersion   = 13               // oldest PostgreSQL major version pgtest runs
	readyTimeout = 60 * time.Second // how long a new server may take to accept connections
	stopTimeout  = 60 * time.Second // how long Stop waits for the server to exit
	bindAttempts = 5                // ports tried when another process takes the chosen one
)

// owner is the system user that runs the server binaries when pgtest runs as root.
type owner struct{ uid, gid int }

// binaries locates one PostgreSQL installation.
type binaries struct {
	initdb, pgCtl string
	version       int
}

// server is the part of a Cluster that pgtest started: its files and processes.
type server struct {
	bin  binaries
	dir  string // the Cluster's Dir
	data string // data directory, inside dir
	log  string // server log file, inside dir
	own  *owner // nil unless running as root
	logf func(format string, args ...any)

	watchdog   *exec.Cmd
	watchdogIn io.WriteCloser
}

// start creates, starts and sets up a new cluster for c. On error the caller calls
// c.Stop to remove what was made.
func (c *Cluster) start(ctx context.Context, extraConf []string) error {
	bin, err := findBinaries()
	if err != nil {
		return err
	}
	dir, err := tempDir()
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	s := &server{
		bin:  bin,
		dir:  dir,
		data: filepath.Join(dir, "data"),
		log:  filepath.Join(dir, "postgres.log"),
		logf: c.logf,
	}
	c.srv, c.Dir = s, dir
	if os.Geteuid() == 0 {
		if s.own, err = lookupOwner("postgres"); err != nil {
			return err
		}
		if err := os.Chown(dir, s.own.uid, s.own.gid); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	if err := s.startWatchdog(); err != nil {
		return fmt.Errorf("pgtest: start watchdog: %w", err)
	}

	c.logf("initdb %s (PostgreSQL %d)", s.data, bin.version)
	if err := s.run(ctx, bin.initdb, "-D", s.data, "-U", SuperUser, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return err
	}
	if err := c.writeTLS(); err != nil {
		return fmt.Errorf("pgtest: write certificates: %w", err)
	}
	if err := s.configure(c, extraConf); err != nil {
		return fmt.Errorf("pgtest: configure: %w", err)
	}
	if c.Port, err = s.startPostmaster(ctx); err != nil {
		return err
	}
	c.logf("server listening on %s", c.Addr())
	if c.admin, err = pgx.ParseConfig(c.DSN(SuperUser)); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if err := c.waitReady(ctx); err != nil {
		return fmt.Errorf("pgtest: %w\n%s", err, s.logTail())
	}
	if err := c.setup(ctx); err != nil {
		return fmt.Errorf("pgtest: set up roles and database: %w", err)
	}
	return nil
}

// writeTLS generates the CA and the server certificate into Dir.
func (c *Cluster) writeTLS() error {
	ca, err := newAuthority()
	if err != nil {
		return err
	}
	c.ca = ca
	if c.CAFile, c.CAKeyFile, err = ca.writeFiles(c.Dir, "ca", c.srv.own); err != nil {
		return err
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	c.ServerCertFile, c.ServerKeyFile, err = ca.issueFiles(c.Dir, "server", "localhost", []string{"localhost"}, ips, false, c.srv.own)
	return err
}

// waitReady polls until the superuser can connect to the postgres database.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		conn, err := c.connect(attempt, "postgres")
		cancelAttempt()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server at %s not ready: %w", c.Addr(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// configure appends pgtest's settings and extra to postgresql.conf and replaces
// pg_hba.conf.
func (s *server) configure(c *Cluster, extra []string) error {
	conf := []string{
		"",
		"# pgtest",
		"listen_addresses = '127.0.0.1'",
		"unix_socket_directories = " + confQuote(s.dir),
		"max_connections = 300",
		"shared_buffers = 128MB",
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
		"password_encryption = 'scram-sha-256'",
		"ssl = on",
		"ssl_cert_file = " + confQuote(c.ServerCertFile),
		"ssl_key_file = " + confQuote(c.ServerKeyFile),
		"ssl_ca_file = " + confQuote(c.CAFile),
		"log_line_prefix = '%m [%p] %q%u@%d '",
	}
	conf = append(conf, extra...)
	f, err := os.OpenFile(filepath.Join(s.data, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, strings.Join(conf, "\n")+"\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.data, "pg_hba.conf"), []byte(hbaConf), 0o600)
}

// hbaConf gives each test role its own authentication method. "host" lines match
// connections with and without TLS.
const hbaConf = `# TYPE  DATABASE     USER       ADDRESS       METHOD
local   all          all                      trust
host    all          postgres   127.0.0.1/32  trust
host    all          pgw_trust  127.0.0.1/32  trust
host    all          pgw_plain  127.0.0.1/32  password
host    all          pgw_md5    127.0.0.1/32  md5
host    all          pgw_scram  127.0.0.1/32  scram-sha-256
host    replication  postgres   127.0.0.1/32  trust
host    all          all        127.0.0.1/32  scram-sha-256
`

// startPostmaster starts the server on a free port and returns the port. Between
// choosing a port and binding it another process may take it; then it tries again.
func (s *server) startPostmaster(ctx context.Context) (int, error) {
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return 0, fmt.Errorf("pgtest: %w", err)
		}
		err = s.run(ctx, s.bin.pgCtl, "start", "-D", s.data, "-l", s.log, "-w",
			"-t", strconv.Itoa(int(readyTimeout/time.Second)), "-o", "-p "+strconv.Itoa(port))
		if err == nil {
			return port, nil
		}
		tail := s.logTail()
		if attempt < bindAttempts && strings.Contains(tail, "could not bind") {
			s.logf("port %d taken, trying another", port)
			continue
		}
		return 0, fmt.Errorf("%w\n%s", err, tail)
	}
}

// close stops the server if it runs, ends the watchdog and removes the directory.
func (s *server) close() error {
	var errs []error
	if _, err := os.Stat(filepath.Join(s.data, "postmaster.pid")); err == nil {
		errs = append(errs, s.stopPostmaster())
	}
	s.stopWatchdog()
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("pgtest: %w", err))
	}
	return errors.Join(errs...)
}

// stopPostmaster stops the server with pg_ctl, or failing that by signalling the
// postmaster directly.
func (s *server) stopPostmaster() error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	err := s.run(ctx, s.bin.pgCtl, "stop", "-D", s.data, "-m", "fast", "-w",
		"-t", strconv.Itoa(int(stopTimeout/time.Second)))
	if err == nil {
		return nil
	}
	s.logf("%v; signalling the postmaster", err)
	pid, perr := s.postmasterPID()
	if perr != nil {
		if errors.Is(perr, os.ErrNotExist) {
			return nil // it exited after all
		}
		return errors.Join(err, perr)
	}
	// SIGQUIT is PostgreSQL's immediate shutdown; SIGKILL is the last resort.
	for _, sig := range []syscall.Signal{syscall.SIGQUIT, syscall.SIGKILL} {
		if err := syscall.Kill(pid, sig); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		for range 100 {
			if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return fmt.Errorf("pgtest: postmaster %d does not exit: %w", pid, err)
}

// postmasterPID reads the server's pid from postmaster.pid.
func (s *server) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.data, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil {
		return 0, err
	}
	// A single-user backend (initdb's) writes its pid negated.
	if pid < 0 {
		pid = -pid
	}
	if pid <= 1 {
		return 0, fmt.Errorf("postmaster.pid holds pid %d", pid)
	}
	return pid, nil
}

// watchdogScript waits for stdin to close, which happens when the test binary exits
// by any means, then stops the server and removes the directory. Stop kills it
// first, so it acts only when the binary died without calling Stop.
const watchdogScript = `dir=$1; shift; cat >/dev/null; "$@" >/dev/null 2>&1; rm -rf "$dir"`

// startWatchdog starts the watchdog in its own process group, so that a Ctrl-C
// meant for the test binary does not kill it too.
func (s *server) startWatchdog() error {
	stop := s.argv(s.bin.pgCtl, "stop", "-D", s.data, "-m", "immediate", "-w", "-t", "30")
	cmd := exec.Command("/bin/sh", append([]string{"-c", watchdogScript, "pgtest-watchdog", s.dir}, stop...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.watchdog, s.watchdogIn = cmd, in
	return nil
}

// stopWatchdog kills the watchdog's process group without letting it act.
func (s *server) stopWatchdog() {
	if s.watchdog == nil {
		return
	}
	_ = syscall.Kill(-s.watchdog.Process.Pid, syscall.SIGKILL)
	_ = s.watchdogIn.Close()
	_ = s.watchdog.Wait()
	s.watchdog = nil
}

// argv returns the command line that runs a server binary, through runuser when
// pgtest runs as root.
func (s *server) argv(name string, args ...string) []string {
	if s.own != nil {
		return append([]string{"runuser", "-u", "postgres", "--", name}, args...)
	}
	return append([]string{name}, args...)
}

// run runs a server binary in the cluster directory and returns its output in the
// error when it fails.
func (s *server) run(ctx context.Context, name string, args ...string) error {
	argv := s.argv(name, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.dir
	// Cancelling kills runuser's child too. The postmaster is not in the group:
	// pg_ctl starts it in a session of its own, and close stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// pg_ctl start leaves the postmaster running; it writes to the log file, not to
	// our pipe, but never wait long for the pipe to close.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		what := filepath.Base(name)
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			what += " " + args[0]
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return fmt.Errorf("pgtest: %s: %w\n%s", what, err, bytes.TrimSpace(out))
	}
	return nil
}

// logTail returns the end of the server log, for error messages.
func (s *server) logTail() string {
	const max = 4096
	b, err := os.ReadFile(s.log)
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return "server log " + s.log + ":\n" + string(bytes.TrimSpace(b))
}

// findBinaries returns the PostgreSQL binaries on PATH if they are recent enough,
// otherwise the newest installation under /usr/lib/postgresql.
func findBinaries() (binaries, error) {
	if b, err := pathBinaries(); err == nil && b.version >= minVersion {
		return b, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var best binaries
	for _, dir := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		if err != nil || v < minVersion || v <= best.version {
			continue
		}
		b := binaries{initdb: filepath.Join(dir, "initdb"), pgCtl: filepath.Join(dir, "pg_ctl"), version: v}
		if isExecutable(b.initdb) && isExecutable(b.pgCtl) && isExecutable(filepath.Join(dir, "postgres")) {
			best = b
		}
	}
	if best.version == 0 {
		return best, fmt.Errorf("pgtest: no PostgreSQL %d or later: initdb, pg_ctl and postgres are neither on PATH nor in /usr/lib/postgresql/*/bin", minVersion)
	}
	return best, nil
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// pathBinaries finds initdb, pg_ctl and postgres on PATH and asks postgres its
// major version.
func pathBinaries() (binaries, error) {
	var paths [3]string
	for i, name := range []string{"initdb", "pg_ctl", "postgres"} {
		p, err := exec.LookPath(name)
		if err != nil {
			return binaries{}, err
		}
		if paths[i], err = filepath.Abs(p); err != nil {
			return binaries{}, err
		}
	}
	out, err := exec.Command(paths[2], "--version").Output()
	if err != nil {
		return binaries{}, err
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return binaries{}, fmt.Errorf("unrecognised version %q", out)
	}
	v, err := strconv.Atoi(string(m[1]))
	return binaries{initdb: paths[0], pgCtl: paths[1], version: v}, err
}

func isExecutable(name string) bool {
	fi, err := os.Stat(name)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// lookupOwner returns the uid and gid of a system user.
func lookupOwner(name string) (*owner, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs the %q system user: %w", name, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("pgtest: uid of %q: %w", name, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("pgtest: gid of %q: %w", name, err)
	}
	return &owner{uid: uid, gid: gid}, nil
}

// tempDir makes the cluster directory. The server's Unix socket lives in it, and a
// socket path may not exceed 107 bytes, so a long TMPDIR is passed over for /tmp.
func tempDir() (string, error) {
	base := os.TempDir()
	if len(base) > 64 {
		base = "/tmp"
	}
	return os.MkdirTemp(base, "pgtest-")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	addr, err := FreeAddr()
	if err != nil {
		return 0, err
	}
	return addr.Port, nil
}

// FreeAddr returns an address on 127.0.0.1 whose port was free a moment
// ago, for a server a test starts. The port is chosen below the kernel's
// ephemeral range: a port the kernel hands out (listening on port 0) may be
// taken as the local port of an outgoing connection before the server
// binds it, which busy test runs, each connecting hundreds of times, do.
func FreeAddr() (*net.TCPAddr, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 12000 {
				low = n
			}
		}
	}
	for range 200 {
		port := 10000 + rand.IntN(low-10000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr), nil
}

// confQuote quotes s as a postgresql.conf string value.
func confQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
