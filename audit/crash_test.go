package audit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
)

const crashDirEnv = "PGWARDEN_AUDIT_CRASH_DIR"

// TestCrashWriter is the child of TestKill9: it appends from several
// goroutines and prints each seq once Append has returned it.
func TestCrashWriter(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestKill9")
	}
	l, err := Open(Config{Dir: dir, Key: testKey, CheckpointEvery: 7, MaxFileSize: 4096, Sync: SyncAlways,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	for g := 0; g < 4; g++ {
		go func() {
			for {
				seq, err := l.Append(context.Background(), Event{Type: TypeStatement, Employee: "alice"})
				if err != nil {
					fmt.Println("error", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Println(seq)
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestKill9 kills a writing process with SIGKILL and checks that every
// acknowledged event is in the log, which resumes and verifies.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriter$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[uint64]bool{}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			seq, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child: %s", sc.Text())
			}
			acked[seq] = true
			if len(acked) == 300 {
				cmd.Process.Kill() // SIGKILL: no Close, no final checkpoint
			}
		}
		cmd.Wait()

		l := mustOpen(t, Config{Dir: dir, Key: testKey, Sync: SyncNever, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		rep := mustVerify(t, dir)
		found := 0
		if err := Read(dir, func(ev Event) bool { return acked[ev.Seq] }, func(ev Event) error {
			if ev.Type != TypeStatement {
				return fmt.Errorf("acknowledged seq %d is a %s", ev.Seq, ev.Type)
			}
			found++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if found != len(acked) {
			t.Fatalf("round %d: %d of %d acknowledged events in the log", round, found, len(acked))
		}
		t.Logf("round %d: %d acknowledged events kept; log has %d events in %d files", round, len(acked), rep.Events, rep.Files)
	}
}
