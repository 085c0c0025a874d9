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
// starting with seq from (or with the first line after it that the log
// still has); fewer, or none, when the log ends sooner. The files before
// the one holding from are skipped by their names. A torn final line is
// left out. It does not verify the chain.
func ReadLines(dir string, from uint64, max int) ([]Line, error) {
	return NewLineReader(dir).Read(from, max)
}

// A LineReader reads the lines of a log, as ReadLines does, remembering
// where it stopped: reading on from there continues from that offset
// instead of scanning the file again. It is not safe for concurrent use.
type LineReader struct {
	dir  string
	file string // base name of the file being read; "" to locate
	off  int64  // offset of the next line in file
	next uint64 // seq of the line at off
}

// NewLineReader returns a LineReader of the log in dir.
func NewLineReader(dir string) *LineReader { return &LineReader{dir: dir} }

// Read returns up to max lines from seq from on, as ReadLines.
func (r *LineReader) Read(from uint64, max int) ([]Line, error) {
	if r.file == "" || from != r.next {
		if err := r.locate(from); err != nil || r.file == "" {
			return nil, err
		}
	}
	var out []Line
	for len(out) < max {
		var err error
		out, err = r.readFile(from, max, out)
		if errors.Is(err, os.ErrNotExist) {
			r.file = "" // removed: locate again next time
			break
		}
		if err != nil {
			return nil, err
		}
		if len(out) >= max {
			break
		}
		// The end of the file: read on in the next one, if it exists.
		files, err := listFiles(r.dir)
		if err != nil {
			return nil, err
		}
		i := 0
		for i < len(files) && files[i].name <= r.file {
			i++
		}
		if i == len(files) {
			break
		}
		r.file, r.off = files[i].name, 0
	}
	if len(out) > 0 {
		r.next = out[len(out)-1].Seq + 1
	} else {
		r.next = from
	}
	return out, nil
}

// locate starts r at the last file whose first seq is at most from, or the
// first file.
func (r *LineReader) locate(from uint64) error {
	files, err := listFiles(r.dir)
	if err != nil {
		return err
	}
	r.file, r.off = "", 0
	for i, fi := range files {
		if i == 0 || fi.seq <= from {
			r.file = fi.name
		}
	}
	return nil
}

// readFile appends to out the complete lines of r.file from r.off on
// whose seq is from or later, up to max in all, and moves r.off past the
// lines it consumed.
func (r *LineReader) readFile(from uint64, max int, out []Line) ([]Line, error) {
	path := filepath.Join(r.dir, r.file)
	f, err := os.Open(path)
	if err != nil {
		return out, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(r.off, io.SeekStart); err != nil {
		return out, fmt.Errorf("audit: %w", err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	for len(out) < max {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return out, nil // the end, or a torn line: not consumed
		}
		if err != nil {
			return out, fmt.Errorf("audit: read %s: %w", path, err)
		}
		seq, ok := lineSeq(line[:len(line)-1])
		if !ok {
			return out, fmt.Errorf("audit: %s at offset %d: not a JSON event", r.file, r.off)
		}
		r.off += int64(len(line))
		if seq >= from {
			out = append(out, Line{Seq: seq, Bytes: line[:len(line)-1]})
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
