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
			h, err := r.Request(context.Background(), Hold{ID: "h1", Employee: "alice", Since: time.Now()})
			if err != nil {
				t.Error(err)
			}
			done <- h.Status == Approved
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
	if h, err := r.Request(ctx, Hold{ID: "h2"}); h.Status != Pending || err == nil {
		t.Errorf("timeout: %+v %v", h, err)
	}
	if _, err := r.Decide("../etc/passwd", true, "x"); err != ErrNotFound {
		t.Errorf("path traversal id: %v", err)
	}
}

// TestDecisionRecordsWho: who decided a hold, how and why are kept in
// its file while the session waits.
func TestDecisionRecordsWho(t *testing.T) {
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan Hold)
	go func() {
		h, _ := r.Request(context.Background(), Hold{ID: "h1", Employee: "alice", Since: time.Now()})
		done <- h
	}()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if l, _ := r.List(); len(l) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hold was never listed")
		}
	}
	h, err := r.DecideWith("h1", Decision{Approve: false, By: "carol", Via: "cli", Reason: "not for a ticket"})
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != Denied || h.DecidedBy != "carol" || h.DecidedVia != "cli" || h.DecisionReason != "not for a ticket" || h.DecidedAt.IsZero() {
		t.Errorf("DecideWith returned %+v", h)
	}
	// The waiting session learns who decided and why.
	if got := <-done; got.Status != Denied || got.DecidedBy != "carol" || got.DecisionReason != "not for a ticket" {
		t.Errorf("Request returned %+v", got)
	}
}
