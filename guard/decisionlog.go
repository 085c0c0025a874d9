package guard

import (
	"encoding/json"
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
	// Issuer and Subject are the identity provider's iss and sub, for an
	// employee identified by its token ("oidc").
	Issuer  string `json:"issuer,omitempty"`
	Subject string `json:"subject,omitempty"`
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
