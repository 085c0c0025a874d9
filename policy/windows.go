package policy

import (
	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/policy/window"
)

// Span is the sliding window a scope is compared with; ok is false for the
// statement and session scopes.
func (s Scope) Span() (span window.Span, ok bool) {
	switch s {
	case Scope1m:
		return window.Minute, true
	case Scope10m:
		return window.TenMinutes, true
	case Scope1h:
		return window.Hour, true
	case Scope24h:
		return window.Day, true
	}
	return 0, false
}

// WindowFigures converts a window's figures into what thresholds compare.
// PIIValues is nil when the window holds none.
func WindowFigures(w *window.Figures) Figures {
	f := Figures{Rows: w.Rows, Bytes: w.Bytes, PIIRows: w.PIIRows, Unexplained: w.Unexplained, Sequential: w.Sequential,
		DistinctSubjects: int64(w.DistinctSubjects())}
	w.EachPII(func(c pii.Category, n int64) {
		if n > 0 {
			if f.PIIValues == nil {
				f.PIIValues = make(map[pii.Category]int64)
			}
			f.PIIValues[c] += n
		}
	})
	return f
}
