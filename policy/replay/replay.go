// Package replay runs a policy over recorded statements, as pgwarden would
// have run it live, so that a DBA can see what a policy would alert and
// block before putting it in force. It is pure logic: the caller reads
// the audit trail and feeds sessions and statements in order.
//
// Replay sees each statement's recorded totals, not its rows: a threshold
// is "exceeded" when the statement's figures, added to its scope's, pass
// the limit. Live, the statement would have been stopped at the limit.
package replay

import (
	"net/netip"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/policy/sqltext"
	"github.com/pgwarden/pgwarden/policy/window"
)

// Session is what a session_start event says.
type Session struct {
	ID, Employee, ClientAddr, Application string
	Roles                                 []string // PostgreSQL roles, if the caller knows them
}

// Statement is what a statement event says.
type Statement struct {
	Session string
	// Employee is whom the statement counted against, when not the
	// session's employee (a service account's tagged statement).
	Employee string
	// Service is how a service account's session was used, as recorded.
	Service          policy.ServiceUse
	Time             time.Time
	SQL              string // normalized text as recorded
	Function         bool   // a fast-path function call
	Rows, Bytes      int64
	PIIRows          int64
	DistinctSubjects int64
	PIIValues        map[string]int64
	Tables           []string
	Failed           bool
	Unexplained      int64 // rows without a recorded reason (explained_access)
	Sequential       int64 // rows next to a key read in the last hour
}

// Decision is a rule that would have fired.
type Decision struct {
	Time      time.Time `json:"time"`
	Employee  string    `json:"employee"`
	SessionID string    `json:"session_id"`
	Rule      string    `json:"rule"`
	Action    string    `json:"action"`
	Shadow    bool      `json:"shadow,omitempty"`
	Scope     string    `json:"scope"`
	Measure   string    `json:"measure,omitempty"`
	Observed  int64     `json:"observed,omitempty"`
	Limit     int64     `json:"limit,omitempty"`
	SQL       string    `json:"sql,omitempty"`
}

// Replayer holds the sessions and windows of a replay.
type Replayer struct {
	p        *policy.Policy
	sql      *sqltext.Analyzer
	windows  *window.Registry
	sessions map[string]*session
	// norms, when set, learns from every statement as pgwarden would,
	// and its anomalies are decisions when the policy's norms are on.
	norms    *norm.Model
	advanced time.Time
	// Peer returns an employee's peer group, if the caller knows it.
	Peer func(employee string) string
}

type session struct {
	Session
	addr  netip.Addr
	total policy.Figures
}

// New returns a Replayer for p; model, if not nil, is fed every statement
// (replaying a trail rebuilds the norms) and scored when p's norms are on.
func New(p *policy.Policy, model *norm.Model) (*Replayer, error) {
	w, err := window.NewRegistry(window.Config{})
	if err != nil {
		return nil, err
	}
	return &Replayer{p: p, sql: sqltext.New(0), windows: w, sessions: make(map[string]*session), norms: model}, nil
}

// Advance lets the norm model close the buckets and days that ended by
// now, and returns the drift decisions that reports.
func (r *Replayer) Advance(now time.Time) []Decision {
	if r.norms == nil {
		return nil
	}
	r.advanced = now
	var out []Decision
	for _, a := range r.norms.Advance(now) {
		if d, ok := r.normDecision(a, "", ""); ok {
			out = append(out, d)
		}
	}
	return out
}

// normDecision maps an anomaly to a decision as the guard does.
func (r *Replayer) normDecision(a norm.Anomaly, sessionID, sql string) (Decision, bool) {
	nc := r.p.Norms()
	if !nc.Enabled || a.Score < nc.AlertScore {
		return Decision{}, false
	}
	action := "alert"
	novelty := strings.HasPrefix(a.Kind, "novel_") || a.Kind == "copy"
	if nc.BlockScore > 0 && a.Score >= nc.BlockScore && !a.Learning && !novelty {
		action = "block"
	}
	shadow := nc.Shadow || r.p.Shadow()
	if shadow {
		action = "would " + action
	}
	return Decision{Time: a.At, Employee: a.Employee, SessionID: sessionID, Rule: "norm:" + a.Kind, Action: action,
		Shadow: shadow, Scope: a.Window, Measure: a.Feature, Observed: int64(a.Observed), Limit: int64(a.Norm), SQL: sql}, true
}

// StartSession begins a session.
func (r *Replayer) StartSession(s Session) {
	ss := &session{Session: s, total: policy.Figures{PIIValues: map[pii.Category]int64{}}}
	host := s.ClientAddr
	if h, _, ok := strings.Cut(host, "]:"); ok {
		host = strings.TrimPrefix(h, "[")
	} else if i := strings.LastIndexByte(host, ':'); i > 0 && strings.Count(host, ":") == 1 {
		host = host[:i]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		ss.addr = a.Unmap()
	}
	r.sessions[s.ID] = ss
}

func (s *session) addrText() string {
	if s.addr.IsValid() {
		return s.addr.String()
	}
	return ""
}

// EndSession forgets a session.
func (r *Replayer) EndSession(id string) { delete(r.sessions, id) }

// Statement replays one statement and returns the rules that would have
// fired on it, in policy order.
func (r *Replayer) Statement(st Statement) []Decision {
	s := r.sessions[st.Session]
	if s == nil {
		// The trail started mid-session: an anonymous session.
		r.StartSession(Session{ID: st.Session})
		s = r.sessions[st.Session]
	}
	employee := s.Employee
	if st.Employee != "" {
		employee = st.Employee
	}
	c := policy.Context{User: employee, Roles: s.Roles, ClientAddr: s.addr, Application: s.Application,
		Time: st.Time.In(r.p.Location()), Tables: st.Tables, Service: st.Service}
	if st.Function {
		c.Kinds = []policy.StatementKind{policy.KindFunctionCall}
	} else if st.SQL != "" {
		info := r.sql.Analyze(st.SQL)
		for _, k := range info.Kinds {
			c.Kinds = append(c.Kinds, policy.StatementKind(k))
		}
		for _, rel := range info.Relations {
			schema := rel.Schema
			if schema == "" {
				schema = "public" // the session's search_path is not in the trail
			}
			c.Tables = append(c.Tables, schema+"."+rel.Table)
		}
	}
	own := policy.Figures{Rows: st.Rows, Bytes: st.Bytes, PIIRows: st.PIIRows, DistinctSubjects: st.DistinctSubjects, Unexplained: st.Unexplained, Sequential: st.Sequential,
		PIIValues: make(map[pii.Category]int64, len(st.PIIValues))}
	for k, n := range st.PIIValues {
		own.PIIValues[pii.Category(k)] = n
	}
	var totals window.Totals
	haveTotals := false
	var out []Decision
	for _, rule := range r.p.Rules() {
		if !rule.Applies(&c) || rule.Thresholded() && !contributes(rule, &own) {
			continue
		}
		var f policy.Figures
		switch rule.Scope {
		case policy.ScopeStatement:
			f = own
		case policy.ScopeSession:
			f = sum(s.total, own)
		default:
			if !haveTotals {
				totals, _ = r.windows.Get(employee, st.Time)
				haveTotals = true
			}
			span, _ := rule.Scope.Span()
			f = sum(policy.WindowFigures(&totals[span]), own)
		}
		b, ok := rule.Exceeded(&f)
		if !ok {
			continue
		}
		action := string(rule.Action)
		if rule.Shadow {
			action = "would " + action
		}
		out = append(out, Decision{Time: st.Time, Employee: employee, SessionID: s.ID, Rule: rule.Name,
			Action: action, Shadow: rule.Shadow, Scope: string(rule.Scope), Measure: b.Measure,
			Observed: b.Observed, Limit: b.Limit, SQL: st.SQL})
	}
	if r.norms != nil {
		if st.Time.Sub(r.advanced) >= time.Minute {
			out = append(out, r.Advance(st.Time)...)
		}
		o := norm.Observation{Employee: employee, Time: st.Time, ClientAddr: s.addrText(), Application: s.Application,
			SessionID: s.ID, Features: norm.Features{PIIValues: st.PIIValues, PIIRows: st.PIIRows,
				Subjects: st.DistinctSubjects, Rows: st.Rows, Bytes: st.Bytes, Statements: 1, Tables: st.Tables}}
		if st.Unexplained > 0 {
			o.UnexplainedStatements = 1
		}
		if r.Peer != nil {
			o.Peer = r.Peer(employee)
		}
		if st.Failed {
			o.Failed = 1
		}
		for _, k := range c.Kinds {
			if k == policy.KindCopyToStdout {
				o.Copy = 1
			}
		}
		for _, a := range r.norms.Observe(o) {
			if d, ok := r.normDecision(a, s.ID, st.SQL); ok {
				out = append(out, d)
			}
		}
	}
	s.total = sum(s.total, own)
	wf := window.Figures{Statements: 1, Rows: st.Rows, PIIRows: st.PIIRows, Bytes: st.Bytes, Unexplained: st.Unexplained, Sequential: st.Sequential}
	for k, n := range st.PIIValues {
		wf.AddPII(pii.Category(k), n)
	}
	r.windows.Add(employee, st.Time, wf)
	return out
}

// contributes reports whether a statement adds to what a rule's
// thresholds count: live, thresholds are checked on rows that carry PII,
// or on every row when the rule limits rows or bytes.
func contributes(r *policy.Rule, own *policy.Figures) bool {
	if own.PIIRows > 0 {
		return true
	}
	for _, n := range own.PIIValues {
		if n > 0 {
			return true
		}
	}
	for _, l := range r.Limits() {
		if (l.Measure == "rows" || l.Measure == "bytes" || l.Measure == "unexplained_rows" || l.Measure == "sequential_rows") && own.Rows > 0 {
			return true
		}
	}
	return false
}

func sum(a, b policy.Figures) policy.Figures {
	out := policy.Figures{Rows: a.Rows + b.Rows, Bytes: a.Bytes + b.Bytes, PIIRows: a.PIIRows + b.PIIRows, Unexplained: a.Unexplained + b.Unexplained, Sequential: a.Sequential + b.Sequential,
		DistinctSubjects: a.DistinctSubjects + b.DistinctSubjects,
		PIIValues:        make(map[pii.Category]int64, len(a.PIIValues)+len(b.PIIValues))}
	for k, n := range a.PIIValues {
		out.PIIValues[k] += n
	}
	for k, n := range b.PIIValues {
		out.PIIValues[k] += n
	}
	return out
}
