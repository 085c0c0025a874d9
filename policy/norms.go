package policy

import (
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// NormConfig is how learned per-employee norms are used (the norms
// section). The model itself lives in package policy/norm.
type NormConfig struct {
	Enabled bool
	// LearningDays after an employee is first seen only alerts are
	// raised; MinActiveDays of history before their own norm replaces
	// their peer group's; HistoryDays kept; MaxDailyRise bounds how fast a
	// norm may rise (a fraction per day).
	LearningDays, MinActiveDays, HistoryDays int
	MaxDailyRise                             float64
	// AlertScore and BlockScore map an anomaly's score to an action;
	// BlockScore 0 never blocks. Novelties (a first table, client address
	// or application) are only ever alerted.
	AlertScore, BlockScore float64
	// StatementFactor stops a statement once it returns more PII values
	// than this many times the employee's usual 10-minute high (but never
	// below StatementFloor); 0 turns the adaptive limit off.
	StatementFactor float64
	StatementFloor  int64
	// Shadow: norms only say what they would do.
	Shadow bool
	// OrgChangeEmployees, OrgChangeSpan and OrgChangeHold fold novelties
	// shared by many employees (an office's address range renumbered, an
	// application rolled out, a new table everyone starts using) into one
	// organisation-level incident: once the same new value (a client
	// address's /24 or /64, an application, a table, a PII category) is
	// new to OrgChangeEmployees employees, each first seen less than
	// OrgChangeSpan after the previous one, one org_change alert is raised
	// and their own novelty alerts are recorded without notice. An
	// employee's novelty alert waits OrgChangeHold for others to share it.
	// OrgChangeEmployees 0 turns folding off.
	OrgChangeEmployees           int
	OrgChangeSpan, OrgChangeHold time.Duration

	// who are the employees the norms watch, as a rule's subjects and
	// except say (Watches): a monthly batch job has no norm to break.
	who audience
}

// Watches reports whether the norms learn and judge c's employee: one
// among their subjects (everyone when they name none) and not excepted.
func (c NormConfig) Watches(ctx *Context) bool {
	ok, _ := c.who.check(ctx, false)
	return ok
}

// defaultNorms are the settings of a norms section's omitted keys.
var defaultNorms = NormConfig{Enabled: true, LearningDays: 7, MinActiveDays: 5, HistoryDays: 30,
	MaxDailyRise: 0.25, AlertScore: 1, BlockScore: 0, StatementFactor: 0, StatementFloor: 500,
	OrgChangeEmployees: 3, OrgChangeSpan: time.Hour, OrgChangeHold: 15 * time.Minute}

// Norms returns the norms settings; Enabled is false without a norms
// section.
func (p *Policy) Norms() NormConfig { return p.norms }

func (ps *parser) normsConfig(n *yaml.Node) {
	c := defaultNorms
	positiveInt := func(dst *int, what string) field {
		return func(v *yaml.Node) {
			x, ok := ps.limit(v, what)
			if ok && x < 1 {
				ps.errorf(v, "%s: want at least 1", what)
				ok = false
			}
			if ok {
				*dst = int(x)
			}
		}
	}
	number := func(dst *float64, what string, min float64) field {
		return func(v *yaml.Node) {
			if !ps.want(v, yaml.ScalarNode, what) {
				return
			}
			x, err := strconv.ParseFloat(v.Value, 64)
			if (v.Tag != "!!int" && v.Tag != "!!float") || err != nil || x < min {
				ps.errorf(v, "%s: want a number of at least %g, got %s", what, min, describe(v))
				return
			}
			*dst = x
		}
	}
	duration := func(dst *time.Duration, what string) field {
		return func(v *yaml.Node) {
			s, ok := ps.str(v, what)
			if !ok {
				return
			}
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 || d > 24*time.Hour {
				ps.errorf(v, "%s: want a duration such as 15m or 1h, up to 24h, got %s", what, describe(v))
				return
			}
			*dst = d
		}
	}
	ps.mapping(n, "norms", map[string]field{
		"enabled": func(v *yaml.Node) {
			b, ok := ps.boolean(v, "norms.enabled")
			if ok {
				c.Enabled = b
			}
		},
		"shadow": func(v *yaml.Node) {
			b, ok := ps.boolean(v, "norms.shadow")
			if ok {
				c.Shadow = b
			}
		},
		"learning_days":    positiveInt(&c.LearningDays, "norms.learning_days"),
		"min_active_days":  positiveInt(&c.MinActiveDays, "norms.min_active_days"),
		"history_days":     positiveInt(&c.HistoryDays, "norms.history_days"),
		"max_daily_rise":   number(&c.MaxDailyRise, "norms.max_daily_rise", 0),
		"alert_score":      number(&c.AlertScore, "norms.alert_score", 0.1),
		"block_score":      number(&c.BlockScore, "norms.block_score", 0),
		"statement_factor": number(&c.StatementFactor, "norms.statement_factor", 0),
		"statement_floor": func(v *yaml.Node) {
			x, ok := ps.limit(v, "norms.statement_floor")
			if ok {
				c.StatementFloor = x
			}
		},
		"org_change_employees": func(v *yaml.Node) {
			x, ok := ps.limit(v, "norms.org_change_employees")
			if ok && x == 1 {
				ps.errorf(v, "norms.org_change_employees: want 0 (off) or at least 2")
				ok = false
			}
			if ok {
				c.OrgChangeEmployees = int(x)
			}
		},
		"subjects": func(v *yaml.Node) {
			c.who.subjects, _ = ps.subjectsField(v, "norms.subjects")
		},
		"except": func(v *yaml.Node) {
			c.who.except, _ = ps.subjects(v, "norms.except")
		},
		"org_change_span": duration(&c.OrgChangeSpan, "norms.org_change_span"),
		"org_change_hold": duration(&c.OrgChangeHold, "norms.org_change_hold"),
	})
	if c.OrgChangeHold > c.OrgChangeSpan {
		ps.errorf(n, "norms: org_change_hold %s is longer than org_change_span %s", c.OrgChangeHold, c.OrgChangeSpan)
	}
	if c.BlockScore != 0 && c.BlockScore < c.AlertScore {
		ps.errorf(n, "norms: block_score %g is below alert_score %g", c.BlockScore, c.AlertScore)
	}
	if c.HistoryDays < c.MinActiveDays {
		ps.errorf(n, "norms: history_days %d is shorter than min_active_days %d", c.HistoryDays, c.MinActiveDays)
	}
	ps.p.norms = c
}
