// Package crash keeps a panic to the goroutine that raised it. pgwarden
// serves every employee from one process: a bug reached by one session's
// input must end that session, not the process and everyone's sessions with
// it. Each goroutine that serves a session or runs a background loop defers
// Catch (or is started with Go), which turns the panic into a *Panic error,
// logs its stack once, and counts it for pgwarden_internal_errors_total.
package crash

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Panic is a panic recovered from a goroutine.
type Panic struct {
	Where string // the goroutine's job, e.g. "client_to_server"
	Value any    // what was passed to panic
	Stack []byte
}

func (p *Panic) Error() string { return fmt.Sprintf("internal error in %s: %v", p.Where, p.Value) }

var total atomic.Uint64

// Total reports how many panics have been recovered since the process
// started.
func Total() uint64 { return total.Load() }

// Recovered records a value returned by recover(): it counts it, logs it
// with its stack at error level, and returns it as a *Panic. Use it only
// from a deferred function, with recover()'s result.
func Recovered(log *slog.Logger, where string, v any) *Panic {
	p := &Panic{Where: where, Value: v, Stack: debug.Stack()}
	total.Add(1)
	if log == nil {
		log = slog.Default()
	}
	log.Error("internal_error", "where", where, "panic", fmt.Sprint(v), "stack", string(p.Stack))
	return p
}

// Catch, deferred, recovers a panic of the calling goroutine and stores it in
// *errp as a *Panic:
//
//	defer crash.Catch(log, "client_to_server", &err)
func Catch(log *slog.Logger, where string, errp *error) {
	if v := recover(); v != nil {
		p := Recovered(log, where, v)
		if errp != nil {
			*errp = p
		}
	}
}

// Go runs f in a new goroutine and recovers its panic.
func Go(log *slog.Logger, where string, f func()) {
	go func() {
		defer Catch(log, where, nil)
		f()
	}()
}

// Loop runs f in a new goroutine until f returns; a panic restarts it after
// a pause that grows from a second to a minute, so that a loop a bug keeps
// crashing neither stops for good nor spins. done, if not nil, is closed
// once f has returned.
func Loop(log *slog.Logger, where string, done chan<- struct{}, f func()) {
	if log == nil {
		log = slog.Default()
	}
	go func() {
		if done != nil {
			defer close(done)
		}
		pause := time.Second
		for {
			var err error
			func() {
				defer Catch(log, where, &err)
				f()
			}()
			if err == nil {
				return
			}
			log.Warn("loop_restarting", "where", where, "in", pause)
			time.Sleep(pause)
			pause = min(2*pause, time.Minute)
		}
	}()
}
