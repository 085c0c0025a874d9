package proxy

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Action is what an inspector wants done with the message it was shown.
type Action uint8

const (
	// Continue forwards the message.
	Continue Action = iota
	// Block stops the current result: no more of it reaches the client, the
	// upstream query is cancelled, and the client receives SQLSTATE 42501.
	// The session stays usable.
	Block
	// Kill ends the session after telling the client why.
	Kill
	// Rewrite forwards the DataRow with the verdict's Values in place of
	// the server's (redaction); other messages say what they do with it.
	Rewrite
)

func (a Action) String() string {
	switch a {
	case Continue:
		return "continue"
	case Block:
		return "block"
	case Kill:
		return "kill"
	case Rewrite:
		return "rewrite"
	}
	return "unknown"
}

// Verdict is an inspector's answer. The zero Verdict forwards the message.
type Verdict struct {
	Action Action
	// Reason completes the message the client receives after "pgwarden: ",
	// for example "statement returned more than 1000 rows".
	Reason string
	// Values replace the row's values with Rewrite, one per column; nil
	// is NULL. The slices may alias the row shown to DataRow.
	Values [][]byte
}

// SessionInfo is the identity of a session, known once the client has
// authenticated to the upstream server.
type SessionInfo struct {
	ID string // pgwarden's session id, as in the logs
	// User is the database role: the startup message's user, or with
	// pgwarden's own login (Config.Login) the role the login maps to.
	User string
	// Employee is the person behind the session, on whom counts, norms
	// and decisions are keyed, and IdentifiedBy says how pgwarden knows:
	// IdentifiedByRole (Employee is User), IdentifiedByCertificate or
	// IdentifiedByLogin or IdentifiedByOIDC.
	Employee, IdentifiedBy string
	// Groups are the employee's policy groups as their identity provider
	// says (IdentifiedByOIDC), and Issuer and Subject the token's iss and
	// sub; empty otherwise.
	Groups          []string
	Issuer, Subject string
	// SessionEnd, if not zero, is when the session ends at its next clean
	// point because the employee's sign-in has expired.
	SessionEnd      time.Time
	Database        string
	ApplicationName string
	ClientAddr      net.Addr
	ClientTLS       bool
	// ClientCertificates is the certificate chain the client presented
	// over TLS, leaf first, as the TLS configuration verified it; nil
	// when it sent none.
	ClientCertificates []*x509.Certificate
	// BackendPID is the process id of pgwarden's BackendKeyData for the
	// client: what its driver reports as the backend's (pgx's
	// PgConn.PID, libpq's PQbackendPID), unique among live sessions.
	BackendPID  uint32
	UpstreamTLS bool
	StartedAt   time.Time
	// Parameters is every startup parameter the client sent.
	Parameters map[string]string
	// Done is closed when the session is ending: an inspector waiting
	// inside a call (a result held for approval) must return.
	Done <-chan struct{}
	// Notice sends the client a NoticeResponse (severity NOTICE, the
	// message prefixed "pgwarden: ") at once, between two of the relay's
	// messages, from any goroutine: an inspector waiting inside a call
	// tells the client why. Nil before the session starts.
	Notice func(message string) error
}

// How a session's employee was identified (SessionInfo.IdentifiedBy).
const (
	IdentifiedByRole        = "role"        // the startup message's database user
	IdentifiedByCertificate = "certificate" // the client's TLS certificate
	IdentifiedByLogin       = "login"       // pgwarden's own login
)

// Statement is one unit of work the client asked for: a simple Query message
// (which may hold several SQL statements), an Execute of a portal, or a
// fast-path FunctionCall. Results are matched to it through the pipeline of
// pending responses.
type Statement struct {
	// Seq numbers the session's statements from 1.
	Seq uint64
	// Kind tells which message carried the statement.
	Kind StatementKind
	// SQL is the query text: the Query message, or the Parse that created the
	// portal's prepared statement. Empty for a FunctionCall.
	SQL string
	// Name is the prepared statement name and Portal the portal name, for
	// Execute ("" is the unnamed one).
	Name, Portal string
	// MaxRows is the Execute row limit; 0 means all rows.
	MaxRows uint32
	// FunctionOID is the function a FunctionCall calls.
	FunctionOID uint32

	// params is the parameter section of the Bind that created the
	// portal (format codes and values, as sent), and paramOIDs the types
	// its Parse declared; see Params.
	params    []byte
	paramOIDs []uint32
}

// Params are the parameter values an Execute runs with, as the client sent
// them, so that the statement can be planned with them (EXPLAIN).
type Params struct {
	// OIDs are the types the Parse declared; 0, or missing at the end,
	// lets the server infer the type as it did for the statement.
	OIDs []uint32
	// Formats are the Bind's format codes: none means all text, one
	// applies to every value.
	Formats []int16
	// Values are the values; nil is NULL.
	Values [][]byte
}

// MaxKeptParams bounds the parameter bytes of a Bind that the proxy keeps
// for Params: a portal bound with more (a bulk insert, a large document)
// has none.
const MaxKeptParams = 8 << 10

// Params returns the parameters of an Execute's Bind; nil when there are
// none, when they were over MaxKeptParams bytes, or for other statements.
func (st *Statement) Params() *Params {
	if len(st.params) < 4 {
		return nil
	}
	b := st.params
	n := int(binary.BigEndian.Uint16(b))
	p := &Params{OIDs: st.paramOIDs, Formats: make([]int16, n)}
	for i := range p.Formats {
		p.Formats[i] = int16(binary.BigEndian.Uint16(b[2+2*i:]))
	}
	b = b[2+2*n:]
	n = int(binary.BigEndian.Uint16(b))
	if n == 0 {
		return nil
	}
	b = b[2:]
	p.Values = make([][]byte, n)
	for i := range p.Values {
		l := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		if l >= 0 {
			p.Values[i], b = b[:l:l], b[l:]
		}
	}
	return p
}

// StatementKind is the message that carried a Statement.
type StatementKind uint8

// Statement kinds.
const (
	SimpleQuery StatementKind = iota + 1
	ExtendedExecute
	FunctionCall
)

func (k StatementKind) String() string {
	switch k {
	case SimpleQuery:
		return "query"
	case ExtendedExecute:
		return "execute"
	case FunctionCall:
		return "function_call"
	}
	return "unknown"
}

// Inspector is the policy's view of the proxy. The proxy calls StartSession
// once a client has authenticated; a non-nil error refuses the session and its
// text reaches the client after "pgwarden: ".
type Inspector interface {
	StartSession(ctx context.Context, info *SessionInfo) (SessionInspector, error)
}

// ParamsWanter is an Inspector that says whether it reads Statement.Params
// now; when it does not, the proxy does not keep a Bind's parameters.
type ParamsWanter interface {
	WantsParams() bool
}

// SessionInspector sees one session's traffic. Methods on the client path
// (Statement) are called from the goroutine reading the client; all the others
// from the goroutine reading the server, in wire order. Slices passed in alias
// the relay's buffers and are valid only during the call: copy what you keep.
//
// Embed NopSessionInspector to implement only what you need.
type SessionInspector interface {
	// Statement reports a statement as the client sends it (client -> server),
	// before it is forwarded. Block refuses it: the server never runs it
	// (pgwarden sends the server a request that fails in its place, so the
	// transaction state stays the server's), and the client receives SQLSTATE
	// 42501 with the verdict's reason instead of the server's error. A portal
	// refused once stays refused. Kill ends the session.
	Statement(st *Statement) Verdict
	// RowDescription reports the shape of the next rows of st. For an Execute
	// it is the description the client obtained with Describe, if any.
	RowDescription(st *Statement, fields []pgproto3.FieldDescription)
	// DataRow is shown each row before it is forwarded.
	DataRow(st *Statement, values [][]byte) Verdict
	// CopyOut reports the start of COPY TO STDOUT.
	CopyOut(st *Statement, resp *pgproto3.CopyOutResponse)
	// CopyData is shown each CopyData of a COPY TO STDOUT before it is
	// forwarded. Rewrite sends the client the verdict's first value in its
	// place, or nothing when it is empty or missing.
	CopyData(st *Statement, data []byte) Verdict
	// CommandComplete reports the end of one SQL statement's result.
	CommandComplete(st *Statement, tag []byte)
	// Error is shown an ErrorResponse the server sent for st before it is
	// forwarded: a failed cast or constraint quotes values, and RAISE
	// EXCEPTION can carry anything. Block replaces it with SQLSTATE 42501
	// and the verdict's reason, the server's SQLSTATE in the detail;
	// Rewrite keeps its SQLSTATE and severity but replaces its texts with
	// the reason. Kill ends the session.
	Error(st *Statement, err *pgproto3.ErrorResponse) Verdict
	// Notice is shown a NoticeResponse (RAISE NOTICE, warnings) sent while
	// st ran before it is forwarded; st is nil between statements. Block
	// withholds it and blocks st as a DataRow's Block does (between
	// statements, only withholds it); Rewrite forwards it with its texts
	// replaced by the reason.
	Notice(st *Statement, n *pgproto3.NoticeResponse) Verdict
	// Notification is shown a NotificationResponse (NOTIFY) before it is
	// forwarded; st is the statement in progress, nil between statements.
	// Block withholds it and blocks st; Rewrite withholds it.
	Notification(st *Statement, n *pgproto3.NotificationResponse) Verdict
	// ParameterStatus is shown a ParameterStatus the server sends after
	// the session began (SET, set_config) before it is forwarded; st as
	// for Notification. Block withholds it and blocks st; Rewrite forwards
	// it with the verdict's first value in place of the parameter's.
	ParameterStatus(st *Statement, p *pgproto3.ParameterStatus) Verdict
	// FunctionResult is shown the result of a fast-path FunctionCall
	// (lo_get, loread, any function by OID) before it is forwarded; nil is
	// NULL.
	FunctionResult(st *Statement, result []byte) Verdict
	// ReadyForQuery reports the end of a simple query or of an extended
	// protocol batch (Sync), with the transaction status ('I', 'T' or 'E'),
	// before it is forwarded: the client learns its batch is done only after
	// this returns. Kill ends the session instead; other actions continue.
	ReadyForQuery(txStatus byte) Verdict
	// Blocked reports that the proxy acted on a verdict for st.
	Blocked(st *Statement, v Verdict)
	// EndSession is called once, after both directions have stopped.
	EndSession(err error)
}

// CopyEnder is a SessionInspector told of the end of a COPY TO STDOUT's
// data (CopyDone) before it is forwarded, to send what it held back of the
// data: Rewrite sends the client a CopyData of the verdict's first value
// first; Block and Kill act as on a CopyData.
type CopyEnder interface {
	CopyDone(st *Statement) Verdict
}

// NopSessionInspector implements SessionInspector and does nothing.
type NopSessionInspector struct{}

func (NopSessionInspector) Statement(*Statement) Verdict                           { return Verdict{} }
func (NopSessionInspector) RowDescription(*Statement, []pgproto3.FieldDescription) {}
func (NopSessionInspector) DataRow(*Statement, [][]byte) Verdict                   { return Verdict{} }
func (NopSessionInspector) CopyOut(*Statement, *pgproto3.CopyOutResponse)          {}
func (NopSessionInspector) CopyData(*Statement, []byte) Verdict                    { return Verdict{} }
func (NopSessionInspector) CommandComplete(*Statement, []byte)                     {}
func (NopSessionInspector) Error(*Statement, *pgproto3.ErrorResponse) Verdict      { return Verdict{} }
func (NopSessionInspector) Notice(*Statement, *pgproto3.NoticeResponse) Verdict    { return Verdict{} }
func (NopSessionInspector) Notification(*Statement, *pgproto3.NotificationResponse) Verdict {
	return Verdict{}
}
func (NopSessionInspector) ParameterStatus(*Statement, *pgproto3.ParameterStatus) Verdict {
	return Verdict{}
}
func (NopSessionInspector) FunctionResult(*Statement, []byte) Verdict { return Verdict{} }
func (NopSessionInspector) ReadyForQuery(byte) Verdict                { return Verdict{} }
func (NopSessionInspector) Blocked(*Statement, Verdict)               {}
func (NopSessionInspector) EndSession(error)                          {}
