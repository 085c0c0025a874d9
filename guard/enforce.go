package guard

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/detect"
	"github.com/pgwarden/pgwarden/policy/hll"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/policy/sqltext"
	"github.com/pgwarden/pgwarden/policy/window"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/state/holds"
	"github.com/pgwarden/pgwarden/state/quarantine"
)

// Alerter receives the decisions security must hear about;
// *notify.Notifier is one.
type Alerter interface {
	Notify(a notify.Alert) error
}

// HoldApprover asks security to approve a held result and waits for the
// answer; *holds.Registry is one. It returns false when denied, and an
// error when ctx ends first.
type HoldApprover interface {
	Request(ctx context.Context, h holds.Hold) (holds.Hold, error)
}

// Function OIDs of the server-side large object export, which a client
// can call through the fast-path protocol.
const oidLoExport = 765 // lo_export(oid, text)

// prepared is what Statement decided about a statement, handed to the
// goroutine that reads its results.
// preparedFor is a prepared statement in the queue.
type preparedFor struct {
	st *proxy.Statement
	p  *prepared
}

type prepared struct {
	c      *compiled
	rules  []*activeRule
	pctx   policy.Context
	redact *policy.Rule // a context rule redacts the whole result
	// later are the rules that did not apply to the tables the text names;
	// they are checked again once the result names the tables it really
	// reads (a view's base tables).
	later []*policy.Rule
}

// normRulesMax is room for the rules the norms add to a statement's.
const normRulesMax = 4

// activeRule is a rule with thresholds that applies to the statement in
// progress, and the figures its scope had when the statement began.
type activeRule struct {
	r    *policy.Rule
	base policy.Figures
	// subjects is the union of the scope's distinct subjects before the
	// statement and the statement's so far, for distinct_subjects: a
	// subject the scope already counted is not counted again.
	subjects *hll.Counter
	// checks are the rule's thresholds less what the scope had already
	// received: per row only the statement's own running counts are
	// compared, without building any map.
	checks []limitCheck
	done   bool // decided for this statement (log and alert fire once)
	// fixed rules (a norm's) come with their checks; they have no base.
	fixed bool
	// reason replaces the decision's description of the limit (fixed rules).
	reason string
	// norm is set on a norm's headroom rule: its decision is the norm's,
	// and its block lasts until the window's bucket ends.
	norm *decisionExtra
}

type measureKind uint8

const (
	measurePIIValues measureKind = iota
	measurePIICategory
	measurePIIRows
	measureDistinct
	measureRows
	measureBytes
	measureUnexplained
	measureSequential
)

// limitCheck is one threshold of an active rule.
type limitCheck struct {
	kind  measureKind
	cat   pii.Category // measurePIICategory
	limit policy.Limit
	left  int64 // limit - the scope's count before the statement
}

// prepare computes the rule's checks from its base.
func (a *activeRule) prepare(c *compiled) {
	if a.fixed {
		return
	}
	limits := c.limitsOf(a.r)
	if a.checks == nil {
		a.checks = make([]limitCheck, 0, len(limits))
	}
	a.checks = a.checks[:0]
	for _, l := range limits {
		c := limitCheck{limit: l}
		var base int64
		switch {
		case l.Measure == "pii_values":
			c.kind = measurePIIValues
			for _, n := range a.base.PIIValues {
				base += n
			}
		case strings.HasPrefix(l.Measure, "pii_values."):
			c.kind = measurePIICategory
			c.cat = pii.Category(strings.TrimPrefix(l.Measure, "pii_values."))
			base = a.base.PIIValues[c.cat]
		case l.Measure == "pii_rows":
			c.kind, base = measurePIIRows, a.base.PIIRows
		case l.Measure == "distinct_subjects":
			c.kind = measureDistinct // a.subjects holds the scope's
		case l.Measure == "rows":
			c.kind, base = measureRows, a.base.Rows
		case l.Measure == "bytes":
			c.kind, base = measureBytes, a.base.Bytes
		case l.Measure == "unexplained_rows":
			c.kind, base = measureUnexplained, a.base.Unexplained
		case l.Measure == "sequential_rows":
			c.kind, base = measureSequential, a.base.Sequential
		default:
			continue // a measure this build does not count
		}
		c.left = l.Limit - base
		a.checks = append(a.checks, c)
	}
}

// exceeded reports whether every threshold of the rule is exceeded with
// the row counted in row (not yet in f), as policy.Rule.Exceeded would with
// the scope's full figures, and describes the first.
func (a *activeRule) exceeded(f *Figures, row *detect.Counts, total int64, rowPII bool, rowBytes int64, subjects, unexplained, sequential bool) (policy.Breach, bool) {
	var first policy.Breach
	for i := range a.checks {
		c := &a.checks[i]
		var cur int64
		switch c.kind {
		case measurePIIValues:
			cur = total
		case measurePIICategory:
			cur = int64(f.PIIValues.Get(c.cat) + row.Get(c.cat))
		case measurePIIRows:
			cur = f.PIIRows
			if rowPII {
				cur++
			}
		case measureDistinct:
			if subjects && a.subjects != nil {
				cur = int64(a.subjects.Count())
			}
		case measureRows:
			cur = f.Rows + 1
		case measureBytes:
			cur = f.Bytes + rowBytes
		case measureUnexplained:
			cur = f.Unexplained
			if unexplained {
				cur++
			}
		case measureSequential:
			cur = f.Sequential
			if sequential {
				cur++
			}
		}
		if cur <= c.left {
			return policy.Breach{}, false
		}
		if i == 0 {
			first = policy.Breach{Measure: c.limit.Measure, Observed: cur + c.limit.Limit - c.left, Limit: c.limit.Limit}
		}
	}
	return first, len(a.checks) > 0
}

// enforcement is a session's rule state.
type enforcement struct {
	mu sync.Mutex
	// prep holds, in the order they were sent, the statements Statement
	// prepared (written by the client goroutine); begin takes them off the
	// front, so a pipeline of any length costs O(1) a statement.
	prep []preparedFor

	active      []*activeRule // of the current statement
	pctx        *policy.Context
	needsRows   bool // a threshold on rows or bytes: evaluate every row
	needsSubjs  bool // a threshold on distinct subjects
	row         detect.Counts
	alertedOnce map[string]bool // session and window rules that alerted
	roles       []string

	// later and pending: rules to check again with the result's tables,
	// and a verdict for the statement's first row decided then.
	later   []*policy.Rule
	pending proxy.Verdict
	// rowUnexplained: the current row is of the explained_access table and
	// its key is not among the employee's.
	rowUnexplained bool
	// rowSequential: its key is next to one the employee read recently.
	rowSequential bool
	// redacting is the redact rule in force for the current statement.
	redacting *policy.Rule
	// redactAlways are session and window redact rules that fired: later
	// statements they apply to are redacted from their first row.
	redactAlways map[string]bool
	piiCols      []int    // columns of the current row that held PII
	redacted     [][]byte // the rewritten row
	// stop is the verdict of the row stops last saw.
	stop proxy.Verdict
}

var alertSeq atomic.Uint64

// policyContext builds the policy context of a statement: its employee
// is the one identify named.
func (s *session) policyContext(c *compiled, st *proxy.Statement, ss *stmtState) policy.Context {
	pc := policy.Context{
		User:        ss.who.employee,
		Roles:       s.enf.roles,
		Groups:      s.info.Groups,
		Application: s.info.ApplicationName,
		Time:        s.g.cfg.Now().In(c.p.Location()),
		ClientAddr:  clientAddr(&s.info),
		Service:     ss.use,
	}
	if c.sessions {
		// A lock all sessions share: taken only for a policy that asks.
		s.g.openMu.Lock()
		pc.Sessions = s.g.open[ss.who.employee]
		s.g.openMu.Unlock()
	}
	switch st.Kind {
	case proxy.FunctionCall:
		pc.Kinds = append(pc.Kinds, policy.KindFunctionCall)
		if st.FunctionOID == oidLoExport {
			pc.Kinds = append(pc.Kinds, policy.KindLoExport)
		}
	default:
		info := s.analyze(ss.text(st))
		pc.TablesUnknown = info.Skipped != ""
		pc.Kinds = make([]policy.StatementKind, 0, len(info.Kinds))
		for _, k := range info.Kinds {
			pc.Kinds = append(pc.Kinds, policy.StatementKind(k))
		}
		pc.Tables = make([]string, 0, len(info.Relations))
		for _, rel := range info.Relations {
			pc.Tables = append(pc.Tables, s.qualify(rel))
		}
		if c.estimate && info.Estimable != "" && s.cat != nil && s.mayReturnPII(info.Estimable) {
			var params *proxy.Params
			if info.EstimableParams {
				// Planned with the values the Execute binds; none
				// kept (too large), no estimate.
				params = st.Params()
			}
			if !info.EstimableParams || params != nil {
				pc.EstimatedRows = s.estimate(info.Estimable, params)
			}
		}
	}
	return pc
}

// mayReturnPII reports whether a query's result may carry declared PII:
// an output column computed from a declared column, or columns the text
// does not list (SELECT *). An aggregate such as count(*) or a grouping by
// city returns no PII, however many rows the planner expects.
func (s *session) mayReturnPII(query string) bool {
	lin := s.g.cfg.SQL.Lineage(query)
	if lin == nil || lin.Star {
		return true
	}
	for _, t := range lin.Targets {
		if s.targetCategory(lin, t, 0) != "" {
			return true
		}
	}
	return false
}

// estimate asks the planner, as the employee, how many rows a query
// returns; 0 when it cannot tell.
func (s *session) estimate(query string, params *proxy.Params) int64 {
	s.pathMu.Lock()
	s.resolvePath()
	path := s.path.schemas
	s.pathMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.CatalogTimeout)
	defer cancel()
	n, err := s.cat.Estimate(ctx, s.info.User, path, query, params)
	if err != nil {
		if strings.Contains(err.Error(), "SET LOCAL ROLE") || strings.Contains(err.Error(), "estimate as") {
			s.g.estimateWarn.Do(func() {
				s.log.Warn("no_estimate", "error", err, "consequence", "estimated_rows conditions do not apply",
					"fix", "the catalog connection's role must be able to SET ROLE to employees (a superuser, or a member of their roles)")
			})
		}
		s.log.Debug("no_estimate", "error", err)
		return 0
	}
	return n
}

// qualify names a relation schema.table along the search_path.
func (s *session) qualify(rel sqltext.Relation) string {
	if rel.Schema != "" {
		return s.qualName(rel.Schema, rel.Table)
	}
	return s.qualName(s.resolveSchemas(rel)[0], rel.Table)
}

// Statement decides the rules that need no counts (statement kinds,
// tables, time, client, application) before the statement runs, and
// prepares those with thresholds.
func (s *session) Statement(st *proxy.Statement) proxy.Verdict {
	c := s.g.cur.Load()
	ss := s.identify(c, st)
	if sql := ss.text(st); sql != "" && st.Kind != proxy.FunctionCall {
		if info := s.analyze(sql); info.Skipped != "" {
			s.noteSkipped(sql, info)
		}
	}
	if q := s.g.cfg.Quarantine; q != nil && ss.who != &s.def {
		// The session's own employee was checked when it began.
		if e, ok := q.Get(ss.who.employee); ok {
			return s.refuseQuarantined(st, ss, e)
		}
	}
	rules := c.rules
	p := &prepared{c: c}
	if len(rules) > 0 {
		p.pctx = s.policyContext(c, st, ss)
	}
	var verdict proxy.Verdict
	// The statement's rules in one allocation: pointers into active stay
	// valid, as it never grows past the policy's thresholded rules.
	var active []activeRule
	var checks []limitCheck
	for _, r := range rules {
		if !r.Applies(&p.pctx) {
			if p.later == nil {
				p.later = make([]*policy.Rule, 0, len(rules))
			}
			p.later = append(p.later, r)
			continue
		}
		if r.Thresholded() {
			if active == nil {
				active = make([]activeRule, 0, c.thresholded)
				checks = make([]limitCheck, 0, c.nLimits)
				p.rules = make([]*activeRule, 0, c.thresholded+normRulesMax)
			}
			n := len(checks) + len(c.limits[r])
			active = append(active, activeRule{r: r, checks: checks[len(checks):len(checks):n]})
			checks = checks[:n]
			p.rules = append(p.rules, &active[len(active)-1])
			continue
		}
		v := s.decide(st, r, policy.Breach{}, contextReason(r)+describeContext(r, &p.pctx, ss))
		if r.Action == policy.ActionRedact && !r.Shadow {
			p.redact = r
		}
		if r.Action == policy.ActionHold && !r.Shadow {
			v = s.hold(st, r, "statement held by rule "+r.Name+describeContext(r, &p.pctx, ss))
		}
		if v.Action > verdict.Action {
			verdict = v
		}
	}
	p.rules = append(p.rules, s.normRules(c, s.g.cfg.Now(), ss.who)...)
	if sh := s.g.cfg.Shared; sh != nil && !s.g.cfg.AuditFailOpen && !sh.Healthy() {
		r := &policy.Rule{Name: "shared-state-unavailable", Action: policy.ActionBlock, Scope: policy.ScopeStatement, Severity: "high"}
		p.rules = append(p.rules, fixedRule(r, 0,
			"the other instances' figures cannot be read, and pgwarden fails closed (rule shared-state-unavailable)"))
	}
	s.enf.mu.Lock()
	s.enf.prep = append(s.enf.prep, preparedFor{st, p})
	s.enf.mu.Unlock()
	if verdict.Action == proxy.Block || verdict.Action == proxy.Kill {
		return verdict
	}
	if st.Kind != proxy.FunctionCall {
		if info := s.analyze(ss.text(st)); info.Fingerprint != "" && len(info.Kinds) == 0 {
			// No statement, only blanks or comments: the server answers
			// EmptyQueryResponse, which the guard is not shown.
			return verdict
		}
	}
	if err := s.announce(st, ss); err != nil {
		s.log.Error("statement_refused_audit", "statement_seq", st.Seq)
		s.g.auditRefusal(s, st)
		return proxy.Verdict{Action: proxy.Block, Reason: errAuditUnavailable.Error()}
	}
	s.sentMu.Lock()
	s.sent = append(s.sent, st)
	s.sentMu.Unlock()
	return verdict
}

// announce records that st is about to run, before it is forwarded, when
// auditing fails closed: a statement the audit log cannot record never
// reaches the server. See AuditWriter for its cost.
func (s *session) announce(st *proxy.Statement, ss *stmtState) error {
	if s.g.cfg.Audit == nil || s.g.cfg.AuditFailOpen {
		return nil
	}
	data := map[string]any{"seq": st.Seq, "kind": st.Kind.String()}
	if ss.use.Account != "" {
		data["service_account"] = ss.use.Account
	}
	if sql := ss.text(st); sql != "" {
		s.sqlFields(sql, data)
	}
	return s.appendEventAs(ss.who, audit.TypeStatementStart, data, true)
}

// contextReason says what a rule without a threshold did to the
// statement it matched, in the words of its action.
func contextReason(r *policy.Rule) string {
	switch r.Action {
	case policy.ActionBlock:
		return "statement refused by rule " + r.Name
	case policy.ActionKill:
		return "session ended by rule " + r.Name
	case policy.ActionQuarantine:
		return "statement refused and employee quarantined by rule " + r.Name
	case policy.ActionRedact:
		return "statement's PII masked by rule " + r.Name
	case policy.ActionHold:
		return "statement held by rule " + r.Name
	case policy.ActionLog:
		return "statement recorded by rule " + r.Name
	}
	return "statement alerted by rule " + r.Name
}

// describeContext completes the reason of a context rule's decision: the
// rule's description, or what is known of the statement.
func describeContext(r *policy.Rule, pc *policy.Context, ss *stmtState) string {
	if r.Description != "" {
		return " (" + r.Description + ")"
	}
	var kinds []string
	for _, k := range pc.Kinds {
		kinds = append(kinds, string(k))
	}
	d := " (statement: " + strings.Join(kinds, ", ")
	if pc.TablesUnknown {
		d += ", assumed from its words: too large to analyze"
	}
	if u := pc.Service; u.Account != "" {
		d += "; service account " + u.Account + ": "
		if u.Tagged {
			d += "tagged"
		} else {
			d += "untagged"
		}
		if ss.unusual != "" {
			d += ", unusual: " + ss.unusual
		}
	}
	return d + ")"
}

// begin makes st's rules the ones evaluated, on the goroutine reading
// results, when st's first result message arrives.
func (s *session) begin(st *proxy.Statement) {
	s.enf.mu.Lock()
	var p *prepared
	// Statements before st are done, whether they had results or not.
	q := s.enf.prep
	for len(q) > 0 && q[0].st.Seq <= st.Seq {
		if q[0].st == st {
			p = q[0].p
		}
		q[0] = preparedFor{}
		q = q[1:]
	}
	if len(q) == 0 {
		q = s.enf.prep[:0] // reuse the array
	}
	s.enf.prep = q
	s.enf.mu.Unlock()
	e := &s.enf
	e.active, e.pctx, e.needsRows, e.needsSubjs, e.redacting = nil, nil, false, false, nil
	e.later, e.pending = nil, proxy.Verdict{}
	if p == nil && st == between {
		p = s.prepareBetween()
	}
	if p == nil {
		return
	}
	s.c.Store(p.c)
	e.pctx, e.later = &p.pctx, p.later
	e.redacting = p.redact
	employee := s.employee(st)
	for _, a := range p.rules {
		if e.redactAlways[onceKey(a.r.Name, employee)] {
			e.redacting, a.done = a.r, true
		}
	}
	e.active = p.rules
	s.activate(st, p.rules)
}

// prepareBetween prepares the rules of the messages that arrive between
// statements (a notification while the session is idle, a notice or a
// parameter status after a batch's last result): those with thresholds
// whose conditions need no statement, and the norms'.
func (s *session) prepareBetween() *prepared {
	c := s.g.cur.Load()
	p := &prepared{c: c}
	w := s.def.employee
	p.pctx = policy.Context{User: w, Roles: s.enf.roles, Groups: s.info.Groups, Application: s.info.ApplicationName,
		Time: s.g.cfg.Now().In(c.p.Location()), ClientAddr: clientAddr(&s.info)}
	for _, r := range c.p.Rules() {
		if r.Thresholded() && r.Applies(&p.pctx) {
			p.rules = append(p.rules, &activeRule{r: r})
		}
	}
	p.rules = append(p.rules, s.normRules(c, s.g.cfg.Now(), &s.def)...)
	return p
}

// activate sets each rule's base, the figures of its scope before st, and
// its checks.
func (s *session) activate(st *proxy.Statement, rules []*activeRule) {
	if len(rules) == 0 {
		return
	}
	e := &s.enf
	c := s.cc()
	for _, a := range rules {
		for _, l := range c.limitsOf(a.r) {
			switch l.Measure {
			case "rows", "bytes", "unexplained_rows", "sequential_rows":
				e.needsRows = true
			case "distinct_subjects":
				e.needsSubjs = true
			}
		}
	}
	// The fetches of a server-side cursor are one statement: each starts
	// from what the cursor returned so far (psql's FETCH_COUNT, JDBC fetch
	// sizes over DECLARE).
	var cursorBase policy.Figures
	w := s.stateOf(st).who
	if sql := s.sqlOf(st); sql != "" {
		if info := s.analyze(sql); info.CursorOp == "fetch" {
			if ct := s.cursors[info.Cursor]; ct != nil {
				cursorBase = policy.Figures{Rows: ct.Rows, Bytes: ct.Bytes, PIIRows: ct.PIIRows,
					PIIValues: make(map[pii.Category]int64, len(ct.PIIValues))}
				for c, n := range ct.PIIValues {
					cursorBase.PIIValues[pii.Category(c)] = n
				}
			}
		}
	}
	var totals window.Totals
	var haveTotals bool
	// The statement's subjects so far: none, unless the rules are added
	// once the result is described (widen) or a portal resumes.
	var own *hll.Counter
	if f := s.fig; f != nil && s.cur == st {
		own = f.subjects
	}
	for _, a := range rules {
		if a.fixed {
			continue
		}
		if e.needsSubjs {
			a.subjects = hll.NewCounter(hll.DefaultPrecision)
			a.subjects.Merge(own)
		}
		switch a.r.Scope {
		case policy.ScopeSession:
			a.base = s.sessionFigures(w)
			s.addOpen(&a.base, w)
			if a.subjects != nil {
				a.subjects.Merge(w.total.subjects)
				s.addOpenSubjects(a.subjects, w)
			}
		case policy.ScopeStatement:
			a.base = cursorBase
		default:
			if !haveTotals {
				// Only the windows the rules need are summed.
				var spans window.Spans
				for _, x := range rules {
					if sp, ok := x.r.Scope.Span(); ok && !x.fixed {
						spans |= 1 << sp
					}
				}
				now := s.g.cfg.Now()
				totals, _ = s.g.cfg.Windows.GetSpans(w.employee, now, spans, e.needsSubjs)
				if sh := s.g.cfg.Shared; sh != nil {
					// The other instances' figures (distinct subjects are
					// per instance).
					remote, _ := sh.Remote().GetSpans(w.employee, now, spans, false)
					for i := range totals {
						totals[i].AddCounts(&remote[i])
					}
				}
				haveTotals = true
			}
			span, _ := a.r.Scope.Span()
			a.base = policy.WindowFigures(&totals[span])
			s.addOpen(&a.base, w)
			if a.subjects != nil {
				a.subjects.Merge(totals[span].Subjects)
				s.addOpenSubjects(a.subjects, w)
			}
		}
		a.prepare(c)
	}
}

// widen checks again, once the result is described, the rules that did
// not apply to the tables the text names, with the tables the result
// really comes from: a view over customers is customers (THREATS.md O).
// A context rule that now applies decides the statement's first row.
func (s *session) widen(st *proxy.Statement, f *Figures) {
	e := &s.enf
	if len(e.later) == 0 || e.pctx == nil {
		return
	}
	grown := false
	for _, t := range f.Tables {
		if !slices.Contains(e.pctx.Tables, t) {
			e.pctx.Tables = append(e.pctx.Tables, t)
			grown = true
		}
	}
	later := e.later
	e.later = nil
	if !grown {
		return
	}
	var add []*activeRule
	for _, r := range later {
		if !r.Applies(e.pctx) {
			continue
		}
		if r.Thresholded() {
			add = append(add, &activeRule{r: r})
			continue
		}
		v := s.decide(st, r, policy.Breach{}, contextReason(r)+describeContext(r, e.pctx, s.stateOf(st)))
		switch {
		case r.Shadow:
		case r.Action == policy.ActionRedact:
			e.redacting = r
		case r.Action == policy.ActionHold:
			v = s.hold(st, r, "statement held by rule "+r.Name+describeContext(r, e.pctx, s.stateOf(st)))
		}
		if v.Action > e.pending.Action {
			e.pending = v
		}
	}
	s.activate(st, add)
	e.active = append(e.active, add...)
}

// addOpen adds to f w's statements of the batch in progress other than
// the current one: they reach the session and the windows only when the
// batch ends, and a pipeline must not split a leak into statements that
// each start from the same total.
func (s *session) addOpen(f *policy.Figures, w *who) {
	o := s.sumOf(w)
	f.Rows += o.rows
	f.Bytes += o.bytes
	f.PIIRows += o.piiRows
	f.Unexplained += o.unexplained
	f.Sequential += o.sequential
	o.pii.Each(func(c pii.Category, n int) {
		if n != 0 {
			if f.PIIValues == nil {
				f.PIIValues = make(map[pii.Category]int64)
			}
			f.PIIValues[c] += int64(n)
		}
	})
}

// addOpenSubjects adds to c the subjects of w's statements of the batch in
// progress other than the current one, as addOpen does their counts.
func (s *session) addOpenSubjects(c *hll.Counter, w *who) {
	for _, f := range s.open {
		if f != s.fig && f.state != nil && f.state.who == w {
			c.Merge(f.subjects)
		}
	}
}

// sessionFigures are w's figures in the session so far: those of session
// scope rules.
func (s *session) sessionFigures(w *who) policy.Figures {
	t := &w.total
	f := policy.Figures{Rows: t.rows, Bytes: t.bytes, PIIRows: t.piiRows, Unexplained: t.unexplained, Sequential: t.sequential}
	if len(t.piiValues) > 0 {
		f.PIIValues = make(map[pii.Category]int64, len(t.piiValues))
	}
	for c, n := range t.piiValues {
		f.PIIValues[pii.Category(c)] = n
	}
	return f
}

// checks reports whether check has anything to do for a row with or
// without PII: whether a rule in force sees it.
func (e *enforcement) checks(rowPII bool) bool {
	return len(e.active) > 0 && (rowPII || e.needsRows)
}

// check evaluates the thresholds of the statement's rules with the row
// just counted in row (not yet added to f), and returns the strongest
// verdict. rowPII tells whether the row carried PII.
func (s *session) check(st *proxy.Statement, f *Figures, rowSubject []byte, rowPII bool, rowBytes int64) proxy.Verdict {
	if !s.enf.checks(rowPII) || !s.stops(st, f, rowSubject, rowPII, rowBytes) {
		return proxy.Verdict{}
	}
	return s.enf.stop
}

// stops is check for a row that a rule sees: it reports whether the
// strongest verdict is other than Continue, and leaves that verdict in
// s.enf.stop. (A Verdict returned from a call costs DataRow a stall on
// every row, a bool does not.)
func (s *session) stops(st *proxy.Statement, f *Figures, rowSubject []byte, rowPII bool, rowBytes int64) bool {
	e := &s.enf
	var verdict proxy.Verdict
	total := int64(f.PIIValues.Total() + e.row.Total())
	var subject uint64
	if rowPII && e.needsSubjs {
		subject = hll.Hash64(rowSubject, 0)
	}
	for _, a := range e.active {
		if a.done {
			continue
		}
		if rowPII && a.subjects != nil {
			a.subjects.Add(subject)
		}
		b, ok := a.exceeded(f, &e.row, total, rowPII, rowBytes, e.needsSubjs, e.rowUnexplained, e.rowSequential)
		if !ok {
			continue
		}
		var v proxy.Verdict
		if a.norm != nil {
			v = s.decideAs(st, a.r, b, a.reason, *a.norm)
			if v.Action == proxy.Block {
				s.g.normBlock(norm.Anomaly{Employee: f.state.who.employee, At: s.g.cfg.Now(), Window: a.norm.window},
					a.reason, s.cc().p.Location())
			}
		} else {
			v = s.decide(st, a.r, b, a.reason)
		}
		if a.r.Action == policy.ActionHold && !a.r.Shadow {
			v = s.hold(st, a.r, s.thresholdReason(st, a.r, b))
		}
		if a.r.Action == policy.ActionRedact && !a.r.Shadow {
			e.redacting = a.r
			if a.r.Scope != policy.ScopeStatement {
				if e.redactAlways == nil {
					e.redactAlways = make(map[string]bool)
				}
				e.redactAlways[onceKey(a.r.Name, f.state.who.employee)] = true
			}
		}
		switch {
		case v.Action != proxy.Continue:
		case a.r.Scope == policy.ScopeStatement:
			a.done = true
		default:
			// Session and window rules that only alert do so once per
			// session; those that block go on blocking.
			a.done = true
			if e.alertedOnce == nil {
				e.alertedOnce = make(map[string]bool)
			}
			e.alertedOnce[onceKey(a.r.Name, f.state.who.employee)] = true
		}
		if v.Action > verdict.Action {
			verdict = v
		}
	}
	e.stop = verdict
	return verdict.Action != proxy.Continue
}

// decide carries out a rule that fired: the decision is recorded in the
// audit trail, security is alerted (except for log), and the verdict for
// the proxy returned. In shadow mode the verdict is always Continue.
func (s *session) decide(st *proxy.Statement, r *policy.Rule, b policy.Breach, reason string) proxy.Verdict {
	return s.decideAs(st, r, b, reason, decisionExtra{source: "rule"})
}

// decisionExtra says where a decision comes from, for the logs; quiet
// decisions are recorded without alerting.
type decisionExtra struct {
	source, kind, window string
	score                float64
	quiet                bool
	// at is when the decision was due, when it is made late (a held
	// novelty released after its wait); zero: now.
	at time.Time
}

// decision is the record of r's decision about st, counted against w.
func (s *session) decision(st *proxy.Statement, w *who, r *policy.Rule, action string, b policy.Breach, reason string, x decisionExtra) Decision {
	now := s.g.cfg.Now()
	if !x.at.IsZero() && x.at.Before(now) {
		now = x.at
	}
	d := Decision{Time: now.UTC(), Employee: w.employee, IdentifiedBy: w.identifiedBy, User: s.info.User, SessionID: s.info.ID,
		Seq: seqOf(st), Action: action, Shadow: r.Shadow, Source: x.source, Rule: r.Name, Kind: x.kind, Score: x.score, Scope: string(r.Scope),
		Measure: b.Measure, Window: decisionWindow(r, x), Observed: float64(b.Observed), Limit: float64(b.Limit), Reason: reason,
		ClientAddr: addrString(&s.info), Application: s.info.ApplicationName, Issuer: s.issuerOf(w), Subject: s.subjectOf(w),
		severity: r.Severity, database: s.info.Database}
	if w.identifiedBy == proxy.IdentifiedByOIDC {
		d.groups = s.info.Groups
	}
	if ss := s.stateOf(st); ss.use.Account != "" {
		d.ServiceAccount, d.Unusual = ss.use.Account, ss.unusual
		if ss.tagErr != "" {
			d.TagError, d.TagUser = ss.tagErr, ss.tagUser
		}
	}
	return d
}

// decisionWindow is the span of reads a decision counts: the norm's window,
// or a window rule's span; empty for statement and session scopes.
func decisionWindow(r *policy.Rule, x decisionExtra) string {
	if x.source == "norm" {
		return x.window
	}
	if r.Scope.Window() > 0 {
		return string(r.Scope)
	}
	return ""
}

// enforcing reports whether the current statement's messages are checked
// one by one before they are forwarded: a rule with a threshold is in
// force, or a redact rule masks them.
func (e *enforcement) enforcing() bool { return len(e.active) > 0 || e.redacting != nil }

// onceKey keys the rules that act once per session and employee.
func onceKey(rule, employee string) string { return rule + "\x00" + employee }

func (s *session) decideAs(st *proxy.Statement, r *policy.Rule, b policy.Breach, reason string, x decisionExtra) proxy.Verdict {
	ss := s.stateOf(st)
	w := ss.who
	if r.Scope != policy.ScopeStatement && r.Action == policy.ActionAlert && s.enf.alertedOnce[onceKey(r.Name, w.employee)] {
		return proxy.Verdict{}
	}
	if reason == "" {
		reason = s.thresholdReason(st, r, b)
	}
	action := string(r.Action)
	if r.Shadow {
		action = "would " + action
	}
	// One record, told to the trail, the log, the metrics, the decision
	// log and security.
	d := s.decision(st, w, r, action, b, reason, x)
	var auditSeq uint64
	if s.g.cfg.Audit != nil {
		if raw, err := audit.MarshalData(d.auditPayload()); err == nil {
			auditSeq, _ = s.g.cfg.Audit.Append(context.Background(),
				audit.Event{Type: audit.TypeDecision, SessionID: s.info.ID, Employee: w.employee, Data: raw})
		}
	}
	if w != &s.def {
		s.log.Warn("rule_fired", "rule", r.Name, "action", action, "statement_seq", d.Seq, "tagged_employee", w.employee, "reason", reason)
	} else {
		s.log.Warn("rule_fired", "rule", r.Name, "action", action, "statement_seq", d.Seq, "reason", reason)
	}
	if m := s.g.cfg.Metrics; m != nil {
		m.Decisions.WithLabelValues(x.source, action, r.Name).Inc()
	}
	s.g.decisions.write(d)
	if r.Action != policy.ActionLog && !x.quiet && s.g.cfg.Alerts != nil {
		var stmt string
		if sql := s.sqlOf(st); sql != "" {
			stmt = s.analyze(sql).Normalized
		}
		a := d.alert(stmt, auditSeq)
		if r.Action == policy.ActionHold && !r.Shadow {
			t := s.holdTicket(st, r)
			a.HoldID, a.HoldDeadline = t.id, t.deadline
		}
		if err := s.g.cfg.Alerts.Notify(a); err != nil {
			s.log.Error("alert_not_queued", "rule", r.Name, "error", err)
		}
	}
	if r.Shadow {
		return proxy.Verdict{}
	}
	switch r.Action {
	case policy.ActionBlock, policy.ActionKill, policy.ActionQuarantine:
		if f := s.open[st]; f != nil && st != nil && f.stoppedBy == "" {
			f.stoppedBy = r.Name
		}
	}
	switch r.Action {
	case policy.ActionBlock:
		return proxy.Verdict{Action: proxy.Block, Reason: "statement blocked: " + reason}
	case policy.ActionKill:
		if w.identifiedBy == IdentifiedByTag {
			// The connection is a pool's, shared with others: ending it
			// would stop them, and the pool would open another.
			return proxy.Verdict{Action: proxy.Block, Reason: "statement blocked: " + reason}
		}
		return proxy.Verdict{Action: proxy.Kill, Reason: "session ended: " + reason}
	case policy.ActionQuarantine:
		if q := s.g.cfg.Quarantine; q != nil {
			if _, err := q.Add(quarantine.Entry{Employee: w.employee, Since: s.g.cfg.Now().UTC(),
				Rule: r.Name, Reason: reason, SessionID: s.info.ID}); err != nil {
				s.log.Error("quarantine_failed", "error", err)
			}
		} else {
			s.log.Error("quarantine_unavailable", "rule", r.Name, "hint", "set --state-dir")
		}
		if w.identifiedBy == IdentifiedByTag {
			// A pool's connection: the employee's tagged statements are
			// refused from now on (identity:quarantined); the others' go on.
			return proxy.Verdict{Action: proxy.Block, Reason: "statement blocked and " + w.employee +
				" quarantined until security releases them: " + reason}
		}
		return proxy.Verdict{Action: proxy.Kill, Reason: "session ended and " + w.employee +
			" quarantined until security releases them: " + reason}
	}
	return proxy.Verdict{}
}

// roles resolves the PostgreSQL roles the policy's groups name that the
// user is a member of.
func (g *Guard) roles(info *proxy.SessionInfo) []string {
	want := g.cur.Load().p.GroupRoles()
	if len(want) == 0 || g.cfg.Catalog == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.CatalogTimeout)
	defer cancel()
	roles, err := g.cfg.Catalog.RoleMemberships(ctx, info.User, want)
	if err != nil {
		g.cfg.Logger.Warn("catalog_lookup_failed", "session_id", info.ID, "roles_of", info.User, "error", err)
	}
	return roles
}

// refused records a session refused before it started.
func (g *Guard) refused(info *proxy.SessionInfo, why error) {
	g.cfg.Logger.Warn("session_refused", "session_id", info.ID, "employee", info.Employee, "reason", why.Error())
	if g.cfg.Audit == nil {
		return
	}
	raw, err := audit.MarshalData(map[string]any{"user": info.User, "employee": info.Employee, "identified_by": info.IdentifiedBy, "database": info.Database,
		"client_addr": addrString(info), "application_name": info.ApplicationName, "reason": why.Error()})
	if err == nil {
		g.cfg.Audit.Append(context.Background(), audit.Event{Type: audit.TypeSessionRefused, SessionID: info.ID, Employee: info.Employee, Data: raw})
	}
}

func (s *session) thresholdReason(st *proxy.Statement, r *policy.Rule, b policy.Breach) string {
	return fmt.Sprintf("%s received more than %s %s %s (rule %s)", s.employee(st),
		formatCount(b.Limit), measureText(b.Measure), scopeText(r.Scope), r.Name)
}

// hold pauses the session where it is (between two rows, or before the
// statement is sent), so that nothing more leaves the database, until
// security approves; denied, timed out or without an approver, the
// statement is blocked. The outcome is a decision in the audit trail.
func (s *session) hold(st *proxy.Statement, r *policy.Rule, reason string) proxy.Verdict {
	blocked := proxy.Verdict{Action: proxy.Block, Reason: "statement blocked: " + reason + ": not approved"}
	t := s.holdTicket(st, r)
	s.holdTickets.Delete(holdKey{st, r})
	if s.g.cfg.Holds == nil {
		s.log.Error("hold_unavailable", "rule", r.Name, "hint", "set --state-dir")
		s.holdOutcome(st, r, "no approver configured", holds.Hold{})
		return blocked
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.HoldTimeout)
	defer cancel()
	if s.info.Done != nil {
		go func() {
			select {
			case <-s.info.Done:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	h := holds.Hold{ID: t.id, Employee: s.employee(st),
		Rule: r.Name, Reason: reason, SessionID: s.info.ID, Since: s.g.cfg.Now().UTC(),
		Deadline: t.deadline}
	if sql := s.sqlOf(st); sql != "" {
		h.Statement = s.analyze(sql).Normalized
		h.Justification = justificationIn(sql)
	}
	if j := s.justification.Swap(nil); h.Justification == "" && j != nil {
		h.Justification = *j
	}
	s.log.Warn("statement_held", "hold_id", h.ID, "rule", r.Name, "timeout", r.HoldTimeout, "justification", h.Justification != "")
	s.tell(fmt.Sprintf("statement held for approval by security (hold %s, rule %s), for up to %s: ask security to approve it; %s",
		h.ID, r.Name, r.HoldTimeout, holdWhy(h.Justification)))
	decided, err := s.g.cfg.Holds.Request(ctx, h)
	decided.Justification = h.Justification
	switch {
	case err == nil && decided.Status == holds.Approved:
		s.holdOutcome(st, r, "approved", decided)
		s.tell(fmt.Sprintf("hold %s approved%s", h.ID, byWhom(decided)))
		return proxy.Verdict{}
	case err != nil:
		s.holdOutcome(st, r, "not approved in time", decided)
		blocked.Reason = "statement blocked: " + reason + ": not approved within " + r.HoldTimeout.String()
	default:
		s.holdOutcome(st, r, "denied", decided)
		blocked.Reason = "statement blocked: " + reason + ": denied by security"
		if by := byWhom(decided); by != "" {
			blocked.Reason += " (" + by[len(" by "):] + ")"
		}
	}
	return blocked
}

// holdKey and holdTicket: the id and deadline of the hold a rule puts
// on a statement, made once for its alert and the hold itself.
type holdKey struct {
	st *proxy.Statement
	r  *policy.Rule
}

type holdTicket struct {
	id       string
	deadline time.Time
}

func (s *session) holdTicket(st *proxy.Statement, r *policy.Rule) holdTicket {
	t := holdTicket{id: fmt.Sprintf("%s-%d-%d", s.info.ID, seqOf(st), alertSeq.Add(1)),
		deadline: s.g.cfg.Now().UTC().Add(r.HoldTimeout)}
	v, _ := s.holdTickets.LoadOrStore(holdKey{st, r}, t)
	return v.(holdTicket)
}

// tell sends the client a notice, when the proxy gives a way to.
func (s *session) tell(message string) {
	if s.info.Notice != nil {
		if err := s.info.Notice(message); err != nil {
			s.log.Debug("notice_not_sent", "error", err)
		}
	}
}

// holdWhy is the part of the held notice about the employee's reason.
func holdWhy(justification string) string {
	if justification != "" {
		return "your reason, shown to the approver: " + justification
	}
	return "say why with /* pgwarden.reason: ... */ in the statement, or SET pgwarden.reason = '...' before it"
}

// byWhom says who decided a hold and why, for the employee.
func byWhom(h holds.Hold) string {
	if h.DecidedBy == "" {
		return ""
	}
	w := " by " + h.DecidedBy
	if h.DecisionReason != "" {
		w += ": " + h.DecisionReason
	}
	return w
}

// holdOutcome records how a hold ended, who decided it and why, and the
// employee's justification.
func (s *session) holdOutcome(st *proxy.Statement, r *policy.Rule, outcome string, d holds.Hold) {
	s.log.Warn("hold_ended", "rule", r.Name, "statement_seq", seqOf(st), "outcome", outcome)
	if s.g.cfg.Audit == nil {
		return
	}
	w := s.stateOf(st).who
	dec := s.decision(st, w, r, "hold", policy.Breach{}, "hold "+outcome, decisionExtra{source: "rule"})
	p := dec.auditPayload()
	p.Outcome, p.Justification, p.DecidedBy, p.DecisionReason = outcome, d.Justification, d.DecidedBy, d.DecisionReason
	raw, err := audit.MarshalData(p)
	if err == nil {
		s.g.cfg.Audit.Append(context.Background(), audit.Event{Type: audit.TypeDecision, SessionID: s.info.ID, Employee: w.employee, Data: raw})
	}
}

// refusalDecision makes a session refused at its start a decision like
// any other (decision log, metric, alert, audit when it can be written):
// a quarantined employee trying again, or auditing failing closed.
func (g *Guard) refusalDecision(info *proxy.SessionInfo, rule string, why error) {
	if rule == auditUnavailableRule && !g.auditToldAt(g.cfg.Now()) {
		return
	}
	w := who{employee: info.Employee, identifiedBy: info.IdentifiedBy}
	s := g.heldSession(*info, w)
	r := &policy.Rule{Name: rule, Action: policy.ActionBlock, Scope: policy.ScopeSession, Severity: "high"}
	s.decideAs(nil, r, policy.Breach{}, "session refused: "+why.Error(), decisionExtra{source: "identity"})
}

// auditRefusal makes a statement refused because the audit log cannot be
// written a decision, told at most once a minute for the whole instance:
// an outage refuses every statement.
func (g *Guard) auditRefusal(s *session, st *proxy.Statement) {
	if !g.auditToldAt(g.cfg.Now()) {
		return
	}
	r := &policy.Rule{Name: auditUnavailableRule, Action: policy.ActionBlock, Scope: policy.ScopeStatement, Severity: "high"}
	s.decideAs(st, r, policy.Breach{}, "statement refused: "+errAuditUnavailable.Error(), decisionExtra{source: "audit"})
}

// auditUnavailableRule names the decisions of fail-closed auditing.
const auditUnavailableRule = "audit-unavailable"

// auditToldAt reports whether an audit refusal at now is to be told: the
// first, and then one a minute.
func (g *Guard) auditToldAt(now time.Time) bool {
	for {
		last := g.auditTold.Load()
		if last != 0 && now.UnixNano()-last < int64(time.Minute) {
			return false
		}
		if g.auditTold.CompareAndSwap(last, now.UnixNano()) {
			return true
		}
	}
}

// checkQuarantine refuses a quarantined employee's new session.
func (g *Guard) checkQuarantine(info *proxy.SessionInfo) error {
	if g.cfg.Quarantine == nil {
		return nil
	}
	e, ok := g.cfg.Quarantine.Get(info.Employee)
	if !ok {
		return nil
	}
	msg := fmt.Sprintf("%s is quarantined since %s", info.Employee, e.Since.UTC().Format(time.RFC3339))
	if e.Rule != "" {
		msg += " (rule " + e.Rule + ")"
	}
	return fmt.Errorf("%s: security must release them (pgwarden users release %s)", msg, info.Employee)
}

func measureText(m string) string {
	switch m {
	case "pii_values":
		return "PII values"
	case "pii_rows":
		return "rows with PII"
	case "distinct_subjects":
		return "distinct data subjects"
	case "rows", "bytes":
		return m
	}
	if c, ok := strings.CutPrefix(m, "pii_values."); ok {
		return c + " values"
	}
	return m
}

func scopeText(sc policy.Scope) string {
	switch sc {
	case policy.ScopeStatement, "":
		return "in one statement"
	case policy.ScopeSession:
		return "in one session"
	case policy.Scope1m:
		return "in 1 minute"
	case policy.Scope10m:
		return "in 10 minutes"
	case policy.Scope1h:
		return "in 1 hour"
	}
	return "in 24 hours"
}

// formatCount writes n with thousands separators: 12,400.
func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 || len(s) <= 3 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	if pre > 0 {
		b.WriteString(s[:pre])
	}
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

func seqOf(st *proxy.Statement) uint64 {
	if st == nil {
		return 0
	}
	return st.Seq
}
