package audit

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Filter selects events of a trail, as pgwarden audit query does: an
// event matches when it passes every field that is set. Checkpoint and
// file_start events match only when Type asks for them.
type Filter struct {
	Employee string    // the event's employee
	Since    time.Time // at or after
	Type     string    // one of Types
	Table    string    // a statement that touched this schema.table
}

// Match reports whether ev passes the filter.
func (f Filter) Match(ev Event) bool {
	switch {
	case f.Type != "" && ev.Type != f.Type:
		return false
	case f.Type == "" && isMACType(ev.Type):
		return false
	case f.Employee != "" && ev.Employee != f.Employee:
		return false
	case !f.Since.IsZero() && ev.Time.Before(f.Since):
		return false
	case f.Table != "" && !touches(ev, f.Table):
		return false
	}
	return true
}

// Validate reports a Type that is not an event type, with a hint when it
// is the action of a decision.
func (f Filter) Validate() error {
	if f.Type == "" || slices.Contains(Types, f.Type) {
		return nil
	}
	hint := ""
	if slices.Contains([]string{"block", "alert", "redact", "hold", "kill", "quarantine", "log"}, f.Type) {
		hint = "; " + f.Type + " is the action of a decision: --type decision"
	}
	return fmt.Errorf("unknown event type %q (want one of %s%s)", f.Type, strings.Join(Types, ", "), hint)
}

// touches reports whether a statement event lists table among the tables
// it touched.
func touches(ev Event, table string) bool {
	var d Statement
	if ev.Type != TypeStatement || json.Unmarshal(ev.Data, &d) != nil {
		return false
	}
	return slices.Contains(d.Tables, table)
}

// ParseSince reads a time given as RFC 3339 or as a duration before now
// (24h).
func ParseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time or a duration such as 24h", s)
}
