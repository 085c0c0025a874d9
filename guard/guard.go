package guard

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/internal/metrics"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/decode"
	"github.com/pgwarden/pgwarden/policy/detect"
	"github.com/pgwarden/pgwarden/policy/hll"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/policy/sqltext"
	"github.com/pgwarden/pgwarden/policy/window"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/proxy/catalog"
	"github.com/pgwarden/pgwarden/state/quarantine"
)

// Resolver maps a result column to its catalog name; *catalog.Resolver is one.
type Resolver interface {
	Column(ctx context.Context, tableOID uint32, attNum int16) (catalog.Column, error)
	ViewDefinition(ctx context.Context, oid uint32) (string, error)
	Functions(ctx context.Context, schema, name string) ([]catalog.Function, error)
	RelationSchemas(ctx context.Context, name string) ([]string, error)
	RoleSearchPath(ctx context.Context, role, database string) (string, bool, error)
	RoleMemberships(ctx context.Context, user string, roles []string) ([]string, error)
	Estimate(ctx context.Context, role string, searchPath []string, query string, params *proxy.Params) (int64, error)
	ExplainedKeys(ctx context.Context, query, employee string) ([]string, error)
}

// NormShare feeds the norm model and shares its observations with the
// other instances; *normshare.Sharer is one.
type NormShare interface {
	// Observe feeds the model a statement of this instance.
	Observe(o norm.Observation) []norm.Anomaly
	// Leader reports whether this instance reports the anomalies found
	// as days close; the others only enforce them.
	Leader() bool
}

// Shared is the window figures of the other instances; *share.Sharer is
// one.
type Shared interface {
	Add(employee string, at time.Time, f window.Figures)
	Remote() *window.Registry
	// Healthy is false while the other instances' figures cannot be read:
	// failing closed (AuditFailOpen unset), results with PII are then
	// blocked, as their windows cannot be known.
	Healthy() bool
}

// AuditLog receives one event per statement; *audit.Log is one.
type AuditLog interface {
	Append(ctx context.Context, ev audit.Event) (uint64, error)
}

// AuditWriter is an AuditLog that can also return once an event is
// written, before it is as durable as Append makes it; *audit.Log is one.
// Failing closed, the guard records that a statement is about to run this
// way before forwarding it: a log that cannot write refuses the statement,
// and the fsync of the statement's own record, before the client learns
// its result, makes the first line durable too, so a statement costs one
// fsync, not two.
type AuditWriter interface {
	AppendWritten(ctx context.Context, ev audit.Event) (uint64, error)
}

// Config configures a Guard.
type Config struct {
	// Policy classifies columns; policy.Default() when nil.
	Policy *policy.Policy
	// Catalog resolves result columns; without one, every column is scanned
	// by the detectors and no declared column is recognised.
	Catalog Resolver
	// CatalogFor, if set, returns the catalog of a session's database
	// (table OIDs are per database), or nil when there is none; Catalog
	// then serves only what is not per database (role memberships,
	// explained access). When CatalogFor is nil, Catalog serves every
	// session.
	CatalogFor func(database string) Resolver
	// Windows receives each statement's figures under the employee's name;
	// a fresh registry when nil.
	Windows *window.Registry
	// Audit, if set, receives a "statement" event per statement.
	Audit AuditLog
	// AuditFailOpen lets sessions go on when the audit log (or, with
	// Shared, the shared state) cannot be written. By default (fail
	// closed) every statement is recorded as about to run (a
	// "statement_start" event) before it is forwarded, and refused with
	// SQLSTATE 42501 if that fails; a new session whose start cannot be
	// recorded is refused, and one whose statement records cannot be
	// written ends before it is told its batch completed.
	AuditFailOpen bool
	// MaxRowsPerStatement blocks a statement whose result passes this many
	// rows (0: no limit), as a decision of rule max_rows_per_statement.
	// A cursor's FETCHes add up; results read only from the system
	// catalogs are exempt.
	MaxRowsPerStatement int64
	// SQL reads statement texts for the audit trail (fingerprint, text with
	// literals redacted, cursor names); a fresh cache when nil.
	SQL *sqltext.Analyzer
	// Alerts receives alerts and blocks for security; none are sent when nil.
	Alerts Alerter
	// Quarantine is the list of employees whose new sessions are refused;
	// the quarantine action needs it.
	Quarantine quarantine.Store
	// Holds asks security to approve held results; without it, hold blocks.
	Holds HoldApprover
	// DecisionLog, if set, receives a JSON line per decision (Decision).
	DecisionLog io.Writer
	// Shared, if set, exchanges the employees' window figures with the
	// other pgwarden instances: window limits count them all.
	Shared Shared
	// Metrics, if set, receives the guard's counters and timings.
	Metrics *metrics.Metrics
	// Norms is the learned-behaviour model fed with every statement and
	// consulted when the policy's norms section is enabled; none when nil.
	Norms *norm.Model
	// NormShare, if set, feeds Norms in the guard's place and shares what
	// it is fed with the other pgwarden instances (*normshare.Sharer).
	NormShare NormShare
	// ServiceKeys are the keys the policy's service accounts sign their
	// identity tags with (package identity/tag), by database role:
	// LoadServiceKeys reads them from where the policy says. New and
	// SetPolicy refuse a policy naming an account without a key.
	ServiceKeys map[string][]byte
	// CatalogTimeout bounds a catalog lookup (default 2s).
	CatalogTimeout time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
}

// Guard implements proxy.Inspector.
type Guard struct {
	cfg       Config
	cur       atomic.Pointer[compiled] // the policy in force
	decisions *decisionLog
	norms     normState
	// open counts each employee's open sessions (a leak split across
	// parallel sessions shows here).
	openMu sync.Mutex
	open   map[string]int
	// auditTold is when a refusal of fail-closed auditing was last told
	// (UnixNano); 0: never.
	auditTold atomic.Int64
	// estimateWarn logs once that the planner cannot be asked as employees.
	estimateWarn sync.Once
	explained    explainedState
	sweeps       sweepState
	timeline     timeline
	// keys are the service accounts' signing keys (Config.ServiceKeys),
	// replaced by SetPolicyAndKeys.
	keysMu sync.Mutex
	keys   map[string][]byte
	// skips rate-limits the log lines about statements not analyzed.
	skips skipLog
}

// compiled is a policy with its detectors built.
type compiled struct {
	p         *policy.Policy
	detectors *detect.Set // nil when the policy turns detectors off
	canaries  *canarySet  // nil when the policy names none
	// estimate is set when a rule has an estimated_rows condition, sessions
	// when one has a sessions condition.
	estimate, sessions bool
	// keys are the signing keys of p's service accounts, by role.
	keys map[string][]byte
	// rules are p's rules, limits their thresholds and thresholded how
	// many have some: read for every statement, built once.
	rules                []*policy.Rule
	limits               map[*policy.Rule][]policy.Limit
	thresholded, nLimits int
}

// limitsOf returns a rule's thresholds, without a copy for the policy's
// own rules.
func (c *compiled) limitsOf(r *policy.Rule) []policy.Limit {
	if l, ok := c.limits[r]; ok {
		return l
	}
	return r.Limits()
}

func compile(p *policy.Policy, keys map[string][]byte) (*compiled, error) {
	c := &compiled{p: p, canaries: newCanarySet(p)}
	var err error
	if c.keys, err = serviceKeys(p, keys); err != nil {
		return nil, err
	}
	c.rules = p.Rules()
	c.limits = make(map[*policy.Rule][]policy.Limit, len(c.rules))
	for _, r := range c.rules {
		c.estimate = c.estimate || r.NeedsEstimate()
		c.sessions = c.sessions || r.NeedsSessions()
		if r.Thresholded() {
			c.limits[r] = r.Limits()
			c.thresholded++
			c.nLimits += len(c.limits[r])
		}
	}
	dc := p.Detectors()
	if !dc.Enabled {
		return c, nil
	}
	var custom []detect.Custom
	for _, cd := range dc.Custom {
		custom = append(custom, detect.Custom{Name: cd.Name, Category: cd.Category, Pattern: cd.Pattern})
	}
	set, err := detect.New(dc.Categories, custom)
	if err != nil {
		return nil, err
	}
	c.detectors = set
	return c, nil
}

// SetPolicy puts p in force. Running sessions apply it from their next
// statement; a statement in progress finishes under the policy it started
// with. It fails, leaving the policy in force, when p names a service
// account the guard has no key for.
func (g *Guard) SetPolicy(p *policy.Policy) error {
	g.keysMu.Lock()
	defer g.keysMu.Unlock()
	c, err := compile(p, g.keys)
	if err != nil {
		return err
	}
	g.cur.Store(c)
	return nil
}

// SetPolicyAndKeys puts p in force with new service account keys (a
// reload that adds an account or rotates a key), as SetPolicy does.
func (g *Guard) SetPolicyAndKeys(p *policy.Policy, keys map[string][]byte) error {
	g.keysMu.Lock()
	defer g.keysMu.Unlock()
	c, err := compile(p, keys)
	if err != nil {
		return err
	}
	g.keys = keys
	g.cur.Store(c)
	return nil
}

// Policy returns the policy in force.
func (g *Guard) Policy() *policy.Policy { return g.cur.Load().p }

// New validates cfg, compiles the policy's detectors and returns a Guard.
func New(cfg Config) (*Guard, error) {
	if cfg.Policy == nil {
		cfg.Policy = policy.Default()
	}
	if cfg.Windows == nil {
		w, err := window.NewRegistry(window.Config{})
		if err != nil {
			return nil, err
		}
		cfg.Windows = w
	}
	if cfg.SQL == nil {
		cfg.SQL = sqltext.New(0)
	}
	if cfg.CatalogTimeout <= 0 {
		cfg.CatalogTimeout = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Guard{cfg: cfg, keys: cfg.ServiceKeys}
	if cfg.DecisionLog != nil {
		g.decisions = &decisionLog{w: cfg.DecisionLog}
	}
	if err := g.SetPolicy(cfg.Policy); err != nil {
		return nil, err
	}
	return g, nil
}

// Windows returns the per-employee windows the guard feeds.
func (g *Guard) Windows() *window.Registry { return g.cfg.Windows }

// WantsParams implements proxy.ParamsWanter: the parameters of a Bind
// are read to plan a statement for an estimated_rows rule, and to know the
// keys a statement reads by its predicate (sequential_rows).
func (g *Guard) WantsParams() bool {
	c := g.cur.Load()
	return c.estimate || c.p.Explained().Schema != ""
}

// StartSession implements proxy.Inspector.
func (g *Guard) StartSession(_ context.Context, info *proxy.SessionInfo) (proxy.SessionInspector, error) {
	if info.Employee == "" {
		c := *info
		c.Employee, c.IdentifiedBy = c.User, proxy.IdentifiedByRole
		info = &c
	}
	if err := g.checkQuarantine(info); err != nil {
		g.refused(info, err)
		g.refusalDecision(info, "identity:quarantined", err)
		if m := g.cfg.Metrics; m != nil {
			m.SessionsRefused.WithLabelValues("quarantine").Inc()
		}
		return nil, err
	}
	s := &session{g: g, info: *info, log: g.cfg.Logger.With("session_id", info.ID, "employee", info.Employee), cat: g.cfg.Catalog}
	if g.cfg.CatalogFor != nil {
		s.cat = g.cfg.CatalogFor(info.Database)
	}
	s.clientIP = clientIP(info)
	s.c.Store(g.cur.Load())
	s.enf.roles = g.roles(info)
	s.def = who{employee: info.Employee, identifiedBy: info.IdentifiedBy, peer: peerOf(s.cc(), info.Employee, s.enf.roles, info.Groups)}
	s.defState.who = &s.def
	data := map[string]any{"database": info.Database, "client_tls": info.ClientTLS, "upstream_tls": info.UpstreamTLS}
	if sa := s.cc().p.ServiceAccount(info.User); sa != nil {
		data["service_account"] = sa.Role
		if why, unusual := sa.Unusual(info.ApplicationName, clientAddr(info)); unusual {
			data["unusual"] = why
		}
	}
	err := s.appendEvent(&s.def, audit.TypeSessionStart, data)
	if err != nil && !g.cfg.AuditFailOpen {
		if m := g.cfg.Metrics; m != nil {
			m.SessionsRefused.WithLabelValues("audit").Inc()
		}
		g.refusalDecision(info, auditUnavailableRule, errAuditUnavailable)
		return nil, errAuditUnavailable
	}
	g.openMu.Lock()
	if g.open == nil {
		g.open = make(map[string]int)
	}
	g.open[info.Employee]++
	g.openMu.Unlock()
	if m := g.cfg.Metrics; m != nil {
		m.SessionsStarted.Inc()
		m.SessionsOpen.Inc()
	}
	return s, nil
}

// errAuditUnavailable is what a client is told when fail-closed auditing
// stops it.
var errAuditUnavailable = errors.New("the audit log cannot be written, and pgwarden fails closed: try again later")

func addrString(info *proxy.SessionInfo) string {
	if info.ClientAddr == nil {
		return ""
	}
	return info.ClientAddr.String()
}

// cursorTotal is what the fetches from one cursor have returned so far.
type cursorTotal struct {
	Fetches   int64            `json:"fetches"`
	Rows      int64            `json:"rows"`
	Bytes     int64            `json:"bytes"`
	PIIRows   int64            `json:"pii_rows"`
	PIIValues map[string]int64 `json:"pii_values"`
}

// TableSet is the qualified names of the tables a statement touched,
// sorted, without duplicates. A statement touches a handful: a sorted
// slice costs less than a map, and is already in the order the decision
// log and the norms take.
type TableSet []string

func (t *TableSet) add(name string) {
	if i, found := slices.BinarySearch(*t, name); !found {
		*t = slices.Insert(*t, i, name)
	}
}

// Figures are one statement's counts.
type Figures struct {
	Rows      int64
	Bytes     int64
	PIIRows   int64
	PIIValues detect.Counts // per category; declared columns counted here too
	// subjects counts the distinct data subjects, exactly while few.
	subjects *hll.Counter
	Tables   TableSet
	// Redacted counts PII values the client received masked.
	Redacted int64
	// Failed is set when the statement ended in an error.
	Failed bool
	// Unexplained counts rows of the explained_access table the employee
	// had no recorded reason to see; Sequential, rows whose key is next to
	// one they read in the last hour.
	Unexplained, Sequential int64
	// inSum: the figures are in their employee's sum of the batch.
	inSum bool
	// userColumns: a column of the result comes from a user relation;
	// catalogOnly: the result is read only from the system catalogs (1),
	// or not (-1), once the row limit asked (rowlimit.go).
	userColumns bool
	catalogOnly int8
	// state is whom the statement is counted against, and its text.
	state *stmtState
	// Channels counts PII values that left other than in rows: in notices,
	// error messages and notifications.
	Channels map[string]int
	Started  time.Time
	wall     time.Time // Started on the wall clock, for latency metrics
	// finished is set when the statement's result ended (CommandComplete,
	// an error, a block); outcome, when the session ended before it did.
	finished bool
	outcome  string
	// stoppedBy is the rule that blocked the statement or ended its
	// session, of which security was told.
	stoppedBy string
	// probed: the values its predicates probe are counted (probe).
	probed bool
}

// DistinctSubjects counts the distinct data subjects seen, exactly up to
// hll.ExactLimit: each PII row stands for one, keyed by its first PII
// value. A value packing many subjects (string_agg) counts as one subject,
// though all its PII values are counted.
func (f *Figures) DistinctSubjects() uint64 {
	if f.subjects == nil {
		return 0
	}
	return f.subjects.Count()
}

// colPlan says how one result column is counted.
type colPlan struct {
	declared pii.Category // counted by declaration when set
	index    int8         // declared.Index()+1, or 0: look it up
	scan     bool         // scanned by the detectors
	// derived is the category of a declared column the value is computed
	// from (md5(email)): counted once when the detectors find nothing.
	derived pii.Category
	// textual is set when a masked string is a valid value of the column
	// (a text type, in either format); other columns are redacted to NULL.
	textual bool
	// dec says how the column's values can hide text (bytea, base64,
	// binary arrays and composites); oid is the column's type.
	dec decode.Kind
	oid uint32
}

type session struct {
	proxy.NopSessionInspector
	g *Guard
	// c is the policy of the statement in progress; both goroutines read
	// it (cc), the one reading results sets it when a statement begins.
	c atomic.Pointer[compiled]
	// lastSQL is the last text analyzed (analyze), by either goroutine.
	lastSQL atomic.Pointer[analyzed]
	info    proxy.SessionInfo
	log     *slog.Logger
	// cat is the catalog of the session's database; nil without one.
	cat Resolver
	// copy is the COPY TO STDOUT in progress (copyout.go).
	copy copyOut

	// def is the session's own identity, and defState the state of the
	// statements counted against it; svc follows the tags of a service
	// account's session (identity.go).
	def      who
	defState stmtState
	svc      serviceState
	// batch numbers the batches (ReadyForQuery) of the session.
	batch uint64

	cur  *proxy.Statement
	fig  *Figures
	plan []colPlan // nil: no description, scan everything
	// open holds the statements of the batch in progress; they are
	// recorded at ReadyForQuery.
	open map[*proxy.Statement]*Figures
	// path is the session's search_path, resolved when first needed;
	// both goroutines read it, under pathMu.
	path   searchPath
	pathMu sync.Mutex
	// order is searchOrder(orderOf), kept while the path is the same
	// slice (under pathMu): paths are replaced, never changed in place.
	order, orderOf []string
	// clientIP: of every statement's record, made once.
	clientIP string
	// qualNames are the schema.table names made by qualName, under
	// pathMu (both goroutines qualify names).
	qualNames map[[2]string]string
	// batchStmts is ReadyForQuery's list of the batch's statements, kept
	// for the next batch.
	batchStmts []*proxy.Statement

	enf enforcement
	// justification is the reason the employee last gave with SET
	// pgwarden.reason, for their next held statement.
	justification atomic.Pointer[string]
	// holdTickets carries the hold a decision announces (its alert names
	// it) to the hold that follows: holdKey -> holdTicket.
	holdTickets sync.Map
	key         keyColumn // where the explained_access key is in the current result
	// dec decodes the values that hide text (decode.go).
	dec valueDecoder
	// cursors sums the fetches of each open server-side cursor.
	cursors map[string]*cursorTotal
	// limited follows the open cursors for the row limit (rowlimit.go).
	limited map[string]*limitedCursor
	// total sums the session's statements, for its session_end event.
	total sessionTotal
	// sent holds the statements forwarded to the server that are not
	// recorded yet, in the order sent: Statement adds them (goroutine
	// reading the client), the goroutine reading results removes them, and
	// EndSession records those the server never answered.
	sentMu sync.Mutex
	sent   []*proxy.Statement
}

// sessionTotal sums statements of a session.
type sessionTotal struct {
	statements, rows, bytes, piiRows, unexplained, sequential int64
	piiValues                                                 map[string]int64
	// subjects is the union of the statements' distinct subjects.
	subjects *hll.Counter
}

// add counts a recorded statement.
func (t *sessionTotal) add(f *Figures, values map[string]int) {
	t.statements++
	t.rows += f.Rows
	t.bytes += f.Bytes
	t.piiRows += f.PIIRows
	t.unexplained += f.Unexplained
	t.sequential += f.Sequential
	if f.subjects != nil {
		if t.subjects == nil {
			t.subjects = hll.NewCounter(hll.DefaultPrecision)
		}
		t.subjects.Merge(f.subjects)
	}
	for c, n := range values {
		if t.piiValues == nil {
			t.piiValues = make(map[string]int64)
		}
		t.piiValues[c] += int64(n)
	}
}

// sumOf is the running sum of w's statements of the batch in progress,
// other than the current one.
func (s *session) sumOf(w *who) *openSum {
	if w.sumBatch != s.batch {
		w.sum, w.sumBatch = openSum{}, s.batch
	}
	return &w.sum
}

// analyzed is a text and its analysis, the last a goroutine of the
// session asked for.
type analyzed struct {
	sql  string
	info *sqltext.Info
	// probes are the analyzer's Probes of sql when probesOK: known
	// from its shape.
	probes   *sqltext.Lineage
	probesOK bool
}

// probesOf is the analyzer's Probes, from the last text's analysis when
// its shape told them.
func (s *session) probesOf(sql string) *sqltext.Lineage {
	a := s.lastSQL.Load()
	if a == nil || a.sql != sql {
		return s.g.cfg.SQL.Probes(sql)
	}
	if !a.probesOK {
		// Remembered for the text's next statements (a prepared
		// statement's).
		lin := s.g.cfg.SQL.Probes(sql)
		s.lastSQL.CompareAndSwap(a, &analyzed{sql: sql, info: a.info, probes: lin, probesOK: true})
		return lin
	}
	return a.probes
}

// analyze is the analyzer's Analyze, remembering the last text: a
// statement's text is asked about a dozen times on its way (its rules, its
// tables, its record, its norms), and a text seen once, as each of
// pgbench's is, would take the analyzer's locks each time.
func (s *session) analyze(sql string) *sqltext.Info {
	if a := s.lastSQL.Load(); a != nil && a.sql == sql {
		return a.info
	}
	info, probes, ok := s.g.cfg.SQL.AnalyzeProbes(sql)
	s.lastSQL.Store(&analyzed{sql: sql, info: info, probes: probes, probesOK: ok})
	return info
}

// cc returns the policy of the statement in progress.
func (s *session) cc() *compiled { return s.c.Load() }

func (s *session) figures(st *proxy.Statement) *Figures {
	if st == s.cur && s.fig != nil {
		return s.fig
	}
	if s.fig != nil && !s.fig.inSum {
		// The statement before is done (for now): its figures join the
		// batch's sum of its employee, which session and window limits
		// add.
		s.sumOf(s.fig.state.who).add(s.fig, 1)
		s.fig.inSum = true
	}
	f := s.lookup(st)
	if f.inSum {
		// A portal resumed: current again.
		s.sumOf(f.state.who).add(f, -1)
		f.inSum = false
	}
	s.cur, s.fig, s.plan = st, f, nil
	s.key = keyColumn{index: -1}
	s.begin(st)
	return f
}

// lookup returns st's figures without making st the current statement.
func (s *session) lookup(st *proxy.Statement) *Figures {
	if s.open == nil {
		s.open = make(map[*proxy.Statement]*Figures)
	}
	f := s.open[st]
	if f == nil {
		f = &Figures{Started: s.g.cfg.Now(), wall: time.Now(), state: s.stateOf(st)}
		s.open[st] = f
		s.svc.answered(st)
	}
	return f
}

// between stands for "no statement": notifications, and notices between
// statements, are recorded under it.
var between = &proxy.Statement{}

// message is the enforcement path of a message that is not a row of a
// result: a notice, an error, a notification, a parameter status. Its
// texts are scanned and looked through for canaries, and what they carry
// is checked against the rules like a row, before the client sees it: a
// message with PII counts as a row with PII of the statement it came in
// (between statements, of the messages up to the next ReadyForQuery).
// Under a redact rule the message is rewritten (the proxy withholds or
// masks it).
func (s *session) message(st *proxy.Statement, channel string, texts ...string) proxy.Verdict {
	pol := s.cc()
	if pol.detectors == nil && pol.canaries == nil {
		return proxy.Verdict{}
	}
	if st == nil {
		st = between
	}
	e := &s.enf
	e.row.Reset()
	var size int64
	var subject []byte
	canaries, n := 0, 0
	for _, t := range texts {
		if t == "" {
			continue
		}
		b := []byte(t)
		size += int64(len(b))
		if pol.canaries != nil {
			canaries += pol.canaries.countIn(b)
		}
		if pol.detectors != nil {
			if k := pol.detectors.Scan(b, &e.row); k > 0 {
				n += k
				if subject == nil {
					subject = b
				}
			}
		}
	}
	if canaries == 0 && subject == nil {
		return proxy.Verdict{}
	}
	// The statement's rules begin with its first result message, which
	// may be this one; begin leaves the row's counts alone.
	f := s.figures(st)
	if v := e.pending; v.Action == proxy.Block || v.Action == proxy.Kill {
		return v
	}
	if canaries > 0 {
		if v := s.canaryHit(st, canaries); v.Action != proxy.Continue {
			return s.stopMessage(st, v)
		}
	}
	if subject == nil {
		return proxy.Verdict{}
	}
	if e.enforcing() {
		e.rowUnexplained, e.rowSequential = false, false
		if v := s.check(st, f, subject, true, size); v.Action != proxy.Continue {
			return s.stopMessage(st, v)
		}
		if r := e.redacting; r != nil {
			f.Redacted += int64(n)
			return proxy.Verdict{Action: proxy.Rewrite, Values: [][]byte{[]byte("***")},
				Reason: fmt.Sprintf("the %s's text was withheld: it carried PII (rule %s)", channelText(channel), r.Name)}
		}
	}
	e.row.Each(func(c pii.Category, k int) { f.PIIValues.Add(c, k) })
	f.PIIRows++
	f.Bytes += size
	s.subject(f, subject)
	if f.Channels == nil {
		f.Channels = make(map[string]int)
	}
	f.Channels[channel] += n
	return proxy.Verdict{}
}

// stopMessage returns the verdict on a message; between statements, the
// messages that follow up to the next ReadyForQuery are withheld too.
func (s *session) stopMessage(st *proxy.Statement, v proxy.Verdict) proxy.Verdict {
	if st == between {
		s.enf.pending = v
	}
	return v
}

func channelText(channel string) string {
	if channel == "parameter_status" {
		return "parameter status"
	}
	return channel
}

// CommandComplete makes sure a statement that returned no rows (BEGIN,
// DECLARE, an UPDATE) is recorded too.
func (s *session) CommandComplete(st *proxy.Statement, tag []byte) {
	if st != nil {
		f := s.lookup(st)
		s.probe(st, f, &f.PIIValues)
		f.finished = true
		s.ended(st)
	}
	if len(tag) > 0 && (tag[0] == 'S' || tag[0] == 'R') {
		// SET, RESET, or a SELECT calling set_config().
		s.followPath(st)
		if string(tag) == "SET" {
			// SET pgwarden.reason (set_config answers SELECT: not read).
			if j, ok := justificationSet(s.sqlOf(st)); ok {
				s.justification.Store(&j)
			}
		}
	}
}

// Error records the failed statement and checks the error's texts: a
// failed cast or constraint quotes values, RAISE EXCEPTION anything.
func (s *session) Error(st *proxy.Statement, e *pgproto3.ErrorResponse) proxy.Verdict {
	v := s.message(st, "error", e.Message, e.Detail, e.Hint, e.Where)
	if st != nil {
		f := s.lookup(st)
		f.Failed, f.finished = true, true
		s.ended(st)
	}
	if st == nil || st.Kind == proxy.ExtendedExecute {
		// The server skips the rest of the batch up to its Sync.
		s.unsend(func(x *proxy.Statement) bool { return s.open[x] == nil })
	}
	return v
}

// Notice checks a notice: RAISE NOTICE can carry anything.
func (s *session) Notice(st *proxy.Statement, n *pgproto3.NoticeResponse) proxy.Verdict {
	return s.message(st, "notice", n.Message, n.Detail, n.Hint, n.Where)
}

// ParameterStatus checks a parameter's new value: set_config() of
// application_name reports any text back to the client.
func (s *session) ParameterStatus(st *proxy.Statement, p *pgproto3.ParameterStatus) proxy.Verdict {
	if p.Name == "client_encoding" {
		s.copy.encoding = p.Value
	}
	return s.message(st, "parameter_status", p.Value)
}

// FunctionResult counts the result of a fast-path function call (lo_get,
// loread) as a row of one value, scanned by the detectors.
func (s *session) FunctionResult(st *proxy.Statement, result []byte) proxy.Verdict {
	f := s.figures(st)
	if s.cc().canaries != nil && result != nil {
		if n := s.cc().canaries.countIn(result); n > 0 {
			if v := s.canaryHit(st, n); v.Action != proxy.Continue {
				return v
			}
		}
	}
	pii := false
	s.enf.rowUnexplained, s.enf.rowSequential = false, false
	if s.enf.enforcing() {
		s.enf.row.Reset()
		pii = result != nil && s.cc().detectors != nil && s.cc().detectors.Scan(result, &s.enf.row) > 0
		if v := s.check(st, f, result, pii, int64(len(result))); v.Action != proxy.Continue {
			return v
		}
		if pii && s.enf.redacting != nil {
			return s.cannotRedact(st, "a fast-path function call")
		}
		f.PIIValues.AddAll(&s.enf.row)
	} else {
		pii = result != nil && s.cc().detectors != nil && s.cc().detectors.Scan(result, &f.PIIValues) > 0
	}
	f.Rows++
	f.Bytes += int64(len(result))
	if pii {
		f.PIIRows++
		s.subject(f, result)
	}
	return proxy.Verdict{}
}

// Notification checks a NOTIFY payload.
func (s *session) Notification(st *proxy.Statement, n *pgproto3.NotificationResponse) proxy.Verdict {
	return s.message(st, "notification", n.Channel, n.Payload)
}

// RowDescription classifies the result's columns.
func (s *session) RowDescription(st *proxy.Statement, fields []pgproto3.FieldDescription) {
	if m := s.g.cfg.Metrics; m != nil {
		defer metrics.Since(m.DescribeTime, time.Now())
	}
	f := s.figures(st)
	plan := s.planColumns(f, fields)
	if s.key.index == noKey {
		s.key.inferred = s.inferKeys(st)
	}
	s.derive(st, s.sqlOf(st), fields, plan)
	s.plan = plan
	s.widen(st, f)
}

// planColumns classifies result columns. With f, it also notes in f and in
// s.key what the result's columns tell (tables, key column); a COPY's
// columns, described apart (copyout.go), pass nil.
func (s *session) planColumns(f *Figures, fields []pgproto3.FieldDescription) []colPlan {
	plan := make([]colPlan, len(fields))
	for i, fd := range fields {
		plan[i].scan = s.cc().detectors != nil && scannable(fd)
		plan[i].textual = textual(fd.DataTypeOID)
		plan[i].dec, plan[i].oid = decode.For(fd.DataTypeOID, fd.Format), fd.DataTypeOID
		if fd.TableOID >= firstNormalObjectID {
			if f != nil {
				f.userColumns = true
			}
		} else if fd.TableOID != 0 && serverAddress(fd.DataTypeOID) {
			// pg_stat_activity.client_addr and its kin: the address
			// of a database session, not of a data subject.
			plan[i].scan = false
		}
		if fd.TableOID == 0 || s.cat == nil {
			continue
		}
		col, err := s.column(fd.TableOID, int16(fd.TableAttributeNumber))
		if err != nil {
			if !errors.Is(err, catalog.ErrNotFound) {
				s.log.Warn("catalog_lookup_failed", "table_oid", fd.TableOID, "error", err)
			}
			continue
		}
		p := s.cc().p
		if f != nil {
			f.Tables.add(s.qualName(col.Schema, col.Table))
			findKeyColumn(p.Explained(), i, fd, col.Schema, col.Table, col.Name, &s.key)
		}
		if p.Excluded(col.Schema, col.Table, col.Name) {
			plan[i] = colPlan{textual: plan[i].textual}
			continue
		}
		if cat, ok := p.Classify(col.Schema, col.Table, col.Name); ok {
			plan[i] = colPlan{declared: cat, index: int8(cat.Index() + 1), textual: plan[i].textual, dec: plan[i].dec, oid: plan[i].oid}
			continue
		}
		if col.RelKind == 'v' || col.RelKind == 'm' {
			// A view is as sensitive as the columns it exposes.
			plan[i].derived = s.viewColumn(fd.TableOID, int(fd.TableAttributeNumber))
			if f != nil {
				s.viewTables(fd.TableOID, f)
			}
		}
	}
	return plan
}

// qualName returns schema + "." + table, made once per session.
func (s *session) qualName(schema, table string) string {
	k := [2]string{schema, table}
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	if q, ok := s.qualNames[k]; ok {
		return q
	}
	if s.qualNames == nil || len(s.qualNames) >= maxQualNames {
		s.qualNames = make(map[[2]string]string)
	}
	q := schema + "." + table
	s.qualNames[k] = q
	return q
}

// maxQualNames bounds a session's qualNames.
const maxQualNames = 256

// cachedColumns is a Resolver that can answer Column from its cache
// without a context (see cachedRelations).
type cachedColumns interface {
	CachedColumn(tableOID uint32, attNum int16) (catalog.Column, bool)
}

// column is s.cat.Column, from the cache when it can.
func (s *session) column(tableOID uint32, attNum int16) (catalog.Column, error) {
	if c, ok := s.cat.(cachedColumns); ok {
		if col, ok := c.CachedColumn(tableOID, attNum); ok {
			return col, nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.CatalogTimeout)
	defer cancel()
	return s.cat.Column(ctx, tableOID, attNum)
}

// serverAddress reports whether a column of a built-in relation of that
// type holds network addresses: only the server's own statistics views
// (pg_stat_activity, pg_stat_replication, pg_stat_ssl ...) have such
// columns, and they name the database's clients, not its data subjects.
func serverAddress(typeOID uint32) bool {
	const inetOID, cidrOID = 869, 650
	return typeOID == inetOID || typeOID == cidrOID
}

// scannable reports whether the detectors can read the column's values as
// they are: text format (but bytea, which is decoded first), or binary
// format of a type whose binary form is its text or raw bytes.
func scannable(fd pgproto3.FieldDescription) bool {
	if fd.Format == 0 {
		return fd.DataTypeOID != byteaOID
	}
	return decode.Raw(fd.DataTypeOID)
}

// DataRow counts one row. With rules in force, the row is counted apart
// first: a row that crosses a limit is blocked before the client receives
// it, and is left out of the figures, which count what the client received.
func (s *session) DataRow(st *proxy.Statement, values [][]byte) proxy.Verdict {
	f := s.figures(st)
	if !s.belowRowLimit(f) {
		if v := s.rowLimit(st, f); v.Action != proxy.Continue {
			return v
		}
	}
	if v := &s.enf.pending; v.Action != proxy.Continue && v.Action != proxy.Rewrite {
		return *v
	}
	pol := s.cc()
	enforcing := s.enf.enforcing()
	counts := &f.PIIValues
	if enforcing {
		s.enf.row.Reset()
		counts = &s.enf.row
	}
	probed := s.probe(st, f, counts)
	var rowBytes int64
	// The row's first PII value stands for its data subject.
	var subject []byte
	s.enf.piiCols = s.enf.piiCols[:0]
	canaries := 0
	for i, v := range values {
		rowBytes += int64(len(v))
		if v == nil {
			continue
		}
		if pol.canaries != nil {
			canaries += pol.canaries.count(v)
		}
		c := &unplanned
		if s.plan == nil {
			if pol.detectors != nil {
				c = &scanned
			}
		} else if i < len(s.plan) {
			c = &s.plan[i]
		}
		switch {
		case c.declared != "":
			counts.AddIndexed(int(c.index)-1, c.declared, 1)
		case c.scan && pol.detectors.Scan(v, counts) > 0:
		case c.dec != decode.None && pol.detectors != nil && (c.dec != decode.Encoded || decode.MayBeEncoded(v)) &&
			s.dec.scan(pol, c, v, counts, &canaries) > 0:
		case c.derived != "" && len(v) > 0:
			// Transformed past recognition (md5, reverse, base64): still
			// the declared column's value. (An empty value, pg_notify's
			// void, carries none.)
			counts.Add(c.derived, 1)
		default:
			continue
		}
		s.enf.piiCols = append(s.enf.piiCols, i)
		if subject == nil {
			subject = v
		}
	}
	if canaries > 0 {
		if v := s.canaryHit(st, canaries); v.Action != proxy.Continue {
			return v
		}
	}
	s.enf.rowUnexplained, s.enf.rowSequential = false, false
	switch k := s.key; {
	case k.index == noKey:
		// Columns of the table without its key: the row cannot be
		// explained, so it is not (the side of caution). Its key may be
		// known from the statement's predicate, for sweeps.
		s.enf.rowUnexplained = true
		if key, ok := k.inferred.at(f.Rows); ok {
			s.enf.rowSequential = s.g.sequential(f.state.who.employee, key, s.g.cfg.Now())
		}
	case k.index >= 0 && k.index < len(values) && values[k.index] != nil:
		if key, ok := k.keyText(values[k.index]); ok {
			if !s.explained(pol.p.Explained(), key, f.state.who.employee) {
				s.enf.rowUnexplained = true
			}
			if n, err := strconv.ParseInt(key, 10, 64); err == nil {
				s.enf.rowSequential = s.g.sequential(f.state.who.employee, n, s.g.cfg.Now())
			}
		}
	}
	if enforcing {
		if rowPII := subject != nil || probed; s.enf.checks(rowPII) && s.stops(st, f, subject, rowPII, rowBytes) {
			return s.enf.stop
		}
		if s.enf.redacting != nil && subject != nil {
			return s.redact(f, values)
		}
		if subject != nil || probed {
			f.PIIValues.AddAll(&s.enf.row) // nothing else counts
		}
	}
	f.Rows++
	f.Bytes += rowBytes
	if s.enf.rowUnexplained {
		f.Unexplained++
	}
	if s.enf.rowSequential {
		f.Sequential++
	}
	if subject != nil {
		f.PIIRows++
		s.subject(f, subject)
	}
	return proxy.Verdict{}
}

// unplanned and scanned are the plans of a column past the described
// ones and of every column of an undescribed result when detectors run.
var unplanned, scanned = colPlan{}, colPlan{scan: true}

func (s *session) subject(f *Figures, v []byte) {
	if f.subjects == nil {
		f.subjects = hll.NewCounter(hll.DefaultPrecision)
	}
	f.subjects.Add(hll.Hash64(v, 0))
}

// CopyData counts one COPY TO STDOUT message: a row in text and CSV format.
func (s *session) CopyData(st *proxy.Statement, data []byte) proxy.Verdict {
	f := s.figures(st)
	if !s.belowRowLimit(f) {
		if v := s.rowLimit(st, f); v.Action != proxy.Continue {
			return v
		}
	}
	if s.cc().canaries != nil {
		if n := s.cc().canaries.countIn(data); n > 0 {
			if v := s.canaryHit(st, n); v.Action != proxy.Continue {
				return v
			}
		}
	}
	pii := false
	var rewrite *proxy.Verdict
	s.enf.rowUnexplained, s.enf.rowSequential = false, false
	if s.enf.enforcing() {
		s.enf.row.Reset()
		pii = s.cc().detectors != nil && s.cc().detectors.Scan(data, &s.enf.row) > 0
		if v := s.check(st, f, data, pii, int64(len(data))); v.Action != proxy.Continue {
			return v
		}
		if s.enf.redacting != nil {
			v, out, done := s.redactCopy(st, f, data, false)
			if done {
				return v
			}
			if !bytes.Equal(out, data) {
				rewrite = &proxy.Verdict{Action: proxy.Rewrite, Values: [][]byte{out}}
				data = out
			}
		}
		f.PIIValues.AddAll(&s.enf.row)
	} else {
		pii = s.cc().detectors != nil && s.cc().detectors.Scan(data, &f.PIIValues) > 0
	}
	f.Rows++
	f.Bytes += int64(len(data))
	if pii {
		f.PIIRows++
		s.subject(f, data)
	}
	if rewrite != nil {
		return *rewrite
	}
	return proxy.Verdict{}
}

// ReadyForQuery records every statement of the batch that just ended,
// before the client is told the batch is done. When the audit log fails
// and auditing fails closed, the session ends instead.
func (s *session) ReadyForQuery(txStatus byte) proxy.Verdict {
	if txStatus == 'I' {
		s.endTransaction()
		s.svc.idleAfter.Store(s.svc.lastSeq)
	}
	var failed bool
	// In the order the client sent them.
	stmts := s.batchStmts[:0]
	for st := range s.open {
		stmts = append(stmts, st)
	}
	if len(stmts) > 1 {
		slices.SortFunc(stmts, func(a, b *proxy.Statement) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	var last uint64
	for _, st := range stmts {
		if err := s.record(st, s.open[st]); err != nil {
			failed = true
		}
		last = max(last, st.Seq)
	}
	// The statements of a batch are sent before its ReadyForQuery arrives;
	// those of the next one may be sent already, with higher numbers.
	s.unsend(func(x *proxy.Statement) bool { return x.Seq <= last })
	clear(s.open)
	if txStatus == 'I' {
		clear(s.limited)
	}
	if cap(stmts) <= 64 {
		clear(stmts)
		s.batchStmts = stmts[:0]
	}
	s.batch++
	s.svc.forget()
	s.cur, s.fig, s.plan = nil, nil, nil
	if failed && !s.g.cfg.AuditFailOpen {
		return proxy.Verdict{Action: proxy.Kill, Reason: errAuditUnavailable.Error()}
	}
	return proxy.Verdict{}
}

// record hands a statement's figures to the windows and the audit log.
func (s *session) record(st *proxy.Statement, f *Figures) error {
	now := s.g.cfg.Now()
	wf := window.Figures{Statements: 1, Rows: f.Rows, PIIRows: f.PIIRows, Bytes: f.Bytes, Unexplained: f.Unexplained, Sequential: f.Sequential,
		Subjects: f.subjects}
	var values map[string]int
	f.PIIValues.Each(func(c pii.Category, n int) {
		if values == nil {
			values = make(map[string]int, 4)
		}
		values[string(c)] = n
		wf.AddPII(c, int64(n))
	})
	w := f.state.who
	s.g.cfg.Windows.Add(w.employee, now, wf)
	if sh := s.g.cfg.Shared; sh != nil {
		sh.Add(w.employee, now, wf)
	}
	if total := f.PIIValues.Total(); total > 0 {
		s.g.timeline.add(w.employee, now, int64(total))
	}
	s.total.add(f, values)
	w.total.add(f, values)
	sql := f.state.text(st)
	if sql != "" {
		s.followCursor(s.analyze(sql), sql, f)
		// The tables the text names count as touched, whether or not a
		// result column comes from them (a WHERE, a join, a subquery).
		for _, rel := range s.analyze(sql).Relations {
			f.Tables.add(s.qualify(rel))
		}
	}
	tables := []string(f.Tables)
	s.observe(st, f, tables, now)
	if m := s.g.cfg.Metrics; m != nil && st != between {
		m.Statements.Inc()
		m.Rows.Add(float64(f.Rows))
		m.Bytes.Add(float64(f.Bytes))
		f.PIIValues.Each(func(c pii.Category, n int) { m.PIIValues.WithLabelValues(string(c)).Add(float64(n)) })
		if f.Failed {
			m.StatementErrors.Inc()
		}
		metrics.Since(m.StatementTime, f.wall)
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("statement_counted", "statement_seq", st.Seq, "rows", f.Rows, "pii_rows", f.PIIRows,
			"pii_values", f.PIIValues.Total(), "bytes", f.Bytes)
	}
	// A FETCH rolls up into its cursor's total, which the cursor's next
	// FETCH starts from, audited or not.
	var ct *cursorTotal
	var info *sqltext.Info
	if sql != "" {
		if info = s.analyze(sql); info.Cursor != "" {
			ct = s.cursorFetched(info, f, values)
		}
	}
	if s.g.cfg.Audit == nil {
		return nil
	}
	kind := st.Kind.String()
	if st == between {
		kind = "between_statements"
	}
	if values == nil {
		values = map[string]int{}
	}
	if tables == nil {
		tables = []string{}
	}
	data := map[string]any{
		"seq": st.Seq, "kind": kind, "rows": f.Rows, "bytes": f.Bytes,
		"pii_rows": f.PIIRows, "pii_values": values, "distinct_subjects": f.DistinctSubjects(),
		"tables": tables, "duration_ms": now.Sub(f.Started).Milliseconds(),
	}
	if len(f.Channels) > 0 {
		data["channels"] = f.Channels
	}
	if f.Redacted > 0 {
		data["redacted_values"] = f.Redacted
	}
	if f.Unexplained > 0 {
		data["unexplained_rows"] = f.Unexplained
	}
	if f.Sequential > 0 {
		data["sequential_rows"] = f.Sequential
	}
	if f.outcome != "" {
		data["outcome"] = f.outcome
	}
	if ss := f.state; ss.use.Account != "" {
		data["service_account"] = ss.use.Account
		if ss.tagErr != "" {
			data["tag_error"] = ss.tagErr
		}
		if ss.unusual != "" {
			data["unusual"] = ss.unusual
		}
	}
	if sql != "" {
		s.sqlFields(sql, data)
		if info.Cursor != "" {
			data["cursor"] = info.Cursor
			if ct != nil {
				data["cursor_total"] = ct
			}
		}
	}
	return s.appendEvent(w, audit.TypeStatement, data)
}

// sqlFields adds a statement's text to an audit event's data: its
// fingerprint and its text with the literals redacted (the trail says what
// was asked, not the values typed into it).
func (s *session) sqlFields(sql string, data map[string]any) *sqltext.Info {
	info := s.analyze(sql)
	if info.Skipped != "" {
		data["sql_unanalyzed"], data["sql_bytes"] = info.Skipped, len(sql)
	} else if info.Fingerprint != "" {
		// Literals are redacted: the trail says what was asked, not the
		// values typed into it.
		data["fingerprint"], data["sql"] = info.Fingerprint, info.Normalized
	} else {
		data["sql_unparsed"] = true
	}
	return info
}

// cursorFetched rolls a FETCH up into its cursor's total; DECLARE and CLOSE
// start and end one.
func (s *session) cursorFetched(info *sqltext.Info, f *Figures, values map[string]int) *cursorTotal {
	switch info.CursorOp {
	case "declare", "close":
		delete(s.cursors, info.Cursor)
		return nil
	case "fetch":
	default:
		return nil
	}
	if s.cursors == nil {
		s.cursors = make(map[string]*cursorTotal)
	}
	ct := s.cursors[info.Cursor]
	if ct == nil {
		ct = &cursorTotal{PIIValues: make(map[string]int64)}
		s.cursors[info.Cursor] = ct
	}
	ct.Fetches++
	ct.Rows += f.Rows
	ct.Bytes += f.Bytes
	ct.PIIRows += f.PIIRows
	for c, n := range values {
		ct.PIIValues[c] += int64(n)
	}
	return ct
}

// Blocked is told when the proxy carried out a verdict; the decision itself
// is already in the audit trail, recorded when it was made.
func (s *session) Blocked(st *proxy.Statement, v proxy.Verdict) {
	s.log.Debug("verdict_carried_out", "statement_seq", seqOf(st), "action", v.Action.String())
	if v.Action != proxy.Kill {
		// (A kill may be reported from the goroutine reading the client.)
		if f := s.open[st]; f != nil {
			f.finished = true
		}
		s.ended(st)
	}
}

// EndSession records what is left and the session's end: the statements
// whose results were cut short, and those sent that the server never
// answered (a Query written together with Terminate, or followed by the
// client closing the connection, still runs), before session_end.
func (s *session) EndSession(err error) {
	for st, f := range s.open {
		if st != between && !f.finished {
			f.outcome = "incomplete"
		}
	}
	s.sentMu.Lock()
	sent := s.sent
	s.sent = nil
	s.sentMu.Unlock()
	for _, st := range sent {
		if s.open[st] == nil {
			s.lookup(st).outcome = "no_result"
		}
	}
	s.ReadyForQuery(0)
	t := &s.total
	data := map[string]any{"statements": t.statements, "rows": t.rows, "bytes": t.bytes,
		"pii_rows": t.piiRows, "pii_values": t.piiValues}
	if err != nil {
		data["error"] = err.Error()
	}
	s.appendEvent(&s.def, audit.TypeSessionEnd, data)
	g := s.g
	g.openMu.Lock()
	if g.open[s.info.Employee]--; g.open[s.info.Employee] <= 0 {
		delete(g.open, s.info.Employee)
	}
	g.openMu.Unlock()
	if m := g.cfg.Metrics; m != nil {
		m.SessionsOpen.Dec()
	}
}

// unsend forgets the sent statements that drop says are recorded, or that
// the server will skip.
func (s *session) unsend(drop func(*proxy.Statement) bool) {
	s.sentMu.Lock()
	s.sent = slices.DeleteFunc(s.sent, drop)
	s.sentMu.Unlock()
}

// appendEvent records an event about w's statements (the session's own
// identity for session events); its data names them and where they come
// from.
func (s *session) appendEvent(w *who, typ string, data map[string]any) error {
	return s.appendEventAs(w, typ, data, false)
}

// appendEventAs is appendEvent; written says that the event need only be
// written, not durable yet, when the log tells the two apart (AuditWriter).
func (s *session) appendEventAs(w *who, typ string, data map[string]any, written bool) error {
	if s.g.cfg.Audit == nil {
		return nil
	}
	s.identityFields(w, data)
	raw, err := audit.MarshalData(data)
	if err != nil {
		s.log.Error("audit_marshal_failed", "error", err)
		return err
	}
	ev := audit.Event{Type: typ, SessionID: s.info.ID, Employee: w.employee, Data: raw}
	if m := s.g.cfg.Metrics; m != nil {
		defer metrics.Since(m.AuditAppendTime, time.Now())
	}
	if aw, ok := s.g.cfg.Audit.(AuditWriter); ok && written {
		_, err = aw.AppendWritten(context.Background(), ev)
	} else {
		_, err = s.g.cfg.Audit.Append(context.Background(), ev)
	}
	if err != nil {
		if m := s.g.cfg.Metrics; m != nil {
			m.AuditFailures.Inc()
		}
		s.log.Error("audit_append_failed", "event_type", typ, "error", err, "fail_open", s.g.cfg.AuditFailOpen)
		return err
	}
	return nil
}

// openSum is a running sum of statements' figures.
type openSum struct {
	rows, bytes, piiRows, unexplained, sequential int64
	pii                                           detect.Counts
}

// add adds (sign 1) or removes (sign -1) f.
func (o *openSum) add(f *Figures, sign int) {
	o.rows += int64(sign) * f.Rows
	o.bytes += int64(sign) * f.Bytes
	o.piiRows += int64(sign) * f.PIIRows
	o.unexplained += int64(sign) * f.Unexplained
	o.sequential += int64(sign) * f.Sequential
	f.PIIValues.Each(func(c pii.Category, n int) { o.pii.Add(c, sign*n) })
}
