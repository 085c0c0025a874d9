package audit

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ProblemKind classifies what Verify found wrong.
type ProblemKind string

// Problem kinds.
const (
	ProblemMalformed         ProblemKind = "malformed"          // a line is not an event
	ProblemEdited            ProblemKind = "edited"             // Prev does not hash the line before
	ProblemRemoved           ProblemKind = "removed"            // a gap in seq
	ProblemReordered         ProblemKind = "reordered"          // seq out of order
	ProblemBadCheckpoint     ProblemKind = "bad_checkpoint"     // HMAC mismatch
	ProblemMissingCheckpoint ProblemKind = "missing_checkpoint" // too long without an HMAC
	ProblemMissingFile       ProblemKind = "missing_file"       // a whole file is gone
	ProblemBadFile           ProblemKind = "bad_file"           // name or file_start wrong
)

// Problem is the first thing Verify found wrong, with its location. Line
// numbers count from 1.
type Problem struct {
	File   string // base name
	Line   int
	Seq    uint64 // seq of the line, 0 if unreadable
	Kind   ProblemKind
	Detail string
}

func (p *Problem) Error() string {
	return fmt.Sprintf("%s line %d (seq %d): %s: %s", p.File, p.Line, p.Seq, p.Kind, p.Detail)
}

// Report is what Verify checked.
type Report struct {
	Files       int
	Events      uint64 // lines checked, checkpoints included
	LastSeq     uint64
	Checkpoints int  // HMAC'd events: checkpoint and file_start
	MACsChecked bool // a key was given and every HMAC was checked
	KeyIDs      []string
	// Unsigned counts the events after the last HMAC'd event, which a
	// rewrite without the key could change undetected.
	Unsigned int
	// TornTail is set when the newest file ends in a line without its
	// newline: a write torn by a crash, which Open truncates away.
	TornTail bool
	Problem  *Problem // the first problem, nil when intact
}

// Verify checks the log in dir: the hash chain across lines and files, seq
// continuity, file names, and, when key is not nil, every HMAC. It stops at
// the first problem, which it returns both in Report.Problem and as the
// error (a *Problem); other errors are I/O errors.
func Verify(dir string, key []byte) (Report, error) {
	rep := Report{MACsChecked: key != nil}
	files, err := listFiles(dir)
	if err != nil {
		return rep, err
	}
	if len(files) == 0 {
		return rep.fail(&Problem{File: dir, Kind: ProblemMissingFile, Detail: "no audit files in the directory"})
	}
	v := verifier{dir: dir, key: key, rep: &rep, expSeq: 1}
	for i, fi := range files {
		if err := v.file(fi, i == len(files)-1); err != nil {
			return rep, err
		}
		if rep.Problem != nil {
			return rep, rep.Problem
		}
	}
	rep.Unsigned = v.sinceMAC
	return rep, nil
}

func (r *Report) fail(p *Problem) (Report, error) {
	r.Problem = p
	return *r, p
}

type verifier struct {
	dir      string
	key      []byte
	rep      *Report
	expSeq   uint64
	prevHash [sha256.Size]byte
	prevFile string
	prevLine int // line count of prevFile
	sinceMAC int
	every    int
}

// file checks one file; a problem is left in v.rep.Problem.
func (v *verifier) file(fi fileInfo, last bool) error {
	f, err := os.Open(filepath.Join(v.dir, fi.name))
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	v.rep.Files++
	r := bufio.NewReaderSize(f, 64<<10)
	bad := func(line int, seq uint64, kind ProblemKind, format string, args ...any) error {
		v.rep.Problem = &Problem{File: fi.name, Line: line, Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)}
		return nil
	}
	lineNo, lastType := 0, ""
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			if len(line) == 0 {
				break
			}
			if last {
				v.rep.TornTail = true
				break
			}
			return bad(lineNo+1, 0, ProblemMalformed, "line without newline at the end of a file that is not the newest")
		}
		if err != nil {
			return fmt.Errorf("audit: read %s: %w", fi.name, err)
		}
		lineNo++
		line = line[:len(line)-1]
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return bad(lineNo, 0, ProblemMalformed, "not a JSON event: %v", err)
		}
		prev, ok := parsePrev(ev.Prev)
		if !ok {
			return bad(lineNo, ev.Seq, ProblemMalformed, "prev is not a hex SHA-256")
		}
		if ev.Seq != v.expSeq {
			switch {
			case lineNo == 1 && ev.Seq > v.expSeq && v.prevFile == "":
				return bad(lineNo, ev.Seq, ProblemMissingFile, "the log starts at seq %d, not 1: older files are missing", ev.Seq)
			case lineNo == 1 && ev.Seq > v.expSeq:
				var d macData
				if json.Unmarshal(ev.Data, &d) == nil && d.PrevFile == v.prevFile {
					return bad(lineNo, ev.Seq, ProblemRemoved, "seq %d to %d, at the end of %s, are missing", v.expSeq, ev.Seq-1, v.prevFile)
				}
				return bad(lineNo, ev.Seq, ProblemMissingFile, "seq %d to %d are missing: the file after %s (file_start names %q) is gone", v.expSeq, ev.Seq-1, v.prevFile, d.PrevFile)
			case ev.Seq < v.expSeq:
				return bad(lineNo, ev.Seq, ProblemReordered, "seq %d comes after seq %d", ev.Seq, v.expSeq-1)
			}
			if at, found := findSeq(r, lineNo, v.expSeq); found {
				return bad(lineNo, ev.Seq, ProblemReordered, "seq %d was expected here and is at line %d", v.expSeq, at)
			}
			return bad(lineNo, ev.Seq, ProblemRemoved, "seq %d to %d are missing", v.expSeq, ev.Seq-1)
		}
		switch {
		case lineNo == 1 && ev.Type != TypeFileStart:
			return bad(lineNo, ev.Seq, ProblemBadFile, "first event is %q, not file_start", ev.Type)
		case lineNo == 1 && ev.Seq != fi.seq:
			return bad(lineNo, ev.Seq, ProblemBadFile, "file name says seq %d: the file was renamed", fi.seq)
		case lineNo > 1 && ev.Type == TypeFileStart:
			return bad(lineNo, ev.Seq, ProblemBadFile, "file_start in the middle of a file")
		}
		if prev != v.prevHash {
			if lineNo == 1 {
				return bad(lineNo, ev.Seq, ProblemEdited, "prev does not match the last line of %s (line %d): that line was edited, or this file replaced", v.prevFile, v.prevLine)
			}
			return bad(lineNo, ev.Seq, ProblemEdited, "prev does not match line %d: line %d (seq %d) was edited", lineNo-1, lineNo-1, ev.Seq-1)
		}
		if isMACType(ev.Type) {
			var d macData
			if err := json.Unmarshal(ev.Data, &d); err != nil || d.Every <= 0 {
				return bad(lineNo, ev.Seq, ProblemMalformed, "%s without valid data", ev.Type)
			}
			if v.key != nil {
				want := computeMAC(v.key, ev.Type, ev.Seq, prev, d.Every)
				got, err := hex.DecodeString(d.MAC)
				if err != nil || !hmac.Equal(got, want) {
					return bad(lineNo, ev.Seq, ProblemBadCheckpoint, "HMAC (key id %q) does not match: the events before it were rewritten, or the key is wrong", d.KeyID)
				}
			}
			v.rep.addKeyID(d.KeyID)
			v.rep.Checkpoints++
			v.sinceMAC, v.every = 0, d.Every
		} else {
			v.sinceMAC++
			if v.every > 0 && v.sinceMAC > v.every {
				return bad(lineNo, ev.Seq, ProblemMissingCheckpoint, "%d events since the last checkpoint, interval %d: a checkpoint was removed", v.sinceMAC, v.every)
			}
		}
		v.prevHash = sha256.Sum256(line)
		v.expSeq = ev.Seq + 1
		v.rep.Events++
		v.rep.LastSeq = ev.Seq
		lastType = ev.Type
	}
	if lineNo == 0 {
		if last {
			v.rep.TornTail = true // created, crashed before file_start
			return nil
		}
		return bad(0, 0, ProblemBadFile, "empty file")
	}
	if !last && lastType != TypeCheckpoint {
		return bad(lineNo, v.expSeq-1, ProblemMissingCheckpoint, "the file does not end with its rotation checkpoint: events at its end were removed")
	}
	v.prevFile, v.prevLine = fi.name, lineNo
	return nil
}

func (r *Report) addKeyID(id string) {
	for _, k := range r.KeyIDs {
		if k == id {
			return
		}
	}
	r.KeyIDs = append(r.KeyIDs, id)
}

// findSeq reads on through r for the line holding seq.
func findSeq(r *bufio.Reader, lineNo int, seq uint64) (int, bool) {
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return 0, false
		}
		lineNo++
		var ev struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(line, &ev) == nil && ev.Seq == seq {
			return lineNo, true
		}
	}
}

// Read calls fn, in seq order, for every event of the log in dir that filter
// accepts (all when filter is nil). It does not verify the chain; a torn
// final line is skipped. An error from fn stops Read and is returned.
func Read(dir string, filter func(Event) bool, fn func(Event) error) error {
	files, err := listFiles(dir)
	if err != nil {
		return err
	}
	for _, fi := range files {
		if err := readFile(filepath.Join(dir, fi.name), filter, fn); err != nil {
			return err
		}
	}
	return nil
}

func readFile(path string, filter func(Event) bool, fn func(Event) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for lineNo := 1; ; lineNo++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: read %s: %w", path, err)
		}
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("audit: %s line %d: not a JSON event: %w", filepath.Base(path), lineNo, err)
		}
		if filter == nil || filter(ev) {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
}
