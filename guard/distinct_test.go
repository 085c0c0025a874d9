package guard_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// customersRange selects the emails of customers lo..hi, one row each.
func customersRange(lo, hi int) string {
	return fmt.Sprintf("SELECT email FROM customers WHERE id BETWEEN %d AND %d ORDER BY id", lo, hi)
}

// TestDistinctSubjectsExactAtLimit: a statement of exactly the limit's
// number of distinct customers passes, one more is blocked, whichever
// customers they are (an estimate is off by a few either way).
func TestDistinctSubjectsExactAtLimit(t *testing.T) {
	_, conn, _ := setupGuard(t, withRules(t, `rules:
  - name: at-most-500
    when:
      distinct_subjects: 500
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for lo := 1; lo < 10000; lo += 1000 {
		n, err := countRows(ctx, conn, customersRange(lo, lo+499), pgx.QueryExecModeSimpleProtocol)
		if err != nil || n != 500 {
			t.Fatalf("500 customers from %d: %d rows, %v; want all 500", lo, n, err)
		}
		n, err = countRows(ctx, conn, customersRange(lo, lo+500), pgx.QueryExecModeSimpleProtocol)
		wantRuleBlock(t, err, "at-most-500")
		if n != 500 {
			t.Fatalf("501 customers from %d: %d rows before the block, want 500", lo, n)
		}
	}
	// The same customer many times is one subject.
	sql := "SELECT email FROM customers, generate_series(1, 600) WHERE id = 7"
	if n, err := countRows(ctx, conn, sql, pgx.QueryExecModeSimpleProtocol); err != nil || n != 600 {
		t.Fatalf("one customer 600 times: %d rows, %v", n, err)
	}
}

// TestSessionDistinctSubjectsAccumulate: distinct subjects at session scope
// are the union of the session's statements: small statements of new
// customers cross the limit at the statement that brings the 501st, and
// reading the same customers again and again does not.
func TestSessionDistinctSubjectsAccumulate(t *testing.T) {
	_, conn, _ := setupGuard(t, withRules(t, `rules:
  - name: session-people
    scope: session
    when:
      distinct_subjects: 500
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 25 {
		// Each statement repeats 5 customers of the one before.
		lo := 1 + 20*i
		n, err := countRows(ctx, conn, customersRange(max(lo-5, 1), lo+19), pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatalf("statement %d (customers up to %d): %v", i, lo+19, err)
		}
		if n != 20+5*min(i, 1) {
			t.Fatalf("statement %d: %d rows", i, n)
		}
	}
	n, err := countRows(ctx, conn, customersRange(490, 520), pgx.QueryExecModeExec)
	wantRuleBlock(t, err, "session-people")
	if n != 11 {
		t.Fatalf("%d rows of customers 490..520 before the block, want the 11 up to 500", n)
	}

	cfg := conn.Config().Copy()
	c2, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	for i := range 50 {
		if _, err := countRows(ctx, c2, customersRange(1001, 1020), pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("reading the same 20 customers, time %d: %v", i+1, err)
		}
	}
}

// TestWindowDistinctSubjectsUnion: an hourly limit on distinct subjects
// counts the union of the employee's sessions: customers read again count
// once, and the limit falls on the right row.
func TestWindowDistinctSubjectsUnion(t *testing.T) {
	_, conn, _ := setupGuard(t, withRules(t, `rules:
  - name: hourly-people
    scope: 1h
    when:
      distinct_subjects: 700
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 30 {
		if _, err := countRows(ctx, conn, customersRange(1+20*i, 20+20*i), pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("statement %d: %v", i, err)
		}
	}
	cfg := conn.Config().Copy()
	c2, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	for i := range 20 {
		if _, err := countRows(ctx, c2, customersRange(1, 20), pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("customers 1..20 again, time %d: %v", i+1, err)
		}
	}
	if n, err := countRows(ctx, c2, customersRange(1, 700), pgx.QueryExecModeSimpleProtocol); err != nil || n != 700 {
		t.Fatalf("customers 1..700: %d rows, %v; want all 700", n, err)
	}
	n, err := countRows(ctx, c2, customersRange(650, 750), pgx.QueryExecModeSimpleProtocol)
	wantRuleBlock(t, err, "hourly-people")
	if n != 51 {
		t.Fatalf("%d rows of customers 650..750 before the block, want the 51 up to 700", n)
	}
}

// TestPipelineDistinctSubjects: the statements of one pipeline count their
// subjects together before any is recorded, and a customer two of them
// return counts once.
func TestPipelineDistinctSubjects(t *testing.T) {
	_, conn, _ := setupGuard(t, withRules(t, `rules:
  - name: session-people
    scope: session
    when:
      distinct_subjects: 100
    action: block
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	batch := &pgx.Batch{}
	for i := range 5 {
		// 30 customers each, 10 of them the statement before's.
		batch.Queue(customersRange(1+20*i, 30+20*i))
	}
	br := conn.SendBatch(ctx, batch)
	received := 0
	var blockErr error
	for range 5 {
		rows, err := br.Query()
		if err != nil {
			blockErr = err
			break
		}
		for rows.Next() {
			received++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			blockErr = err
			break
		}
	}
	br.Close()
	wantRuleBlock(t, blockErr, "session-people")
	// Customers 1..90 arrive in 4 statements of 30 rows, 91..100 in the
	// first 20 rows of the fifth (81..100); the 101st is refused.
	if received != 140 {
		t.Errorf("the pipeline received %d rows, want 140 (customers 1..100)", received)
	}
}
