// Package explain says, for pgwarden policy explain, which rules of a
// policy apply to a statement and why the others do not, and which of
// the result's columns a redact rule masks. It is pure logic over the
// policy and the statement's text.
package explain

import (
	"cmp"
	"errors"
	"fmt"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/sqltext"
)

// Result is what Statement finds.
type Result struct {
	Normalized string
	Context    policy.Context // the given context with the statement's kinds and tables
	Rules      []policy.Explanation
	// Masking is set when a redact rule applies: the first in file order.
	Masking *Masking
}

// Masking is what a redact rule masks in the result.
type Masking struct {
	Rule *policy.Rule
	// Known is false when the result's columns cannot be listed from the
	// text: every PII value found is masked.
	Known bool
	// Columns lists, by result column (1-based), the declared columns it
	// reads, as "schema.table.column: category, format".
	Columns []Column
}

// Column is one result column a redact rule masks.
type Column struct {
	Index   int
	Sources []string
}

// Statement explains sql under p with pc (employee, roles, client, time);
// unqualified table names are in schema.
func Statement(p *policy.Policy, sql, schema string, pc policy.Context) (Result, error) {
	an := sqltext.New(1)
	info := an.Analyze(sql)
	if info.Fingerprint == "" {
		return Result{}, errors.New("--sql does not parse as PostgreSQL SQL")
	}
	for _, k := range info.Kinds {
		pc.Kinds = append(pc.Kinds, policy.StatementKind(k))
	}
	for _, r := range info.Relations {
		pc.Tables = append(pc.Tables, cmp.Or(r.Schema, schema)+"."+r.Table)
	}
	res := Result{Normalized: info.Normalized, Context: pc, Rules: p.Explain(&pc)}
	for _, e := range res.Rules {
		if e.Applies && e.Rule.Action == policy.ActionRedact {
			res.Masking = masking(p, e.Rule, an.Lineage(sql), schema)
			break
		}
	}
	return res, nil
}

// masking lists the result's columns r masks: those the statement reads
// from a declared column, with their format.
func masking(p *policy.Policy, r *policy.Rule, l *sqltext.Lineage, schema string) *Masking {
	m := &Masking{Rule: r, Known: l != nil}
	if l == nil {
		return m
	}
	formats := p.Masking()
	for i, t := range l.Targets {
		var cats []string
		for _, ref := range t.Refs {
			for _, rel := range l.From {
				if rel.Func || ref.Func != "" || (ref.Qualifier != "" && ref.Qualifier != rel.Alias && ref.Qualifier != rel.Table) ||
					(ref.Qualifier == "" && len(l.From) > 1) {
					continue
				}
				sch := cmp.Or(rel.Schema, schema)
				if c, ok := p.Classify(sch, rel.Table, ref.Column); ok {
					f := cmp.Or(string(formats.Format(c)), "by shape")
					if r.RedactWith == "null" {
						f = "null"
					}
					cats = append(cats, fmt.Sprintf("%s.%s.%s: %s, %s", sch, rel.Table, ref.Column, c, f))
				}
			}
		}
		if len(cats) > 0 {
			m.Columns = append(m.Columns, Column{Index: i + 1, Sources: cats})
		}
	}
	return m
}
