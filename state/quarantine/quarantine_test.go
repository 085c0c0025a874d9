package quarantine

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestAddReleaseAcrossOpens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "quarantine.json")
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Get("alice"); ok {
		t.Fatal("empty list has alice")
	}
	added, err := a.Add(Entry{Employee: "alice", Since: time.Unix(100, 0).UTC(), Rule: "r1", Reason: "bulk read"})
	if err != nil || !added {
		t.Fatalf("Add = %v, %v", added, err)
	}
	if added, _ := a.Add(Entry{Employee: "alice", Rule: "r2"}); added {
		t.Error("second Add of alice added")
	}
	// A restart sees it.
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := b.Get("alice")
	if !ok || e.Rule != "r1" || e.Reason != "bulk read" {
		t.Fatalf("after reopen: %+v %v", e, ok)
	}
	// Another process (b) releases; a notices within a second.
	if old, ok, err := b.Release("alice"); err != nil || !ok || old.Rule != "r1" {
		t.Fatalf("Release = %+v %v %v", old, ok, err)
	}
	if _, ok, _ := b.Release("alice"); ok {
		t.Error("released twice")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, ok := a.Get("alice"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a still sees alice quarantined")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConcurrentWritersLoseNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.json")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Open(path)
			if err != nil {
				t.Error(err)
				return
			}
			for j := range 10 {
				if _, err := l.Add(Entry{Employee: string(rune('a'+i)) + string(rune('0'+j))}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	all, err := l.All()
	if err != nil || len(all) != 80 {
		t.Fatalf("All = %d entries, %v", len(all), err)
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil {
		t.Fatal("Open of a corrupt file succeeded")
	}
}
