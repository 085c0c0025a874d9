// Package holds keeps the results pgwarden has paused until security
// approves them. Each hold is a small JSON file in a directory of the
// state directory: the server writes it pending and polls it; `pgwarden
// holds approve|deny ID` or the admin API writes the decision, with who
// made it and why.
// Files are replaced atomically (written to a temporary file, fsynced,
// renamed), so a reader never sees half a decision.
package holds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/internal/atomicfile"
)

// Statuses of a hold.
const (
	Pending  = "pending"
	Approved = "approved"
	Denied   = "denied"
)

// Hold is one paused result.
type Hold struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Employee  string `json:"employee"`
	Rule      string `json:"rule"`
	Reason    string `json:"reason"`
	SessionID string `json:"session_id"`
	Statement string `json:"statement,omitempty"`
	// Justification is the reason the employee gave (pgwarden.reason),
	// shown to the approver.
	Justification string    `json:"justification,omitempty"`
	Since         time.Time `json:"since"`
	Deadline      time.Time `json:"deadline"`
	// DecidedBy names who approved or denied it, DecidedVia how it
	// reached pgwarden ("admin API", "cli"), DecisionReason why.
	DecidedBy      string    `json:"decided_by,omitempty"`
	DecidedVia     string    `json:"decided_via,omitempty"`
	DecisionReason string    `json:"decision_reason,omitempty"`
	DecidedAt      time.Time `json:"decided_at,omitzero"`
}

// Decision is who decides a hold, how and why.
type Decision struct {
	Approve bool
	By, Via string
	Reason  string
}

// Registry is the directory of holds.
type Registry struct {
	dir  string
	poll time.Duration
}

// ErrNotFound is returned for a hold that does not exist (or is over).
var ErrNotFound = errors.New("holds: no such pending hold")

var validID = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// Open returns the registry in dir, creating it.
func Open(dir string) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("holds: %w", err)
	}
	return &Registry{dir: dir, poll: 200 * time.Millisecond}, nil
}

func (r *Registry) path(id string) string { return filepath.Join(r.dir, id+".json") }

// Request records h as pending and waits until it is decided, or ctx
// ends (a timeout, or the session ending): it returns the hold as decided
// (Status Approved or Denied, who decided, how and why), or ctx's error.
// The hold's file is removed when the wait ends.
func (r *Registry) Request(ctx context.Context, h Hold) (Hold, error) {
	if !validID.MatchString(h.ID) {
		return h, fmt.Errorf("holds: invalid id %q", h.ID)
	}
	h.Status = Pending
	if err := r.write(h); err != nil {
		return h, err
	}
	defer os.Remove(r.path(h.ID))
	t := time.NewTicker(r.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return h, ctx.Err()
		case <-t.C:
		}
		cur, err := r.read(h.ID)
		if err != nil {
			continue // being replaced, or removed by hand: keep waiting
		}
		switch cur.Status {
		case Approved, Denied:
			return cur, nil
		}
	}
}

// List returns the pending holds, oldest first.
func (r *Registry) List() ([]Hold, error) {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("holds: %w", err)
	}
	var out []Hold
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		h, err := r.read(strings.TrimSuffix(name, ".json"))
		if err == nil && h.Status == Pending {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b Hold) int { return a.Since.Compare(b.Since) })
	return out, nil
}

// Decide approves or denies a pending hold on behalf of by.
func (r *Registry) Decide(id string, approve bool, by string) (Hold, error) {
	return r.DecideWith(id, Decision{Approve: approve, By: by})
}

// DecideWith approves or denies a pending hold, recording who, how and
// why.
func (r *Registry) DecideWith(id string, d Decision) (Hold, error) {
	if !validID.MatchString(id) {
		return Hold{}, ErrNotFound
	}
	h, err := r.read(id)
	if err != nil || h.Status != Pending {
		return Hold{}, ErrNotFound
	}
	h.Status, h.DecidedBy, h.DecidedVia, h.DecisionReason, h.DecidedAt = Denied, d.By, d.Via, d.Reason, time.Now().UTC()
	if d.Approve {
		h.Status = Approved
	}
	return h, r.write(h)
}

func (r *Registry) read(id string) (Hold, error) {
	data, err := os.ReadFile(r.path(id))
	if err != nil {
		return Hold{}, err
	}
	var h Hold
	if err := json.Unmarshal(data, &h); err != nil {
		return Hold{}, err
	}
	return h, nil
}

func (r *Registry) write(h Hold) error {
	data, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return fmt.Errorf("holds: %w", err)
	}
	if err := atomicfile.Write(r.path(h.ID), append(data, '\n')); err != nil {
		return fmt.Errorf("holds: %w", err)
	}
	return nil
}
