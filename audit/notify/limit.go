package notify

import (
	"fmt"
	"maps"
	"time"
)

// rateInterval is the period of Config.RatePerEmployee.
const rateInterval = time.Minute

// maxSummarySeqs caps the audit sequence numbers a dedupe summary carries.
const maxSummarySeqs = 1000

type decision int

const (
	admitted decision = iota
	deduped
	rateLimited
)

type dedupeKey struct{ employee, rule, action string }

type dedupeState struct {
	until time.Time
	count int      // alerts suppressed in this window
	last  Alert    // the latest suppressed alert
	seqs  []uint64 // audit seqs of the suppressed alerts
}

type rateState struct {
	start   time.Time
	sent    int
	dropped int
	noticed bool
	last    Alert // the latest dropped alert
}

// limiter holds the in-memory dedupe and rate-limit state. It is not safe for
// concurrent use; the Notifier guards it with acceptMu.
type limiter struct {
	window time.Duration // <= 0: no dedupe
	rate   int           // <= 0: no rate limit
	dedupe map[dedupeKey]dedupeState
	rates  map[string]rateState
}

type limiterSnapshot struct {
	dedupe map[dedupeKey]dedupeState
	rates  map[string]rateState
}

func newLimiter(window time.Duration, rate int) limiter {
	return limiter{
		window: window,
		rate:   rate,
		dedupe: make(map[dedupeKey]dedupeState),
		rates:  make(map[string]rateState),
	}
}

// snapshot returns a copy of the state for restore, so that an alert whose
// outbox write failed leaves no trace. The maps hold only the windows open in
// the last DedupeWindow or minute, so copying them is cheap.
func (l *limiter) snapshot() limiterSnapshot {
	return limiterSnapshot{maps.Clone(l.dedupe), maps.Clone(l.rates)}
}

func (l *limiter) restore(s limiterSnapshot) {
	l.dedupe, l.rates = s.dedupe, s.rates
}

// admit decides whether a is sent. It returns the alerts to enqueue: a
// itself, nothing, or a "rate limited" notice.
func (l *limiter) admit(a Alert, now time.Time) ([]Alert, decision) {
	key := dedupeKey{a.Employee, a.Rule, a.Action}
	// Each hold waits for its own decision: its alert, which offers to
	// decide it, is never folded into another's.
	dedupe := l.window > 0 && a.HoldID == ""
	if dedupe {
		if st, ok := l.dedupe[key]; ok && now.Before(st.until) {
			st.count++
			st.last = a
			if room := maxSummarySeqs - len(st.seqs); room > 0 {
				st.seqs = append(st.seqs, a.AuditSeqs[:min(room, len(a.AuditSeqs))]...)
			}
			l.dedupe[key] = st
			return nil, deduped
		}
	}
	if l.rate > 0 {
		rs, ok := l.rates[a.Employee]
		if !ok || !now.Before(rs.start.Add(rateInterval)) {
			rs = rateState{start: now}
		}
		if rs.sent >= l.rate {
			rs.dropped++
			rs.last = a
			var out []Alert
			if !rs.noticed {
				rs.noticed = true
				out = append(out, l.rateNotice(a, rs, now))
			}
			l.rates[a.Employee] = rs
			return out, rateLimited
		}
		rs.sent++
		l.rates[a.Employee] = rs
	}
	if dedupe {
		l.dedupe[key] = dedupeState{until: now.Add(l.window)}
	}
	return []Alert{a}, admitted
}

// sweep forgets windows that have ended and returns the summaries of those
// that suppressed or dropped anything.
func (l *limiter) sweep(now time.Time) []Alert {
	var out []Alert
	for k, st := range l.dedupe {
		if now.Before(st.until) {
			continue
		}
		if st.count > 0 {
			s := st.last
			s.ID = newID()
			s.Time = now
			s.Reason = fmt.Sprintf("and %d more within %s; the latest: %s", st.count, l.window, st.last.Reason)
			s.AuditSeqs = st.seqs
			out = append(out, s)
		}
		delete(l.dedupe, k)
	}
	for emp, rs := range l.rates {
		if now.Before(rs.start.Add(rateInterval)) {
			continue
		}
		if rs.dropped > 0 {
			out = append(out, l.rateSummary(rs, now))
		}
		delete(l.rates, emp)
	}
	return out
}

func (l *limiter) rateNotice(a Alert, rs rateState, now time.Time) Alert {
	return Alert{
		ID:          newID(),
		Time:        now,
		Action:      ActionRateLimited,
		Shadow:      a.Shadow,
		Employee:    a.Employee,
		Role:        a.Role,
		Reason:      fmt.Sprintf("%s triggered more than %d notifications within a minute; further notifications for %s until %s are counted, not sent", displayName(a.Employee), l.rate, displayName(a.Employee), rs.start.Add(rateInterval).UTC().Format(time.RFC3339)),
		Observed:    int64(rs.sent + rs.dropped),
		Limit:       int64(l.rate),
		Measure:     "notifications",
		Scope:       "1m",
		SessionID:   a.SessionID,
		ClientAddr:  a.ClientAddr,
		Application: a.Application,
		Database:    a.Database,
		Severity:    "high",
	}
}

func (l *limiter) rateSummary(rs rateState, now time.Time) Alert {
	a := rs.last
	return Alert{
		ID:          newID(),
		Time:        now,
		Action:      ActionRateLimited,
		Shadow:      a.Shadow,
		Employee:    a.Employee,
		Role:        a.Role,
		Reason:      fmt.Sprintf("and %d more notifications for %s were not sent because of the rate limit of %d per minute (window starting %s)", rs.dropped, displayName(a.Employee), l.rate, rs.start.UTC().Format(time.RFC3339)),
		Observed:    int64(rs.dropped),
		Limit:       int64(l.rate),
		Measure:     "notifications",
		Scope:       "1m",
		SessionID:   a.SessionID,
		ClientAddr:  a.ClientAddr,
		Application: a.Application,
		Database:    a.Database,
		Severity:    "high",
	}
}

func displayName(employee string) string {
	if employee == "" {
		return "(unknown employee)"
	}
	return employee
}
