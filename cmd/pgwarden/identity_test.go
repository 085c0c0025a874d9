package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// TestServeClientCertificates: serve with --client-ca names the employee
// by the client certificate's common name, and --require-client-cert
// refuses a session without one.
func TestServeClientCertificates(t *testing.T) {
	c := pgtest.Shared(t)
	if c.CAFile == "" {
		t.Skip("the cluster has no CA")
	}
	cert, key, err := c.IssueCert("127.0.0.1", nil, []net.IP{net.ParseIP("127.0.0.1")}, false)
	if err != nil {
		t.Fatal(err)
	}
	erinCert, erinKey, err := c.IssueCert("erin", nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	// Refused before listening: certificates without TLS, a list without
	// its CA.
	if code, _, errOut := runCLI("serve", "--upstream", "postgres://"+c.Addr(), "--client-ca", c.CAFile); code != 1 || !strings.Contains(errOut, "--tls-cert") {
		t.Errorf("--client-ca without --tls-cert: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("serve", "--upstream", "postgres://"+c.Addr(), "--require-client-cert", "*/*"); code != 1 || !strings.Contains(errOut, "--client-ca") {
		t.Errorf("--require-client-cert without --client-ca: %d %q", code, errOut)
	}
	listen, admin := freeAddr(t), freeAddr(t)
	const token = "client-cert-admin-token-0123456"
	cmd, stderr := startBinary(t, []string{"PGWARDEN_ADMIN_TOKEN=" + token}, "serve", "--listen", listen,
		"--upstream", "postgres://"+c.Addr(), "--tls-cert", cert, "--tls-key", key,
		"--client-ca", c.CAFile, "--client-cert-map", "cn", "--require-client-cert", "*/"+pgtest.TrustUser,
		"--admin-listen", admin)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := fmt.Sprintf("postgres://%s@%s/%s?sslmode=verify-full&sslrootcert=%s", pgtest.TrustUser, listen, c.Database, c.CAFile)
	proxytest.WaitListening(t, listen, 10*time.Second)
	conn, err := pgx.Connect(ctx, base+"&sslcert="+erinCert+"&sslkey="+erinKey+"&application_name=certs")
	if err != nil {
		t.Fatalf("with a certificate: %v\n%s", err, stderr)
	}
	defer conn.Close(ctx)
	_, err = pgx.Connect(ctx, base)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28000" || !strings.Contains(pgErr.Message, "certificate") {
		t.Errorf("without a certificate: %v", err)
	}
	req, _ := http.NewRequest("GET", "http://"+admin+"/v1/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sessions []struct {
		Employee     string `json:"employee"`
		IdentifiedBy string `json:"identified_by"`
		User         string `json:"user"`
	}
	json.NewDecoder(resp.Body).Decode(&sessions)
	if len(sessions) != 1 || sessions[0].Employee != "erin" || sessions[0].IdentifiedBy != "certificate" || sessions[0].User != pgtest.TrustUser {
		t.Errorf("sessions %+v; want erin by certificate as %s", sessions, pgtest.TrustUser)
	}
}

// TestDocsConfigExample: the configuration file docs/configuration.md
// shows is accepted as it is, unknown keys being errors.
func TestDocsConfigExample(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "## The configuration file")
	if !ok {
		t.Fatal("docs/configuration.md has no configuration file section")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml block in the Configuration section")
	}
	path := filepath.Join(t.TempDir(), "pgwarden.yaml")
	os.WriteFile(path, []byte(example), 0o600)
	fc, err := config.Load(path)
	if err != nil {
		t.Fatalf("the example of docs/configuration.md: %v", err)
	}
	if len(fc.ClientCerts.Rules) != 2 || fc.Login.Method != "scram" || fc.Login.Roles["support_ro"].PasswordEnv == "" {
		t.Errorf("parsed %+v %+v", fc.ClientCerts, fc.Login)
	}
}
