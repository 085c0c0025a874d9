package guard_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// received counts the email addresses a client was delivered outside rows:
// in notices, error messages and notifications.
type received struct {
	mu                     sync.Mutex
	notices, notifications []string
}

var emailRE = regexp.MustCompile(`customer\d+@example\.com`)

func (r *received) emails() (notices, notifications int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.notices {
		notices += len(emailRE.FindAllString(n, -1))
	}
	for _, n := range r.notifications {
		notifications += len(emailRE.FindAllString(n, -1))
	}
	return notices, notifications
}

// listening opens another connection like conn's that keeps what it is
// told outside rows.
func listening(t *testing.T, conn *pgx.Conn) (*pgx.Conn, *received) {
	t.Helper()
	r := &received{}
	cfg, err := pgx.ParseConfig(conn.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		r.mu.Lock()
		r.notices = append(r.notices, n.Message+"\n"+n.Detail+"\n"+n.Hint+"\n"+n.Where)
		r.mu.Unlock()
	}
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		r.mu.Lock()
		r.notifications = append(r.notifications, n.Channel+" "+n.Payload)
		r.mu.Unlock()
	}
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, r
}

const channelRules = `rules:
  - name: email-bulk
    when:
      pii_values: {email: 20}
    action: block
  - name: session-emails
    scope: session
    when:
      pii_values: {email: 30}
    action: block
`

// TestChannelsEnforced: PII leaving in notices, error messages,
// notifications and parameter status meets the same rules as rows, and no
// channel delivers more than the rule's limit (THREATS.md class C).
func TestChannelsEnforced(t *testing.T) {
	ev, base := setup(t, withRules(t, channelRules))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("notice loop", func(t *testing.T) {
		conn, got := listening(t, base)
		_, err := conn.Exec(ctx, `DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT full_name, email FROM customers WHERE id <= 200 ORDER BY id LOOP
    RAISE NOTICE '%|%', r.full_name, r.email;
  END LOOP; END $$`)
		wantRuleBlock(t, err, "email-bulk")
		n, _ := got.emails()
		t.Logf("notices delivered %d emails before the block", n)
		if n > 20 {
			t.Errorf("notices delivered %d emails, limit 20", n)
		}
		checkUsable(t, ctx, conn)
		ev.decisions(t)
	})

	t.Run("one exception packing every email", func(t *testing.T) {
		conn, _ := listening(t, base)
		_, err := conn.Exec(ctx, `DO $$ BEGIN
  RAISE EXCEPTION 'dump: %', (SELECT string_agg(email, ',') FROM customers WHERE id <= 300); END $$`)
		wantRuleBlock(t, err, "email-bulk")
		var pgErr *pgconn.PgError
		asPgError(err, &pgErr)
		if emailRE.MatchString(pgErr.Message + pgErr.Detail + pgErr.Hint + pgErr.Where) {
			t.Errorf("the replaced error still carries an email: %+v", pgErr)
		}
		if !strings.Contains(pgErr.Detail, "SQLSTATE class P0") {
			t.Errorf("detail %q does not keep the server's SQLSTATE class", pgErr.Detail)
		}
		checkUsable(t, ctx, conn)
		ev.decisions(t)
	})

	t.Run("one value per error", func(t *testing.T) {
		conn, _ := listening(t, base)
		leaked, blocked := 0, 0
		for id := 1; id <= 60; id++ {
			_, err := conn.Exec(ctx, "SELECT email::int FROM customers WHERE id = $1", id)
			var pgErr *pgconn.PgError
			if !asPgError(err, &pgErr) {
				t.Fatalf("id %d: %v", id, err)
			}
			leaked += len(emailRE.FindAllString(pgErr.Message+pgErr.Detail, -1))
			if pgErr.Code == "42501" {
				blocked++
			}
		}
		t.Logf("errors delivered %d emails before the block", leaked)
		if leaked > 30 || blocked == 0 {
			t.Errorf("errors delivered %d emails (session limit 30), %d blocked", leaked, blocked)
		}
		ev.decisions(t)
	})

	t.Run("parameter status", func(t *testing.T) {
		conn, _ := listening(t, base)
		// The server reports the change after the Execute's result, before
		// the batch's ReadyForQuery: it counts with that statement (norms
		// learn from statements).
		if err := conn.QueryRow(ctx, "SELECT length(set_config('application_name', email, false)) FROM customers WHERE id = 1").Scan(new(int)); err != nil {
			t.Fatal(err)
		}
		if got := ev.last(t); got.Rows != 1 || got.PIIValues["email"] != 1 {
			t.Errorf("the statement counted %+v, want its row and the email its parameter status carried", got)
		}
		seen := map[string]bool{}
		for id := 1; id <= 60; id++ {
			var v string
			// The result carries the value too: blocked with it.
			err := conn.QueryRow(ctx, "SELECT length(set_config('application_name', email, false)) FROM customers WHERE id = $1", id).Scan(new(int))
			if err != nil && !strings.Contains(err.Error(), "42501") {
				t.Fatalf("id %d: %v", id, err)
			}
			v = conn.PgConn().ParameterStatus("application_name")
			if emailRE.MatchString(v) {
				seen[v] = true
			}
		}
		t.Logf("parameter status delivered %d emails before the block", len(seen))
		if len(seen) > 30 {
			t.Errorf("parameter status delivered %d emails, session limit 30", len(seen))
		}
		ev.decisions(t)
	})

	t.Run("notifications", func(t *testing.T) {
		conn, got := listening(t, base)
		if _, err := conn.Exec(ctx, "LISTEN leak"); err != nil {
			t.Fatal(err)
		}
		// One statement queues one notification per customer; they arrive
		// when it commits.
		_, err := conn.Exec(ctx, "SELECT count(pg_notify('leak', email)) FROM customers WHERE id <= 100")
		wantRuleBlock(t, err, "email-bulk")
		_, n := got.emails()
		t.Logf("notifications delivered %d emails before the block", n)
		if n > 20 {
			t.Errorf("notifications delivered %d emails, limit 20", n)
		}
		checkUsable(t, ctx, conn)
		ev.decisions(t)
	})

	t.Run("notifications to an idle listener", func(t *testing.T) {
		listener, got := listening(t, base)
		if _, err := listener.Exec(ctx, "LISTEN idle_leak"); err != nil {
			t.Fatal(err)
		}
		sender, _ := listening(t, base)
		if _, err := sender.Exec(ctx, "SELECT count(pg_notify('idle_leak', email)) FROM customers WHERE id <= 100"); err != nil {
			t.Fatal(err)
		}
		// The listener is idle: it reads the notifications between
		// statements, which the session limit applies to.
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		defer wcancel()
		for {
			if err := listener.PgConn().WaitForNotification(wctx); err != nil {
				break
			}
		}
		_, n := got.emails()
		t.Logf("an idle listener received %d emails", n)
		if n > 30 {
			t.Errorf("an idle listener received %d emails, session limit 30", n)
		}
		ev.decisions(t)
	})
}

// TestChannelsRedacted: under a redact rule a notice reaches the client
// with its texts replaced, an error keeps its SQLSTATE.
func TestChannelsRedacted(t *testing.T) {
	_, base := setup(t, withRules(t, `rules:
  - name: mask-after-3
    when:
      pii_rows: 3
    action: redact
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, got := listening(t, base)
	if _, err := conn.Exec(ctx, `DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT email FROM customers WHERE id <= 10 ORDER BY id LOOP RAISE NOTICE '%', r.email; END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	got.mu.Lock()
	notices := append([]string(nil), got.notices...)
	got.mu.Unlock()
	if len(notices) != 10 {
		t.Fatalf("%d notices, want 10", len(notices))
	}
	if n, _ := got.emails(); n != 3 {
		t.Errorf("%d notices in clear, want 3 before the limit: %q", n, notices)
	}
	if !strings.Contains(notices[9], "rule mask-after-3") {
		t.Errorf("the masked notice does not say why: %q", notices[9])
	}
	// The error after five notices is the sixth message with PII.
	_, err := conn.Exec(ctx, `DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT email FROM customers WHERE id <= 5 LOOP RAISE NOTICE '%', r.email; END LOOP;
  RAISE EXCEPTION 'last: %', (SELECT email FROM customers WHERE id = 6); END $$`)
	var pgErr *pgconn.PgError
	if !asPgError(err, &pgErr) || pgErr.Code != "P0001" || emailRE.MatchString(pgErr.Message+pgErr.Detail) ||
		!strings.Contains(pgErr.Message, "rule mask-after-3") {
		t.Errorf("error %v, want the server's P0001 with its text withheld", err)
	}
	checkUsable(t, ctx, conn)
}

// TestChannelsMeetCanaries: a canary in a notice or in a fast-path
// function's result counts as one in a row.
func TestChannelsMeetCanaries(t *testing.T) {
	_, base := setup(t, withRules(t, `canaries:
  values: [canary.one@example.com, canary.two@example.com]
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, _ := listening(t, base)
	_, err := conn.Exec(ctx, `DO $$ BEGIN RAISE NOTICE 'a'; RAISE NOTICE 'canary.one@example.com and canary.two@example.com'; END $$`)
	if err == nil || !strings.Contains(err.Error(), "canary") {
		t.Errorf("notice with two canaries: %v, want a canary block", err)
	}

	conn2, _ := listening(t, base)
	var lo, fn uint32
	if err := conn2.QueryRow(ctx, "SELECT lo_from_bytea(0, convert_to('canary.one@example.com,canary.two@example.com', 'UTF8'))::int8, 'lo_get(oid)'::regprocedure::oid::int8").Scan(&lo, &fn); err != nil {
		t.Fatal(err)
	}
	hc := rawConn(t, ctx, conn2)
	hc.Frontend.Send(&pgproto3.FunctionCall{Function: fn, ArgFormatCodes: []uint16{0},
		Arguments: [][]byte{[]byte(strconv.FormatUint(uint64(lo), 10))}, ResultFormatCode: 1})
	if err := hc.Frontend.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		msg, err := hc.Frontend.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			got = append(got, m.Code+" "+m.Message)
		case *pgproto3.FunctionCallResponse:
			got = append(got, "result "+string(m.Result))
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if len(got) != 1 || !strings.HasPrefix(got[0], "42501") || !strings.Contains(got[0], "canary") {
		t.Errorf("fast-path lo_get of canaries: %q", got)
	}
}
