package admin

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// AlertFilter selects a page of alerts: GET /v1/alerts?employee=&action=
// &rule=&since=&until=&unacked=1&limit=&offset=.
type AlertFilter struct {
	Employee, Action, Rule string
	Unacked                bool
	// Since and Until bound the alert's time (zero: unbounded); Until is
	// exclusive.
	Since, Until time.Time
	// Limit is the page size (0: every match), Offset how many matches
	// newer than the page are skipped.
	Limit, Offset int
}

// Match reports whether an alert of employee, action and rule at t
// passes the filter (Unacked aside).
func (f AlertFilter) Match(employee, action, rule string, t time.Time) bool {
	return (f.Employee == "" || f.Employee == employee) && (f.Action == "" || f.Action == action) &&
		(f.Rule == "" || f.Rule == rule) && inRange(t, f.Since, f.Until)
}

// EventFilter selects a page of audit events: GET /v1/audit?employee=
// &type=&action=&rule=&since=&until=&seq=&limit=&offset=.
type EventFilter struct {
	Employee, Type string
	// Action and Rule match the event data's "action" and "rule".
	Action, Rule string
	// Seqs, when set, selects exactly these events (an alert's own).
	Seqs         []uint64
	Since, Until time.Time
	// Limit is the page size, Offset how many matching events newer than
	// the page are skipped.
	Limit, Offset int
}

// MatchSeq reports whether seq passes the Seqs of the filter.
func (f EventFilter) MatchSeq(seq uint64) bool {
	if len(f.Seqs) == 0 {
		return true
	}
	for _, s := range f.Seqs {
		if s == seq {
			return true
		}
	}
	return false
}

// Match reports whether an event passes the filter.
func (f EventFilter) Match(seq uint64, employee, typ, action, rule string, t time.Time) bool {
	return f.MatchSeq(seq) && (f.Employee == "" || f.Employee == employee) && (f.Type == "" || f.Type == typ) &&
		(f.Action == "" || f.Action == action) && (f.Rule == "" || f.Rule == rule) && inRange(t, f.Since, f.Until)
}

func inRange(t, since, until time.Time) bool {
	return (since.IsZero() || !t.Before(since)) && (until.IsZero() || t.Before(until))
}

// Page bounds.
const (
	defaultPage = 100
	maxPage     = 1000
	maxSeqs     = 1000
)

func parsePage(q url.Values) (limit, offset int, err error) {
	limit, offset = defaultPage, 0
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxPage {
			return 0, 0, fmt.Errorf("limit: want 1 to %d", maxPage)
		}
	}
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return 0, 0, fmt.Errorf("offset: want a number from 0")
		}
	}
	return limit, offset, nil
}

func parseRange(q url.Values) (since, until time.Time, err error) {
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"since", &since}, {"until", &until}} {
		if v := q.Get(p.name); v != "" {
			if *p.to, err = time.Parse(time.RFC3339, v); err != nil {
				return since, until, fmt.Errorf("%s: want an RFC 3339 time such as 2026-03-02T08:00:00Z", p.name)
			}
		}
	}
	return since, until, nil
}

func parseAlertFilter(q url.Values) (AlertFilter, error) {
	f := AlertFilter{Employee: q.Get("employee"), Action: q.Get("action"), Rule: q.Get("rule"),
		Unacked: q.Get("unacked") == "1" || q.Get("unacked") == "true"}
	var err error
	if f.Since, f.Until, err = parseRange(q); err != nil {
		return f, err
	}
	f.Limit, f.Offset, err = parsePage(q)
	return f, err
}

func parseEventFilter(q url.Values) (EventFilter, error) {
	f := EventFilter{Employee: q.Get("employee"), Type: q.Get("type"), Action: q.Get("action"), Rule: q.Get("rule")}
	var err error
	if f.Since, f.Until, err = parseRange(q); err != nil {
		return f, err
	}
	if f.Limit, f.Offset, err = parsePage(q); err != nil {
		return f, err
	}
	if v := q.Get("seq"); v != "" {
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil || n == 0 {
				return f, fmt.Errorf("seq: want sequence numbers separated by commas")
			}
			f.Seqs = append(f.Seqs, n)
		}
		if len(f.Seqs) > maxSeqs {
			return f, fmt.Errorf("seq: at most %d", maxSeqs)
		}
		f.Limit = max(f.Limit, len(f.Seqs))
	}
	return f, nil
}
