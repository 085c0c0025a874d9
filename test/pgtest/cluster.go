package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Roles and the password that every started cluster has. pg_hba.conf maps each role
// to one authentication method, so a test picks the method by picking the user.
const (
	SuperUser = "postgres"     // bootstrap superuser; trust over TCP from 127.0.0.1
	TrustUser = "pgw_trust"    // pg_hba trust
	PlainUser = "pgw_plain"    // pg_hba password (cleartext on the wire)
	MD5User   = "pgw_md5"      // pg_hba md5, password stored as an md5 hash
	ScramUser = "pgw_scram"    // pg_hba scram-sha-256, password stored as a SCRAM verifier
	Password  = "pgw-secret-1" // the password of PlainUser, MD5User and ScramUser
)

// defaultDatabase is the database the tests use unless an adopted DSN names another.
const defaultDatabase = "pgwarden_test"

// Options tune Start.
type Options struct {
	// Logf receives progress messages; nil discards them.
	Logf func(format string, args ...any)
	// ExtraConf lines are appended to postgresql.conf after pgtest's own settings,
	// so they override them.
	ExtraConf []string
}

// Cluster is a running PostgreSQL server: either one that Start created, or one
// adopted from PGWARDEN_TEST_DSN by Main.
type Cluster struct {
	Host     string // "127.0.0.1"
	Port     int    // free TCP port chosen at start
	Database string // "pgwarden_test", unless an adopted DSN names another one
	Dir      string // temporary directory holding everything; empty when adopted

	CAFile         string // PEM certificate of the CA that signed ServerCertFile
	CAKeyFile      string // PEM private key of that CA
	ServerCertFile string // PEM server certificate for localhost, 127.0.0.1 and ::1
	ServerKeyFile  string // PEM private key of ServerCertFile

	logf func(format string, args ...any)

	// admin connects as the superuser; its Database is replaced per use.
	admin         *pgx.ConnConfig
	superUser     string
	superPassword string

	srv      *server    // nil when adopted
	ca       *authority // nil when adopted
	mu       sync.Mutex // guards seq
	seq      int        // numbers the files IssueCert writes
	stopOnce sync.Once  // makes Stop idempotent
	stopErr  error      // result of the first Stop
}

// Start creates and starts a new cluster. It is for benchmarks and commands; tests
// use Main and Shared. The caller must call Stop, which also removes Dir. ctx bounds
// the startup only.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c := &Cluster{
		Host:      "127.0.0.1",
		Database:  defaultDatabase,
		logf:      logf,
		superUser: SuperUser,
	}
	if err := c.start(ctx, opts.ExtraConf); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	return c, nil
}

// adopt returns a Cluster for the existing server that dsn, a superuser URL, points
// at, after running the setup SQL against it.
func adopt(ctx context.Context, dsn string) (*Cluster, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgtest: parse PGWARDEN_TEST_DSN: %w", err)
	}
	c := &Cluster{
		Host:          cfg.Host,
		Port:          int(cfg.Port),
		Database:      cfg.Database,
		logf:          func(string, ...any) {},
		admin:         cfg,
		superUser:     cfg.User,
		superPassword: cfg.Password,
	}
	if c.Database == "" {
		c.Database = defaultDatabase
	}
	if err := c.setup(ctx); err != nil {
		return nil, fmt.Errorf("pgtest: set up %s: %w", c.Addr(), err)
	}
	return c, nil
}

// Stop shuts the server down and removes Dir. It does nothing to an adopted server.
// Calling it again returns the first result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		if c.srv != nil {
			c.stopErr = c.srv.close()
		}
	})
	return c.stopErr
}

// Addr returns the server's TCP address, "127.0.0.1:port".
func (c *Cluster) Addr() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// DSN returns a postgres:// URL that connects as user to Database. The password is
// included for PlainUser, MD5User and ScramUser (and, on an adopted server, for
// SuperUser, which then means the DSN's user). sslmode is disable unless params,
// each "key=value", say otherwise; with sslmode verify-ca or verify-full, sslrootcert
// defaults to CAFile.
func (c *Cluster) DSN(user string, params ...string) string {
	u := &url.URL{Scheme: "postgres", Path: "/" + c.Database}
	switch user {
	case PlainUser, MD5User, ScramUser:
		u.User = url.UserPassword(user, Password)
	case SuperUser:
		if c.superPassword != "" {
			u.User = url.UserPassword(c.superUser, c.superPassword)
		} else {
			u.User = url.User(c.superUser)
		}
	default:
		u.User = url.User(user)
	}
	q := url.Values{"sslmode": {"disable"}}
	if strings.HasPrefix(c.Host, "/") {
		q.Set("host", c.Host) // a socket directory cannot be a URL host
		q.Set("port", strconv.Itoa(c.Port))
	} else {
		u.Host = c.Addr()
	}
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		q.Set(k, v)
	}
	if m := q.Get("sslmode"); (m == "verify-ca" || m == "verify-full") && !q.Has("sslrootcert") && c.CAFile != "" {
		q.Set("sslrootcert", c.CAFile)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Exec runs sql, which may hold several statements, as the superuser on Database,
// and fails t if it returns an error.
func (c *Cluster) Exec(t testing.TB, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if err := c.exec(ctx, c.Database, sql); err != nil {
		t.Fatalf("pgtest: exec %q: %v", sql, err)
	}
}

// Pool returns a connection pool to Database as user, closed when t ends;
// it fails t if the pool cannot be made.
func (c *Cluster) Pool(t testing.TB, user string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), c.DSN(user))
	if err != nil {
		t.Fatalf("pgtest: pool as %s: %v", user, err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// exec runs sql as the superuser on database.
func (c *Cluster) exec(ctx context.Context, database, sql string) error {
	conn, err := c.connect(ctx, database)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// connect opens a superuser connection to database.
func (c *Cluster) connect(ctx context.Context, database string) (*pgx.Conn, error) {
	cfg := c.admin.Copy()
	cfg.Database = database
	return pgx.ConnectConfig(ctx, cfg)
}

// IssueCert writes a new certificate and its key, signed by the cluster's CA, into
// Dir and returns the two file names. client selects the client-auth extended key
// usage instead of server-auth. When pgtest runs as root the files belong to the
// postgres user, so the server can read them too. It fails on an adopted server,
// which has no CA.
func (c *Cluster) IssueCert(commonName string, dnsNames []string, ips []net.IP, client bool) (certFile, keyFile string, err error) {
	if c.ca == nil || c.Dir == "" {
		return "", "", errors.New("pgtest: IssueCert: cluster has no CA (adopted from PGWARDEN_TEST_DSN)")
	}
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("issued-%d-%s", c.seq, fileSafe(commonName))
	c.mu.Unlock()
	return c.ca.issueFiles(c.Dir, name, commonName, dnsNames, ips, client, c.srv.own)
}

// fileSafe maps s to a string usable in a file name.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, s)
}
