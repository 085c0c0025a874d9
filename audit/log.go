package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgwarden/pgwarden/internal/crash"
)

// SyncPolicy says when Append's lines reach stable storage.
type SyncPolicy int

const (
	// SyncAlways returns from Append after fsync, sharing one fsync among
	// concurrent Appends (group commit). The default.
	SyncAlways SyncPolicy = iota
	// SyncInterval returns after write(2) and fsyncs at least every
	// Config.SyncInterval.
	SyncInterval
	// SyncNever fsyncs only at rotation and Close.
	SyncNever
)

// String returns the policy's name as ParseSyncPolicy accepts it.
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNever:
		return "never"
	}
	return "SyncPolicy(" + strconv.Itoa(int(p)) + ")"
}

// ParseSyncPolicy parses "always", "interval" or "never".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	for _, p := range []SyncPolicy{SyncAlways, SyncInterval, SyncNever} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("audit: sync policy %q: want always, interval or never", s)
}

// Defaults of Config.
const (
	DefaultCheckpointEvery = 1000
	DefaultMaxFileSize     = 64 << 20
	DefaultMaxFileAge      = 24 * time.Hour
	DefaultSyncInterval    = 100 * time.Millisecond
	DefaultProbeInterval   = time.Second
	DefaultProbeMinFree    = 64 << 10
	// MinKeyLen is the shortest HMAC key Config accepts, in bytes.
	MinKeyLen = 16
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: log closed")

// Config configures a Log. Zero fields take the defaults above.
type Config struct {
	// Dir holds the log files; created with mode 0700 if missing.
	Dir string
	// Key is the HMAC-SHA256 key of checkpoints, at least MinKeyLen bytes.
	Key []byte
	// KeyID names Key in the checkpoints, so that keys can be rotated
	// (default "default").
	KeyID string
	// CheckpointEvery is the number of events between checkpoints.
	CheckpointEvery int
	// MaxFileSize and MaxFileAge rotate the current file once it reaches
	// either; the age is checked on Append.
	MaxFileSize int64
	MaxFileAge  time.Duration
	// Sync is the durability policy; SyncInterval its period.
	Sync         SyncPolicy
	SyncInterval time.Duration
	// ProbeInterval is how often a failed log tries to resume (default
	// DefaultProbeInterval). ProbeMinFree is the free space, in bytes, the
	// file system must have for it to try (default DefaultProbeMinFree):
	// a disk that has just room for the probe's checkpoint would fail
	// again at the next event.
	ProbeInterval time.Duration
	ProbeMinFree  int64
	// OnChange, if set, is told each time the log becomes unavailable (a
	// write or fsync failed: up false, err why) and each time it resumes
	// (up true), once each way and in that order, from a goroutine of the
	// Log's own: serve alerts security with it.
	OnChange func(up bool, err error)
	// Tap, if set, is given every line the log writes (its seq and its
	// bytes without the newline, which the callee may keep), in seq order,
	// once written and before its fsync, with the log's lock held: it must
	// not block. serve streams the trail to a SIEM with it.
	Tap func(seq uint64, line []byte)
	// Now is the clock of event times and file ages (default time.Now).
	Now func() time.Time
	// Logger receives the log's own messages (default slog.Default()).
	Logger *slog.Logger

	// openFile opens log files; tests replace it to inject failures and
	// count fsyncs.
	openFile func(name string, flag int, perm os.FileMode) (file, error)
	// probeTick, if set, drives the probes in place of a ticker.
	probeTick <-chan time.Time
	// freeSpace returns the bytes free for the log in dir.
	freeSpace func(dir string) (int64, error)
}

func statfsFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// file is what a Log needs of an *os.File.
type file interface {
	io.Writer
	Sync() error
	Close() error
}

func openOSFile(name string, flag int, perm os.FileMode) (file, error) {
	return os.OpenFile(name, flag, perm)
}

// CheckAndSetDefaults validates c and fills its zero fields.
func (c *Config) CheckAndSetDefaults() error {
	if c.Dir == "" {
		return errors.New("audit: Config.Dir is required")
	}
	if len(c.Key) < MinKeyLen {
		return fmt.Errorf("audit: Config.Key must be at least %d bytes", MinKeyLen)
	}
	if c.KeyID == "" {
		c.KeyID = "default"
	}
	if c.CheckpointEvery < 0 || c.MaxFileSize < 0 || c.MaxFileAge < 0 || c.SyncInterval < 0 || c.ProbeInterval < 0 || c.ProbeMinFree < 0 {
		return errors.New("audit: Config.CheckpointEvery, MaxFileSize, MaxFileAge, SyncInterval, ProbeInterval and ProbeMinFree must not be negative")
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeMinFree == 0 {
		c.ProbeMinFree = DefaultProbeMinFree
	}
	if c.freeSpace == nil {
		c.freeSpace = statfsFree
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = DefaultCheckpointEvery
	}
	if c.MaxFileSize == 0 {
		c.MaxFileSize = DefaultMaxFileSize
	}
	if c.MaxFileAge == 0 {
		c.MaxFileAge = DefaultMaxFileAge
	}
	switch c.Sync {
	case SyncAlways, SyncInterval, SyncNever:
	default:
		return fmt.Errorf("audit: unknown %v", c.Sync)
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.openFile == nil {
		c.openFile = openOSFile
	}
	return nil
}

// Stats counts a Log's work since Open.
type Stats struct {
	Lines uint64 // lines written, checkpoints and file_start included
	Syncs uint64 // fsyncs of log files
	Files int    // files created
}

// Log is an open audit log. It is safe for concurrent use.
type Log struct {
	cfg  Config
	stop chan struct{} // ends the SyncInterval goroutine
	done chan struct{}
	// probeStop ends the goroutine that probes a failed log and reports
	// changes; kick wakes it.
	probeStop, probeDone chan struct{}
	kick                 chan struct{}

	mu       sync.Mutex
	cond     sync.Cond // on mu: a sync ended or the log failed
	f        file
	name     string // base name of the current file
	size     int64
	opened   time.Time // creation time of the current file
	seq      uint64    // seq of the last line written
	prev     [sha256.Size]byte
	sinceMAC int    // events written since the last HMAC'd event
	synced   uint64 // seq of the last line known to be fsynced
	syncing  bool   // an fsync runs with mu released
	err      error  // why the log is unavailable, until a probe resumes it
	down     bool   // unavailable since the last change reported
	changes  []change
	closed   bool
	stats    Stats
}

// change is a transition for Config.OnChange.
type change struct {
	up  bool
	err error
}

// Open opens the log in cfg.Dir, creating it or resuming where it ended.
func Open(cfg Config) (*Log, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := &Log{cfg: cfg}
	l.cond.L = &l.mu
	files, err := listFiles(cfg.Dir)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.resume(files, "resume"); err != nil {
		if l.f != nil {
			l.f.Close()
		}
		return nil, err
	}
	if err := l.f.Sync(); err != nil {
		l.f.Close()
		return nil, fmt.Errorf("audit: fsync %s: %w", l.name, err)
	}
	l.stats.Syncs++
	l.synced = l.seq
	if cfg.Sync == SyncInterval {
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		stop := l.stop
		crash.Loop(cfg.Logger, "audit_sync", l.done, func() { l.syncLoop(stop) })
	}
	l.probeStop, l.probeDone, l.kick = make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	probeStop := l.probeStop
	crash.Loop(cfg.Logger, "audit_probe", l.probeDone, func() { l.probeLoop(probeStop) })
	return l, nil
}

// resume continues the newest file, or starts the first one.
func (l *Log) resume(files []fileInfo, reason string) error {
	for len(files) > 0 {
		last := files[len(files)-1]
		path := filepath.Join(l.cfg.Dir, last.name)
		lines, complete, torn, err := readTail(path)
		if err != nil {
			return err
		}
		if torn > 0 {
			if err := os.Truncate(path, complete); err != nil {
				return fmt.Errorf("audit: truncate torn tail: %w", err)
			}
			l.cfg.Logger.Warn("audit_torn_tail_truncated", "file", last.name, "bytes", torn)
		}
		if len(lines) == 0 {
			// Created, but the crash came before its file_start was written.
			if len(files) == 1 && last.seq != 1 {
				return fmt.Errorf("audit: %s is empty and no older file continues the chain at seq %d", last.name, last.seq-1)
			}
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			l.cfg.Logger.Warn("audit_empty_file_removed", "file", last.name)
			files = files[:len(files)-1]
			continue
		}
		tail := lines[len(lines)-1]
		var ev Event
		if err := json.Unmarshal(tail, &ev); err != nil {
			return fmt.Errorf("audit: %s: last line is corrupt (%v); run pgwarden audit verify", last.name, err)
		}
		want := ""
		if len(lines) == 2 {
			h := sha256.Sum256(lines[0])
			want = hex.EncodeToString(h[:])
		} else if ev.Type != TypeFileStart {
			return fmt.Errorf("audit: %s: its only line is a %q event, not file_start; run pgwarden audit verify", last.name, ev.Type)
		}
		if want != "" && ev.Prev != want || ev.Seq < last.seq {
			return fmt.Errorf("audit: %s: last line (seq %d) does not continue the chain; run pgwarden audit verify", last.name, ev.Seq)
		}
		f, err := l.cfg.openFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		l.f, l.name, l.size, l.opened = f, last.name, complete, last.created
		l.seq, l.prev = ev.Seq, sha256.Sum256(tail)
		l.cfg.Logger.Info("audit_log_resumed", "file", last.name, "seq", ev.Seq)
		// The HMAC interval may have run out at a crash, or changed with
		// the configuration: restart it, which also marks the restart.
		return l.writeMAC(TypeCheckpoint, reason, "")
	}
	l.prev = zeroPrev
	return l.createFile("")
}

// Append writes ev as the next event and returns its seq once it is as
// durable as Config.Sync says. Seq, Time and Prev are filled in. ctx is only
// checked before writing: once written, an event is never withdrawn.
func (l *Log) Append(ctx context.Context, ev Event) (uint64, error) {
	return l.append(ctx, ev, l.cfg.Sync == SyncAlways)
}

// AppendWritten is Append returning once the line is written (write(2)),
// whatever Config.Sync says: it survives the process, not yet the machine.
// The next fsync (an Append's under SyncAlways) covers it. The proxy
// records a statement about to run this way, so that a log that cannot
// write stops the statement without an fsync more per statement.
func (l *Log) AppendWritten(ctx context.Context, ev Event) (uint64, error) {
	return l.append(ctx, ev, false)
}

func (l *Log) append(ctx context.Context, ev Event, wait bool) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if ev.Type == "" || isMACType(ev.Type) {
		return 0, fmt.Errorf("audit: cannot append an event of type %q", ev.Type)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.closed {
			return 0, ErrClosed
		}
		if l.err != nil {
			return 0, l.err
		}
		if l.size < l.cfg.MaxFileSize && l.cfg.Now().Sub(l.opened) < l.cfg.MaxFileAge {
			break
		}
		if l.syncing {
			l.cond.Wait() // the fsync in flight uses the current file
			continue
		}
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	if err := l.writeLine(&ev); err != nil {
		return 0, err
	}
	seq := ev.Seq
	if l.sinceMAC >= l.cfg.CheckpointEvery {
		if err := l.writeMAC(TypeCheckpoint, "interval", ""); err != nil {
			return 0, err
		}
	}
	if wait {
		if err := l.waitSynced(l.seq); err != nil {
			return 0, err
		}
	}
	return seq, nil
}

// waitSynced returns once line seq is fsynced. Whoever finds no fsync in
// flight runs one for every line written so far; the others wait for it.
func (l *Log) waitSynced(seq uint64) error {
	for l.synced < seq {
		if l.err != nil {
			return l.err
		}
		if l.syncing {
			l.cond.Wait()
			continue
		}
		l.syncFile()
	}
	return nil
}

// syncFile fsyncs the current file with mu released.
func (l *Log) syncFile() {
	l.syncing = true
	f, target := l.f, l.seq
	l.mu.Unlock()
	err := f.Sync()
	l.mu.Lock()
	l.syncing = false
	l.stats.Syncs++
	if err != nil {
		l.fail(fmt.Errorf("fsync %s: %w", l.name, err))
	} else if target > l.synced {
		l.synced = target
	}
	l.cond.Broadcast()
}

func (l *Log) syncLoop(stop <-chan struct{}) {
	t := time.NewTicker(l.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		l.syncIfDue()
	}
}

func (l *Log) syncIfDue() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed && l.err == nil && !l.syncing && l.synced < l.seq {
		l.syncFile()
	}
}

// rotate closes the current file with a checkpoint and starts the next.
func (l *Log) rotate() error {
	if err := l.writeMAC(TypeCheckpoint, "rotate", ""); err != nil {
		return err
	}
	if err := l.closeFile(); err != nil {
		return err
	}
	return l.createFile(l.name)
}

// closeFile fsyncs and closes the current file; no fsync may be in flight.
func (l *Log) closeFile() error {
	if err := l.f.Sync(); err != nil {
		return l.fail(fmt.Errorf("fsync %s: %w", l.name, err))
	}
	l.stats.Syncs++
	l.synced = l.seq
	l.cond.Broadcast()
	if err := l.f.Close(); err != nil {
		return l.fail(fmt.Errorf("close %s: %w", l.name, err))
	}
	return nil
}

// fileTimeLayout is the time in file names.
const fileTimeLayout = "20060102T150405Z"

func fileName(seq uint64, t time.Time) string {
	return fmt.Sprintf("audit-%020d-%s.jsonl", seq, t.UTC().Format(fileTimeLayout))
}

// createFile starts a file with its file_start event.
func (l *Log) createFile(prevFile string) error {
	now := l.cfg.Now().UTC()
	name := fileName(l.seq+1, now)
	f, err := l.cfg.openFile(filepath.Join(l.cfg.Dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return l.fail(err)
	}
	l.f, l.name, l.size, l.opened = f, name, 0, now
	l.stats.Files++
	if err := syncDir(l.cfg.Dir); err != nil {
		return l.fail(err)
	}
	return l.writeMAC(TypeFileStart, "", prevFile)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeMAC writes a checkpoint or file_start event.
func (l *Log) writeMAC(typ, reason, prevFile string) error {
	mac := computeMAC(l.cfg.Key, typ, l.seq+1, l.prev, l.cfg.CheckpointEvery)
	data, err := json.Marshal(macData{
		KeyID:    l.cfg.KeyID,
		MAC:      hex.EncodeToString(mac),
		Every:    l.cfg.CheckpointEvery,
		Reason:   reason,
		PrevFile: prevFile,
	})
	if err != nil {
		return l.fail(err)
	}
	return l.writeLine(&Event{Type: typ, Data: data})
}

// writeLine fills ev's Seq, Time and Prev and writes it with one write(2).
// The line is encoding/json of Event, HTML escaping off; its hash is over the
// bytes as written, so readers never need to re-encode.
func (l *Log) writeLine(ev *Event) error {
	ev.Seq = l.seq + 1
	ev.Time = l.cfg.Now().UTC()
	ev.Prev = hex.EncodeToString(l.prev[:])
	line, err := encodeLine(ev)
	if err != nil {
		// Bad Data from the caller: nothing was written, the log is fine.
		return err
	}
	line = append(line, '\n')
	n, err := l.f.Write(line)
	l.size += int64(n)
	if err != nil {
		return l.fail(fmt.Errorf("write %s: %w", l.name, err))
	}
	l.seq = ev.Seq
	l.prev = sha256.Sum256(line[:len(line)-1])
	l.stats.Lines++
	if l.cfg.Tap != nil {
		l.cfg.Tap(ev.Seq, line[:len(line)-1:len(line)-1])
	}
	if isMACType(ev.Type) {
		l.sinceMAC = 0
	} else {
		l.sinceMAC++
	}
	return nil
}

// fail makes err the Log's error, which Append returns until a probe
// resumes the log, and returns it.
func (l *Log) fail(err error) error {
	if l.err == nil {
		l.err = fmt.Errorf("audit: log failed: %w", err)
		if !l.down {
			l.down = true
			l.cfg.Logger.Error("audit_unavailable", "error", err, "file", l.name, "seq", l.seq)
			l.changed(change{err: l.err})
		}
		l.cond.Broadcast()
	}
	return l.err
}

// changed queues a transition for the probe goroutine to report; mu held.
func (l *Log) changed(c change) {
	l.changes = append(l.changes, c)
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Probe tries to resume a failed log: it reopens the directory as Open
// does after a restart (a line torn by the failed write is truncated away,
// the chain is checked) and writes a "recover" checkpoint, fsynced. The
// events Append refused in between are not in the log: the callers acted
// on the error. A Log probes by itself every Config.ProbeInterval; Probe
// returns nil when the log is (again) available.
func (l *Log) Probe() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.syncing {
		l.cond.Wait()
	}
	if l.closed {
		return ErrClosed
	}
	if l.err == nil {
		return nil
	}
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	failed := l.err
	l.err = nil
	err := l.reopen()
	if err != nil {
		if l.f != nil {
			l.f.Close()
			l.f = nil
		}
		if l.err == nil {
			l.err = fmt.Errorf("audit: log failed: %w", err)
		}
		l.cfg.Logger.Debug("audit_probe_failed", "error", err, "since", failed)
		return l.err
	}
	l.down = false
	l.cfg.Logger.Info("audit_resumed", "file", l.name, "seq", l.seq)
	l.changed(change{up: true})
	return nil
}

// reopen is Probe's resume; mu held, no file open.
func (l *Log) reopen() error {
	free, err := l.cfg.freeSpace(l.cfg.Dir)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if free < l.cfg.ProbeMinFree {
		return fmt.Errorf("audit: %d bytes free in %s, want %d", free, l.cfg.Dir, l.cfg.ProbeMinFree)
	}
	files, err := listFiles(l.cfg.Dir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("audit: no log file left in %s", l.cfg.Dir)
	}
	if err := l.resume(files, "recover"); err != nil {
		return err
	}
	if err := l.f.Sync(); err != nil {
		return l.fail(fmt.Errorf("fsync %s: %w", l.name, err))
	}
	l.stats.Syncs++
	l.synced = l.seq
	l.cond.Broadcast()
	return nil
}

// probeLoop probes a failed log and reports its changes, in order.
func (l *Log) probeLoop(stop <-chan struct{}) {
	tick := l.cfg.probeTick
	if tick == nil {
		t := time.NewTicker(l.cfg.ProbeInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-stop:
			l.report()
			return
		case <-l.kick:
		case <-tick:
			l.Probe()
		}
		l.report()
	}
}

// report hands the queued changes to Config.OnChange.
func (l *Log) report() {
	l.mu.Lock()
	cs := l.changes
	l.changes = nil
	l.mu.Unlock()
	if l.cfg.OnChange == nil {
		return
	}
	for _, c := range cs {
		l.cfg.OnChange(c.up, c.err)
	}
}

// Err returns the error that made the log unavailable, or nil.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// LastSeq is the seq of the last line written.
func (l *Log) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// DurableSeq is the seq of the last line known to be on stable storage:
// fsynced, or with SyncNever written. A copy of the trail that takes no
// line past it never holds a line that a machine crash takes from the
// trail (whose seq the log would then give to another event).
func (l *Log) DurableSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Sync == SyncNever {
		return l.seq
	}
	return l.synced
}

// Stats returns counts of the Log's work.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Close writes a final checkpoint, fsyncs and closes the log. It returns the
// sticky error if the log had failed. Safe to call more than once.
func (l *Log) Close() error {
	l.mu.Lock()
	stop, probeStop := l.stop, l.probeStop
	l.stop, l.probeStop = nil, nil
	l.mu.Unlock()
	if stop != nil {
		close(stop)
		<-l.done
	}
	if probeStop != nil {
		close(probeStop)
		<-l.probeDone
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.err
	}
	l.closed = true
	for l.syncing {
		l.cond.Wait()
	}
	if l.err != nil {
		if l.f != nil {
			l.f.Close()
		}
		return l.err
	}
	if err := l.writeMAC(TypeCheckpoint, "close", ""); err != nil {
		l.f.Close()
		return err
	}
	return l.closeFile()
}

// fileInfo is a log file found in a directory.
type fileInfo struct {
	name    string
	seq     uint64 // first seq, from the name
	created time.Time
}

// listFiles returns dir's log files in seq order.
func listFiles(dir string) ([]fileInfo, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var files []fileInfo
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, "audit-") || !strings.HasSuffix(name, ".jsonl") || e.IsDir() {
			continue
		}
		fi, ok := parseFileName(name)
		if !ok {
			return nil, fmt.Errorf("audit: %s: not a log file name (audit-SEQ-TIME.jsonl)", filepath.Join(dir, name))
		}
		files = append(files, fi)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].seq < files[j].seq })
	return files, nil
}

func parseFileName(name string) (fileInfo, bool) {
	mid := strings.TrimSuffix(strings.TrimPrefix(name, "audit-"), ".jsonl")
	seqStr, ts, ok := strings.Cut(mid, "-")
	if !ok || len(seqStr) != 20 {
		return fileInfo{}, false
	}
	seq, err := strconv.ParseUint(seqStr, 10, 64)
	if err != nil {
		return fileInfo{}, false
	}
	t, err := time.Parse(fileTimeLayout, ts)
	if err != nil {
		return fileInfo{}, false
	}
	return fileInfo{name: name, seq: seq, created: t}, true
}

// readTail returns up to the last two complete lines of path (without
// newlines), the size of the file up to its last newline, and the number of
// bytes after it: a line torn by a crash.
func readTail(path string) (lines [][]byte, complete, torn int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("audit: %w", err)
	}
	size := st.Size()
	off := size
	var tail []byte
	for off > 0 && bytes.Count(tail, []byte{'\n'}) < 3 {
		n := min(int64(64<<10), off)
		off -= n
		chunk := make([]byte, n, n+int64(len(tail)))
		if _, err := f.ReadAt(chunk, off); err != nil {
			return nil, 0, 0, fmt.Errorf("audit: read %s: %w", path, err)
		}
		tail = append(chunk, tail...)
	}
	end := bytes.LastIndexByte(tail, '\n') + 1
	torn = int64(len(tail) - end)
	complete = size - torn
	if end == 0 {
		return nil, complete, torn, nil
	}
	all := bytes.Split(tail[:end-1], []byte{'\n'})
	if off > 0 {
		all = all[1:] // the first may be the end of a longer line
	}
	if len(all) > 2 {
		all = all[len(all)-2:]
	}
	return all, complete, torn, nil
}
