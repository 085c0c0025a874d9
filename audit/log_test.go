package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/internal/clock"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// newClock returns a clock that tests move by hand and that also ticks a
// millisecond at every reading, so that no two events share a time.
func newClock() *clock.Virtual {
	c := clock.NewVirtual(time.Date(2026, 11, 28, 22, 0, 0, 0, time.UTC))
	c.SetStep(time.Millisecond)
	return c
}

func testConfig(dir string, clk *clock.Virtual) Config {
	return Config{
		Dir:             dir,
		Key:             testKey,
		KeyID:           "k1",
		CheckpointEvery: 4,
		Sync:            SyncNever,
		Now:             clk.Now,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func mustOpen(t testing.TB, cfg Config) *Log {
	t.Helper()
	l, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func appendN(t testing.TB, l *Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		data, _ := MarshalData(map[string]any{"i": i, "sql": "select email from customers"})
		if _, err := l.Append(context.Background(), Event{Type: TypeStatement, SessionID: "s1", Employee: "alice", Data: data}); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func mustVerify(t *testing.T, dir string) Report {
	t.Helper()
	rep, err := Verify(dir, testKey)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func logFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := listFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Join(dir, f.name))
	}
	return names
}

func readEvents(t *testing.T, dir string) []Event {
	t.Helper()
	var evs []Event
	if err := Read(dir, nil, func(ev Event) error { evs = append(evs, ev); return nil }); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return evs
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l := mustOpen(t, testConfig(dir, newClock()))
	seq, err := l.Append(context.Background(), Event{Type: TypeSessionStart, SessionID: "s1", Employee: "alice",
		Data: json.RawMessage(`{ "client_addr": "10.0.0.1",
		"tls": true }`)})
	if err != nil || seq != 2 {
		t.Fatalf("Append = %d, %v; want seq 2 (after file_start)", seq, err)
	}
	appendN(t, l, 9)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(context.Background(), Event{Type: TypeStatement}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}

	rep := mustVerify(t, dir)
	// file_start, 10 events, checkpoints after events 4 and 8, close checkpoint.
	if rep.Files != 1 || rep.Events != 14 || rep.LastSeq != 14 || rep.Checkpoints != 4 || rep.Unsigned != 0 || !rep.MACsChecked {
		t.Fatalf("report = %+v", rep)
	}
	evs := readEvents(t, dir)
	if evs[0].Type != TypeFileStart || evs[0].Prev != strings.Repeat("0", 64) {
		t.Fatalf("first event = %+v", evs[0])
	}
	if got := evs[1]; got.Employee != "alice" || string(got.Data) != `{"client_addr":"10.0.0.1","tls":true}` || got.Time.Location() != time.UTC {
		t.Fatalf("second event = %+v", got)
	}
	if evs[len(evs)-1].Type != TypeCheckpoint || !strings.Contains(string(evs[len(evs)-1].Data), `"reason":"close"`) {
		t.Fatalf("last event = %+v", evs[len(evs)-1])
	}
	st, _ := os.Stat(dir)
	fst, _ := os.Stat(logFiles(t, dir)[0])
	if st.Mode().Perm() != 0o700 || fst.Mode().Perm() != 0o600 {
		t.Fatalf("modes: dir %v, file %v", st.Mode().Perm(), fst.Mode().Perm())
	}
}

func TestAppendRejectsReservedTypes(t *testing.T) {
	l := mustOpen(t, testConfig(t.TempDir(), newClock()))
	defer l.Close()
	for _, typ := range []string{"", TypeCheckpoint, TypeFileStart} {
		if _, err := l.Append(context.Background(), Event{Type: typ}); err == nil {
			t.Errorf("Append(%q) succeeded", typ)
		}
	}
	if _, err := l.Append(context.Background(), Event{Type: TypeStatement, Data: json.RawMessage(`{bad`)}); err == nil {
		t.Fatal("Append with invalid Data succeeded")
	}
	if l.Err() != nil {
		t.Fatalf("invalid Data made the log fail: %v", l.Err())
	}
	appendN(t, l, 1)
}

func TestResumeWithNewCheckpointInterval(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, testConfig(dir, newClock()))
	appendN(t, l, 2)
	l.Close()
	cfg := testConfig(dir, newClock())
	cfg.CheckpointEvery = 10
	l = mustOpen(t, cfg)
	appendN(t, l, 8)
	l.Close()
	mustVerify(t, dir)
}

func TestHTMLNotEscaped(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, testConfig(dir, newClock()))
	data, _ := MarshalData(map[string]string{"sql": "select 1 where a < b && c > d"})
	if _, err := l.Append(context.Background(), Event{Type: TypeStatement, Data: data}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	b, _ := os.ReadFile(logFiles(t, dir)[0])
	if !bytes.Contains(b, []byte("a < b && c > d")) {
		t.Fatalf("SQL escaped in the file:\n%s", b)
	}
	mustVerify(t, dir)
}

func TestParseSyncPolicy(t *testing.T) {
	for _, p := range []SyncPolicy{SyncAlways, SyncInterval, SyncNever} {
		if got, err := ParseSyncPolicy(p.String()); got != p || err != nil {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v", p, got, err)
		}
	}
	if _, err := ParseSyncPolicy("sometimes"); err == nil {
		t.Error("ParseSyncPolicy(sometimes) succeeded")
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Dir: "x", Key: testKey}
	if err := c.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.CheckpointEvery != 1000 || c.MaxFileSize != 64<<20 || c.MaxFileAge != 24*time.Hour ||
		c.Sync != SyncAlways || c.SyncInterval != 100*time.Millisecond || c.KeyID != "default" {
		t.Fatalf("defaults = %+v", c)
	}
	for _, bad := range []Config{{Key: testKey}, {Dir: "x"}, {Dir: "x", Key: testKey, Sync: 9}, {Dir: "x", Key: testKey, MaxFileSize: -1}} {
		if err := bad.CheckAndSetDefaults(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestResumeAfterClose(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	l := mustOpen(t, testConfig(dir, clock))
	appendN(t, l, 3)
	l.Close()
	l = mustOpen(t, testConfig(dir, clock))
	seq, err := l.Append(context.Background(), Event{Type: TypeStatement})
	// 1 file_start, 2-4 events, 5 close checkpoint, 6 resume checkpoint.
	if err != nil || seq != 7 {
		t.Fatalf("Append after resume = %d, %v; want 7", seq, err)
	}
	l.Close()
	rep := mustVerify(t, dir)
	if rep.Files != 1 || rep.LastSeq != 8 {
		t.Fatalf("report = %+v", rep)
	}
}

func TestResumeAfterCrash(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	l := mustOpen(t, testConfig(dir, clock))
	appendN(t, l, 6) // 1 file_start, 2-5, 6 checkpoint, 7-8: no checkpoint at the end
	l.f.Close()      // crash: no Close
	path := logFiles(t, dir)[0]
	before, _ := os.ReadFile(path)
	torn := []byte(`{"seq":9,"time":"2026-11-28T22:00:`)
	if err := os.WriteFile(path, append(append([]byte{}, before...), torn...), 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(dir, testKey); err != nil || !rep.TornTail || rep.Unsigned != 2 {
		t.Fatalf("Verify of crashed log = %+v, %v; want intact with a torn tail", rep, err)
	}

	var logs bytes.Buffer
	cfg := testConfig(dir, clock)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	l = mustOpen(t, cfg)
	if !strings.Contains(logs.String(), "audit_torn_tail_truncated") {
		t.Errorf("no log of the truncation: %s", logs.String())
	}
	seq, err := l.Append(context.Background(), Event{Type: TypeStatement})
	if err != nil || seq != 10 { // 9 is the resume checkpoint
		t.Fatalf("Append after crash = %d, %v; want 10", seq, err)
	}
	l.Close()
	rep := mustVerify(t, dir)
	if rep.TornTail || rep.LastSeq != 11 {
		t.Fatalf("report = %+v", rep)
	}
	evs := readEvents(t, dir)
	if !strings.Contains(string(evs[8].Data), `"reason":"resume"`) {
		t.Fatalf("seq 9 = %+v, want resume checkpoint", evs[8])
	}
}

func TestResumeAfterCrashDuringRotation(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	l := mustOpen(t, testConfig(dir, clock))
	appendN(t, l, 2)
	l.Close()
	// The next file was created but its file_start never made it.
	empty := filepath.Join(dir, fileName(5, clock.Now()))
	if err := os.WriteFile(empty, []byte(`{"seq":5,`), 0o600); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, testConfig(dir, clock))
	appendN(t, l, 1)
	l.Close()
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Fatalf("empty file not removed: %v", err)
	}
	mustVerify(t, dir)
}

func TestOpenRefusesCorruptTail(t *testing.T) {
	tests := []struct {
		name   string
		damage func(lines []string) []string
		want   string
	}{
		{"garbage last line", func(ls []string) []string { return append(ls, "garbage") }, "last line is corrupt"},
		{"edited last line", func(ls []string) []string {
			ls[len(ls)-1] = flipPrev(ls[len(ls)-1])
			return ls
		}, "does not continue the chain"},
		{"last line removed from the middle", func(ls []string) []string {
			return append(ls[:len(ls)-2], ls[len(ls)-1])
		}, "does not continue the chain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := mustOpen(t, testConfig(dir, newClock()))
			appendN(t, l, 2)
			l.Close()
			path := logFiles(t, dir)[0]
			rewriteLines(t, path, tt.damage)
			if _, err := Open(testConfig(dir, newClock())); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open = %v, want %q", err, tt.want)
			}
		})
	}
}

// flipPrev changes the first hex digit of a line's prev.
func flipPrev(line string) string {
	i := strings.Index(line, `"prev":"`) + len(`"prev":"`)
	c := byte('0')
	if line[i] == '0' {
		c = '1'
	}
	return line[:i] + string(c) + line[i+1:]
}

func rewriteLines(t *testing.T, path string, edit func([]string) []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	lines = edit(lines)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRotationBySize(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir, newClock())
	cfg.MaxFileSize = 2000
	l := mustOpen(t, cfg)
	appendN(t, l, 60)
	l.Close()
	files := logFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("%d files, want several", len(files))
	}
	for _, f := range files[:len(files)-1] {
		st, _ := os.Stat(f)
		if st.Size() > 2000+1000 {
			t.Errorf("%s: %d bytes", f, st.Size())
		}
	}
	rep := mustVerify(t, dir)
	if rep.Files != len(files) {
		t.Fatalf("report = %+v", rep)
	}
	evs := readEvents(t, dir)
	n := 0
	for _, ev := range evs {
		if ev.Type == TypeStatement {
			n++
		}
	}
	if n != 60 {
		t.Fatalf("%d statements read, want 60", n)
	}
}

func TestRotationByAge(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	l := mustOpen(t, testConfig(dir, clock))
	appendN(t, l, 2)
	clock.Advance(23 * time.Hour)
	appendN(t, l, 1)
	if n := len(logFiles(t, dir)); n != 1 {
		t.Fatalf("%d files before 24h", n)
	}
	clock.Advance(time.Hour)
	appendN(t, l, 1)
	l.Close()
	files := logFiles(t, dir)
	if len(files) != 2 || !strings.Contains(filepath.Base(files[1]), "-20261129T") {
		t.Fatalf("files = %v", files)
	}
	mustVerify(t, dir)

	// A resumed log measures the age from the file name.
	clock.Advance(25 * time.Hour)
	l = mustOpen(t, testConfig(dir, clock))
	appendN(t, l, 1)
	l.Close()
	if n := len(logFiles(t, dir)); n != 3 {
		t.Fatalf("%d files after resume past the age", n)
	}
	mustVerify(t, dir)
}

func TestConcurrentAppend(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir, newClock())
	cfg.MaxFileSize = 20000
	cfg.CheckpointEvery = 50
	l := mustOpen(t, cfg)
	const goroutines, each = 16, 200
	seqs := make(chan uint64, goroutines*each)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				seq, err := l.Append(context.Background(), Event{Type: TypeStatement, Employee: fmt.Sprint("user", g)})
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d returned twice", s)
		}
		seen[s] = true
	}
	rep := mustVerify(t, dir)
	if len(seen) != goroutines*each || rep.Files < 2 {
		t.Fatalf("%d seqs, report %+v", len(seen), rep)
	}
}

// hookFile wraps an *os.File to count fsyncs and inject failures.
type hookFile struct {
	*os.File
	h *hooks
}

type hooks struct {
	syncs     atomic.Int64
	syncDelay time.Duration
	failWrite atomic.Bool // the next writes fail
	tornWrite atomic.Bool // ... after writing half the line
	failSync  atomic.Bool
}

func (f hookFile) Write(p []byte) (int, error) {
	if f.h.failWrite.Load() {
		n := 0
		if f.h.tornWrite.Load() {
			n, _ = f.File.Write(p[:len(p)/2])
		}
		return n, errors.New("injected: no space left on device")
	}
	return f.File.Write(p)
}

func (f hookFile) Sync() error {
	f.h.syncs.Add(1)
	time.Sleep(f.h.syncDelay)
	if f.h.failSync.Load() {
		return errors.New("injected: fsync: input/output error")
	}
	return f.File.Sync()
}

func (h *hooks) open(name string, flag int, perm os.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return hookFile{f, h}, nil
}

func TestSyncAlwaysGroupCommit(t *testing.T) {
	dir := t.TempDir()
	h := &hooks{syncDelay: 2 * time.Millisecond}
	cfg := testConfig(dir, newClock())
	cfg.Sync = SyncAlways
	cfg.CheckpointEvery = 1000
	cfg.openFile = h.open
	l := mustOpen(t, cfg)
	opened := h.syncs.Load()
	const goroutines, each = 32, 20
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := l.Append(context.Background(), Event{Type: TypeStatement}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	syncs := h.syncs.Load() - opened
	l.Close()
	t.Logf("%d appends from %d goroutines took %d fsyncs (%.1f events per fsync)", goroutines*each, goroutines, syncs, float64(goroutines*each)/float64(syncs))
	if syncs >= goroutines*each/4 {
		t.Fatalf("%d fsyncs for %d appends: no group commit", syncs, goroutines*each)
	}
	mustVerify(t, dir)

	// A lone Append is fsynced before it returns.
	l = mustOpen(t, cfg)
	before := h.syncs.Load()
	appendN(t, l, 1)
	if h.syncs.Load() != before+1 {
		t.Fatalf("lone Append: %d fsyncs", h.syncs.Load()-before)
	}
	l.Close()
}

func TestSyncInterval(t *testing.T) {
	h := &hooks{}
	cfg := testConfig(t.TempDir(), newClock())
	cfg.Sync = SyncInterval
	cfg.SyncInterval = 5 * time.Millisecond
	cfg.openFile = h.open
	l := mustOpen(t, cfg)
	defer l.Close()
	before := h.syncs.Load()
	appendN(t, l, 1)
	deadline := time.Now().Add(5 * time.Second)
	for h.syncs.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("no fsync within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStickyError: a failed log stays failed until it is probed.
func TestStickyError(t *testing.T) {
	for _, tc := range []struct {
		name string
		torn bool
		sync bool
	}{{"write fails", false, false}, {"torn write", true, false}, {"fsync fails", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			h := &hooks{}
			cfg := testConfig(dir, newClock())
			cfg.Sync = SyncAlways
			cfg.openFile = h.open
			cfg.probeTick = make(chan time.Time) // no probe
			l := mustOpen(t, cfg)
			appendN(t, l, 2)
			h.tornWrite.Store(tc.torn)
			if tc.sync {
				h.failSync.Store(true)
			} else {
				h.failWrite.Store(true)
			}
			_, err := l.Append(context.Background(), Event{Type: TypeStatement})
			if err == nil || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("Append = %v, want the injected error", err)
			}
			h.failWrite.Store(false)
			h.failSync.Store(false)
			if _, err2 := l.Append(context.Background(), Event{Type: TypeStatement}); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("Append after failure = %v, want sticky %v", err2, err)
			}
			if err2 := l.Close(); err2 == nil {
				t.Fatal("Close of a failed log succeeded")
			}
			// What is on disk is a valid chain, maybe with a torn tail,
			// and a new Log carries on from it.
			if rep, err := Verify(dir, testKey); err != nil || rep.TornTail != tc.torn {
				t.Fatalf("Verify after failure = %+v, %v", rep, err)
			}
			l = mustOpen(t, testConfig(dir, newClock()))
			appendN(t, l, 1)
			l.Close()
			mustVerify(t, dir)
		})
	}
}

func TestCreateFailure(t *testing.T) {
	dir := t.TempDir()
	h := &hooks{}
	cfg := testConfig(dir, newClock())
	cfg.MaxFileSize = 600
	fail := atomic.Bool{}
	cfg.openFile = func(name string, flag int, perm os.FileMode) (file, error) {
		if fail.Load() {
			return nil, errors.New("injected: open failed")
		}
		return h.open(name, flag, perm)
	}
	l := mustOpen(t, cfg)
	fail.Store(true)
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		_, err = l.Append(context.Background(), Event{Type: TypeStatement})
	}
	if err == nil || !strings.Contains(err.Error(), "injected: open failed") {
		t.Fatalf("Append = %v", err)
	}
	if l.Err() == nil {
		t.Fatal("no sticky error")
	}
	l.Close()
	mustVerify(t, dir)
}

// TestProbeResumes: a failed log refuses events until a probe finds it
// writable again, then carries on with the chain intact; each transition
// is reported once, in order.
func TestProbeResumes(t *testing.T) {
	for _, tc := range []struct {
		name string
		torn bool
		sync bool
	}{{"write fails", false, false}, {"torn write", true, false}, {"fsync fails", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			h := &hooks{}
			tick := make(chan time.Time)
			changes := make(chan string, 10)
			cfg := testConfig(dir, newClock())
			cfg.Sync = SyncAlways
			cfg.openFile = h.open
			cfg.probeTick = tick
			var full atomic.Bool
			cfg.freeSpace = func(string) (int64, error) {
				if full.Load() {
					return 100, nil
				}
				return 1 << 30, nil
			}
			cfg.OnChange = func(up bool, err error) {
				if up {
					changes <- "up"
				} else {
					changes <- "down: " + err.Error()
				}
			}
			l := mustOpen(t, cfg)
			defer l.Close()
			appendN(t, l, 2)
			h.tornWrite.Store(tc.torn)
			if tc.sync {
				h.failSync.Store(true)
			} else {
				h.failWrite.Store(true)
			}
			for i := 0; i < 3; i++ {
				if _, err := l.Append(context.Background(), Event{Type: TypeStatement}); err == nil {
					t.Fatal("Append on a failing disk succeeded")
				}
			}
			if c := <-changes; !strings.Contains(c, "down: ") || !strings.Contains(c, "injected") {
				t.Fatalf("first change %q", c)
			}
			tick <- time.Now() // still failing
			tick <- time.Now()
			if err := l.Err(); err == nil {
				t.Fatal("probe resumed a failing log")
			}
			// A disk with room for no more than a checkpoint is not tried.
			full.Store(true)
			h.failWrite.Store(false)
			h.failSync.Store(false)
			tick <- time.Now()
			tick <- time.Now()
			if err := l.Err(); err == nil || !strings.Contains(err.Error(), "bytes free") {
				t.Fatalf("probe with 100 bytes free: %v", err)
			}
			full.Store(false)
			h.failWrite.Store(false)
			h.failSync.Store(false)
			tick <- time.Now()
			if c := <-changes; c != "up" {
				t.Fatalf("second change %q", c)
			}
			select {
			case c := <-changes:
				t.Fatalf("change %q after up", c)
			default:
			}
			appendN(t, l, 3)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			rep := mustVerify(t, dir)
			evs := readEvents(t, dir)
			recovered := 0
			for _, ev := range evs {
				if ev.Type == TypeCheckpoint && strings.Contains(string(ev.Data), `"reason":"recover"`) {
					recovered++
				}
			}
			// A probe whose fsync failed leaves its checkpoint written.
			if recovered != 1 && !(tc.sync && recovered == 3) || rep.TornTail {
				t.Fatalf("%d recover checkpoints, report %+v", recovered, rep)
			}
		})
	}
}
