package guard

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/proxy"
)

// Bounds of the organisation-level folding: changes tracked, and employees
// named per change.
const (
	maxOrgChanges   = 1024
	maxOrgEmployees = 4096
	orgNamesShown   = 5

	// toldFor is how long a change raised as an org_change keeps
	// folding the employees who meet it after the others: security was
	// told of it.
	toldFor = 7 * 24 * time.Hour
)

// orgChanges folds the novelties that many employees share at once (an
// office's address range renumbered, an application rolled out, a new
// table everyone starts using) into one organisation-level incident. It is
// per instance and in memory: a change is tracked from its first novelty
// for as long as employees keep meeting it less than the span apart, and
// at most maxOrgChanges changes are tracked (the stalest dropped first).
type orgChanges struct {
	mu      sync.Mutex
	changes map[string]*orgChange
	// due is the earliest time a held novelty is due, in Unix
	// nanoseconds, 0 when none is held. It is written with mu held and
	// read without: every observed statement asks whether a novelty is
	// due, and the answer is almost always no.
	due atomic.Int64
}

// setDue makes t, if earlier, the time the next held novelty is due.
// Called with mu held.
func (oc *orgChanges) setDue(t time.Time) {
	if d := oc.due.Load(); d == 0 || t.UnixNano() < d {
		oc.due.Store(t.UnixNano())
	}
}

// orgChange is one new value and the employees it was new to.
type orgChange struct {
	kind, what, value string // novelty kind; "client address range", "10.1.2.0/24"
	first, last       time.Time
	employees         []string // distinct, in order of arrival
	folded            bool     // the org_change alert was raised
	held              []heldNovelty
	// hours are the hours of the day (UTC) a team's off_hours change was
	// met at: the hours its shift moved into.
	hours uint32
}

// heldNovelty is an employee's novelty alert waiting for others to share
// it: decided as it came if none do by until.
type heldNovelty struct {
	a     norm.Anomaly
	info  proxy.SessionInfo
	who   who
	until time.Time
}

// orgKey is what a novelty is new about, shared across employees: the /24
// (IPv4) or /64 (IPv6) of a client address, else the name itself.
func orgKey(a norm.Anomaly) (what, value string, ok bool) {
	if a.Subject == "" {
		return "", "", false
	}
	switch a.Kind {
	case "novel_client":
		ip, err := netip.ParseAddr(a.Subject)
		if err != nil {
			return "client address", a.Subject, true
		}
		bits := 64
		if ip.Unmap().Is4() {
			ip, bits = ip.Unmap(), 24
		}
		p, _ := ip.Prefix(bits)
		return "client address range", p.String(), true
	case "novel_application":
		return "application", a.Subject, true
	case "novel_table":
		return "table", a.Subject, true
	case "novel_category":
		return "PII category", a.Subject, true
	case "off_hours":
		// A team whose shift moved (another time zone, a new rota)
		// works off its hours together: one change a day.
		return "working hours of peer group", a.Subject + " on " + a.At.UTC().Format(time.DateOnly), true
	}
	return "", "", false
}

// foldNovelty takes an employee's novelty anomaly into the organisation
// level: it returns false when the anomaly is to be decided as usual (not
// a novelty, folding off, in the learning period). Otherwise the anomaly
// is held (decided later by releaseNovelties unless others share it), or
// recorded without notice as part of an org_change, which is raised once
// the change is new to OrgChangeEmployees employees.
func (s *session) foldNovelty(st *proxy.Statement, a norm.Anomaly, nc policy.NormConfig) bool {
	if nc.OrgChangeEmployees < 2 || a.Learning || a.Employee == "" {
		return false
	}
	what, value, ok := orgKey(a)
	if !ok {
		return false
	}
	g := s.g
	oc := &g.norms.org
	key := a.Kind + "\x00" + value
	g.releaseNovelties(a.At)
	oc.mu.Lock()
	if oc.changes == nil {
		oc.changes = make(map[string]*orgChange)
	}
	c := oc.changes[key]
	if c != nil && (!c.folded && a.At.Sub(c.last) > nc.OrgChangeSpan || c.folded && a.At.Sub(c.last) > toldFor) {
		// Stale: its held novelties were released above.
		delete(oc.changes, key)
		c = nil
	}
	if c == nil && a.Kind == "off_hours" {
		if prev := oc.continued(a); prev != nil {
			// The team's shift moved days ago and security was told:
			// a member off their old hours, in the hours the team
			// moved into, is that change going on.
			prev.hours |= hourBit(a.At)
			if !slices.Contains(prev.employees, a.Employee) && len(prev.employees) < maxOrgEmployees {
				prev.employees = append(prev.employees, a.Employee)
			}
			summary := prev.summary()
			oc.mu.Unlock()
			s.decideNovelty(st, a, true, time.Time{}, " (recorded only: continues "+summary+", alerted once as norm:org_change)")
			return true
		}
	}
	var evicted []heldNovelty
	if c == nil {
		if len(oc.changes) >= maxOrgChanges {
			evicted = oc.evictStalest()
		}
		c = &orgChange{kind: a.Kind, what: what, value: value, first: a.At}
		oc.changes[key] = c
	}
	if a.At.After(c.last) {
		c.last = a.At
	}
	if a.Kind == "off_hours" {
		c.hours |= hourBit(a.At)
	}
	seen := slices.Contains(c.employees, a.Employee)
	if !seen && len(c.employees) < maxOrgEmployees {
		c.employees = append(c.employees, a.Employee)
	}
	var quiet []heldNovelty
	raise := false
	switch {
	case c.folded:
	case seen:
		// The same employee meeting the same change again (another
		// address of the range): one alert, held or given, is enough.
		oc.mu.Unlock()
		g.decideEvicted(evicted)
		s.decideNovelty(st, a, true, time.Time{}, " (recorded only: "+c.what+" "+value+" was new to "+a.Employee+" less than "+
			nc.OrgChangeSpan.String()+" ago, and alerted or held then)")
		return true
	case len(c.employees) >= nc.OrgChangeEmployees:
		c.folded, raise = true, true
		quiet, c.held = c.held, nil
	default:
		w := s.stateOf(st).who
		h := heldNovelty{a: a, info: s.info, who: who{employee: w.employee, identifiedBy: w.identifiedBy, peer: w.peer},
			until: a.At.Add(nc.OrgChangeHold)}
		c.held = append(c.held, h)
		oc.setDue(h.until)
		oc.mu.Unlock()
		g.decideEvicted(evicted)
		return true
	}
	summary := c.summary()
	oc.mu.Unlock()
	g.decideEvicted(evicted)
	if raise {
		g.decideOrgChange(a, summary)
	}
	for _, h := range quiet {
		g.decideHeld(h, true, summary)
	}
	note := " (recorded only: " + summary + ", alerted once as norm:org_change)"
	s.decideNovelty(st, a, true, time.Time{}, note)
	return true
}

// hourBit is the bit of t's hour of the day (UTC) in orgChange.hours.
func hourBit(t time.Time) uint32 { return 1 << t.UTC().Hour() }

// continued returns the off_hours change of a's peer group raised on one
// of the days before (up to toldFor) whose hours, give or take one, hold
// a's hour: the team's moved shift going on. Called with oc.mu held.
func (oc *orgChanges) continued(a norm.Anomaly) *orgChange {
	h := a.At.UTC().Hour()
	near := uint32(1)<<h | uint32(1)<<((h+1)%24) | uint32(1)<<((h+23)%24)
	for d := 1; d <= int(toldFor/(24*time.Hour)); d++ {
		day := a.At.UTC().AddDate(0, 0, -d).Format(time.DateOnly)
		c := oc.changes[a.Kind+"\x00"+a.Subject+" on "+day]
		if c != nil && c.folded && c.hours&near != 0 && a.At.Sub(c.last) <= toldFor {
			return c
		}
	}
	return nil
}

// summary describes a change for people.
func (c *orgChange) summary() string {
	names := c.employees
	more := ""
	if len(names) > orgNamesShown {
		more = fmt.Sprintf(" and %d more", len(names)-orgNamesShown)
		names = names[:orgNamesShown]
	}
	return fmt.Sprintf("%s %s new to %d employees in %s (%s%s)", c.what, c.value, len(c.employees),
		c.last.Sub(c.first).Round(time.Second), strings.Join(names, ", "), more)
}

// evictStalest drops the change met least recently and returns its held
// novelties, to be decided as they came.
func (oc *orgChanges) evictStalest() []heldNovelty {
	var k string
	var last time.Time
	for key, c := range oc.changes {
		if k == "" || c.last.Before(last) {
			k, last = key, c.last
		}
	}
	held := oc.changes[k].held
	delete(oc.changes, k)
	return held
}

// decideEvicted decides the held novelties of an evicted change.
func (g *Guard) decideEvicted(held []heldNovelty) {
	for _, h := range held {
		g.decideHeld(h, false, "")
	}
}

// releaseNovelties decides, as they came, the held novelty alerts whose
// wait ended before now without the change becoming an organisation's.
func (g *Guard) releaseNovelties(now time.Time) {
	oc := &g.norms.org
	if d := oc.due.Load(); d == 0 || now.UnixNano() < d {
		return
	}
	oc.mu.Lock()
	if d := oc.due.Load(); d == 0 || now.UnixNano() < d {
		oc.mu.Unlock()
		return
	}
	var due []heldNovelty
	oc.due.Store(0)
	for _, c := range oc.changes {
		kept := c.held[:0]
		for _, h := range c.held {
			if !now.Before(h.until) {
				due = append(due, h)
				continue
			}
			kept = append(kept, h)
			oc.setDue(h.until)
		}
		c.held = kept
	}
	oc.mu.Unlock()
	g.decideDue(due)
}

// decideDue decides released novelties as they came, an employee's
// released together as one alert: the novelties one statement or one
// night's session brings (a new client address, a first table, off
// hours, a new PII category) are one incident for the people who answer
// it.
func (g *Guard) decideDue(due []heldNovelty) {
	slices.SortFunc(due, func(a, b heldNovelty) int { return a.a.At.Compare(b.a.At) })
	done := make([]bool, len(due))
	for i, h := range due {
		if done[i] {
			continue
		}
		var with []heldNovelty
		for j := i + 1; j < len(due); j++ {
			if !done[j] && due[j].a.Employee == h.a.Employee {
				with, done[j] = append(with, due[j]), true
			}
		}
		// The incident is named by what tells most of PII leaving.
		for k := range with {
			if noveltyRank(with[k].a.Kind) < noveltyRank(h.a.Kind) {
				h, with[k] = with[k], h
			}
		}
		g.decideHeldWith(h, with)
	}
}

// noveltyRank orders novelty kinds by how much they say of PII leaving:
// a category never read, PII off hours, then what is merely new.
func noveltyRank(kind string) int {
	switch kind {
	case "novel_category":
		return 0
	case "off_hours":
		return 1
	case "novel_table":
		return 2
	case "novel_client":
		return 3
	}
	return 4
}

// ReleaseHeldNovelties decides now, as they came, every novelty alert
// still waiting for other employees to share it: on shutdown, so that a
// held alert is not lost with the memory that holds it.
func (g *Guard) ReleaseHeldNovelties() {
	oc := &g.norms.org
	oc.mu.Lock()
	var due []heldNovelty
	for _, c := range oc.changes {
		due = append(due, c.held...)
		c.held = nil
	}
	oc.due.Store(0)
	oc.mu.Unlock()
	g.decideDue(due)
}

// heldSession is a stand-in for the session a held novelty came from,
// which may have ended: its identity, client and application.
func (g *Guard) heldSession(info proxy.SessionInfo, w who) *session {
	s := &session{g: g, info: info, log: g.cfg.Logger.With("session_id", info.ID, "employee", w.employee)}
	s.def = w
	s.defState.who = &s.def
	s.c.Store(g.cur.Load())
	return s
}

// decideHeld decides a held novelty: as it came, or quietly as part of
// the change summary.
func (g *Guard) decideHeld(h heldNovelty, quiet bool, summary string) {
	s := g.heldSession(h.info, h.who)
	note := ""
	if quiet {
		note = " (recorded only: " + summary + ", alerted once as norm:org_change)"
	} else {
		note = fmt.Sprintf(" (held %s for other employees meeting it; none did)", g.cur.Load().p.Norms().OrgChangeHold)
	}
	// Released late (the clock moved past the wait before anything
	// looked), it is dated when its wait ended.
	var at time.Time
	if !quiet {
		at = h.until
	}
	s.decideNovelty(nil, h.a, quiet, at, note)
}

// decideHeldWith decides a released novelty as it came, with the
// employee's other novelties released at the same time told in its
// reason and recorded without notice.
func (g *Guard) decideHeldWith(h heldNovelty, with []heldNovelty) {
	if len(with) == 0 {
		g.decideHeld(h, false, "")
		return
	}
	s := g.heldSession(h.info, h.who)
	var also []string
	for _, o := range with {
		also = append(also, o.a.Explanation+" (norm "+o.a.Kind+")")
	}
	note := fmt.Sprintf(" (held %s for other employees meeting it; none did) (one incident with: %s)",
		g.cur.Load().p.Norms().OrgChangeHold, strings.Join(also, "; "))
	s.decideNovelty(nil, h.a, false, h.until, note)
	for _, o := range with {
		os := g.heldSession(o.info, o.who)
		os.decideNovelty(nil, o.a, true, o.until, fmt.Sprintf(" (recorded only: told with norm:%s of %s)", h.a.Kind, h.a.Employee))
	}
}

// decideNovelty records a novelty: an alert, or with quiet a decision
// with action log (recorded, not notified).
func (s *session) decideNovelty(st *proxy.Statement, a norm.Anomaly, quiet bool, at time.Time, note string) {
	nc := s.cc().p.Norms()
	action := policy.ActionAlert
	if quiet {
		action = policy.ActionLog
	}
	r := &policy.Rule{Name: "norm:" + a.Kind, Action: action, Shadow: nc.Shadow || s.cc().p.Shadow(),
		Scope: policy.ScopeStatement, Severity: "medium"}
	b := policy.Breach{Measure: a.Feature, Observed: int64(a.Observed), Limit: int64(a.Norm)}
	s.decideAs(st, r, b, normReason(a)+note, decisionExtra{source: "norm", kind: a.Kind, score: a.Score, window: a.Window, at: at})
}

// decideOrgChange raises the one alert of an organisation-level change,
// on behalf of no single employee.
func (g *Guard) decideOrgChange(a norm.Anomaly, summary string) {
	s := g.heldSession(proxy.SessionInfo{ID: "norms"}, who{})
	nc := s.cc().p.Norms()
	r := &policy.Rule{Name: "norm:org_change", Action: policy.ActionAlert, Shadow: nc.Shadow || s.cc().p.Shadow(),
		Scope: policy.ScopeStatement, Severity: "medium"}
	reason := fmt.Sprintf("%s: one organisation-level change, not an employee's (each employee's %s recorded without notice) (norm org_change)",
		summary, a.Kind)
	s.decideAs(nil, r, policy.Breach{Measure: a.Feature, Observed: 1}, reason,
		decisionExtra{source: "norm", kind: "org_change", score: a.Score, window: a.Window})
}

// normReason is what a norm decision says: the anomaly's explanation and
// its kind.
func normReason(a norm.Anomaly) string {
	reason := a.Explanation
	switch {
	case a.Learning && a.Defaulted:
		reason += " (learning period, no norm yet: recorded only)"
	case a.Learning:
		reason += " (learning period: alert only)"
	}
	return reason + " (norm " + a.Kind + ")"
}
