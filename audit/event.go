package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Event types written by the Log itself.
const (
	TypeFileStart  = "file_start"
	TypeCheckpoint = "checkpoint"
)

// Event types written by the proxy.
const (
	TypeSessionStart = "session_start"
	TypeSessionEnd   = "session_end"
	TypeStatement    = "statement"
	// TypeStatementStart records a statement about to be forwarded, when
	// auditing fails closed; its "statement" event follows once its
	// result has ended (or the session has: "outcome" then says how far
	// it got).
	TypeStatementStart = "statement_start"
	TypeDecision       = "decision"
	TypeSessionRefused = "session_refused"
	TypeAdmin          = "admin" // an action through the admin API
)

// Types lists every event type, in the order a reader meets them.
var Types = []string{TypeFileStart, TypeCheckpoint, TypeSessionStart, TypeStatementStart, TypeStatement,
	TypeDecision, TypeSessionEnd, TypeSessionRefused, TypeAdmin}

// zeroPrev is the Prev of the very first event of a log.
var zeroPrev = [sha256.Size]byte{}

// Event is one line of the audit log. The field order is the line's key
// order; encoding/json of this struct is the canonical form.
type Event struct {
	// Seq numbers events from 1, without gaps, across files. Set by Append.
	Seq uint64 `json:"seq"`
	// Time is when Append wrote the event, UTC. Set by Append.
	Time time.Time `json:"time"`
	// Type says what happened, for example TypeStatement.
	Type      string `json:"type"`
	SessionID string `json:"session_id,omitempty"`
	Employee  string `json:"employee,omitempty"`
	// Data holds the type-specific fields as a JSON object. Any JSON is
	// compacted when written, so a line never contains a newline.
	Data json.RawMessage `json:"data,omitempty"`
	// Prev is the hex SHA-256 of the previous line's bytes, without its
	// newline. Set by Append.
	Prev string `json:"prev"`
}

// encodeLine is an event's line as the chain hashes it: JSON in field order,
// HTML escaping off (SQL's < > & stay readable), no trailing newline. Both
// the file log and the PostgreSQL sink use it.
func encodeLine(ev *Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, fmt.Errorf("audit: encode event: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// MarshalData encodes v for Event.Data, leaving < > & unescaped so that SQL
// text stays readable in the files.
func MarshalData(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("audit: encode event data: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// macData is the Data of file_start and checkpoint events.
type macData struct {
	KeyID string `json:"key_id"`
	MAC   string `json:"mac"`
	// Every is the checkpoint interval in force: at most Every other events
	// may follow this one before the next HMAC'd event.
	Every    int    `json:"checkpoint_every"`
	Reason   string `json:"reason,omitempty"`    // checkpoint: interval, rotate, close, resume
	PrevFile string `json:"prev_file,omitempty"` // file_start: the previous file's name
}

// computeMAC is the HMAC of a file_start or checkpoint event: it binds the
// event's type, seq, checkpoint interval and the hash of the line before it.
func computeMAC(key []byte, typ string, seq uint64, prev [sha256.Size]byte, every int) []byte {
	m := hmac.New(sha256.New, key)
	var b [8]byte
	m.Write([]byte("pgwarden-audit-v1\x00" + typ + "\x00"))
	binary.BigEndian.PutUint64(b[:], seq)
	m.Write(b[:])
	m.Write(prev[:])
	binary.BigEndian.PutUint64(b[:], uint64(every))
	m.Write(b[:])
	return m.Sum(nil)
}

// parsePrev decodes an Event.Prev.
func parsePrev(s string) ([sha256.Size]byte, bool) {
	var h [sha256.Size]byte
	if len(s) != 2*sha256.Size {
		return h, false
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, false
	}
	return h, true
}

// isMACType reports whether events of type typ carry an HMAC.
func isMACType(typ string) bool { return typ == TypeFileStart || typ == TypeCheckpoint }
