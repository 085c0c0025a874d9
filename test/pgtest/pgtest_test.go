package pgtest_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var users = []string{pgtest.TrustUser, pgtest.PlainUser, pgtest.MD5User, pgtest.ScramUser}

func TestConnectEachUser(t *testing.T) {
	c := pgtest.Shared(t)
	for _, sslmode := range []string{"disable", "verify-full"} {
		for _, user := range users {
			t.Run(sslmode+"/"+user, func(t *testing.T) {
				if sslmode != "disable" && c.CAFile == "" {
					t.Skip("adopted server: no CA")
				}
				conn, err := pgx.Connect(t.Context(), c.DSN(user, "sslmode="+sslmode))
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer conn.Close(t.Context())

				var current string
				if err := conn.QueryRow(t.Context(), "SELECT current_user").Scan(&current); err != nil {
					t.Fatal(err)
				}
				if current != user {
					t.Errorf("current_user = %q, want %q", current, user)
				}
				var ssl string
				if err := conn.QueryRow(t.Context(), "SHOW ssl").Scan(&ssl); err != nil {
					t.Fatal(err)
				}
				if c.CAFile != "" && ssl != "on" {
					t.Errorf("SHOW ssl = %q, want on", ssl)
				}
				if _, isTLS := conn.PgConn().Conn().(*tls.Conn); isTLS != (sslmode != "disable") {
					t.Errorf("TLS = %v with sslmode=%s", isTLS, sslmode)
				}
				// Each user can create objects in schema public.
				if _, err := conn.Exec(t.Context(), "CREATE TEMP TABLE t (x int); CREATE TABLE IF NOT EXISTS public.owned_by_"+user+" (x int)"); err != nil {
					t.Errorf("create table: %v", err)
				}
			})
		}
	}
}

func TestWrongPasswordFails(t *testing.T) {
	c := pgtest.Shared(t)
	for _, user := range []string{pgtest.PlainUser, pgtest.MD5User, pgtest.ScramUser} {
		t.Run(user, func(t *testing.T) {
			dsn := strings.Replace(c.DSN(user), ":"+pgtest.Password+"@", ":wrong@", 1)
			conn, err := pgx.Connect(t.Context(), dsn)
			if err == nil {
				conn.Close(t.Context())
				t.Fatal("connected with a wrong password")
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
				t.Errorf("err = %v, want SQLSTATE 28P01 (invalid_password)", err)
			}
		})
	}
}

func TestPasswordStorage(t *testing.T) {
	c := pgtest.Shared(t)
	conn, err := pgx.Connect(t.Context(), c.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	for user, prefix := range map[string]string{
		pgtest.PlainUser: "SCRAM-SHA-256$",
		pgtest.MD5User:   "md5",
		pgtest.ScramUser: "SCRAM-SHA-256$",
	} {
		var stored string
		if err := conn.QueryRow(t.Context(), "SELECT rolpassword FROM pg_authid WHERE rolname = $1", user).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stored, prefix) {
			t.Errorf("%s: stored password %.16q..., want prefix %q", user, stored, prefix)
		}
	}
}

func TestSuperUserOverTLS(t *testing.T) {
	c := pgtest.Shared(t)
	if c.CAFile == "" {
		t.Skip("adopted server: no CA")
	}
	conn, err := pgx.Connect(t.Context(), c.DSN(pgtest.SuperUser, "sslmode=verify-full"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var ssl bool
	if err := conn.QueryRow(t.Context(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatal(err)
	}
	if !ssl {
		t.Error("pg_stat_ssl says the connection is not TLS")
	}
}

func TestExec(t *testing.T) {
	c := pgtest.Shared(t)
	c.Exec(t, "CREATE TABLE IF NOT EXISTS exec_test (x int); GRANT SELECT ON exec_test TO "+pgtest.TrustUser)
	conn, err := pgx.Connect(t.Context(), c.DSN(pgtest.TrustUser))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), "SELECT * FROM exec_test"); err != nil {
		t.Error(err)
	}
}

func TestDSN(t *testing.T) {
	c := pgtest.Shared(t)
	if got, want := c.Addr(), net.JoinHostPort(c.Host, strconv.Itoa(c.Port)); got != want {
		t.Errorf("Addr() = %q, want %q", got, want)
	}
	cfg, err := pgx.ParseConfig(c.DSN(pgtest.ScramUser, "sslmode=verify-ca", "application_name=x"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != pgtest.Password || cfg.User != pgtest.ScramUser || cfg.Database != c.Database {
		t.Errorf("user %q password %q database %q", cfg.User, cfg.Password, cfg.Database)
	}
	if cfg.RuntimeParams["application_name"] != "x" {
		t.Errorf("application_name = %q, want x", cfg.RuntimeParams["application_name"])
	}
	if c.CAFile != "" && !strings.Contains(c.DSN(pgtest.TrustUser, "sslmode=verify-full"), "sslrootcert=") {
		t.Error("verify-full DSN lacks sslrootcert")
	}
	if strings.Contains(c.DSN(pgtest.TrustUser, "sslmode=require"), "sslrootcert=") {
		t.Error("require DSN has sslrootcert")
	}
}

func TestIssueCert(t *testing.T) {
	c := pgtest.Shared(t)
	if c.CAFile == "" {
		if _, _, err := c.IssueCert("x", nil, nil, true); err == nil {
			t.Error("IssueCert on an adopted server: want an error")
		}
		return
	}
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("CAFile holds no certificate")
	}
	tests := []struct {
		name   string
		client bool
		dns    []string
		ips    []net.IP
		usage  x509.ExtKeyUsage
		verify string // DNS name or IP to verify against; "" for a client cert
	}{
		{name: "pgw_trust", client: true, usage: x509.ExtKeyUsageClientAuth},
		{name: "proxy", dns: []string{"proxy.test"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}, usage: x509.ExtKeyUsageServerAuth, verify: "proxy.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certFile, keyFile, err := c.IssueCert(tt.name, tt.dns, tt.ips, tt.client)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode = %v (%v), want 0600", fi.Mode().Perm(), err)
			}
			cert := pair.Leaf
			if cert.Subject.CommonName != tt.name {
				t.Errorf("CommonName = %q", cert.Subject.CommonName)
			}
			_, err = cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: tt.verify, KeyUsages: []x509.ExtKeyUsage{tt.usage}})
			if err != nil {
				t.Errorf("verify against CAFile: %v", err)
			}
		})
	}

	// The server certificate verifies for every loopback name.
	server, err := tls.LoadX509KeyPair(c.ServerCertFile, c.ServerKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := server.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
}
