package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestTapAndReadLines: the tap sees every line the log writes, in seq
// order and byte for byte as in the files, checkpoints and file starts
// included; ReadLines reads the same lines back from any seq, across
// rotated files and a restart, and leaves out a torn final line.
func TestTapAndReadLines(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	var tapped []Line
	cfg := testConfig(dir, clock)
	cfg.CheckpointEvery = 4
	cfg.MaxFileSize = 600
	cfg.Tap = func(seq uint64, line []byte) { tapped = append(tapped, Line{seq, line}) }
	l := mustOpen(t, cfg)
	for range 20 {
		if _, err := l.Append(context.Background(), Event{Type: TypeStatement, Employee: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, cfg) // a restart writes a resume checkpoint
	if got := l.LastSeq(); got != uint64(len(tapped)) {
		t.Fatalf("LastSeq %d; %d lines tapped", got, len(tapped))
	}
	l.Close()
	files, _ := listFiles(dir)
	if len(files) < 3 {
		t.Fatalf("%d files; want rotations", len(files))
	}
	all, err := ReadLines(dir, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(tapped) {
		t.Fatalf("ReadLines: %d lines; tapped %d", len(all), len(tapped))
	}
	for i := range all {
		if all[i].Seq != uint64(i+1) || tapped[i].Seq != all[i].Seq || !bytes.Equal(tapped[i].Bytes, all[i].Bytes) {
			t.Fatalf("line %d: tapped %d %s, read %d %s", i, tapped[i].Seq, tapped[i].Bytes, all[i].Seq, all[i].Bytes)
		}
	}
	for _, from := range []uint64{2, 9, 17, uint64(len(all))} {
		got, err := ReadLines(dir, from, 3)
		if err != nil || len(got) == 0 || got[0].Seq != from || len(got) > 3 {
			t.Errorf("ReadLines(%d, 3): %d lines from %v, %v", from, len(got), got, err)
		}
	}
	if got, _ := ReadLines(dir, uint64(len(all))+1, 10); len(got) != 0 {
		t.Errorf("ReadLines past the end: %d lines", len(got))
	}

	files, _ = listFiles(dir)
	f, err := os.OpenFile(filepath.Join(dir, files[len(files)-1].name), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":999,"time"`)
	f.Close()
	if got, err := ReadLines(dir, 1, 1000); err != nil || len(got) != len(all) {
		t.Errorf("with a torn line: %d lines, %v; want %d", len(got), err, len(all))
	}
}

// TestLineReaderReadsOn: a LineReader read in small steps gives the same
// lines as one ReadLines, across rotations, and picks up what the log
// writes after it reached the end, a line completed after it was torn
// included.
func TestLineReaderReadsOn(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir, newClock())
	cfg.MaxFileSize = 500
	l := mustOpen(t, cfg)
	appendN(t, l, 15)
	r := NewLineReader(dir)
	var got []Line
	for next := uint64(1); ; {
		lines, err := r.Read(next, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) == 0 {
			break
		}
		got = append(got, lines...)
		next = lines[len(lines)-1].Seq + 1
	}
	appendN(t, l, 5)
	more, err := r.Read(got[len(got)-1].Seq+1, 100)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, more...)
	l.Close()
	want, err := ReadLines(dir, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want)-1 { // the close checkpoint came after the last Read
		t.Fatalf("read on: %d lines; ReadLines: %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Seq != want[i].Seq || !bytes.Equal(got[i].Bytes, want[i].Bytes) {
			t.Fatalf("line %d: %d %s; want %d %s", i, got[i].Seq, got[i].Bytes, want[i].Seq, want[i].Bytes)
		}
	}

	files, _ := listFiles(dir)
	path := filepath.Join(dir, files[len(files)-1].name)
	last := want[len(want)-1]
	next := last.Seq + 1
	r.Read(last.Seq, 10)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	torn := []byte(`{"seq":` + strconv.FormatUint(next, 10) + `,"time":"2026-12-06T00:00:00Z","type":"statement","prev":"x"}`)
	f.Write(torn[:20])
	if lines, err := r.Read(next, 10); err != nil || len(lines) != 0 {
		t.Fatalf("a torn line: %v, %v; want nothing", lines, err)
	}
	f.Write(append(torn[20:], '\n'))
	if lines, err := r.Read(next, 10); err != nil || len(lines) != 1 || !bytes.Equal(lines[0].Bytes, torn) {
		t.Fatalf("the line completed: %v, %v", lines, err)
	}
}
