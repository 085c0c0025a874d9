package main

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/server"
)

var auditTestKey = []byte("cli-test-key-0123456789abcdef")

// writeAuditLog writes a small audit log and a key file for it.
func writeAuditLog(t *testing.T) (dir, keyFile string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "audit")
	l, err := audit.Open(audit.Config{Dir: dir, Key: auditTestKey, KeyID: "k1", CheckpointEvery: 3, Sync: audit.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []audit.Event{
		{Type: audit.TypeSessionStart, SessionID: "s1", Employee: "alice"},
		{Type: audit.TypeStatement, SessionID: "s1", Employee: "alice", Data: []byte(`{"rows":3}`)},
		{Type: audit.TypeSessionStart, SessionID: "s2", Employee: "bob"},
		{Type: audit.TypeStatement, SessionID: "s2", Employee: "bob", Data: []byte(`{"rows":9}`)},
	} {
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(auditTestKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, keyFile
}

func TestAuditVerifyCommand(t *testing.T) {
	dir, keyFile := writeAuditLog(t)
	hexKey := hex.EncodeToString(auditTestKey)
	check := func(t *testing.T, args []string, code int, inStdout, inStderr string) {
		t.Helper()
		got, stdout, stderr := runCLI(args...)
		if got != code || !strings.Contains(stdout, inStdout) || !strings.Contains(stderr, inStderr) {
			t.Fatalf("%v: code %d\nstdout: %s\nstderr: %s\nwant code %d, stdout with %q, stderr with %q", args, got, stdout, stderr, code, inStdout, inStderr)
		}
		if strings.Contains(stdout+stderr, hexKey) {
			t.Fatalf("the key was printed")
		}
	}
	t.Run("intact with key file", func(t *testing.T) {
		check(t, []string{"audit", "verify", dir, "--key-file", keyFile}, 0, "intact: 7 events in 1 files, last seq 7, 3 checkpoint HMACs verified (key id k1)", "")
	})
	t.Run("flag before DIR", func(t *testing.T) {
		check(t, []string{"audit", "verify", "--key-file", keyFile, dir}, 0, "intact", "")
	})
	t.Run("key from environment", func(t *testing.T) {
		t.Setenv(server.AuditKeyEnv, hexKey)
		check(t, []string{"audit", "verify", dir}, 0, "HMACs verified", "")
	})
	t.Run("no key", func(t *testing.T) {
		t.Setenv(server.AuditKeyEnv, "")
		check(t, []string{"audit", "verify", dir}, 1, "HMACs NOT checked", "--chain-only")
		check(t, []string{"audit", "verify", dir, "--chain-only"}, 0, "HMACs NOT checked", "")
	})
	t.Run("wrong key", func(t *testing.T) {
		t.Setenv(server.AuditKeyEnv, hex.EncodeToString([]byte("some other key 0123456789")))
		check(t, []string{"audit", "verify", dir}, 1, "", "line 1 (seq 1): bad_checkpoint")
	})
	t.Run("key file not hex", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "key")
		os.WriteFile(bad, []byte("secret-not-hex"), 0o600)
		got, stdout, stderr := runCLI("audit", "verify", dir, "--key-file", bad)
		if got != 1 || !strings.Contains(stderr, "does not hold a hex key") || strings.Contains(stdout+stderr, "secret") {
			t.Fatalf("code %d, stderr %s", got, stderr)
		}
	})
	t.Run("edited event", func(t *testing.T) {
		dir, keyFile := writeAuditLog(t)
		files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
		b, _ := os.ReadFile(files[0])
		os.WriteFile(files[0], []byte(strings.Replace(string(b), `"rows":3`, `"rows":1`, 1)), 0o600)
		check(t, []string{"audit", "verify", dir, "--key-file", keyFile}, 1, "",
			"NOT intact: "+filepath.Base(files[0])+" line 4 (seq 4): edited: prev does not match line 3")
	})
	t.Run("usage", func(t *testing.T) {
		check(t, []string{"audit", "verify", "--help"}, 0, "", "Usage: pgwarden audit verify")
		check(t, []string{"help", "audit"}, 0, "", "Usage: pgwarden audit verify")
		check(t, []string{"audit"}, 2, "", "Usage: pgwarden audit")
		check(t, []string{"audit", "verify"}, 2, "", "missing DIR")
		check(t, []string{"audit", "verify", dir, "x"}, 2, "", `unexpected argument "x"`)
		check(t, []string{"audit", "frob"}, 2, "", `unknown subcommand "frob"`)
		check(t, []string{"audit", "verify", filepath.Join(dir, "nope")}, 1, "", "no such file")
	})
}

func TestAuditQueryCommand(t *testing.T) {
	dir, _ := writeAuditLog(t)
	tests := []struct {
		name  string
		args  []string
		lines []string // substrings of each output line, in order
	}{
		{"all", nil, []string{"\tsession_start\talice\ts1\t-", "\tstatement\talice\ts1\t{\"rows\":3}", "\tsession_start\tbob", "\tstatement\tbob"}},
		{"user", []string{"--user", "bob"}, []string{"session_start\tbob", "statement\tbob"}},
		{"type", []string{"--type", "statement"}, []string{"alice", "bob"}},
		{"checkpoints", []string{"--type", "checkpoint"}, []string{"\"reason\":\"interval\"", "\"reason\":\"close\""}},
		{"since duration", []string{"--since", "1h"}, []string{"alice", "alice", "bob", "bob"}},
		{"since future", []string{"--since", "2999-01-01T00:00:00Z"}, nil},
		{"json", []string{"--json", "--user", "alice", "--type", "statement"}, []string{`{"seq":3,"time":"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(append([]string{"audit", "query", dir}, tt.args...)...)
			if code != 0 {
				t.Fatalf("code %d: %s", code, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if stdout == "" {
				lines = nil
			}
			if len(lines) != len(tt.lines) {
				t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(tt.lines), stdout)
			}
			for i, want := range tt.lines {
				if !strings.Contains(lines[i], want) {
					t.Errorf("line %d = %q, want %q in it", i, lines[i], want)
				}
			}
		})
	}
	if code, stdout, stderr := runCLI("audit", "query", dir, "--type", "block"); code != 2 || stdout != "" ||
		!strings.Contains(stderr, `unknown event type "block"`) || !strings.Contains(stderr, "--type decision") {
		t.Errorf("query --type block: %d %q %q, want a usage error naming the types", code, stdout, stderr)
	}
	if code, _, stderr := runCLI("audit", "query", dir, "--since", "yesterday"); code != 2 || !strings.Contains(stderr, "RFC 3339") {
		t.Fatalf("bad --since: code %d, %s", code, stderr)
	}
	if code, _, stderr := runCLI("audit", "query", "--help"); code != 0 || !strings.Contains(stderr, "Usage: pgwarden audit query") {
		t.Fatalf("query --help: code %d, %s", code, stderr)
	}
}
