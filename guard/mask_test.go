package guard_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// TestContextRedactMasksFromTheFirstRow: a redact rule with context
// conditions only (who, which tables) masks every PII value of the
// matching results from the first row, in every protocol and format,
// declared columns and values the detectors find alike; other tables'
// results are untouched.
func TestContextRedactMasksFromTheFirstRow(t *testing.T) {
	for _, when := range []string{"\n    when:\n      statements: [select]", "\n    when:\n      tables: [public.customers]"} {
		ev, conn := setup(t, withRules(t, `rules:
  - name: mask-support
    subjects: [`+pgtest.TrustUser+`]`+when+`
    action: redact
`))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, mode := range allModes {
			rows, err := conn.Query(ctx, "SELECT id, email, full_name, phone, support_note FROM customers WHERE id <= 3 ORDER BY id", mode)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for rows.Next() {
				var id int32
				var email, name, phone, note string
				if err := rows.Scan(&id, &email, &name, &phone, &note); err != nil {
					t.Fatalf("%v: %v", mode, err)
				}
				n++
				if email != "c***@example.com" || name != "C***" || phone != fmt.Sprintf("+*******%04d", id) || note != "contact help@example.org" {
					t.Errorf("when %q, %v row %d: %q %q %q %q, want masked", when, mode, n, email, name, phone, note)
				}
			}
			if err := rows.Err(); err != nil || n != 3 {
				t.Fatalf("%v: %d rows, %v", mode, n, err)
			}
			if got := ev.last(t); len(got.PIIValues) != 0 && got.PIIValues["email"]+got.PIIValues["name"]+got.PIIValues["phone"] != 0 {
				t.Errorf("when %q, %v: counted %v received, want none (all masked)", when, mode, got.PIIValues)
			}
		}
		var row string
		if err := conn.QueryRow(ctx, "SELECT string_agg(email, ',') FROM customers WHERE id <= 3").Scan(&row); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(row, "customer1@") {
			t.Errorf("when %q: packed value in clear: %q", when, row)
		}
		for _, d := range ev.decisions(t) {
			if r := fmt.Sprint(d["reason"]); d["action"] != "redact" || !strings.Contains(r, "PII masked by rule mask-support") {
				t.Errorf("when %q: decision %v, want the masking told as such", when, d)
			}
		}
		if strings.Contains(when, "tables") {
			// COPY data is masked line by line (copyout_test.go).
			var sb strings.Builder
			_, err := conn.PgConn().CopyTo(ctx, &writerFunc{&sb}, "COPY (SELECT email, full_name FROM customers WHERE id <= 3 ORDER BY id) TO STDOUT")
			if err != nil || sb.String() != "c***@example.com\tC***\nc***@example.com\tC***\nc***@example.com\tC***\n" {
				t.Errorf("when %q: COPY of masked PII: %q, %v, want it masked", when, sb.String(), err)
			}
			// Another table's result is the rule's no business.
			var v string
			if err := conn.QueryRow(ctx, "SELECT 'someone@example.org'").Scan(&v); err != nil || v != "someone@example.org" {
				t.Errorf("a result of no table: %q, %v, want it in clear", v, err)
			}
		}
	}
}

// TestMaskingFormats: the policy's masking section sets each category's
// format, for declared columns and detected values, in every protocol;
// without it values are masked by their shape (TestRedactPastTheLimit).
func TestMaskingFormats(t *testing.T) {
	_, conn := setup(t, withRules(t, `masking:
  email: hidden
  phone: last4
  name: null
rules:
  - name: mask-all
    when:
      statements: [select]
    action: redact
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	elementwise := 0
	for _, mode := range allModes {
		rows, err := conn.Query(ctx, "SELECT id, email, full_name, phone, array[email, 'x'] FROM customers WHERE id <= 2 ORDER BY id", mode)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var id int32
			var email, phone string
			var name *string
			var arr []string
			if err := rows.Scan(&id, &email, &name, &phone, &arr); err != nil {
				t.Fatalf("%v: %v", mode, err)
			}
			n++
			if email != "***" || name != nil || phone != fmt.Sprintf("+*******%04d", id) {
				t.Errorf("%v row %d: %q %v %q, want *** NULL and the phone's last four", mode, n, email, name, phone)
			}
			// A binary array is masked element by element; a text one,
			// which a mask would make invalid, is NULL.
			if arr != nil && (len(arr) != 2 || arr[0] != "***" || arr[1] != "x") {
				t.Errorf("%v row %d: array %q, want its email hidden", mode, n, arr)
			}
			if arr != nil {
				elementwise++
			}
		}
		if err := rows.Err(); err != nil || n != 2 {
			t.Fatalf("%v: %d rows, %v", mode, n, err)
		}
	}
	if elementwise == 0 {
		t.Error("no binary array masked element by element")
	}
}
