package atomicfile

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestWrite: the file is replaced whole, private, and no temporary file is
// left behind.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, content := range []string{"first\n", "second, longer\n", "3\n"} {
		if err := Write(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Fatalf("read %q, %v; want %q", b, err, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d entries in the directory, want only the file", len(entries))
	}
	if err := Write(filepath.Join(dir, "missing", "x"), nil); err == nil {
		t.Error("a write into a missing directory succeeded")
	}
}

// TestLocked: read-modify-writes under the lock do not lose updates.
func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "counter")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				err := Locked(path, func() error {
					b, _ := os.ReadFile(path)
					n, _ := strconv.Atoi(string(b))
					return Write(path, []byte(strconv.Itoa(n+1)))
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b, _ := os.ReadFile(path); string(b) != "200" {
		t.Errorf("counter %s, want 200", b)
	}
}

// TestRemoveStale: the temporary files a crash left between Write's create
// and rename go at start; a fresh one (another process's write in
// progress) and every other file stay.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alerts.json")
	if err := Write(path, []byte("[]")); err != nil {
		t.Fatal(err)
	}
	leftover := func(age time.Duration) string {
		// What Write creates before it renames.
		f, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		at := time.Now().Add(-age)
		if err := os.Chtimes(f.Name(), at, at); err != nil {
			t.Fatal(err)
		}
		return filepath.Base(f.Name())
	}
	stale, fresh := leftover(2*StaleAge), leftover(0)
	for _, other := range []string{".hidden", "notes-123", ".alerts.json-x1"} {
		if err := os.WriteFile(filepath.Join(dir, other), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-2 * StaleAge)
		os.Chtimes(filepath.Join(dir, other), at, at)
	}
	removed, err := RemoveStale(dir, time.Now())
	if err != nil || len(removed) != 1 || removed[0] != stale {
		t.Fatalf("removed %v, %v; want [%s]", removed, err, stale)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{".alerts.json-x1", ".hidden", fresh, "alerts.json", "notes-123"}
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	if removed, err := RemoveStale(filepath.Join(dir, "missing"), time.Now()); err != nil || removed != nil {
		t.Fatalf("missing directory: %v, %v", removed, err)
	}
}
