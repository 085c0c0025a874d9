package audit

import (
	"strings"
	"testing"
	"time"
)

func TestFilter(t *testing.T) {
	at := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	stmt := Event{Type: TypeStatement, Employee: "alice", Time: at, Data: []byte(`{"tables":["public.customers"]}`)}
	cp := Event{Type: TypeCheckpoint, Time: at}
	tests := []struct {
		name string
		f    Filter
		ev   Event
		want bool
	}{
		{"empty", Filter{}, stmt, true},
		{"checkpoint hidden", Filter{}, cp, false},
		{"checkpoint asked for", Filter{Type: TypeCheckpoint}, cp, true},
		{"other type", Filter{Type: TypeSessionStart}, stmt, false},
		{"employee", Filter{Employee: "alice"}, stmt, true},
		{"other employee", Filter{Employee: "bob"}, stmt, false},
		{"since equal", Filter{Since: at}, stmt, true},
		{"since after", Filter{Since: at.Add(time.Second)}, stmt, false},
		{"table", Filter{Table: "public.customers"}, stmt, true},
		{"other table", Filter{Table: "public.orders"}, stmt, false},
		{"table on a non-statement", Filter{Table: "public.customers"}, Event{Type: TypeDecision, Data: stmt.Data}, false},
	}
	for _, tt := range tests {
		if got := tt.f.Match(tt.ev); got != tt.want {
			t.Errorf("%s: Match = %v, want %v", tt.name, got, tt.want)
		}
	}
	if err := (Filter{Type: "block"}).Validate(); err == nil || !strings.Contains(err.Error(), "--type decision") {
		t.Errorf("Validate(block) = %v, want the decision hint", err)
	}
	if err := (Filter{Type: TypeStatement}).Validate(); err != nil {
		t.Errorf("Validate(statement) = %v", err)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	if got, err := ParseSince("24h", now); err != nil || !got.Equal(now.Add(-24*time.Hour)) {
		t.Errorf("24h: %v %v", got, err)
	}
	if got, err := ParseSince("2026-11-01T00:00:00Z", now); err != nil || got.Day() != 1 {
		t.Errorf("RFC 3339: %v %v", got, err)
	}
	for _, s := range []string{"yesterday", "-1h"} {
		if _, err := ParseSince(s, now); err == nil {
			t.Errorf("%s: no error", s)
		}
	}
}
