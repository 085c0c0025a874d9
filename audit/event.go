package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
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
	if m, ok := v.(map[string]any); ok && m != nil {
		if b, ok := appendFlat(make([]byte, 0, 256), m); ok {
			return b, nil
		}
	}
	return marshalJSON(v)
}

func marshalJSON(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("audit: encode event data: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// appendFlat appends m as encoding/json writes it with HTML escaping off
// (keys sorted), without reflection, when every key and value is one it
// writes byte for byte the same way: a string of printable ASCII other
// than quote and backslash, a bool, an integer, nil, a []string or a map
// of integers keyed by such strings. It reports false for anything else,
// which the caller leaves to encoding/json. The session and statement
// records of every connection are such maps.
func appendFlat(b []byte, m map[string]any) ([]byte, bool) {
	b = append(b, '{')
	for i, k := range slices.Sorted(maps.Keys(m)) {
		var ok bool
		if b, ok = appendKey(b, i, k); !ok {
			return nil, false
		}
		switch v := m[k].(type) {
		case nil:
			b = append(b, "null"...)
		case string:
			if b, ok = appendString(b, v); !ok {
				return nil, false
			}
		case bool:
			b = strconv.AppendBool(b, v)
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case uint64:
			b = strconv.AppendUint(b, v, 10)
		case []string:
			if v == nil {
				b = append(b, "null"...)
				break
			}
			b = append(b, '[')
			for j, s := range v {
				if j > 0 {
					b = append(b, ',')
				}
				if b, ok = appendString(b, s); !ok {
					return nil, false
				}
			}
			b = append(b, ']')
		case map[string]int:
			b, ok = appendCounts(b, v)
		case map[string]int64:
			b, ok = appendCounts(b, v)
		default:
			return nil, false
		}
		if !ok {
			return nil, false
		}
	}
	return append(b, '}'), true
}

func appendCounts[N int | int64](b []byte, m map[string]N) ([]byte, bool) {
	if m == nil {
		return append(b, "null"...), true
	}
	b = append(b, '{')
	for i, k := range slices.Sorted(maps.Keys(m)) {
		var ok bool
		if b, ok = appendKey(b, i, k); !ok {
			return nil, false
		}
		b = strconv.AppendInt(b, int64(m[k]), 10)
	}
	return append(b, '}'), true
}

// appendKey appends the i-th key of an object, with its comma and colon.
func appendKey(b []byte, i int, k string) ([]byte, bool) {
	if i > 0 {
		b = append(b, ',')
	}
	if b, ok := appendString(b, k); ok {
		return append(b, ':'), true
	}
	return nil, false
}

// appendString appends s quoted, when it is a plainString.
func appendString(b []byte, s string) ([]byte, bool) {
	if !plainString(s) {
		return nil, false
	}
	return append(append(append(b, '"'), s...), '"'), true
}

// plainString reports whether encoding/json writes s between quotes as it
// is: printable ASCII without quote or backslash (HTML escaping off).
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
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
