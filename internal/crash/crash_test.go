package crash

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestCatchTurnsAPanicIntoAnError(t *testing.T) {
	before := Total()
	err := func() (err error) {
		defer Catch(discard, "test", &err)
		var rows [][]byte
		_ = rows[len(rows)] // an index out of range, as a real bug would raise
		return nil
	}()
	var p *Panic
	if !errors.As(err, &p) {
		t.Fatalf("err = %v, want a *Panic", err)
	}
	if p.Where != "test" || !strings.Contains(string(p.Stack), "TestCatchTurnsAPanicIntoAnError") {
		t.Errorf("panic = %q at %q; the stack does not name the test", p.Where, p.Stack)
	}
	if Total() != before+1 {
		t.Errorf("Total = %d, want %d", Total(), before+1)
	}
}

func TestLoopRestartsAfterAPanic(t *testing.T) {
	var runs atomic.Int32
	done := make(chan struct{})
	Loop(discard, "test", done, func() {
		if runs.Add(1) == 1 {
			panic("first run")
		}
	})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not end")
	}
	if runs.Load() != 2 {
		t.Errorf("runs = %d, want 2 (one panic, one restart)", runs.Load())
	}
}
