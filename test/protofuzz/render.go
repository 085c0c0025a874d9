package protofuzz

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Render is a message a client sends, as one line of a report.
func Render(m pgproto3.FrontendMessage) string {
	switch m := m.(type) {
	case *pgproto3.Parse:
		return fmt.Sprintf("Parse %q %q", m.Name, m.Query)
	case *pgproto3.Bind:
		ps := make([]string, len(m.Parameters))
		for i, p := range m.Parameters {
			ps[i] = fmt.Sprintf("%q", p)
		}
		return fmt.Sprintf("Bind portal=%q stmt=%q params=[%s]", m.DestinationPortal, m.PreparedStatement, strings.Join(ps, " "))
	case *pgproto3.Describe:
		return fmt.Sprintf("Describe %c %q", m.ObjectType, m.Name)
	case *pgproto3.Execute:
		return fmt.Sprintf("Execute %q max_rows=%d", m.Portal, m.MaxRows)
	case *pgproto3.Close:
		return fmt.Sprintf("Close %c %q", m.ObjectType, m.Name)
	case *pgproto3.Sync:
		return "Sync"
	case *pgproto3.Flush:
		return "Flush"
	case *pgproto3.Query:
		return fmt.Sprintf("Query %q", abbreviate(m.String))
	case *pgproto3.CopyData:
		return fmt.Sprintf("CopyData %q", abbreviate(string(m.Data)))
	case *pgproto3.CopyDone:
		return "CopyDone"
	case *pgproto3.CopyFail:
		return fmt.Sprintf("CopyFail %q", m.Message)
	case *pgproto3.Terminate:
		return "Terminate"
	case *pgproto3.FunctionCall:
		return fmt.Sprintf("FunctionCall oid=%d", m.Function)
	}
	return fmt.Sprintf("%T", m)
}

// RenderSequence is seq as report lines, cuts included.
func RenderSequence(seq Sequence) []string {
	var out []string
	for i, m := range seq.Msgs {
		for _, c := range seq.Cuts {
			if c.Before == i {
				if c.Offset == 0 {
					out = append(out, "-- pause --")
				} else {
					out = append(out, fmt.Sprintf("-- pause after %d bytes of the next frame --", c.Offset))
				}
			}
		}
		out = append(out, Render(m))
	}
	return out
}

// Line is one reply in a transcript: Key is what is compared, Text adds
// what may legitimately differ (error texts).
type Line struct {
	Key  string
	Text string
}

func (l Line) String() string {
	if l.Text == "" {
		return l.Key
	}
	return l.Key + "  (" + l.Text + ")"
}

// lineOf normalizes a server message. ok is false for messages that are
// left out (ParameterStatus, whose values differ between sessions).
func lineOf(m pgproto3.BackendMessage) (l Line, ok bool) {
	switch m := m.(type) {
	case *pgproto3.ParameterStatus, *pgproto3.BackendKeyData:
		return Line{}, false
	case *pgproto3.ErrorResponse:
		return Line{Key: "ErrorResponse " + m.SeverityUnlocalized + " " + m.Code, Text: m.Message}, true
	case *pgproto3.NoticeResponse:
		return Line{Key: "NoticeResponse " + m.SeverityUnlocalized + " " + m.Code, Text: m.Message}, true
	case *pgproto3.CommandComplete:
		return Line{Key: "CommandComplete " + string(m.CommandTag)}, true
	case *pgproto3.ReadyForQuery:
		return Line{Key: "ReadyForQuery " + string(m.TxStatus)}, true
	case *pgproto3.RowDescription:
		names := make([]string, len(m.Fields))
		for i, f := range m.Fields {
			names[i] = string(f.Name)
		}
		return Line{Key: "RowDescription " + strings.Join(names, ",")}, true
	case *pgproto3.ParameterDescription:
		return Line{Key: fmt.Sprintf("ParameterDescription %d", len(m.ParameterOIDs))}, true
	case *pgproto3.NotificationResponse:
		return Line{Key: "NotificationResponse " + m.Channel}, true
	}
	name := fmt.Sprintf("%T", m)
	return Line{Key: name[strings.LastIndexByte(name, '.')+1:]}, true
}

// abbreviate shortens long texts for reports, keeping their length.
func abbreviate(s string) string {
	if len(s) <= 80 {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:40], len(s))
}
