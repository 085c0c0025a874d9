package server

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Environment variables that hold secrets, when no file is named.
const (
	// AuditKeyEnv holds the audit checkpoint key in hex.
	AuditKeyEnv = "PGWARDEN_AUDIT_KEY"
	// AdminTokenEnv holds the admin API's bearer token.
	AdminTokenEnv = "PGWARDEN_ADMIN_TOKEN"
)

// webhookSecret reads the webhook's HMAC key from a file, or from
// PGWARDEN_WEBHOOK_SECRET.
func webhookSecret(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("webhook secret: %w", err)
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("webhook secret file %s is empty", file)
	}
	if s := os.Getenv("PGWARDEN_WEBHOOK_SECRET"); s != "" {
		return []byte(s), nil
	}
	return nil, errors.New("the webhook needs a signing secret: --webhook-secret-file or PGWARDEN_WEBHOOK_SECRET")
}

// AdminToken reads the admin bearer token from a file, or from
// PGWARDEN_ADMIN_TOKEN.
func AdminToken(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("admin token: %w", err)
		}
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if t := os.Getenv(AdminTokenEnv); t != "" {
		return []byte(t), nil
	}
	return nil, errors.New("the admin API needs a bearer token: --admin-token-file or PGWARDEN_ADMIN_TOKEN")
}

// AuditKey reads the audit checkpoint key in hex from path, else from
// PGWARDEN_AUDIT_KEY; nil when neither is set. Errors never quote the key.
func AuditKey(path string) ([]byte, error) {
	src, text := AuditKeyEnv, os.Getenv(AuditKeyEnv)
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("audit key: %w", err)
		}
		src, text = "key file "+path, string(b)
	}
	text = strings.TrimSpace(text)
	if text == "" {
		if path != "" {
			return nil, fmt.Errorf("audit key: %s is empty", src)
		}
		return nil, nil
	}
	key, err := hex.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("audit key: %s does not hold a hex key", src)
	}
	return key, nil
}

// UsersFile is where the logins of pgwarden's own login are kept:
// usersFile, else stateDir/users.json, else $PGWARDEN_USERS_FILE, else
// $PGWARDEN_STATE_DIR/users.json; empty when none is set. pgwarden users
// finds the file by the same rule.
func UsersFile(usersFile, stateDir string) string {
	switch {
	case usersFile != "":
		return usersFile
	case stateDir != "":
		return filepath.Join(stateDir, LoginsFile)
	case os.Getenv("PGWARDEN_USERS_FILE") != "":
		return os.Getenv("PGWARDEN_USERS_FILE")
	case os.Getenv("PGWARDEN_STATE_DIR") != "":
		return filepath.Join(os.Getenv("PGWARDEN_STATE_DIR"), LoginsFile)
	}
	return ""
}
