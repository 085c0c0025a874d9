package guard

import (
	"bytes"
	"fmt"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/proxy"
)

// canarySet finds the policy's honeytoken values in what a client
// receives: a value equal to one (a map lookup), or one packed inside a
// longer value (string_agg, json, a COPY line).
type canarySet struct {
	exact  map[string]struct{}
	values [][]byte
	minLen int
	// alert and block are the decisions canaries lead to, as rules.
	alert, block *policy.Rule
	blockAt      int
	// scope says whom the canaries watch (their subjects and except).
	scope policy.Canaries
}

// packedLen is the length from which a value may pack several others.
const packedLen = 64

func newCanarySet(p *policy.Policy) *canarySet {
	c := p.Canaries()
	if len(c.Values) == 0 {
		return nil
	}
	cs := &canarySet{exact: make(map[string]struct{}, len(c.Values)), blockAt: c.BlockAt, minLen: len(c.Values[0]), scope: c}
	for _, v := range c.Values {
		cs.exact[v] = struct{}{}
		cs.values = append(cs.values, []byte(v))
		cs.minLen = min(cs.minLen, len(v))
	}
	cs.alert = &policy.Rule{Name: "canary", Action: policy.ActionAlert, Severity: "high", Scope: policy.ScopeSession, Shadow: p.Shadow()}
	cs.block = &policy.Rule{Name: "canary-bulk", Action: policy.ActionBlock, Severity: "critical", Scope: policy.ScopeSession, Shadow: p.Shadow()}
	return cs
}

// count returns how many canaries v holds.
func (cs *canarySet) count(v []byte) int {
	if len(v) < cs.minLen {
		return 0
	}
	if _, ok := cs.exact[string(v)]; ok {
		return 1
	}
	if len(v) < packedLen {
		return 0
	}
	n := 0
	for _, c := range cs.values {
		n += bytes.Count(v, c)
	}
	return n
}

// countIn returns how many canaries a COPY line or other text holds.
func (cs *canarySet) countIn(data []byte) int {
	n := 0
	for _, c := range cs.values {
		n += bytes.Count(data, c)
	}
	return n
}

// canaryHit decides what the canaries in the message at hand lead to: the
// first of a session is alerted; reaching the policy's block_at within
// the session blocks, before the message reaches the client. Canaries
// that do not watch the statement's employee (their subjects and except,
// judged as a rule's) count nothing.
func (s *session) canaryHit(st *proxy.Statement, n int) proxy.Verdict {
	cs := s.cc().canaries
	w := s.stateOf(st).who
	if !cs.scope.Applies(&policy.Context{User: w.employee, Roles: s.enf.roles, Groups: s.info.Groups}) {
		return proxy.Verdict{}
	}
	seen := w.canaries + n
	if seen >= cs.blockAt {
		b := policy.Breach{Measure: "canaries", Observed: int64(seen), Limit: int64(cs.blockAt - 1)}
		v := s.decide(st, cs.block, b, fmt.Sprintf("%s received %d canary (honeytoken) values, which no legitimate work touches", w.employee, seen))
		if v.Action != proxy.Continue {
			return v
		}
	} else if w.canaries == 0 {
		b := policy.Breach{Measure: "canaries", Observed: int64(seen)}
		s.decide(st, cs.alert, b, fmt.Sprintf("%s received a canary (honeytoken) value, which no legitimate work touches", w.employee))
	}
	w.canaries = seen
	return proxy.Verdict{}
}
