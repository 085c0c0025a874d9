package guard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/guard"
)

// TestAuditPayloadsNameEveryKey: the session_start and statement events
// the guard writes decode into audit.SessionStart and audit.Statement with
// unknown keys refused, so the readers of the trail (pgwarden replay,
// audit query) see every key: a plain query, a notice carrying PII, a
// cursor fetched twice, and a statement that does not parse.
func TestAuditPayloadsNameEveryKey(t *testing.T) {
	ev, conn := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sql := range []string{
		"SELECT email AS payload_marker FROM customers WHERE id <= 5",
		"DO $$BEGIN RAISE NOTICE 'write to customer1@example.com'; END$$",
		"BEGIN",
		"DECLARE payload_cursor CURSOR FOR SELECT email FROM customers WHERE id <= 20",
		"FETCH 10 FROM payload_cursor",
		"FETCH 10 FROM payload_cursor",
		"COMMIT",
		"SELEC 1",
	} {
		conn.Exec(ctx, sql)
	}
	conn.Close(ctx)

	var starts, stmts int
	var sawCursor, sawChannel, sawUnparsed bool
	for _, e := range ev.sessionEvents(t, "payload_marker") {
		var into any
		switch e.Type {
		case audit.TypeSessionStart:
			starts++
			into = &audit.SessionStart{}
		case audit.TypeStatement:
			stmts++
			into = &audit.Statement{}
		default:
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(e.Data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			t.Errorf("%s event %s: %v", e.Type, e.Data, err)
			continue
		}
		if s, ok := into.(*audit.Statement); ok {
			sawCursor = sawCursor || s.CursorTotal != nil && s.CursorTotal.Fetches == 2
			sawChannel = sawChannel || s.Channels["notice"] > 0
			sawUnparsed = sawUnparsed || s.SQLUnparsed
		}
	}
	if starts != 1 || stmts < 8 || !sawCursor || !sawChannel || !sawUnparsed {
		t.Errorf("%d session starts, %d statements, cursor total %v, notice channel %v, unparsed %v; want 1, 8 or more, and all three",
			starts, stmts, sawCursor, sawChannel, sawUnparsed)
	}
}

// TestDecisionPayloadNamesEveryKey: a decision event decodes into
// audit.Decision with unknown keys refused, and says what the decision
// log says.
func TestDecisionPayloadNamesEveryKey(t *testing.T) {
	dl := &syncBuffer{}
	ev, conn := setup(t, func(c *guard.Config) { c.DecisionLog = dl }, withRules(t, `rules:
  - name: payload-block
    scope: 1h
    when:
      pii_values: {email: 3}
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := countRows(ctx, conn, "SELECT email FROM customers WHERE id <= 10", pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "payload-block")
	events := ev.decisions(t)
	logged := dl.decisions(t)
	if len(events) != 1 || len(logged) != 1 {
		t.Fatalf("%d decision events, %d logged; want one each", len(events), len(logged))
	}
	raw, _ := json.Marshal(events[0])
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var d audit.Decision
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("decision event %s: %v", raw, err)
	}
	l := logged[0]
	if d.Rule != l.Rule || d.Action != l.Action || d.Reason != l.Reason || d.Window != "1h" || d.Window != l.Window ||
		d.Employee != l.Employee || d.Observed != int64(l.Observed) || d.Limit != 3 || d.Seq != l.Seq {
		t.Errorf("audit says %+v, decision log %+v", d, l)
	}
}
