package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// testDatabase is the database the pgx tests run in, recreated before each run.
const testDatabase = "pgx_test"

// trickyRole is the role pgtype's aclitem test needs (testsetup/postgresql_setup.sql).
const trickyRole = ` tricky, ' } " \ test user `

// superRoles are the harness roles the pgx tests log in as. pgx's own setup makes
// its test users (pgx_md5, pgx_pw, pgx_scram, pgx_ssl) superusers; these stand in
// for them.
var superRoles = []string{pgtest.PlainUser, pgtest.MD5User, pgtest.ScramUser}

// environment is the cluster and the pgwarden in front of it.
type environment struct {
	cluster       *pgtest.Cluster
	serverVersion string
	pgwardenAddr  string
	pgwarden      *exec.Cmd
	pgwardenLog   *os.File
	exited        chan struct{} // closed when pgwarden exits
	exitErr       error
}

// startEnvironment starts the cluster, prepares its roles and starts pgwarden.
// It returns the environment even on error so that the caller can close what
// was started.
func startEnvironment(ctx context.Context, o *options, bin, logDir string) (*environment, error) {
	e := &environment{}
	log.Printf("starting PostgreSQL (test/pgtest)")
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	c, err := pgtest.Start(startCtx, pgtest.Options{Logf: func(f string, a ...any) { log.Printf("pgtest: "+f, a...) }})
	cancel()
	if err != nil {
		return nil, err
	}
	e.cluster = c

	if err := e.exec(ctx, "postgres", rolesSQL()); err != nil {
		return e, fmt.Errorf("set up roles: %w", err)
	}
	if err := e.queryRow(ctx, "postgres", "SHOW server_version", &e.serverVersion); err != nil {
		return e, err
	}

	// pgwarden presents a certificate from the cluster's CA, for localhost, so
	// that sslmode=verify-full connections through it verify as they do direct;
	// it talks TLS to the server too, verified with the same CA.
	certFile, keyFile, err := c.IssueCert("localhost", []string{"localhost"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, false)
	if err != nil {
		return e, err
	}
	port, err := freePort()
	if err != nil {
		return e, err
	}
	e.pgwardenAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	upstream := (&url.URL{Scheme: "postgres", Host: c.Addr(),
		RawQuery: url.Values{"sslmode": {"verify-full"}, "sslrootcert": {c.CAFile}}.Encode()}).String()
	args := []string{"serve", "--listen", e.pgwardenAddr, "--upstream", upstream,
		"--tls-cert", certFile, "--tls-key", keyFile, "--shutdown-timeout", "5s"}
	args = append(args, o.pgwardenFlags...)
	if e.pgwardenLog, err = os.Create(filepath.Join(logDir, "pgwarden.log")); err != nil {
		return e, err
	}
	log.Printf("starting %s %s", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = e.pgwardenLog, e.pgwardenLog
	// Its own process group, so a Ctrl-C meant for compat does not start its
	// shutdown while the suite still runs; the death signal ends it if compat
	// dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return e, fmt.Errorf("start pgwarden: %w", err)
	}
	e.pgwarden, e.exited = cmd, make(chan struct{})
	go func() {
		e.exitErr = cmd.Wait()
		close(e.exited)
	}()
	if err := e.waitPgwarden(ctx); err != nil {
		return e, err
	}
	log.Printf("pgwarden listening on %s, upstream %s", e.pgwardenAddr, c.Addr())

	info := fmt.Sprintf("PGWARDEN_TEST_DSN=%s\nPGX_TEST_DATABASE(direct)=%s\nPGX_TEST_DATABASE(pgwarden)=%s\n",
		c.DSN(pgtest.SuperUser), e.vars("direct")["PGX_TEST_DATABASE"], e.vars("pgwarden")["PGX_TEST_DATABASE"])
	return e, os.WriteFile(filepath.Join(logDir, "environment.txt"), []byte(info), 0o644)
}

// waitPgwarden waits until a pgx connection through pgwarden works.
func (e *environment) waitPgwarden(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-e.exited:
			return fmt.Errorf("pgwarden exited: %v (see %s)", e.exitErr, e.pgwardenLog.Name())
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(cctx, e.connString("pgwarden", pgtest.MD5User, "postgres", ""))
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("pgwarden at %s does not accept connections: %w", e.pgwardenAddr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkAlive reports whether pgwarden is still running.
func (e *environment) checkAlive() error {
	select {
	case <-e.exited:
		return fmt.Errorf("pgwarden exited: %v (see %s)", e.exitErr, e.pgwardenLog.Name())
	default:
		return nil
	}
}

// close stops pgwarden, then the cluster.
func (e *environment) close() {
	if e.pgwarden != nil {
		select {
		case <-e.exited:
		default:
			_ = e.pgwarden.Process.Signal(syscall.SIGTERM)
			select {
			case <-e.exited:
			case <-time.After(10 * time.Second):
				log.Printf("pgwarden does not exit; killing it")
				_ = e.pgwarden.Process.Kill()
				<-e.exited
			}
		}
	}
	if e.pgwardenLog != nil {
		e.pgwardenLog.Close()
	}
	if e.cluster != nil {
		log.Printf("stopping PostgreSQL")
		if err := e.cluster.Stop(); err != nil {
			log.Printf("stop cluster: %v", err)
		}
	}
}

// rolesSQL makes the harness's password roles superusers, as pgx's test users
// are, and creates the role with special characters in its name.
func rolesSQL() string {
	var b strings.Builder
	for _, r := range superRoles {
		fmt.Fprintf(&b, "ALTER ROLE %s SUPERUSER;\n", pgx.Identifier{r}.Sanitize())
	}
	fmt.Fprintf(&b, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN CREATE ROLE %s SUPERUSER LOGIN PASSWORD 'secret'; END IF; END $$;\n",
		literal(trickyRole), pgx.Identifier{trickyRole}.Sanitize())
	return b.String()
}

// resetDatabase recreates testDatabase with what testsetup/postgresql_setup.sql
// puts in pgx_test, so that each run starts from the same state.
func (e *environment) resetDatabase(ctx context.Context) error {
	db := pgx.Identifier{testDatabase}.Sanitize()
	if err := e.exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
		return err
	}
	if err := e.exec(ctx, "postgres", "CREATE DATABASE "+db); err != nil {
		return err
	}
	return e.exec(ctx, testDatabase, `
create extension hstore;
create extension ltree;
create domain uint64 as numeric(20,0);
`)
}

func (e *environment) adminConfig(database string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(e.cluster.DSN(pgtest.SuperUser))
	if err != nil {
		return nil, err
	}
	cfg.Database = database
	return cfg, nil
}

// exec runs sql as the superuser, directly on the cluster.
func (e *environment) exec(ctx context.Context, database, sql string) error {
	cfg, err := e.adminConfig(database)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	return err
}

func (e *environment) queryRow(ctx context.Context, database, sql string, dst any) error {
	cfg, err := e.adminConfig(database)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, sql).Scan(dst)
}

// connString returns a keyword/value connection string for user on database,
// through the target's address. extra is appended as is.
func (e *environment) connString(target, user, database, extra string) string {
	host, port := "127.0.0.1", e.cluster.Port
	if target == "pgwarden" {
		_, p, _ := net.SplitHostPort(e.pgwardenAddr)
		port, _ = strconv.Atoi(p)
	}
	if strings.Contains(extra, "sslmode=verify-full") {
		host = "localhost" // the certificates name localhost
	}
	s := fmt.Sprintf("host=%s port=%d user=%s dbname=%s", host, port, kvQuote(user), kvQuote(database))
	if user != pgtest.SuperUser && user != pgtest.TrustUser {
		s += " password=" + kvQuote(pgtest.Password)
	}
	if extra != "" {
		s += " " + extra
	}
	return s
}

// vars returns the PGX_TEST_* variables for a run, modelled on pgx's
// scripts/lib/test_targets.rb with the harness's roles in place of pgx's:
// pgw_md5 for pgx_md5, pgw_plain for pgx_pw, pgw_scram for pgx_scram and pgx_ssl.
//
// Not set for either run: PGX_TEST_TLS_CLIENT_CONN_STRING and PGX_SSL_PASSWORD
// (client-certificate authentication; the harness's pg_hba.conf has no cert
// line, and a TLS-terminating proxy cannot pass a client certificate on),
// PGX_TEST_PGBOUNCER_CONN_STRING, PGX_TEST_CRATEDB_CONN_STRING, PGX_TEST_OAUTH
// (PostgreSQL 18) and PGX_TEST_LIBPQ_URI_REGRESS. Not set for the pgwarden run:
// PGX_TEST_UNIX_SOCKET_CONN_STRING (pgwarden listens on TCP only) and
// PGX_TEST_SCRAM_PLUS_CONN_STRING (channel binding cannot pass a proxy that
// terminates TLS; pgwarden never offers SCRAM-SHA-256-PLUS, by design).
func (e *environment) vars(target string) map[string]string {
	cs := func(user, extra string) string { return e.connString(target, user, testDatabase, extra) }
	tls := "sslmode=verify-full sslrootcert=" + kvQuote(e.cluster.CAFile)
	v := map[string]string{
		"PGX_TEST_DATABASE":                   cs(pgtest.MD5User, ""),
		"PGX_TEST_TCP_CONN_STRING":            cs(pgtest.MD5User, ""),
		"PGX_TEST_MD5_PASSWORD_CONN_STRING":   cs(pgtest.MD5User, ""),
		"PGX_TEST_PLAIN_PASSWORD_CONN_STRING": cs(pgtest.PlainUser, ""),
		"PGX_TEST_SCRAM_PASSWORD_CONN_STRING": cs(pgtest.ScramUser, "channel_binding=disable"),
		"PGX_TEST_TLS_CONN_STRING":            cs(pgtest.ScramUser, tls+" channel_binding=disable"),
	}
	if target == "direct" {
		v["PGX_TEST_SCRAM_PLUS_CONN_STRING"] = cs(pgtest.ScramUser, tls+" channel_binding=require")
		v["PGX_TEST_UNIX_SOCKET_CONN_STRING"] = fmt.Sprintf("host=%s port=%d user=%s dbname=%s",
			kvQuote(e.cluster.Dir), e.cluster.Port, pgtest.SuperUser, testDatabase)
	}
	return v
}

// kvQuote quotes a value for a keyword/value connection string when needed.
func kvQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " '\\\t\n") {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func freePort() (int, error) {
	addr, err := pgtest.FreeAddr()
	if err != nil {
		return 0, err
	}
	return addr.Port, nil
}
