package notify

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
)

// flakyOutbox accepts alerts unless told to fail.
type flakyOutbox struct {
	mu   sync.Mutex
	fail bool
	got  []string
}

func (o *flakyOutbox) Notify(a Alert) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail {
		return errors.New("no space left on device")
	}
	o.got = append(o.got, a.ID)
	return nil
}

// TestSpoolHoldsAndRetries: alerts the outbox refuses are held, in order,
// bounded, and handed over once it takes them again.
func TestSpoolHoldsAndRetries(t *testing.T) {
	out := &flakyOutbox{}
	s := NewSpool(SpoolConfig{Next: out, Max: 3, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	notify := func(id string) {
		t.Helper()
		if err := s.Notify(Alert{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	notify("a0")
	out.fail = true
	for i := 1; i <= 4; i++ {
		notify(fmt.Sprintf("a%d", i))
	}
	s.Retry()
	if held, dropped := s.Held(); held != 3 || dropped != 1 {
		t.Fatalf("held %d, dropped %d; want 3, 1", held, dropped)
	}
	out.fail = false
	notify("a5") // behind the held ones
	s.Retry()
	if held, _ := s.Held(); held != 0 {
		t.Fatalf("%d still held", held)
	}
	if got := fmt.Sprint(out.got); got != "[a0 a2 a3 a4 a5]" {
		t.Fatalf("outbox got %s", got)
	}
}
