package holds

import (
	"context"
	"testing"
	"time"
)

func TestApproveDenyTimeout(t *testing.T) {
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r.poll = 10 * time.Millisecond
	for _, approve := range []bool{true, false} {
		done := make(chan bool)
		go func() {
			ok, err := r.Request(context.Background(), Hold{ID: "h1", Employee: "alice", Since: time.Now()})
			if err != nil {
				t.Error(err)
			}
			done <- ok
		}()
		var listed []Hold
		for deadline := time.Now().Add(2 * time.Second); len(listed) == 0 && time.Now().Before(deadline); {
			listed, _ = r.List()
			time.Sleep(5 * time.Millisecond)
		}
		if len(listed) != 1 || listed[0].Employee != "alice" {
			t.Fatalf("List = %+v", listed)
		}
		if _, err := r.Decide("h1", approve, "sec"); err != nil {
			t.Fatal(err)
		}
		if got := <-done; got != approve {
			t.Errorf("approve=%v: Request returned %v", approve, got)
		}
		if l, _ := r.List(); len(l) != 0 {
			t.Errorf("decided hold still listed: %+v", l)
		}
		if _, err := r.Decide("h1", true, "sec"); err != ErrNotFound {
			t.Errorf("Decide after the end: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if ok, err := r.Request(ctx, Hold{ID: "h2"}); ok || err == nil {
		t.Errorf("timeout: %v %v", ok, err)
	}
	if _, err := r.Decide("../etc/passwd", true, "x"); err != ErrNotFound {
		t.Errorf("path traversal id: %v", err)
	}
}
