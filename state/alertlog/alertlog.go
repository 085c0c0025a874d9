// Package alertlog keeps the recent alerts for security's queue: each with
// an acknowledgement, the newest MaxKept, saved to a file (replaced
// atomically on every change) so that a restart keeps the queue.
package alertlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/internal/atomicfile"
)

// MaxKept bounds the alerts kept.
const MaxKept = 5000

// Entry is an alert and its acknowledgement.
type Entry struct {
	notify.Alert
	AckedBy string    `json:"acked_by,omitempty"`
	AckedAt time.Time `json:"acked_at,omitzero"`
	// AckNote is what the acknowledger said, if anything.
	AckNote string `json:"ack_note,omitempty"`
}

// Log is the alert queue. Safe for concurrent use.
type Log struct {
	path string // "" keeps alerts in memory only

	mu      sync.Mutex
	entries []Entry // oldest first
	// dirty: the file lags entries, a save failed (a full disk).
	dirty bool
}

// ErrNotFound is returned by Ack for an unknown alert.
var ErrNotFound = errors.New("alertlog: no such alert")

// Open reads the queue at path (missing: empty); path "" is memory only.
func Open(path string) (*Log, error) {
	l := &Log{path: path}
	if path == "" {
		return l, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("alertlog: %w", err)
	}
	if err := json.Unmarshal(b, &l.entries); err != nil {
		return nil, fmt.Errorf("alertlog: %s: %w", path, err)
	}
	return l, nil
}

// Notify records an alert (it implements guard.Alerter, to be teed with
// the notifier). The alert is in the queue even when saving it fails (a
// full disk): Flush saves it later, and says why it cannot.
func (l *Log) Notify(a notify.Alert) error {
	if a.ID == "" {
		return errors.New("alertlog: alert without an id")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, Entry{Alert: a})
	if len(l.entries) > MaxKept {
		l.entries = slices.Clone(l.entries[len(l.entries)-MaxKept:])
	}
	l.save() // on failure, dirty: Flush retries
	return nil
}

// List returns alerts newest first, those of employee only when it is
// set, unacknowledged only when unacked, at most limit (0: all).
func (l *Log) List(employee string, unacked bool, limit int) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Entry
	for i := len(l.entries) - 1; i >= 0; i-- {
		e := l.entries[i]
		if employee != "" && e.Employee != employee || unacked && e.AckedBy != "" {
			continue
		}
		out = append(out, e)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out
}

// Ack acknowledges an alert: by whom, when, with an optional note.
func (l *Log) Ack(id, by, note string, at time.Time) (Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.entries {
		if l.entries[i].ID == id {
			if l.entries[i].AckedBy == "" {
				l.entries[i].AckedBy, l.entries[i].AckedAt, l.entries[i].AckNote = by, at.UTC(), note
				if err := l.save(); err != nil {
					return Entry{}, err
				}
			}
			return l.entries[i], nil
		}
	}
	return Entry{}, ErrNotFound
}

// Flush saves the queue if a save failed since the last that succeeded;
// serve calls it every second.
func (l *Log) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.dirty {
		return nil
	}
	return l.save()
}

// save writes the queue; l.mu held.
func (l *Log) save() error {
	if l.path == "" {
		return nil
	}
	b, err := json.Marshal(l.entries)
	if err != nil {
		return fmt.Errorf("alertlog: %w", err)
	}
	if err := atomicfile.Write(l.path, b); err != nil {
		l.dirty = true
		return fmt.Errorf("alertlog: kept in memory, not saved: %w", err)
	}
	l.dirty = false
	return nil
}
