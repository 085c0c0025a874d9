package guard

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/pgwarden/pgwarden/identity/tag"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/state/quarantine"
)

// IdentifiedByTag says that a statement's employee is named by a signed
// tag of one of the policy's service accounts (package identity/tag).
const IdentifiedByTag = "tag"

// who is an identity statements are counted against: the session's own
// (the employee behind the session, Employee of proxy.SessionInfo), or an
// employee a service account's tag names. employee, identifiedBy and peer
// never change; the rest belongs to the goroutine reading results.
type who struct {
	employee, identifiedBy string
	peer                   string // peer group for norms
	// total sums the identity's statements recorded in the session: the
	// figures of its session-scope rules.
	total sessionTotal
	// sum holds its statements of the batch in progress, other than the
	// current one, not yet recorded; valid while sumBatch is the
	// session's batch.
	sum      openSum
	sumBatch uint64
	canaries int // canary values received in the session
}

// stmtState is what Statement learned of a statement that the goroutine
// reading its results needs: whom it is counted against, and its text.
type stmtState struct {
	who *who
	// sql is the text to analyze when it is not the statement's own: a
	// valid tag comment removed.
	sql string
	use policy.ServiceUse
	// unusual says why the session is unusual for its service account.
	unusual string
	// tagErr is why a tag was rejected, and tagUser whom it named.
	tagErr, tagUser string
	// done is set when the statement's result has ended (goroutine
	// reading results).
	done bool
}

// text is the SQL the guard analyzes for st.
func (ss *stmtState) text(st *proxy.Statement) string {
	if ss.sql != "" {
		return ss.sql
	}
	return st.SQL
}

// serviceState is a session's identity state when its role is a service
// account.
type serviceState struct {
	// Of the goroutine reading the client: the employee SET
	// application_name named for the statements that follow (setLocal:
	// until the transaction ends), set by statement setSeq; and the
	// tagged identities seen, for the policy whosOf.
	set      *who
	setLocal bool
	setSeq   uint64
	setAt    time.Time // when its tag was signed
	whos     map[string]*who
	whosOf   *compiled

	// stmts holds the state of statements sent and not yet recorded, or
	// suspended portals; active once it has been used.
	mu     sync.Mutex
	stmts  map[*proxy.Statement]*stmtState
	active atomic.Bool
	// idleAfter is the last statement answered before the server said
	// no transaction was open: a SET LOCAL before it has lapsed.
	idleAfter atomic.Uint64
	// lastSeq is the last statement answered (goroutine reading results).
	lastSeq uint64
}

// maxTagged bounds the tagged identities a session remembers, and
// maxKeptStates the states kept for statements already answered
// (suspended portals).
const (
	maxTagged     = 1024
	maxKeptStates = 256
)

// stateOf returns what Statement decided about st.
func (s *session) stateOf(st *proxy.Statement) *stmtState {
	if st == nil || !s.svc.active.Load() {
		return &s.defState
	}
	s.svc.mu.Lock()
	ss := s.svc.stmts[st]
	s.svc.mu.Unlock()
	if ss == nil {
		return &s.defState
	}
	return ss
}

// employee is whom st is counted against.
func (s *session) employee(st *proxy.Statement) string { return s.stateOf(st).who.employee }

// sqlOf is the SQL the guard analyzes for st: its text, without a valid
// tag.
func (s *session) sqlOf(st *proxy.Statement) string {
	if st == nil {
		return ""
	}
	return s.stateOf(st).text(st)
}

// identify decides, before st is sent, whom it is counted against. On a
// service account's session, a valid tag comment names the employee;
// otherwise the employee SET application_name named, if any; otherwise
// the session's own identity. A rejected tag is alerted and ignored.
func (s *session) identify(c *compiled, st *proxy.Statement) *stmtState {
	sv := &s.svc
	sa := c.p.ServiceAccount(s.info.User)
	if sa == nil {
		sv.set = nil
		return &s.defState
	}
	now := s.g.cfg.Now()
	key := c.keys[sa.Role]
	ss := &stmtState{who: &s.def, use: policy.ServiceUse{Account: sa.Role}}
	ss.unusual, ss.use.Unusual = sa.Unusual(s.info.ApplicationName, clientAddr(&s.info))
	if st.Kind != proxy.FunctionCall {
		t, err := tag.Find(st.SQL)
		if err == nil && t != nil {
			if err = t.Verify(key, s.info.BackendPID, now, sa.MaxSkew); err == nil {
				ss.who, ss.sql, ss.use.Tagged = s.tagged(c, t.User), t.Body, true
			}
			ss.tagUser = t.User
		}
		if err != nil {
			ss.use.BadTag, ss.tagErr = true, err.Error()
		}
	}
	if sv.set != nil && sv.setLocal && sv.idleAfter.Load() >= sv.setSeq {
		sv.set = nil // the transaction of the SET LOCAL ended
	}
	if sv.set != nil && now.Sub(sv.setAt) > skewOf(sa) {
		// Honoured for the skew after it was signed, not for the rest
		// of the session: a value seen elsewhere does not keep naming
		// someone.
		sv.set = nil
		ss.use.BadTag, ss.tagErr = true, "application_name: "+tag.ErrExpired.Error()+"; set it again"
	}
	if !ss.use.Tagged && !ss.use.BadTag && sv.set != nil {
		ss.who, ss.use.Tagged = sv.set, true
	}
	if st.Kind != proxy.FunctionCall {
		s.followApplicationName(c, sa, key, st, ss)
	}
	sv.mu.Lock()
	if sv.stmts == nil {
		sv.stmts = make(map[*proxy.Statement]*stmtState)
	}
	sv.stmts[st] = ss
	sv.mu.Unlock()
	sv.active.Store(true)
	if ss.use.BadTag {
		s.badTag(st, ss)
	}
	return ss
}

// skewOf is how long a service account's tags are honoured.
func skewOf(sa *policy.ServiceAccount) time.Duration {
	if sa.MaxSkew > 0 {
		return sa.MaxSkew
	}
	return tag.DefaultSkew
}

// tagged returns the identity of an employee a tag names.
func (s *session) tagged(c *compiled, employee string) *who {
	sv := &s.svc
	if sv.whosOf != c || len(sv.whos) >= maxTagged {
		sv.whos, sv.whosOf = make(map[string]*who), c
	}
	w := sv.whos[employee]
	if w == nil {
		w = &who{employee: employee, identifiedBy: IdentifiedByTag, peer: peerOf(c, employee, nil, nil)}
		sv.whos[employee] = w
	}
	return w
}

// peerOf is an employee's peer group for norms: their first policy
// group, with roles and the identity provider's groups standing for
// theirs, else the first of roles. A
// tagged employee is judged by name alone (roles nil): the service
// account's roles are not theirs, and taken for theirs, an employee who
// also works in sessions of their own would change peer group at every
// statement, and the model would start their history afresh each time.
// "" leaves the peer group as it is.
func peerOf(c *compiled, employee string, roles, idpGroups []string) string {
	if groups := c.p.GroupsOf(&policy.Context{User: employee, Roles: roles, Groups: idpGroups}); len(groups) > 0 {
		return groups[0]
	}
	if len(roles) > 0 {
		return roles[0]
	}
	return ""
}

// followApplicationName follows the tag SET application_name names: it
// holds for the statements after st until application_name is set again
// or reset (RESET, SET ... TO DEFAULT, RESET ALL, DISCARD ALL,
// set_config), and, set with SET LOCAL, until the transaction ends (a
// COMMIT, ROLLBACK or PREPARE TRANSACTION, or the server idle after it).
// A SET with a rejected tag names no one.
func (s *session) followApplicationName(c *compiled, sa *policy.ServiceAccount, key []byte, st *proxy.Statement, ss *stmtState) {
	sv := &s.svc
	sql := ss.text(st)
	if !mayNameApplication(sql, sv.set != nil, sv.set != nil && sv.setLocal) {
		return
	}
	if s.analyze(sql).Skipped != "" {
		// Too large to parse: whatever it sets, the employee it named
		// is forgotten, as RESET application_name would.
		sv.set = nil
		return
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return // the server refuses it too
	}
	for _, raw := range tree.GetStmts() {
		n := raw.GetStmt()
		if v := n.GetVariableSetStmt(); v != nil {
			if v.Kind == pg_query.VariableSetKind_VAR_RESET_ALL {
				sv.set = nil
				continue
			}
			if !strings.EqualFold(v.Name, "application_name") {
				continue
			}
			sv.set = nil
			if v.Kind != pg_query.VariableSetKind_VAR_SET_VALUE || len(v.Args) != 1 {
				continue
			}
			t, err := tag.ParseApplicationName(v.Args[0].GetAConst().GetSval().GetSval())
			if t == nil && err == nil {
				continue // an application_name of its own
			}
			if err == nil {
				ss.tagUser = t.User
				err = t.Verify(key, s.info.BackendPID, s.g.cfg.Now(), sa.MaxSkew)
			}
			if err != nil {
				ss.use.BadTag, ss.tagErr = true, "application_name: "+err.Error()
				continue
			}
			sv.set, sv.setLocal, sv.setSeq, sv.setAt = s.tagged(c, t.User), v.IsLocal, st.Seq, time.Unix(t.Time, 0)
		} else if d := n.GetDiscardStmt(); d != nil && d.Target == pg_query.DiscardMode_DISCARD_ALL {
			sv.set = nil
		} else if t := n.GetTransactionStmt(); t != nil && sv.setLocal {
			switch t.Kind {
			case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT, pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK,
				pg_query.TransactionStmtKind_TRANS_STMT_PREPARE:
				sv.set = nil
			}
		} else if containsFold(sql, "set_config") && containsFold(sql, "application_name") {
			sv.set = nil
		}
	}
}

// mayNameApplication tells, cheaply, whether sql may set or reset
// application_name, or end the transaction of a SET LOCAL: only such
// statements are parsed.
func mayNameApplication(sql string, set, local bool) bool {
	if containsFold(sql, "application_name") {
		return true
	}
	if set && (containsFold(sql, "reset") || containsFold(sql, "discard")) {
		return true
	}
	return local && (containsFold(sql, "commit") || containsFold(sql, "rollback") || containsFold(sql, "abort") ||
		containsFold(sql, "end") || containsFold(sql, "prepare"))
}

// containsFold reports whether s contains sub, a lower-case ASCII word,
// in any case.
func containsFold(s, sub string) bool {
	c0 := sub[0]
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i]|0x20 == c0 && strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// badTag records and alerts a rejected tag: the statement goes on,
// counted against the service account.
func (s *session) badTag(st *proxy.Statement, ss *stmtState) {
	r := &policy.Rule{Name: "identity:forged-tag", Action: policy.ActionAlert, Scope: policy.ScopeStatement, Severity: "high"}
	named := "a malformed tag"
	if ss.tagUser != "" {
		named = fmt.Sprintf("a tag naming %q", ss.tagUser)
	}
	reason := fmt.Sprintf("a statement of service account %s carries %s that is not valid (%s): the tag is ignored and the statement counts against %s",
		ss.use.Account, named, ss.tagErr, ss.who.employee)
	s.decideAs(st, r, policy.Breach{}, reason, decisionExtra{source: "identity"})
}

// refuseQuarantined refuses a statement whose tag names a quarantined
// employee.
func (s *session) refuseQuarantined(st *proxy.Statement, ss *stmtState, e quarantine.Entry) proxy.Verdict {
	r := &policy.Rule{Name: "identity:quarantined", Action: policy.ActionBlock, Scope: policy.ScopeStatement, Severity: "high"}
	reason := fmt.Sprintf("%s is quarantined since %s", ss.who.employee, e.Since.UTC().Format("2006-01-02T15:04:05Z"))
	if e.Rule != "" {
		reason += " (rule " + e.Rule + ")"
	}
	reason += ": security must release them (pgwarden users release " + ss.who.employee + ")"
	return s.decideAs(st, r, policy.Breach{}, reason, decisionExtra{source: "identity", quiet: true})
}

// forget drops the states of statements answered, keeping those of
// suspended portals, which a later Execute resumes.
func (sv *serviceState) forget() {
	if !sv.active.Load() {
		return
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	for st, ss := range sv.stmts {
		suspended := st.Kind == proxy.ExtendedExecute && st.MaxRows > 0
		if st.Seq <= sv.lastSeq && (ss.done || !suspended || len(sv.stmts) > maxKeptStates) {
			delete(sv.stmts, st)
		}
	}
}

// answered notes that the server has answered st.
func (sv *serviceState) answered(st *proxy.Statement) {
	if st != nil && st.Seq > sv.lastSeq {
		sv.lastSeq = st.Seq
	}
}

// ended marks st's result ended: its state can go at the next
// ReadyForQuery.
func (s *session) ended(st *proxy.Statement) {
	if st == nil || !s.svc.active.Load() {
		return
	}
	s.svc.answered(st)
	if ss := s.stateOf(st); ss != &s.defState {
		ss.done = true
	}
}

// identityFields adds to an audit event's data who it is about and where
// from: the employee, how they were identified, the database role, the
// client address and the application.
func (s *session) identityFields(w *who, data map[string]any) {
	data["employee"], data["identified_by"] = w.employee, w.identifiedBy
	data["user"], data["client_addr"], data["application_name"] = s.info.User, addrString(&s.info), s.info.ApplicationName
	if w.identifiedBy == proxy.IdentifiedByOIDC {
		data["issuer"], data["subject"] = s.info.Issuer, s.info.Subject
		if len(s.info.Groups) > 0 {
			data["groups"] = s.info.Groups
		}
	}
}

// clientAddr is the session's client IP address; the zero Addr when
// unknown (a Unix socket).
func clientAddr(info *proxy.SessionInfo) netip.Addr {
	if a, ok := info.ClientAddr.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// LoadServiceKeys reads the signing key of each of the policy's service
// accounts from the environment variable (getenv) or file (readFile) it
// names: serve passes os.LookupEnv and os.ReadFile, and the result as
// Config.ServiceKeys. White space around a key is dropped; a key shorter
// than 16 bytes is refused.
func LoadServiceKeys(p *policy.Policy, getenv func(string) (string, bool), readFile func(string) ([]byte, error)) (map[string][]byte, error) {
	keys := make(map[string][]byte)
	for _, sa := range p.ServiceAccounts() {
		var key []byte
		switch {
		case sa.KeyEnv != "":
			v, ok := getenv(sa.KeyEnv)
			if !ok {
				return nil, fmt.Errorf("guard: service account %s: environment variable %s is not set", sa.Role, sa.KeyEnv)
			}
			key = []byte(v)
		default:
			b, err := readFile(sa.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("guard: service account %s: %w", sa.Role, err)
			}
			key = b
		}
		key = bytes.TrimSpace(key)
		if len(key) < tag.MinKeyLen {
			return nil, fmt.Errorf("guard: service account %s: its key is shorter than %d bytes", sa.Role, tag.MinKeyLen)
		}
		keys[sa.Role] = key
	}
	return keys, nil
}

// serviceKeys checks that every service account of p has a key and
// returns them.
func serviceKeys(p *policy.Policy, all map[string][]byte) (map[string][]byte, error) {
	keys := make(map[string][]byte)
	for _, sa := range p.ServiceAccounts() {
		k, ok := all[sa.Role]
		if !ok {
			return nil, fmt.Errorf("guard: no signing key for service account %s (policy line %d): see LoadServiceKeys", sa.Role, sa.Line)
		}
		if len(k) < tag.MinKeyLen {
			return nil, fmt.Errorf("guard: the signing key of service account %s is shorter than %d bytes", sa.Role, tag.MinKeyLen)
		}
		keys[sa.Role] = k
	}
	return keys, nil
}

// issuerOf and subjectOf are the identity provider's iss and sub of w,
// when the session's token names w.
func (s *session) issuerOf(w *who) string {
	if w.identifiedBy != proxy.IdentifiedByOIDC {
		return ""
	}
	return s.info.Issuer
}

func (s *session) subjectOf(w *who) string {
	if w.identifiedBy != proxy.IdentifiedByOIDC {
		return ""
	}
	return s.info.Subject
}
