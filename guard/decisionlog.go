package guard

import (
	"encoding/json"
	"fmt"
	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/audit/notify"
	"io"
	"sync"
	"time"
)

// Decision is one line of the decision log (JSON Lines): every rule or
// norm that fired, what was done, and why, for tuning and evaluation.
type Decision struct {
	Time      time.Time `json:"time"`
	Employee  string    `json:"employee"`
	SessionID string    `json:"session_id"`
	Seq       uint64    `json:"statement_seq,omitempty"`
	Action    string    `json:"action"` // as carried out: "block", or "would block" in shadow mode
	Shadow    bool      `json:"shadow,omitempty"`
	Source    string    `json:"source"` // "rule" or "norm"
	Rule      string    `json:"rule,omitempty"`
	Kind      string    `json:"kind,omitempty"`  // a norm anomaly's kind
	Scope     string    `json:"scope,omitempty"` // statement, session, 10m, ...
	Measure   string    `json:"measure,omitempty"`
	// Window is how far back the reads the decision counts go: a window
	// rule's span or a norm's window ("10m", "1h", "24h", "3d": for a
	// drift, active days). Empty: the statement or session alone.
	Window      string  `json:"window,omitempty"`
	Observed    float64 `json:"observed,omitempty"`
	Limit       float64 `json:"limit,omitempty"` // a rule's limit, or a norm's figure
	Score       float64 `json:"score,omitempty"`
	Reason      string  `json:"reason"`
	ClientAddr  string  `json:"client_addr,omitempty"`
	Application string  `json:"application,omitempty"`

	// IdentifiedBy says how the employee is known (role, certificate,
	// login, or tag: a service account's signed tag), and User is the
	// database role the statement ran as.
	IdentifiedBy string `json:"identified_by,omitempty"`
	User         string `json:"user,omitempty"`

	// ServiceAccount is the service account the statement ran through;
	// TagError and TagUser say why its identity tag was refused, Unusual
	// why its use looks unusual.
	ServiceAccount string `json:"service_account,omitempty"`
	TagError       string `json:"tag_error,omitempty"`
	TagUser        string `json:"tag_user,omitempty"`
	Unusual        string `json:"unusual,omitempty"`

	// Issuer and Subject are the identity provider's iss and sub, for an
	// employee identified by its token ("oidc").
	Issuer  string `json:"issuer,omitempty"`
	Subject string `json:"subject,omitempty"`

	// severity and database are for the alert; groups, the identity
	// provider's groups, for the trail.
	severity, database string
	groups             []string
}

// auditPayload is the decision as the audit trail records it.
func (d *Decision) auditPayload() audit.Decision {
	return audit.Decision{
		Who: audit.Who{Employee: d.Employee, IdentifiedBy: d.IdentifiedBy, User: d.User, ClientAddr: d.ClientAddr, Application: d.Application,
			Issuer: d.Issuer, Subject: d.Subject, Groups: d.groups},
		Seq: d.Seq, Rule: d.Rule, Action: d.Action, Shadow: d.Shadow, Scope: d.Scope, Reason: d.Reason, Source: d.Source,
		Kind: d.Kind, Score: d.Score, Window: d.Window, Measure: d.Measure, Observed: int64(d.Observed), Limit: int64(d.Limit),
		ServiceAccount: d.ServiceAccount, TagError: d.TagError, TagUser: d.TagUser, Unusual: d.Unusual,
	}
}

// alert is the decision as security is notified of it.
func (d *Decision) alert(statement string, auditSeq uint64) notify.Alert {
	a := notify.Alert{
		ID:   fmt.Sprintf("%s-%d-%s-%d", d.SessionID, d.Seq, d.Rule, alertSeq.Add(1)),
		Time: d.Time, Action: d.Action, Shadow: d.Shadow, Employee: d.Employee,
		Role: d.User, Rule: d.Rule, Reason: d.Reason, Observed: int64(d.Observed), Limit: int64(d.Limit),
		Measure: d.Measure, Scope: d.Scope, SessionID: d.SessionID,
		ClientAddr: d.ClientAddr, Application: d.Application,
		Database: d.database, Severity: d.severity, Statement: statement,
	}
	if auditSeq != 0 {
		a.AuditSeqs = []uint64{auditSeq}
	}
	return a
}

// decisionLog writes Decisions as JSON Lines, one Write per line.
type decisionLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *decisionLog) write(d Decision) {
	if l == nil || l.w == nil {
		return
	}
	b, err := json.Marshal(d)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(append(b, '\n'))
}
