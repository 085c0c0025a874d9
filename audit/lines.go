package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// Line is one line of the log as it was written: its seq and its bytes,
// without the newline.
type Line struct {
	Seq   uint64
	Bytes []byte
}

// ReadLines returns up to max lines of the log in dir, in seq order,
// starting with seq from; fewer (or none) when the log ends sooner. The
// files before the one holding from are skipped by their names. A torn final
// line is left out. It does not verify the chain.
func ReadLines(dir string, from uint64, max int) ([]Line, error) {
	files, err := listFiles(dir)
	if err != nil {
		return nil, err
	}
	start := 0
	for i, fi := range files {
		if fi.seq <= from {
			start = i
		}
	}
	var out []Line
	for _, fi := range files[start:] {
		if len(out) >= max {
			break
		}
		if out, err = readLines(filepath.Join(dir, fi.name), from, max, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func readLines(path string, from uint64, max int, out []Line) ([]Line, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for lineNo := 1; len(out) < max; lineNo++ {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return out, nil // the end, or a torn line
		}
		if err != nil {
			return nil, fmt.Errorf("audit: read %s: %w", path, err)
		}
		line = line[:len(line)-1]
		seq, ok := lineSeq(line)
		if !ok {
			return nil, fmt.Errorf("audit: %s line %d: not a JSON event", filepath.Base(path), lineNo)
		}
		if seq >= from {
			out = append(out, Line{Seq: seq, Bytes: line})
		}
	}
	return out, nil
}

// lineSeq reads the seq of a line, which encodeLine writes first.
func lineSeq(line []byte) (uint64, bool) {
	if rest, ok := bytes.CutPrefix(line, []byte(`{"seq":`)); ok {
		if i := bytes.IndexByte(rest, ','); i > 0 {
			if n, err := strconv.ParseUint(string(rest[:i]), 10, 64); err == nil {
				return n, true
			}
		}
	}
	var ev struct {
		Seq *uint64 `json:"seq"`
	}
	if json.Unmarshal(line, &ev) != nil || ev.Seq == nil {
		return 0, false
	}
	return *ev.Seq, true
}
