package audit

// The Data of the events the guard writes, for their readers (pgwarden
// replay and audit query). Each type names every key the guard writes for
// its event type; a test decodes what a running pgwarden wrote with
// unknown keys refused, so the two cannot drift apart.

// Who is in every event a session writes: the employee and how they were
// named, the database role, the client.
type Who struct {
	Employee     string `json:"employee"`
	IdentifiedBy string `json:"identified_by"`
	User         string `json:"user"`
	ClientAddr   string `json:"client_addr"`
	Application  string `json:"application_name"`
	// Issuer, Subject and Groups are the identity provider's, for an
	// employee who signed in with its token (identified_by "oidc").
	Issuer  string   `json:"issuer,omitempty"`
	Subject string   `json:"subject,omitempty"`
	Groups  []string `json:"groups,omitempty"`
}

// SessionStart is the Data of a TypeSessionStart event.
type SessionStart struct {
	Who
	Database    string `json:"database"`
	ClientTLS   bool   `json:"client_tls"`
	UpstreamTLS bool   `json:"upstream_tls"`
	// ServiceAccount is the policy's service account the session logged
	// in as; Unusual says why its use looks unusual.
	ServiceAccount string `json:"service_account,omitempty"`
	Unusual        string `json:"unusual,omitempty"`
}

// Statement is the Data of a TypeStatement event: what one statement sent
// the client, once its result has ended.
type Statement struct {
	Who
	Seq uint64 `json:"seq"`
	// Kind is the protocol message that ran it (query, execute,
	// function_call), or between_statements for what a session received
	// outside any.
	Kind             string           `json:"kind"`
	Rows             int64            `json:"rows"`
	Bytes            int64            `json:"bytes"`
	PIIRows          int64            `json:"pii_rows"`
	PIIValues        map[string]int64 `json:"pii_values"`
	DistinctSubjects int64            `json:"distinct_subjects"`
	Tables           []string         `json:"tables"`
	DurationMS       int64            `json:"duration_ms"`
	// Channels counts, per channel (notice, error, notification, ...), the
	// PII values that left other than in rows.
	Channels        map[string]int64 `json:"channels,omitempty"`
	RedactedValues  int64            `json:"redacted_values,omitempty"`
	UnexplainedRows int64            `json:"unexplained_rows,omitempty"`
	SequentialRows  int64            `json:"sequential_rows,omitempty"`
	Outcome         string           `json:"outcome,omitempty"`
	ServiceAccount  string           `json:"service_account,omitempty"`
	TagError        string           `json:"tag_error,omitempty"`
	Unusual         string           `json:"unusual,omitempty"`
	StatementText
	Cursor      string       `json:"cursor,omitempty"`
	CursorTotal *CursorTotal `json:"cursor_total,omitempty"`
}

// StatementText is how an event gives a statement's text: its fingerprint
// and normalised text (literals replaced), or why it has none.
type StatementText struct {
	Fingerprint   string `json:"fingerprint,omitempty"`
	SQL           string `json:"sql,omitempty"`
	SQLUnanalyzed string `json:"sql_unanalyzed,omitempty"`
	SQLBytes      int    `json:"sql_bytes,omitempty"`
	SQLUnparsed   bool   `json:"sql_unparsed,omitempty"`
}

// CursorTotal is what a cursor's FETCHes have sent so far.
type CursorTotal struct {
	Fetches   int64            `json:"fetches"`
	Rows      int64            `json:"rows"`
	Bytes     int64            `json:"bytes"`
	PIIRows   int64            `json:"pii_rows"`
	PIIValues map[string]int64 `json:"pii_values"`
}

// Decision is the Data of a TypeDecision event: what a rule, a norm or
// the guard itself decided about a statement or a session.
type Decision struct {
	Who
	Seq    uint64 `json:"seq"`
	Rule   string `json:"rule"`
	Action string `json:"action"` // as carried out: "block", or "would block" in shadow mode
	Shadow bool   `json:"shadow"`
	Scope  string `json:"scope"`
	Reason string `json:"reason"`
	// Source is rule, norm, identity, limit or audit.
	Source string `json:"source"`
	// Kind and Score are a norm anomaly's; Window, how far back the
	// reads the decision counts go.
	Kind     string  `json:"kind,omitempty"`
	Score    float64 `json:"score,omitempty"`
	Window   string  `json:"window,omitempty"`
	Measure  string  `json:"measure,omitempty"`
	Observed int64   `json:"observed,omitempty"`
	Limit    int64   `json:"limit,omitempty"`
	// ServiceAccount is the service account the statement ran through;
	// TagError and TagUser say why its identity tag was refused, Unusual
	// why its use looks unusual.
	ServiceAccount string `json:"service_account,omitempty"`
	TagError       string `json:"tag_error,omitempty"`
	TagUser        string `json:"tag_user,omitempty"`
	Unusual        string `json:"unusual,omitempty"`
	// Outcome is how a hold ended: approved, denied, not approved in time,
	// no approver configured.
	Outcome string `json:"outcome,omitempty"`
	// Justification is the reason the employee gave for a held
	// statement (pgwarden.reason).
	Justification string `json:"justification,omitempty"`
	// DecidedBy and DecisionReason say who approved or denied a hold,
	// and why.
	DecidedBy      string `json:"decided_by,omitempty"`
	DecisionReason string `json:"decision_reason,omitempty"`
}
