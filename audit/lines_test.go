package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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
