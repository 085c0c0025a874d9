package clock

import (
	"testing"
	"time"
)

func TestVirtual(t *testing.T) {
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	v := NewVirtual(start)
	if !v.Now().Equal(start) {
		t.Fatal("start")
	}
	if err := v.Advance(90 * time.Minute); err != nil || !v.Now().Equal(start.Add(90*time.Minute)) {
		t.Fatalf("advance: %v %v", v.Now(), err)
	}
	if err := v.Set(start); err != ErrBackwards {
		t.Errorf("set backwards: %v", err)
	}
	if err := v.Advance(-time.Second); err != ErrBackwards {
		t.Errorf("advance backwards: %v", err)
	}
	later := start.Add(48 * time.Hour)
	if err := v.Set(later); err != nil || !v.Now().Equal(later) {
		t.Errorf("set: %v %v", v.Now(), err)
	}
}

func TestVirtualStep(t *testing.T) {
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	v := NewVirtual(start)
	if err := v.SetStep(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if a, b := v.Now(), v.Now(); !a.Equal(start.Add(time.Millisecond)) || !b.Equal(start.Add(2*time.Millisecond)) {
		t.Errorf("stepping readings %v, %v", a, b)
	}
	if err := v.SetStep(-time.Millisecond); err != ErrBackwards {
		t.Errorf("negative step: %v", err)
	}
	v.SetStep(0)
	if a, b := v.Now(), v.Now(); !a.Equal(b) {
		t.Errorf("step 0: %v then %v", a, b)
	}
}
