// Package quarantine keeps the list of employees whose new sessions
// pgwarden refuses until security releases them. The list is a small JSON
// file, so that it survives restarts and can be changed by `pgwarden users
// release` while a server runs: every change is a read-modify-write under
// an exclusive lock on a companion lock file, written to a temporary file,
// fsynced and renamed into place; readers notice a change by the file's
// modification time and size.
package quarantine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgwarden/pgwarden/internal/atomicfile"
)

// Entry is one quarantined employee.
type Entry struct {
	Employee  string    `json:"employee"`
	Since     time.Time `json:"since"`
	Rule      string    `json:"rule,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	SessionID string    `json:"session_id,omitempty"`
}

// List is the quarantine list stored at one path. Safe for concurrent use.
type List struct {
	path string

	mu      sync.Mutex
	entries map[string]Entry
	stamp   fileStamp // of the file entries were read from
	checked time.Time // when the file was last looked at
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// recheck is how often Get looks whether another process changed the file.
const recheck = time.Second

type file struct {
	Version   int     `json:"version"`
	Employees []Entry `json:"employees"`
}

// Open reads the list at path; a missing file is an empty list.
func Open(path string) (*List, error) {
	l := &List{path: path}
	if err := l.load(); err != nil {
		return nil, err
	}
	return l, nil
}

// Path is where the list is stored.
func (l *List) Path() string { return l.path }

// load reads the file; l.mu held or l not shared yet.
func (l *List) load() error {
	entries, stamp, err := read(l.path)
	if err != nil {
		return err
	}
	l.entries, l.stamp, l.checked = entries, stamp, time.Now()
	return nil
}

func read(path string) (map[string]Entry, fileStamp, error) {
	entries := make(map[string]Entry)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return entries, fileStamp{}, nil
	}
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("quarantine: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("quarantine: %w", err)
	}
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fileStamp{}, fmt.Errorf("quarantine: %s: %w", path, err)
	}
	for _, e := range f.Employees {
		entries[e.Employee] = e
	}
	return entries, fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// Get reports whether employee is quarantined. It rereads the file when
// another process may have changed it (at most once a second); if that
// read fails, the last known list stands (the side of caution).
func (l *List) Get(employee string) (Entry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.checked) >= recheck {
		l.checked = time.Now()
		if fi, err := os.Stat(l.path); err == nil && (fi.ModTime() != l.stamp.mod || fi.Size() != l.stamp.size) {
			_ = l.load()
		} else if errors.Is(err, os.ErrNotExist) && len(l.entries) > 0 {
			_ = l.load()
		}
	}
	e, ok := l.entries[employee]
	return e, ok
}

// All returns every entry, oldest first, as stored now.
func (l *List) All() ([]Entry, error) {
	entries, _, err := read(l.path)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(entries))
	for _, e := range entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.Employee, b.Employee)
	})
	return out, nil
}

// Add quarantines e.Employee; it reports false when they already were
// (the first entry stays).
func (l *List) Add(e Entry) (bool, error) {
	if e.Employee == "" {
		return false, errors.New("quarantine: empty employee name")
	}
	added := false
	err := l.update(func(m map[string]Entry) {
		if _, ok := m[e.Employee]; !ok {
			m[e.Employee] = e
			added = true
		}
	})
	return added, err
}

// Release lifts the quarantine of employee and returns the entry it had;
// false when they were not quarantined.
func (l *List) Release(employee string) (Entry, bool, error) {
	var (
		old Entry
		ok  bool
	)
	err := l.update(func(m map[string]Entry) {
		if old, ok = m[employee]; ok {
			delete(m, employee)
		}
	})
	return old, ok, err
}

// update applies f to the stored list under the lock file, and writes it
// back durably when it changed.
func (l *List) update(f func(map[string]Entry)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Errors of the lock itself name the lock file.
	return atomicfile.Locked(l.path, func() error {
		entries, _, err := read(l.path)
		if err != nil {
			return err
		}
		before := len(entries)
		snapshot := make(map[string]Entry, len(entries))
		for k, v := range entries {
			snapshot[k] = v
		}
		f(entries)
		if len(entries) == before && mapsEqual(snapshot, entries) {
			l.entries = entries
			return nil
		}
		if err := write(l.path, entries); err != nil {
			return err
		}
		return l.load()
	})
}

func mapsEqual(a, b map[string]Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func write(path string, entries map[string]Entry) error {
	f := file{Version: 1, Employees: make([]Entry, 0, len(entries))}
	for _, e := range entries {
		f.Employees = append(f.Employees, e)
	}
	slices.SortFunc(f.Employees, func(a, b Entry) int { return strings.Compare(a.Employee, b.Employee) })
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n')); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	return nil
}
