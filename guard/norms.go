package guard

import (
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/proxy"
)

// normState is what the guard keeps beside the model: employees blocked
// by a norm until a time, and each employee's adaptive statement limit.
type normState struct {
	mu      sync.Mutex
	blocked map[string]normBlock
	limits  map[string]stmtLimit
	// org folds the novelties many employees share at once.
	org orgChanges
}

type normBlock struct {
	until  time.Time
	reason string
}

type stmtLimit struct {
	limit    int64 // 0: none
	computed time.Time
}

// limitRefresh is how often an employee's adaptive statement limit is
// computed again from the model.
const limitRefresh = 10 * time.Minute

// observe feeds a finished statement to the norm model and acts on the
// anomalies it reports.
func (s *session) observe(st *proxy.Statement, f *Figures, tables []string, at time.Time) {
	m := s.g.cfg.Norms
	nc := s.cc().p.Norms()
	if m == nil || !nc.Enabled || st == between {
		return
	}
	s.g.releaseNovelties(at)
	w := f.state.who
	if !nc.Watches(&policy.Context{User: w.employee, Roles: s.enf.roles, Groups: s.info.Groups}) {
		return
	}
	o := norm.Observation{Employee: w.employee, Peer: w.peer, Time: at, ClientAddr: s.clientIP,
		Application: s.info.ApplicationName, SessionID: s.info.ID,
		Features: norm.Features{PIIRows: f.PIIRows, Subjects: int64(f.DistinctSubjects()), Rows: f.Rows,
			Bytes: f.Bytes, Statements: 1, Tables: normTables(tables)}}
	if f.Unexplained > 0 {
		o.UnexplainedStatements = 1
	}
	if f.PIIValues.Total() > 0 {
		o.PIIValues = make(map[string]int64, 2)
		f.PIIValues.Each(func(c pii.Category, n int) { o.PIIValues[string(c)] = int64(n) })
	}
	if f.Failed {
		o.Failed = 1
	}
	if sql := f.state.text(st); sql != "" {
		for _, k := range s.analyze(sql).Kinds {
			if k == "copy_to_stdout" {
				o.Copy = 1
			}
		}
	}
	var anomalies []norm.Anomaly
	if sh := s.g.cfg.NormShare; sh != nil {
		anomalies = sh.Observe(o)
	} else {
		anomalies = m.Observe(o)
	}
	for _, a := range anomalies {
		s.normDecision(st, f, a, nc)
	}
}

// normTables names tables as the norms know them: a temporary table is
// pg_temp.NAME whichever backend's pg_temp_N holds it, or every session's
// temporary table would be a table used for the first time. tables is
// sorted; so is the result.
func normTables(tables []string) []string {
	if !slices.ContainsFunc(tables, func(t string) bool { return normTable(t) != t }) {
		return tables
	}
	out := make([]string, len(tables))
	for i, t := range tables {
		out[i] = normTable(t)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// normTable is pg_temp.NAME for pg_temp_N.NAME, else name.
func normTable(name string) string {
	schema, table, ok := strings.Cut(name, ".")
	n, temp := strings.CutPrefix(schema, "pg_temp_")
	if !ok || !temp || n == "" || strings.Trim(n, "0123456789") != "" {
		return name
	}
	return "pg_temp." + table
}

// normDecision turns an anomaly of statement st (with figures f; nil for
// the anomalies found as the clock moves) into a decision: alerted from
// AlertScore, and from BlockScore (outside the learning period, and never
// for a novelty) the employee's statements with PII are blocked until the
// anomaly's window ends.
func (s *session) normDecision(st *proxy.Statement, f *Figures, a norm.Anomaly, nc policy.NormConfig) {
	if a.Score < nc.AlertScore {
		return
	}
	action := policy.ActionAlert
	if blocks(a, nc) {
		action = policy.ActionBlock
	}
	if a.Learning && a.Defaulted {
		// Neither the employee nor a peer has a norm yet (a new account,
		// a first deployment): the default threshold is a guess, and its
		// anomalies are recorded, not sent to security. Rules still hold.
		action = policy.ActionLog
	}
	note := ""
	if action == policy.ActionAlert && f != nil && f.stoppedBy != "" {
		// The statement is the one a rule stopped and security was told
		// of, its volume, hour and novelties with it: one incident, one
		// notice.
		action, note = policy.ActionLog, " (recorded only: the statement was stopped by rule "+f.stoppedBy+", which was told)"
	}
	if action == policy.ActionAlert && s.foldNovelty(st, a, nc) {
		return
	}
	r := &policy.Rule{Name: "norm:" + a.Kind, Action: action, Shadow: nc.Shadow || s.cc().p.Shadow(),
		Scope: policy.ScopeStatement, Severity: "medium"}
	if action == policy.ActionBlock {
		r.Severity = "high"
	}
	b := policy.Breach{Measure: a.Feature, Observed: int64(a.Observed), Limit: int64(a.Norm)}
	reason := normReason(a) + note
	s.decideAs(st, r, b, reason, decisionExtra{source: "norm", kind: a.Kind, score: a.Score, window: a.Window})
	if action == policy.ActionBlock && !r.Shadow {
		until := s.g.normBlock(a, reason, s.cc().p.Location())
		s.log.Warn("norm_block", "until", until, "reason", reason)
	}
}

// blocks reports whether an anomaly blocks under the norms settings:
// from BlockScore, outside the learning period, and never a novelty.
func blocks(a norm.Anomaly, nc policy.NormConfig) bool {
	novelty := strings.HasPrefix(a.Kind, "novel_") || a.Kind == "copy"
	return nc.BlockScore > 0 && a.Score >= nc.BlockScore && !a.Learning && !novelty
}

// normBlock blocks the employee's statements with PII until the
// anomaly's window ends, and returns when that is.
func (g *Guard) normBlock(a norm.Anomaly, reason string, loc *time.Location) time.Time {
	until := windowEnd(a.At, a.Window, loc)
	g.norms.mu.Lock()
	defer g.norms.mu.Unlock()
	if g.norms.blocked == nil {
		g.norms.blocked = make(map[string]normBlock)
	}
	if cur, ok := g.norms.blocked[a.Employee]; !ok || cur.until.Before(until) {
		g.norms.blocked[a.Employee] = normBlock{until: until, reason: reason}
	}
	return until
}

// EnforceRemoteNorms acts on anomalies that the other instances'
// statements showed when they were fed to this instance's model, and that
// their own instance did not report: what only the sum of the instances
// shows, such as a burst split across them. The instance that holds the
// norms lease decides them, alert and block, once for all; the others
// impose the blocks that follow without a decision of their own.
func (g *Guard) EnforceRemoteNorms(anomalies []norm.Anomaly) {
	decide := g.cfg.NormShare != nil && g.cfg.NormShare.Leader()
	g.actOnNorms(anomalies, decide, " (counting statements through other pgwarden instances)")
}

// actOnNorms decides anomalies found outside a statement (decide), or
// only imposes the blocks they call for; note is added to their
// explanations.
func (g *Guard) actOnNorms(anomalies []norm.Anomaly, decide bool, note string) {
	c := g.cur.Load()
	nc := c.p.Norms()
	if g.cfg.Norms == nil || !nc.Enabled {
		return
	}
	for _, a := range anomalies {
		if a.Score < nc.AlertScore {
			continue
		}
		a.Explanation += note
		if decide {
			// Not in a session: the employee is the model's; no
			// database role is known.
			s := &session{g: g, info: proxy.SessionInfo{ID: "norms", Employee: a.Employee},
				log: g.cfg.Logger.With("employee", a.Employee)}
			s.def = who{employee: a.Employee}
			s.defState.who = &s.def
			s.c.Store(c)
			s.normDecision(nil, nil, a, nc)
			continue
		}
		if nc.Shadow || c.p.Shadow() || !blocks(a, nc) {
			continue
		}
		until := g.normBlock(a, a.Explanation, c.p.Location())
		g.cfg.Logger.Info("norm_block_shared", "employee", a.Employee, "until", until, "reason", a.Explanation)
	}
}

// windowEnd is when the bucket of an anomaly ends: the employee stays
// blocked until then.
func windowEnd(at time.Time, window string, loc *time.Location) time.Time {
	t := at.In(loc)
	switch window {
	case "10m":
		return t.Truncate(10 * time.Minute).Add(10 * time.Minute)
	case "1h":
		return t.Truncate(time.Hour).Add(time.Hour)
	}
	y, mo, d := t.Date()
	return time.Date(y, mo, d, 0, 0, 0, 0, loc).AddDate(0, 0, 1)
}

// normRules are the synthetic rules a statement of w starts with: the
// employee's norm block, and the adaptive statement limit.
func (s *session) normRules(c *compiled, now time.Time, w *who) []*activeRule {
	m := s.g.cfg.Norms
	nc := c.p.Norms()
	if m == nil || !nc.Enabled || !nc.Watches(&policy.Context{User: w.employee, Roles: s.enf.roles, Groups: s.info.Groups}) {
		return nil
	}
	g := s.g
	shadow := nc.Shadow || c.p.Shadow()
	var out []*activeRule
	g.norms.mu.Lock()
	nb, blocked := g.norms.blocked[w.employee]
	if blocked && !now.Before(nb.until) {
		delete(g.norms.blocked, w.employee)
		blocked = false
	}
	lim, have := g.norms.limits[w.employee]
	g.norms.mu.Unlock()
	if blocked {
		r := &policy.Rule{Name: "norm:block", Action: policy.ActionBlock, Shadow: shadow, Scope: policy.ScopeStatement, Severity: "high"}
		out = append(out, fixedRule(r, 0, nb.reason+" (rule norm:block)"))
	}
	if nc.BlockScore > 0 {
		out = append(out, s.headroomRules(w, now, nc, shadow)...)
	}
	if nc.StatementFactor > 0 {
		if !have || now.Sub(lim.computed) >= limitRefresh || now.Before(lim.computed) {
			lim = stmtLimit{computed: now}
			en := m.Norm(w.employee, now)
			if fn, ok := en.Features["pii_values/10m"]; ok && !en.Learning {
				lim.limit = max(nc.StatementFloor, int64(nc.StatementFactor*fn.High))
			}
			g.norms.mu.Lock()
			if g.norms.limits == nil {
				g.norms.limits = make(map[string]stmtLimit)
			}
			g.norms.limits[w.employee] = lim
			g.norms.mu.Unlock()
		}
		if lim.limit > 0 {
			r := &policy.Rule{Name: "norm:statement", Action: policy.ActionBlock, Shadow: shadow, Scope: policy.ScopeStatement, Severity: "high"}
			out = append(out, fixedRule(r, lim.limit, ""))
		}
	}
	return out
}

// headroomRules stop the statement that would take a volume anomaly of
// w's to the block score at the value that would, rather than from the
// statement after it: one rule per PII feature, its limit the room the
// tightest window's bucket has left. The statement's own figures are
// compared with it; the rest of the batch is in the model only once
// recorded.
func (s *session) headroomRules(w *who, now time.Time, nc policy.NormConfig, shadow bool) []*activeRule {
	hs := s.g.cfg.Norms.Headroom(w.employee, now, nc.BlockScore)
	out := make([]*activeRule, 0, len(hs))
	for _, h := range hs {
		c := limitCheck{left: h.Left, limit: policy.Limit{Measure: h.Feature, Limit: h.Left}}
		switch {
		case h.Feature == "pii_values":
			c.kind = measurePIIValues
		case h.Feature == "pii_rows":
			c.kind = measurePIIRows
		case strings.HasPrefix(h.Feature, "pii_values."):
			c.kind, c.cat = measurePIICategory, pii.Category(strings.TrimPrefix(h.Feature, "pii_values."))
		default:
			continue
		}
		r := &policy.Rule{Name: "norm:volume", Action: policy.ActionBlock, Shadow: shadow, Scope: policy.ScopeStatement, Severity: "high"}
		reason := fmt.Sprintf("%s would receive more than %s %s in %s: %.3g times the alert threshold of their norm (%s) (rule norm:volume)",
			w.employee, formatCount(h.Observed+h.Left), measureText(h.Feature), windowText(h.Window), nc.BlockScore, formatCount(int64(math.Round(h.Threshold))))
		out = append(out, &activeRule{r: r, fixed: true, reason: reason, checks: []limitCheck{c},
			norm: &decisionExtra{source: "norm", kind: "volume", score: nc.BlockScore, window: h.Window}})
	}
	return out
}

func windowText(w string) string {
	switch w {
	case "10m":
		return "10 minutes"
	case "1h":
		return "an hour"
	}
	return "a day"
}

// fixedRule is an active rule whose only threshold is PII values > limit
// in the statement; reason, if set, is what the decision says instead of
// the limit (a block at the first PII value says why).
func fixedRule(r *policy.Rule, limit int64, reason string) *activeRule {
	return &activeRule{r: r, fixed: true, reason: reason,
		checks: []limitCheck{{kind: measurePIIValues, limit: policy.Limit{Measure: "pii_values", Limit: limit}, left: limit}}}
}

// AdvanceNorms closes the norm model's buckets and days up to now and acts
// on the anomalies that reports (drift). serve calls it every few seconds.
func (g *Guard) AdvanceNorms(now time.Time) {
	m := g.cfg.Norms
	c := g.cur.Load()
	nc := c.p.Norms()
	if m == nil || !nc.Enabled {
		return
	}
	anomalies := m.Advance(now)
	g.releaseNovelties(now)
	// With several instances, the lease holder reports them; the others
	// impose the blocks.
	sh := g.cfg.NormShare
	g.actOnNorms(anomalies, sh == nil || sh.Leader(), "")
}

// Norms returns the norm model, nil when there is none.
func (g *Guard) Norms() *norm.Model { return g.cfg.Norms }

// NormOf describes what the model learned of an employee; false when
// there is no model or it has seen nothing of them.
func (g *Guard) NormOf(employee string, now time.Time) (norm.EmployeeNorm, bool) {
	if g.cfg.Norms == nil {
		return norm.EmployeeNorm{}, false
	}
	n := g.cfg.Norms.Norm(employee, now)
	return n, !n.FirstSeen.IsZero()
}

func clientIP(info *proxy.SessionInfo) string {
	if info.ClientAddr == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(info.ClientAddr.String()); err == nil {
		return host
	}
	return info.ClientAddr.String()
}
