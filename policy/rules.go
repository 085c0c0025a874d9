package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/policy/pii"
)

// Action is what pgwarden does when a rule fires.
type Action string

// Actions, from the mildest.
const (
	ActionLog        Action = "log"        // record the event
	ActionAlert      Action = "alert"      // record it and notify
	ActionRedact     Action = "redact"     // let the result go on with PII values masked
	ActionHold       Action = "hold"       // pause the result until security approves
	ActionBlock      Action = "block"      // refuse the statement, or stop its result
	ActionKill       Action = "kill"       // end the session
	ActionQuarantine Action = "quarantine" // end the session and refuse the employee's new ones until released
)

// actions lists the supported actions in Severity order.
var actions = []Action{ActionLog, ActionAlert, ActionRedact, ActionHold, ActionBlock, ActionKill, ActionQuarantine}

// Severity ranks an action so that the strongest of several firing rules
// can be picked: log 0 < alert 1 < redact 2 < hold 3 < block 4 < kill 5 <
// quarantine 6. It is -1 for an action this package does not know.
func (a Action) Severity() int {
	return slices.Index(actions, a)
}

// defaultSeverity is a rule's severity when the file gives none.
func (a Action) defaultSeverity() string {
	switch a {
	case ActionLog, ActionAlert, ActionRedact:
		return "medium"
	case ActionBlock, ActionHold:
		return "high"
	}
	return "critical"
}

// severities are the values of a rule's severity, from the lowest.
var severities = []string{"low", "medium", "high", "critical"}

// StatementKind is a class of SQL statement. The caller classifies each
// statement into one or more kinds; rules name the kinds they apply to.
type StatementKind string

// Statement kinds.
const (
	KindSelect        StatementKind = "select"
	KindCopyToStdout  StatementKind = "copy_to_stdout"
	KindCopyToFile    StatementKind = "copy_to_file"
	KindCopyToProgram StatementKind = "copy_to_program"
	KindCopyFrom      StatementKind = "copy_from"
	// KindCreateTableAs is CREATE TABLE AS, SELECT INTO, CREATE
	// MATERIALIZED VIEW, and a write into a large object (lo_from_bytea,
	// lo_put, lowrite in SQL).
	KindCreateTableAs StatementKind = "create_table_as"
	// KindInsertSelect is an INSERT of a query's result, also inside WITH,
	// or of VALUES computed by subqueries.
	KindInsertSelect StatementKind = "insert_select"
	KindLoExport     StatementKind = "lo_export"
	// KindDblink is a call of a dblink function or use of a postgres_fdw
	// foreign table.
	KindDblink StatementKind = "dblink"
	// KindFunctionCall is a fast-path function call.
	KindFunctionCall StatementKind = "function_call"
	KindDDL          StatementKind = "ddl"
	KindDML          StatementKind = "dml"
	KindOther        StatementKind = "other"
)

// statementKinds lists every kind, in documentation order.
var statementKinds = []StatementKind{
	KindSelect, KindCopyToStdout, KindCopyToFile, KindCopyToProgram, KindCopyFrom,
	KindCreateTableAs, KindInsertSelect, KindLoExport, KindDblink, KindFunctionCall,
	KindDDL, KindDML, KindOther,
}

// kindServerEgress is the shorthand a rule may list for the statements that
// move data out through the server, where pgwarden cannot count it; the
// parser expands it to serverEgress.
const kindServerEgress = "server_egress"

var serverEgress = []StatementKind{KindCopyToFile, KindCopyToProgram, KindLoExport, KindDblink}

// Scope is what a rule's thresholds are compared with: one statement, the
// session so far, or a sliding window of the employee's activity.
type Scope string

// Scopes.
const (
	ScopeStatement Scope = "statement"
	ScopeSession   Scope = "session"
	Scope1m        Scope = "1m"
	Scope10m       Scope = "10m"
	Scope1h        Scope = "1h"
	Scope24h       Scope = "24h"
)

var scopes = []Scope{ScopeStatement, ScopeSession, Scope1m, Scope10m, Scope1h, Scope24h}

// Window returns the span of a sliding-window scope, and 0 for statement
// and session.
func (s Scope) Window() time.Duration {
	switch s {
	case Scope1m:
		return time.Minute
	case Scope10m:
		return 10 * time.Minute
	case Scope1h:
		return time.Hour
	case Scope24h:
		return 24 * time.Hour
	}
	return 0
}

// Figures are counts a threshold is compared with: those of one statement,
// of the session, or of a window, according to the rule's Scope.
type Figures struct {
	Rows, Bytes, PIIRows, DistinctSubjects int64
	// Unexplained counts rows of the explained_access table whose key the
	// employee has no recorded reason to see; Sequential, rows whose key is
	// next to one the employee read in the last hour (a sweep of the key
	// space).
	Unexplained, Sequential int64
	// PIIValues counts PII values per category; the total is the sum.
	PIIValues map[pii.Category]int64
}

// Context is what is known about a statement before any row: who and where.
type Context struct {
	// User is the employee, the identity pgwarden keys on.
	User string
	// Roles are the PostgreSQL roles granted to the user (directly or
	// through other roles; a superuser's status grants none), resolved by
	// the caller; may be nil. Policy.GroupRoles lists the
	// ones the policy names.
	Roles []string
	// Groups are policy groups the user is in by their identity
	// provider's word (a signed token's groups claim), whatever the
	// groups' members and roles say; may be nil.
	Groups []string
	// ClientAddr is the client's address, zero if unknown (a Unix socket).
	ClientAddr netip.Addr
	// Application is the session's application_name.
	Application string
	// Time is when the statement runs; hours and days read it in the
	// policy's time zone.
	Time time.Time
	// Tables are the tables the statement touches or names, each
	// "schema.table" as the catalog spells the names, unquoted.
	Tables []string
	// TablesUnknown is set when the statement may name tables beyond
	// Tables (its text was too large to read): a tables condition then
	// holds, the side of caution.
	TablesUnknown bool
	// EstimatedRows is the planner's estimate of the rows the statement
	// returns, for estimated_rows conditions; 0 when unknown.
	EstimatedRows int64
	// Sessions is how many sessions the employee has open, this one
	// included (across all of pgwarden's clients).
	Sessions int
	// Kinds classify the statement.
	Kinds []StatementKind
	// Service says whether the session's role is a service account, and
	// how the statement's employee is known.
	Service ServiceUse
}

// Rule is one entry of the policy's rules. Its exported fields are what the
// file says; its conditions are reached through Applies, Exceeded and
// Limits.
type Rule struct {
	Name, Description string
	Action            Action
	// Shadow is set when this rule, or the whole policy (mode: shadow), only
	// logs or alerts "would <action>" instead of acting.
	Shadow bool
	// Severity is low, medium, high or critical.
	Severity string
	Scope    Scope
	// Line is where the rule starts in the file.
	Line int
	// RedactWith is how action redact masks a value: "mask" (the default:
	// j***@example.com, ***-**-1234) or "null".
	RedactWith string
	// HoldTimeout is how long action hold waits for approval before the
	// statement is blocked (default 5 minutes).
	HoldTimeout time.Duration

	who        audience
	thresholds []threshold // in Exceeded order
	conds      []condition // the context conditions, in contextConditions order
	loc        *time.Location
}

// Limit is one threshold of a rule: it is exceeded when the observed count
// is greater than Limit.
type Limit struct {
	// Measure is "pii_values" (the total of all categories),
	// "pii_values.<category>" (such as "pii_values.email" or
	// "pii_values.custom:free_text"), "pii_rows", "distinct_subjects", "rows"
	// or "bytes".
	Measure string
	Limit   int64
}

// Breach is a threshold exceeded: Observed > Limit.
type Breach struct {
	Measure         string
	Observed, Limit int64
}

// Explanation says whether a rule applies to a context, and if not, why.
type Explanation struct {
	Rule    *Rule
	Applies bool
	// Why names the first condition that does not hold, in words, such as
	// "subjects: alice is not in group:support"; empty when Applies.
	Why string
}

// measures are the thresholds a rule's when may set besides pii_values,
// in Exceeded order (after pii_values per category and in total), each with
// the Figures it reads; bytes is written as a size ("10MB"), the others as
// counts. A new measure is a Figures field and an entry here.
var measures = []struct {
	key   string
	of    func(f *Figures) int64
	bytes bool
}{
	{"pii_rows", func(f *Figures) int64 { return f.PIIRows }, false},
	{"distinct_subjects", func(f *Figures) int64 { return f.DistinctSubjects }, false},
	{"rows", func(f *Figures) int64 { return f.Rows }, false},
	{"bytes", func(f *Figures) int64 { return f.Bytes }, true},
	{"unexplained_rows", func(f *Figures) int64 { return f.Unexplained }, false},
	{"sequential_rows", func(f *Figures) int64 { return f.Sequential }, false},
}

// A threshold's measure: an index in measures, or one of these.
const (
	measureCategory = -1 // PIIValues[category]
	measurePIITotal = -2 // the sum of PIIValues
)

type threshold struct {
	name     string // the Limit.Measure
	measure  int
	category pii.Category
	limit    int64
}

func (t *threshold) observe(f *Figures) int64 {
	switch t.measure {
	case measureCategory:
		return f.PIIValues[t.category]
	case measurePIITotal:
		var sum int64
		for _, v := range f.PIIValues {
			sum += v
		}
		return sum
	}
	return measures[t.measure].of(f)
}

// subjectKind says how a subject names employees.
type subjectKind uint8

const (
	subjectAll   subjectKind = iota // "*"
	subjectUser                     // a bare name
	subjectGroup                    // group:NAME
	subjectRole                     // role:NAME
)

type subject struct {
	kind  subjectKind
	name  string // the employee, group or role
	text  string // as written
	group *group // for subjectGroup, once resolved
}

func (s *subject) matches(c *Context) bool {
	switch s.kind {
	case subjectAll:
		return true
	case subjectUser:
		return c.User == s.name
	case subjectRole:
		return hasRole(c, s.name)
	}
	return s.group != nil && s.group.has(c)
}

// hasRole reports whether the user is role, or a member of it.
func hasRole(c *Context, role string) bool {
	return c.User == role || slices.Contains(c.Roles, role)
}

// group is a named set of employees: by name, or members of PostgreSQL
// roles.
type group struct {
	name    string
	members []string
	roles   []string
}

func (g *group) has(c *Context) bool {
	if slices.Contains(g.members, c.User) || slices.Contains(c.Groups, g.name) {
		return true
	}
	for _, r := range g.roles {
		if hasRole(c, r) {
			return true
		}
	}
	return false
}

// tablePattern is a parsed tables entry, schema.table.
type tablePattern struct {
	parts [2]namePart
}

// match reports whether name, "schema.table" unquoted, matches. The
// names may hold dots themselves, so every dot is tried as the separator.
func (t *tablePattern) match(name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] == '.' && t.parts[0].match(name[:i]) && t.parts[1].match(name[i+1:]) {
			return true
		}
	}
	return false
}

type tableCond struct {
	text string
	pat  tablePattern
}

// hourRange is a time of day range [start, end) in minutes since midnight;
// it wraps midnight when end <= start.
type hourRange struct {
	start, end int
}

func (h hourRange) contains(minute int) bool {
	if h.start < h.end {
		return h.start <= minute && minute < h.end
	}
	return minute >= h.start || minute < h.end
}

type netCond struct {
	text   string
	prefix netip.Prefix
}

type appCond struct {
	text string
	glob namePart
}

// Thresholded reports whether the rule has any threshold condition
// (pii_values, pii_rows, distinct_subjects, rows, bytes). A rule without
// one is a context rule, decided before the statement runs.
func (r *Rule) Thresholded() bool { return len(r.thresholds) > 0 }

// NeedsEstimate reports whether the rule has an estimated_rows condition:
// the caller then asks the planner how many rows the statement returns and
// sets Context.EstimatedRows before Applies.
func (r *Rule) NeedsEstimate() bool {
	_, ok := conditionOf[estimateCond](r)
	return ok
}

// NeedsSessions reports whether the rule has a sessions condition: only
// then is Context.Sessions read.
func (r *Rule) NeedsSessions() bool {
	_, ok := conditionOf[sessionsCond](r)
	return ok
}

// Exceeded compares f with the rule's thresholds. A rule fires only when
// every one of its thresholds is exceeded (observed > limit: equal is not
// exceeded), so Exceeded reports true only then, with the Breach of the
// first threshold in this order: pii_values per category in file order,
// pii_values total, pii_rows, distinct_subjects, rows, bytes. A rule
// without thresholds has nothing to exceed: Exceeded returns a zero Breach
// and true, so that a rule fires when Applies and Exceeded both hold. It
// does not allocate.
func (r *Rule) Exceeded(f *Figures) (Breach, bool) {
	var first Breach
	for i := range r.thresholds {
		t := &r.thresholds[i]
		v := t.observe(f)
		if v <= t.limit {
			return Breach{}, false
		}
		if i == 0 {
			first = Breach{Measure: t.name, Observed: v, Limit: t.limit}
		}
	}
	return first, true
}

// Limits lists the rule's thresholds in Exceeded order, for explain and for
// deciding which counters matter.
func (r *Rule) Limits() []Limit {
	if len(r.thresholds) == 0 {
		return nil
	}
	l := make([]Limit, len(r.thresholds))
	for i, t := range r.thresholds {
		l[i] = Limit{Measure: t.name, Limit: t.limit}
	}
	return l
}

// Applies reports whether the rule's subjects and except, and its context
// conditions (tables, statements, hours, days, client, not_client,
// application, not_application, service_account), hold for c. A condition the rule does not
// have holds.
func (r *Rule) Applies(c *Context) bool {
	ok, _ := r.check(c, false)
	return ok
}

// check evaluates the rule's audience, then its context conditions in
// contextConditions order and, when explain is set, says in words which one
// fails first.
func (r *Rule) check(c *Context, explain bool) (bool, string) {
	if ok, why := r.who.check(c, explain); !ok {
		return false, why
	}
	for _, cond := range r.conds {
		if !cond.holds(r, c) {
			if !explain {
				return false, ""
			}
			return false, cond.why(r, c)
		}
	}
	return true, ""
}

func (r *Rule) location() *time.Location {
	if r.loc == nil {
		return time.UTC
	}
	return r.loc
}

func netMatch(conds []netCond, addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	for _, n := range conds {
		if n.prefix.Contains(addr) {
			return true
		}
	}
	return false
}

func appMatch(conds []appCond, app string) bool {
	for i := range conds {
		if conds[i].glob.match(app) {
			return true
		}
	}
	return false
}

// audience is whom a rule or the canaries apply to: their subjects, less
// their except.
type audience struct {
	subjects []*subject // nil: everyone
	except   []*subject
}

// check reports whether c's employee is among the subjects and not
// excepted and, when explain is set, says in words why not.
func (a *audience) check(c *Context, explain bool) (bool, string) {
	if a.subjects != nil && !slices.ContainsFunc(a.subjects, func(s *subject) bool { return s.matches(c) }) {
		if !explain {
			return false, ""
		}
		if len(a.subjects) == 1 {
			return false, "subjects: " + notSubject(c.User, a.subjects[0])
		}
		return false, fmt.Sprintf("subjects: %s is not in any of %s", c.User, subjectList(a.subjects))
	}
	for _, s := range a.except {
		if s.matches(c) {
			if !explain {
				return false, ""
			}
			return false, "except: " + isSubject(c.User, s)
		}
	}
	return true, ""
}

// notSubject says that user is not s.
func notSubject(user string, s *subject) string {
	if s.kind == subjectUser {
		return user + " is not " + s.text
	}
	return user + " is not in " + s.text
}

// isSubject says that user is s.
func isSubject(user string, s *subject) string {
	switch s.kind {
	case subjectAll:
		return `everyone is excepted ("*")`
	case subjectUser:
		return user + " is excepted by name"
	}
	return user + " is in " + s.text
}

func subjectList(subjects []*subject) string {
	texts := make([]string, len(subjects))
	for i, s := range subjects {
		texts[i] = s.text
	}
	return strings.Join(texts, ", ")
}

func kindList(kinds []StatementKind) string {
	if len(kinds) == 0 {
		return "an unclassified statement"
	}
	texts := make([]string, len(kinds))
	for i, k := range kinds {
		texts[i] = string(k)
	}
	return strings.Join(texts, ", ")
}

func netList(conds []netCond) string {
	texts := make([]string, len(conds))
	for i, n := range conds {
		texts[i] = n.text
	}
	return strings.Join(texts, ", ")
}

// dayNames are the days as a rule writes them, indexed by time.Weekday.
var dayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// Rules returns the policy's rules in file order.
func (p *Policy) Rules() []*Rule { return slices.Clone(p.rules) }

// Shadow reports whether the policy's mode is shadow: every rule only logs
// or alerts "would <action>".
func (p *Policy) Shadow() bool { return p.shadow }

// Location is the time zone hours and days conditions are read in.
func (p *Policy) Location() *time.Location { return p.loc }

// GroupRoles lists, sorted, every PostgreSQL role the policy names, in a
// group's roles or as a role:NAME subject, so that the caller knows which
// memberships to resolve into Context.Roles.
func (p *Policy) GroupRoles() []string { return slices.Clone(p.groupRoles) }

// Explain returns, for each rule in file order, whether it applies to c and
// if not the first condition that fails, in words; for `pgwarden policy
// explain`. Thresholds are not considered: Rule.Limits lists them.
func (p *Policy) Explain(c *Context) []Explanation {
	out := make([]Explanation, len(p.rules))
	for i, r := range p.rules {
		ok, why := r.check(c, true)
		out[i] = Explanation{Rule: r, Applies: ok, Why: why}
	}
	return out
}

// GroupsOf returns, sorted, the names of the policy's groups the context's
// user belongs to (by name, through c.Roles, or as c.Groups say). The first is the
// employee's peer group for norms.
func (p *Policy) GroupsOf(c *Context) []string {
	var out []string
	for name, g := range p.groups {
		if g.has(c) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
