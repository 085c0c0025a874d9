package sqltext

import (
	"reflect"
	"testing"
)

func TestPredicates(t *testing.T) {
	p := func(q, c, op string, vs ...Operand) Predicate {
		return Predicate{Qualifier: q, Column: c, Op: op, Values: vs}
	}
	param := func(n int, add int64) Operand { return Operand{Param: n, Add: add} }
	konst := func(s string) Operand { return Operand{Const: s} }
	tests := []struct {
		sql  string
		want []Predicate
	}{
		{"SELECT full_name, email FROM customers WHERE id BETWEEN $1 AND $1 + 19",
			[]Predicate{p("", "id", "between", param(1, 0), param(1, 19))}},
		{"SELECT email FROM customers c WHERE c.id = $2::int AND 5 < c.id AND status = 'open'",
			[]Predicate{p("c", "id", "=", param(2, 0)), p("c", "id", ">", konst("5")), p("", "status", "=", konst("open"))}},
		{"SELECT email FROM customers WHERE id >= $1 - 1 AND id < 20 + $1",
			[]Predicate{p("", "id", ">=", param(1, -1)), p("", "id", "<", param(1, 20))}},
		{"SELECT email FROM customers WHERE id IN (1, 2, $1)",
			[]Predicate{p("", "id", "in", konst("1"), konst("2"), param(1, 0))}},
		{"SELECT count(*) FROM customers WHERE ssn < $1", []Predicate{p("", "ssn", "<", param(1, 0))}},
		// Nothing known before the statement runs.
		{"SELECT email FROM customers WHERE id = other_id OR id = 1", nil},
		{"SELECT email FROM customers WHERE id = (SELECT max(id) FROM t)", nil},
		{"SELECT email FROM a UNION SELECT email FROM b WHERE id = 1", nil},
		{"UPDATE customers SET email = '' WHERE id = 1", nil},
	}
	for _, tt := range tests {
		if got := New(0).Analyze(tt.sql).Predicates; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.sql, got, tt.want)
		}
	}
}
