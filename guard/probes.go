package guard

import (
	"slices"

	"github.com/pgwarden/pgwarden/policy/detect"
	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/proxy"
)

// probe counts, once per statement, one value of each PII category whose
// declared columns the statement's predicates test against constants or
// bound parameters (sqltext.Probes), unless its result carries that
// category itself: SELECT count(*) FROM customers WHERE ssn < $1 returns
// no social security number, yet forty of them find one by bisection. It
// adds to counts and reports whether it added anything. The values are
// counted in the statement's "predicate" channel too.
func (s *session) probe(st *proxy.Statement, f *Figures, counts *detect.Counts) bool {
	if f.probed {
		return false
	}
	f.probed = true
	sql := s.sqlOf(st)
	if sql == "" || st.Kind == proxy.FunctionCall {
		return false
	}
	if info := s.analyze(sql); info.Skipped != "" {
		return false
	}
	lin := s.probesOf(sql)
	if lin == nil {
		return false
	}
	var cats []pii.Category
	for _, ref := range lin.Targets[0].Refs {
		if cat, ok := s.declaredRef(lin, ref, 0); ok && !slices.Contains(cats, cat) {
			cats = append(cats, cat)
		}
	}
	if s.cur == st {
		// Categories the result returns are counted as returned.
		cats = slices.DeleteFunc(cats, func(c pii.Category) bool {
			return slices.ContainsFunc(s.plan, func(p colPlan) bool { return p.declared == c || p.derived == c })
		})
	}
	if len(cats) == 0 {
		return false
	}
	for _, c := range cats {
		counts.Add(c, 1)
	}
	if f.Channels == nil {
		f.Channels = make(map[string]int)
	}
	f.Channels["predicate"] += len(cats)
	return true
}
