package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pgwarden/pgwarden/policy/pii"
)

// Summary says in plain words what the policy has on and off: mode,
// declared columns, detectors, canaries, explained access, norms, and
// each rule's action and limits. `pgwarden policy check` prints it.
func (p *Policy) Summary() []string {
	var out []string
	if p.shadow {
		out = append(out, "mode: shadow (every rule only logs what it would do)")
	} else {
		out = append(out, "mode: enforce")
	}
	declared := len(p.exact) + len(p.globs)
	switch declared {
	case 0:
		out = append(out, "declared PII columns: none (only what the detectors find is counted)")
	default:
		out = append(out, fmt.Sprintf("declared PII columns: %d", declared))
	}
	d := p.detectors
	switch {
	case !d.Enabled:
		out = append(out, "detectors: off (values outside declared columns are not counted)")
	case len(d.Categories) == len(pii.Detectable()):
		out = append(out, "detectors: on, every built-in one"+customWords(d.Custom))
	case len(d.Categories) == 0:
		out = append(out, "detectors: on, no built-in one"+customWords(d.Custom))
	default:
		out = append(out, "detectors: on, "+joinCategories(d.Categories)+customWords(d.Custom))
	}
	if n := len(p.canaries.Values); n > 0 {
		out = append(out, fmt.Sprintf("canaries: %d values, blocking at %d", n, p.canaries.BlockAt))
	} else {
		out = append(out, "canaries: none")
	}
	if e := p.explained; e.Table != "" {
		t := e.Table
		if e.Schema != "" {
			t = e.Schema + "." + t
		}
		how := "key sweeps only"
		if e.Query != "" {
			how = "reasons from its query, and key sweeps"
		}
		out = append(out, fmt.Sprintf("explained access: %s (key %s): %s", t, e.Key, how))
	} else {
		out = append(out, "explained access: off (no key sweep detection, no reasons to read a row)")
	}
	n := p.norms
	switch {
	case !n.Enabled:
		out = append(out, "norms: off (the file has no norms section: nothing is learned of each employee's normal work)")
	case n.BlockScore > 0:
		out = append(out, fmt.Sprintf("norms: on, %d learning days, alert from score %g, block from score %g", n.LearningDays, n.AlertScore, n.BlockScore))
	default:
		out = append(out, fmt.Sprintf("norms: on, %d learning days, alert only", n.LearningDays))
	}
	if slices.ContainsFunc(p.rules, func(r *Rule) bool { return r.Action == ActionRedact }) {
		out = append(out, p.masking.words())
	}
	for _, r := range p.rules {
		out = append(out, "rule "+r.Name+": "+r.words())
	}
	return out
}

func customWords(c []CustomDetector) string {
	if len(c) == 0 {
		return ""
	}
	return fmt.Sprintf(", and %d of the policy's own", len(c))
}

// Mode is the rule's action as it acts: "block", or "would block
// (shadow)".
func (r *Rule) Mode() string {
	if r.Shadow {
		return "would " + string(r.Action) + " (shadow)"
	}
	return string(r.Action)
}

// When says when a rule with thresholds acts: "pii_values > 100 in one
// statement"; empty for a rule without (it acts on every statement it
// matches).
func (r *Rule) When() string {
	var limits []string
	for _, l := range r.Limits() {
		limits = append(limits, fmt.Sprintf("%s > %d", l.Measure, l.Limit))
	}
	if len(limits) == 0 {
		return ""
	}
	where := "in one statement"
	switch r.Scope {
	case ScopeSession:
		where = "in one session"
	case ScopeStatement:
	default:
		where = "in the employee's last " + string(r.Scope)
	}
	return strings.Join(limits, " and ") + " " + where
}

// words says what a rule does: its action, and when.
func (r *Rule) words() string {
	if when := r.When(); when != "" {
		return r.Mode() + " when " + when
	}
	if r.Action == ActionRedact {
		return r.Mode() + ": masks the PII of every result it matches, from the first row"
	}
	return r.Mode() + " every statement it matches, before it runs"
}

// Warnings names what the policy leaves out that the built-in policy
// has: learned norms, and the rule that blocks data leaving through the
// server, where pgwarden cannot count it.
func (p *Policy) Warnings() []string {
	var out []string
	if !p.norms.Enabled {
		out = append(out, "no norms section: norms are off, unlike the built-in policy (add `norms: {learning_days: 7}` to learn each employee's normal work)")
	}
	egress := true
	for _, k := range serverEgress {
		egress = egress && slices.ContainsFunc(p.rules, func(r *Rule) bool {
			kinds, _ := conditionOf[kindsCond](r)
			return slices.Contains(kinds, k) && !r.Thresholded() && !r.Shadow &&
				(r.Action == ActionBlock || r.Action == ActionKill || r.Action == ActionQuarantine)
		})
	}
	if !egress {
		out = append(out, "no rule blocks statements: [server_egress]: COPY TO a file or program, lo_export and dblink move data through the server uncounted (the built-in policy blocks them)")
	}
	if !p.detectors.Enabled && len(p.exact)+len(p.globs) == 0 {
		out = append(out, "no declared columns and detectors off: nothing is counted as PII")
	}
	return out
}
