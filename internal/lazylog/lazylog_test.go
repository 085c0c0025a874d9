package lazylog

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// TestSameOutput: a logger through Wrap writes what the wrapped handler
// writes, attributes, groups, levels and all.
func TestSameOutput(t *testing.T) {
	for _, json := range []bool{false, true} {
		var want, got bytes.Buffer
		mk := func(w *bytes.Buffer) slog.Handler {
			opts := &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}}
			if json {
				return slog.NewJSONHandler(w, opts)
			}
			return slog.NewTextHandler(w, opts)
		}
		for _, l := range []*slog.Logger{slog.New(mk(&want)), slog.New(Wrap(mk(&got)))} {
			s := l.With("session_id", "s1", "client_addr", "127.0.0.1:5")
			s.Debug("hidden", "k", 1)
			s = s.With("user", "alice")
			s.Info("session_started", "application_name", "psql")
			s.WithGroup("g").With("a", 1).Warn("grouped", "b", 2)
			s.With().Info("again")
			l.Info("root")
		}
		if got.String() != want.String() {
			t.Errorf("json %v: through Wrap\n%s\nwant\n%s", json, got.String(), want.String())
		}
		if !strings.Contains(want.String(), "alice") {
			t.Fatalf("json %v: nothing logged: %q", json, want.String())
		}
	}
}

// TestConcurrentFirstRecord: two goroutines logging the first record of
// one logger at once each write it whole, with its attributes.
func TestConcurrentFirstRecord(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})
	l := slog.New(Wrap(slog.NewTextHandler(w, nil))).With("session_id", "s1")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Info("x")
		}()
	}
	wg.Wait()
	if n := strings.Count(buf.String(), "session_id=s1"); n != 8 {
		t.Errorf("%d of 8 lines carry the attribute:\n%s", n, buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
