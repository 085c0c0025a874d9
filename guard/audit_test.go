package guard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// startGuarded starts a proxy inspected by a guard of cfg in front of the
// shared server and returns the DSN of its trust user through it.
func startGuarded(t *testing.T, cfg guard.Config) string {
	t.Helper()
	g, err := guard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return proxytest.Start(t, proxytest.WithInspector(g)).DSN(pgtest.TrustUser)
}

// sessionEvents returns the events of the session whose statement event's
// SQL contains marker, once its session_end is there.
func (e *events) sessionEvents(t *testing.T, marker string) []audit.Event {
	t.Helper()
	var out []audit.Event
	proxytest.Eventually(t, 10*time.Second, "an ended session with a statement containing "+marker, func() (bool, string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		var id string
		for _, ev := range e.all {
			if ev.Type == audit.TypeStatement && strings.Contains(string(ev.Data), marker) {
				id = ev.SessionID
			}
		}
		out = out[:0]
		ended := false
		for _, ev := range e.all {
			if id != "" && ev.SessionID == id {
				out = append(out, ev)
				ended = ended || ev.Type == audit.TypeSessionEnd
			}
		}
		return ended, fmt.Sprintf("%d events", len(e.all))
	})
	return out
}

// TestStatementBeforeClientGoneRecorded: a statement the client sends
// together with Terminate, or just before closing the connection, reaches
// the server, so it is in the audit trail before the session's end, with
// its text, though no result came back.
func TestStatementBeforeClientGoneRecorded(t *testing.T) {
	db := pgtest.Shared(t)
	db.Exec(t, `DROP TABLE IF EXISTS gone_audit; CREATE TABLE gone_audit (id int, note text);
INSERT INTO gone_audit VALUES (1, 'open');
GRANT SELECT, UPDATE ON gone_audit TO `+pgtest.TrustUser)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name      string
		terminate bool
		failOpen  bool
	}{
		{"query and terminate in one write", true, false},
		{"query then close", false, false},
		{"query and terminate in one write, fail open", true, true},
		{"query then close, fail open", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &events{}
			dsn := startGuarded(t, guard.Config{Audit: ev, AuditFailOpen: tc.failOpen})
			pc, err := pgconn.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			hc, err := pc.Hijack()
			if err != nil {
				t.Fatal(err)
			}
			defer hc.Conn.Close()
			marker := strings.NewReplacer(" ", "_", ",", "").Replace(tc.name)
			buf, _ := (&pgproto3.Query{String: "UPDATE gone_audit SET note = '" + marker + "' WHERE id = 1"}).Encode(nil)
			if tc.terminate {
				buf, _ = (&pgproto3.Terminate{}).Encode(buf)
			}
			if _, err := hc.Conn.Write(buf); err != nil {
				t.Fatal(err)
			}
			hc.Conn.Close()

			evs := ev.sessionEvents(t, "UPDATE gone_audit")
			var types []string
			var rec, start map[string]any
			for _, e := range evs {
				types = append(types, e.Type)
				var d map[string]any
				if err := json.Unmarshal(e.Data, &d); err != nil {
					t.Fatal(err)
				}
				switch e.Type {
				case audit.TypeStatement:
					rec = d
				case audit.TypeStatementStart:
					start = d
				case audit.TypeSessionEnd:
					if d["statements"] != float64(1) {
						t.Errorf("session_end statements = %v, want 1", d["statements"])
					}
				}
			}
			want := []string{audit.TypeSessionStart, audit.TypeStatementStart, audit.TypeStatement, audit.TypeSessionEnd}
			if tc.failOpen {
				want = []string{audit.TypeSessionStart, audit.TypeStatement, audit.TypeSessionEnd}
			}
			if strings.Join(types, " ") != strings.Join(want, " ") {
				t.Fatalf("events %v, want %v", types, want)
			}
			if rec["sql"] != "UPDATE gone_audit SET note = $1 WHERE id = $2" || rec["fingerprint"] == "" || rec["employee"] != pgtest.TrustUser {
				t.Errorf("statement record %v", rec)
			}
			if o, ok := rec["outcome"]; ok && o != "no_result" && o != "incomplete" {
				// (None when the result came back before the session ended.)
				t.Errorf("outcome %v, want no_result or incomplete", o)
			}
			if start != nil && (start["sql"] != rec["sql"] || start["seq"] != rec["seq"]) {
				t.Errorf("statement_start %v does not match the statement %v", start, rec)
			}
		})
	}
}

// TestAuditRecordedBeforeForwarding: failing closed, a statement whose
// record cannot be written is refused before it reaches the server: the
// client gets SQLSTATE 42501 and no row, the server never runs it, and the
// session stays usable once the log writes again.
func TestAuditRecordedBeforeForwarding(t *testing.T) {
	db := pgtest.Shared(t)
	db.Exec(t, `DROP TABLE IF EXISTS refused_audit; CREATE TABLE refused_audit (id int, note text);
INSERT INTO refused_audit VALUES (1, 'open');
GRANT SELECT, UPDATE ON refused_audit TO `+pgtest.TrustUser)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := &switchLog{}
	conn, err := pgx.Connect(ctx, startGuarded(t, guard.Config{Audit: log}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	log.fail(true)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		n := 0
		rows, err := conn.Query(ctx, "SELECT id FROM refused_audit", mode)
		if err == nil {
			for rows.Next() {
				n++
			}
			err = rows.Err()
		}
		if proxytest.Code(err) != "42501" || n != 0 {
			t.Fatalf("%v: select with the log failing: %d rows, %v", mode, n, err)
		}
		_, err = conn.Exec(ctx, "UPDATE refused_audit SET note = 'refused' WHERE id = 1", mode)
		if proxytest.Code(err) != "42501" || !strings.Contains(err.Error(), "audit log cannot be written") {
			t.Fatalf("%v: update with the log failing: %v", mode, err)
		}
	}
	log.fail(false)
	var note string
	if err := conn.QueryRow(ctx, "SELECT note FROM refused_audit WHERE id = 1").Scan(&note); err != nil || note != "open" {
		t.Fatalf("after the log resumed: %q, %v (the refused update ran?)", note, err)
	}
}

// switchLog is an AuditLog that fails while told to.
type switchLog struct {
	events
	failing bool
}

func (l *switchLog) fail(on bool) {
	l.mu.Lock()
	l.failing = on
	l.mu.Unlock()
}

func (l *switchLog) Append(ctx context.Context, ev audit.Event) (uint64, error) {
	l.mu.Lock()
	failing := l.failing
	l.mu.Unlock()
	if failing {
		return 0, fmt.Errorf("disk full")
	}
	return l.events.Append(ctx, ev)
}

// TestSkippedStatementNotRecordedAsSent: the statements an extended-protocol
// error makes the server skip up to the Sync never run, so a session that
// ends after them does not record them as sent without a result.
func TestSkippedStatementNotRecordedAsSent(t *testing.T) {
	db := pgtest.Shared(t)
	db.Exec(t, `DROP TABLE IF EXISTS skipped_audit; CREATE TABLE skipped_audit (id int, n int);
INSERT INTO skipped_audit VALUES (1, 0);
GRANT SELECT, UPDATE ON skipped_audit TO `+pgtest.TrustUser)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev := &events{}
	pc, err := pgconn.Connect(ctx, startGuarded(t, guard.Config{Audit: ev}))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Conn.Close()
	var buf []byte
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "SELECT 1/n FROM skipped_audit"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "UPDATE skipped_audit SET n = n + 1 WHERE id = 1"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Sync{},
	} {
		buf, _ = m.Encode(buf)
	}
	if _, err := hc.Conn.Write(buf); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(hc.Conn, hc.Conn)
	hc.Conn.SetDeadline(time.Now().Add(10 * time.Second))
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	buf, _ = (&pgproto3.Terminate{}).Encode(nil)
	hc.Conn.Write(buf)
	hc.Conn.Close()

	evs := ev.sessionEvents(t, "SELECT $1/n FROM skipped_audit")
	for _, e := range evs {
		if e.Type == audit.TypeStatement && strings.Contains(string(e.Data), "UPDATE skipped_audit") {
			t.Errorf("the skipped update is recorded: %s", e.Data)
		}
	}
}

// TestEmptyQueryNotKept: a query of blanks and comments runs nothing and
// is answered with EmptyQueryResponse: it is neither announced nor kept
// as sent to be recorded at the session's end.
func TestEmptyQueryNotKept(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev := &events{}
	conn, err := pgx.Connect(ctx, startGuarded(t, guard.Config{Audit: ev}))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"-- nothing", " ; ", "SELECT 'marker_empty'"} {
		if _, err := conn.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)
	for _, e := range ev.sessionEvents(t, "SELECT $1") {
		if (e.Type == audit.TypeStatement || e.Type == audit.TypeStatementStart) && !strings.Contains(string(e.Data), "SELECT $1") {
			t.Errorf("%s %s", e.Type, e.Data)
		}
	}
}
