// Package adminlog carries the changes that pgwarden's command line makes
// directly in the state directory (a quarantine released, a hold
// decided) to the running server's audit trail. The command writes one
// small JSON file per action, atomically, into the state directory's
// admin-actions folder; the server drains the folder every second: it
// appends each action to the audit trail, then removes its file. A
// server that stops between the two appends the action again when it
// starts: at least once, never lost. With a state database instead
// (users release --state-url) the actions wait in its table
// pgwarden_admin_actions, and one of the servers sharing it takes each.
package adminlog

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/internal/atomicfile"
)

// Dir is the folder of the state directory that holds pending actions.
const Dir = "admin-actions"

// Action is one change made outside the admin API.
type Action struct {
	// Action names it as the admin API does: quarantine_released,
	// hold_approved, hold_denied.
	Action   string    `json:"action"`
	By       string    `json:"by"`
	Via      string    `json:"via"`
	Reason   string    `json:"reason,omitempty"`
	Employee string    `json:"employee,omitempty"`
	HoldID   string    `json:"hold_id,omitempty"`
	Rule     string    `json:"rule,omitempty"`
	At       time.Time `json:"at"`
}

// OSUser names the person running the command: the login name of the
// process's user, or its uid when the name cannot be found.
func OSUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

// Write records a in stateDir for the server to audit.
func Write(stateDir string, a Action) error {
	dir := filepath.Join(stateDir, Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("adminlog: %w", err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("adminlog: %w", err)
	}
	name := fmt.Sprintf("%020d-%s.json", a.At.UnixNano(), hex.EncodeToString(rnd[:]))
	if err := atomicfile.Write(filepath.Join(dir, name), append(data, '\n')); err != nil {
		return fmt.Errorf("adminlog: %w", err)
	}
	return nil
}

// Drain passes every pending action of stateDir to f, oldest first, and
// removes each that f accepted; it stops at the first error of f.
func Drain(stateDir string, f func(Action) error) error {
	dir := filepath.Join(stateDir, Dir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("adminlog: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".json") && !strings.HasPrefix(n, ".") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		path := filepath.Join(dir, n)
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("adminlog: %w", err)
		}
		var a Action
		if err := json.Unmarshal(data, &a); err != nil {
			return fmt.Errorf("adminlog: %s: %w", path, err)
		}
		if err := f(a); err != nil {
			return err
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("adminlog: %w", err)
		}
	}
	return nil
}
