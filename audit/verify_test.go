package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tenEvents writes file_start (line 1), events at lines 2-5, a checkpoint
// at 6, events 7-10, a checkpoint at 11, events 12-13 and the close
// checkpoint at 14; seq equals the line number.
func tenEvents(t *testing.T) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	l := mustOpen(t, testConfig(dir, newClock()))
	appendN(t, l, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, logFiles(t, dir)[0]
}

// rechain recomputes every Prev after an edit, as someone without the key
// would, keeping each line's other bytes.
func rechain(t *testing.T, lines []string) []string {
	t.Helper()
	var prev [32]byte
	for i, line := range lines {
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			ev.Prev = hex.EncodeToString(prev[:])
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		lines[i] = string(b)
		prev = sha256.Sum256(b)
	}
	return lines
}

func TestVerifyIntact(t *testing.T) {
	dir, _ := tenEvents(t)
	rep, err := Verify(dir, testKey)
	if err != nil || rep.Events != 14 || rep.Files != 1 || len(rep.KeyIDs) != 1 || rep.KeyIDs[0] != "k1" {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	if _, err := Verify(t.TempDir(), testKey); err == nil {
		t.Fatal("Verify of an empty directory succeeded")
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	edit := func(ls []string) []string {
		ls[7] = strings.Replace(ls[7], `"alice"`, `"mallory"`, 1)
		return ls
	}
	tests := []struct {
		name   string
		tamper func(ls []string) []string
		key    []byte
		line   int
		seq    uint64
		kind   ProblemKind
		detail string
	}{
		{"edited middle line", edit, testKey, 9, 9, ProblemEdited, "line 8 (seq 8) was edited"},
		{"edited middle line, no key", edit, nil, 9, 9, ProblemEdited, "line 8 (seq 8) was edited"},
		{"deleted line", func(ls []string) []string {
			return append(ls[:7:7], ls[8:]...)
		}, testKey, 8, 9, ProblemRemoved, "seq 8 to 8 are missing"},
		{"swapped lines", func(ls []string) []string {
			ls[6], ls[7] = ls[7], ls[6]
			return ls
		}, testKey, 7, 8, ProblemReordered, "seq 7 was expected here and is at line 8"},
		{"edit with the chain recomputed", func(ls []string) []string {
			return rechain(t, edit(ls))
		}, testKey, 11, 11, ProblemBadCheckpoint, "events before it were rewritten"},
		{"checkpoint removed, chain and seqs recomputed", func(ls []string) []string {
			ls = append(ls[:5:5], ls[6:]...)
			for i := range ls {
				var ev Event
				json.Unmarshal([]byte(ls[i]), &ev)
				ev.Seq = uint64(i + 1)
				b, _ := json.Marshal(ev)
				ls[i] = string(b)
			}
			return rechain(t, ls)
		}, testKey, 6, 6, ProblemMissingCheckpoint, "a checkpoint was removed"},
		{"wrong key", func(ls []string) []string { return ls }, []byte("another key, 16+ bytes"), 1, 1, ProblemBadCheckpoint, "key is wrong"},
		{"garbage line", func(ls []string) []string {
			ls[3] = "not json"
			return ls
		}, testKey, 4, 0, ProblemMalformed, "not a JSON event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, path := tenEvents(t)
			rewriteLines(t, path, tt.tamper)
			rep, err := Verify(dir, tt.key)
			var p *Problem
			if !errors.As(err, &p) || rep.Problem != p {
				t.Fatalf("Verify = %+v, %v; want a *Problem", rep, err)
			}
			if p.File != filepath.Base(path) || p.Line != tt.line || p.Seq != tt.seq || p.Kind != tt.kind || !strings.Contains(p.Detail, tt.detail) {
				t.Fatalf("problem = %+v\nwant line %d seq %d %s %q", p, tt.line, tt.seq, tt.kind, tt.detail)
			}
		})
	}
}

// rotated writes a log of several files and returns their paths.
func rotated(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	cfg := testConfig(dir, newClock())
	cfg.MaxFileSize = 1500
	l := mustOpen(t, cfg)
	appendN(t, l, 40)
	l.Close()
	files := logFiles(t, dir)
	if len(files) < 4 {
		t.Fatalf("%d files", len(files))
	}
	return dir, files
}

func TestVerifyDetectsFileTampering(t *testing.T) {
	t.Run("middle file deleted", func(t *testing.T) {
		dir, files := rotated(t)
		os.Remove(files[1])
		_, err := Verify(dir, testKey)
		var p *Problem
		if !errors.As(err, &p) || p.File != filepath.Base(files[2]) || p.Line != 1 || p.Kind != ProblemMissingFile || !strings.Contains(p.Detail, filepath.Base(files[1])) {
			t.Fatalf("Verify = %v", err)
		}
	})
	t.Run("first file deleted", func(t *testing.T) {
		dir, files := rotated(t)
		os.Remove(files[0])
		_, err := Verify(dir, testKey)
		var p *Problem
		if !errors.As(err, &p) || p.File != filepath.Base(files[1]) || p.Kind != ProblemMissingFile {
			t.Fatalf("Verify = %v", err)
		}
	})
	t.Run("last lines of a file deleted", func(t *testing.T) {
		dir, files := rotated(t)
		rewriteLines(t, files[1], func(ls []string) []string { return ls[:len(ls)-2] })
		_, err := Verify(dir, testKey)
		var p *Problem
		// Either the file no longer ends with its rotation checkpoint, or
		// (if an interval checkpoint is now last) the next file finds the gap.
		if !errors.As(err, &p) || !(p.File == filepath.Base(files[1]) && p.Kind == ProblemMissingCheckpoint ||
			p.File == filepath.Base(files[2]) && p.Kind == ProblemRemoved && strings.Contains(p.Detail, "at the end of "+filepath.Base(files[1]))) {
			t.Fatalf("Verify = %v", err)
		}
	})
	t.Run("files swapped by renaming", func(t *testing.T) {
		dir, files := rotated(t)
		tmp := files[1] + ".tmp"
		os.Rename(files[1], tmp)
		os.Rename(files[2], files[1])
		os.Rename(tmp, files[2])
		_, err := Verify(dir, testKey)
		var p *Problem
		if !errors.As(err, &p) || p.File != filepath.Base(files[1]) || p.Line != 1 {
			t.Fatalf("Verify = %v", err)
		}
	})
}

func TestReadFilter(t *testing.T) {
	dir, _ := tenEvents(t)
	var n int
	err := Read(dir, func(ev Event) bool { return ev.Type == TypeCheckpoint }, func(ev Event) error { n++; return nil })
	if err != nil || n != 3 {
		t.Fatalf("Read = %d, %v; want 3 checkpoints", n, err)
	}
	stop := errors.New("stop")
	if err := Read(dir, nil, func(Event) error { return stop }); err != stop {
		t.Fatalf("Read = %v, want fn's error", err)
	}
}
