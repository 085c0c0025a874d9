package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/guard"
)

// readDecisions reads pgwarden's decision log (JSON Lines of guard.Decision).
func readDecisions(name string) ([]guard.Decision, error) {
	f, err := os.Open(name)
	if os.IsNotExist(err) {
		return nil, nil // nothing was decided
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []guard.Decision
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var d guard.Decision
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, d)
	}
	return out, sc.Err()
}

// isAlert: alert or stronger (anything but log), shadow "would ..." included.
func isAlert(d guard.Decision) bool {
	a := strings.TrimPrefix(d.Action, "would ")
	return a != "" && a != "log"
}

// isBlock: the statement or session was stopped.
func isBlock(d guard.Decision) bool {
	switch d.Action {
	case "block", "kill", "quarantine":
		return true
	}
	return false
}

type reportMeta struct {
	Org       string   `json:"org"`
	Command   string   `json:"command"`
	Seed      uint64   `json:"seed"`
	Employees int      `json:"employees"`
	Days      int      `json:"days"`
	Start     string   `json:"start"`
	Customers int      `json:"customers"`
	Policy    string   `json:"policy"`
	Pgwarden  []string `json:"pgwarden"`
	Holidays  []int    `json:"holidays"`
	Date      string   `json:"date"`
	Commit    string   `json:"commit,omitempty"` // of the module pgwarden was built from; "-dirty" with changes
}

type episodeResult struct {
	episode
	Detected       bool       `json:"detected"`
	FirstAlert     *time.Time `json:"first_alert,omitempty"`
	FirstAlertRule string     `json:"first_alert_rule,omitempty"`
	Blocked        bool       `json:"blocked"` // the client saw pgwarden stop it
	Statements     int        `json:"statements"`
	LeakedPII      int        `json:"leaked_pii"`  // received before (and with) the first blocked statement
	LeakedRows     int        `json:"leaked_rows"` // idem, rows
	DaysToAlert    int        `json:"days_to_alert,omitempty"`
}

type typeResult struct {
	Type          string  `json:"type"`
	Class         string  `json:"class"`
	Episodes      int     `json:"episodes"`
	Detected      int     `json:"detected"`
	Recall        float64 `json:"recall"`
	Blocked       int     `json:"blocked"`
	LeakPIIMedian float64 `json:"leaked_pii_median"`
	LeakPIIP95    float64 `json:"leaked_pii_p95"`
	LeakRowMedian float64 `json:"leaked_rows_median"`
	LeakRowP95    float64 `json:"leaked_rows_p95"`
	LeakPIIMax    float64 `json:"leaked_pii_max"`
	DaysMedian    float64 `json:"working_days_to_alert_median"` // of the detected episodes; 1 is the day it began; 0 when none was
	FirstAlerts   string  `json:"first_alert_rules"`            // the rules of the episodes' first alerts, counted
}

// roleResult is normal traffic's figures for one role.
type roleResult struct {
	Role              string  `json:"role"`
	EmployeeDays      int     `json:"employee_days"`
	FalseAlerts       int     `json:"false_alerts"`
	FalseAlertsPerDay float64 `json:"false_alerts_per_employee_day"`
	FalseBlocks       int     `json:"false_blocks"`          // decision log
	BlockedClient     int     `json:"blocked_client_side"`   // normal statements stopped outside attack windows
	TopRules          string  `json:"top_false_alert_rules"` // the commonest causes
}

type classResult struct {
	Class         string  `json:"class"`
	Episodes      int     `json:"episodes"`
	LeakPIIMedian float64 `json:"leaked_pii_median"`
	LeakPIIP95    float64 `json:"leaked_pii_p95"`
	LeakRowMedian float64 `json:"leaked_rows_median"`
	LeakRowP95    float64 `json:"leaked_rows_p95"`
}

type falseDecision struct {
	Time     time.Time `json:"time"`
	Employee string    `json:"employee"`
	Action   string    `json:"action"`
	Source   string    `json:"source"`
	Rule     string    `json:"rule,omitempty"`
	Kind     string    `json:"kind,omitempty"`
	Reason   string    `json:"reason"`
}

type normalResult struct {
	EmployeeDays        int             `json:"employee_days"`
	FalseAlerts         int             `json:"false_alerts"`
	FalseAlertDays      int             `json:"false_alert_employee_days"`
	FalseAlertsPerDay   float64         `json:"false_alerts_per_employee_day"`
	FalseAftermath      int             `json:"false_alerts_within_24h_after_an_episode"`
	AftermathCredited   int             `json:"alerts_after_an_episode_counting_its_reads"` // credited to the episode, not false
	FalseBlocks         int             `json:"false_blocks"`
	NormalBlockedClient int             `json:"normal_statements_blocked_client_side"`
	FalseBlockedClient  int             `json:"normal_statements_blocked_outside_attack_windows"`
	FalseByRule         map[string]int  `json:"false_alerts_by_rule"`
	FalseBlockExamples  []falseDecision `json:"false_block_examples,omitempty"`
	FalseAlertExamples  []falseDecision `json:"false_alert_examples,omitempty"`
	UnattributedAlerts  int             `json:"organisation_alerts"` // alerts naming no employee (org_change); counted as false
	ByRole              []roleResult    `json:"by_role"`
	JobsBlocked         int             `json:"jobs_blocked"` // backup and batch statements stopped, client side or in the decision log
	DecisionsByAction   map[string]int  `json:"decisions_by_action"`
	DecisionsBySource   map[string]int  `json:"decisions_by_source"`
	DecisionsTotal      int             `json:"decisions_total"`
	AlertDecisionsTotal int             `json:"alert_decisions_total"`
}

type targetResult struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Target string `json:"target"`
	Met    bool   `json:"met"`
}

type report struct {
	Meta     reportMeta      `json:"meta"`
	Run      runStats        `json:"run"`
	Recall   float64         `json:"recall_overall"`
	Types    []typeResult    `json:"types"`
	Classes  []classResult   `json:"leak_classes"`
	Normal   normalResult    `json:"normal"`
	Episodes []episodeResult `json:"episodes"`
	Targets  []targetResult  `json:"targets"`
}

func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	// nearest rank
	k := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

// window is when decisions about an employee belong to an episode.
func (ep *episode) window() (time.Time, time.Time) {
	if ep.Type == atkSlow {
		return ep.Start, ep.End
	}
	return ep.Start, ep.End.Add(time.Hour)
}

// inEpisode reports whether t falls in the window of one of emp's episodes.
func (w *world) inEpisode(emp string, t time.Time) bool {
	for k := range w.episodes {
		ep := &w.episodes[k]
		from, to := ep.window()
		if ep.Employee == emp && !t.Before(from) && !t.After(to) {
			return true
		}
	}
	return false
}

// aboutEpisode reports whether decision d is about one of its employee's
// episodes: made in the episode's window, or counting reads that go back
// into it (a 24-hour rule firing the morning after a sweep, a drift over
// the active days that held an attack). The reads of a novelty are the
// statement's own, whatever its history window.
func (w *world) aboutEpisode(d guard.Decision) bool {
	if w.inEpisode(d.Employee, d.Time) {
		return true
	}
	from, ok := w.evidenceFrom(d)
	if !ok {
		return false
	}
	for k := range w.episodes {
		ep := &w.episodes[k]
		start, to := ep.window()
		if ep.Employee == d.Employee && start.Before(d.Time) && !to.Before(from) {
			return true
		}
	}
	return false
}

// evidenceFrom is the start of the reads decision d counts, from its
// window: a duration, or for a drift N of the employee's active days up to
// the decision's day.
func (w *world) evidenceFrom(d guard.Decision) (time.Time, bool) {
	if d.Window == "" || strings.HasPrefix(d.Kind, "novel_") {
		return time.Time{}, false
	}
	if n, ok := strings.CutSuffix(d.Window, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return time.Time{}, false
		}
		if d.Kind != "drift" {
			return d.Time.Add(-time.Duration(days) * 24 * time.Hour), true
		}
		ei, ok := w.empIndex(d.Employee)
		if !ok {
			return time.Time{}, false
		}
		day := min(w.dayOf(d.Time), len(w.active[ei])-1)
		for ; day > 0; day-- {
			if w.active[ei][day] {
				if days--; days == 0 {
					break
				}
			}
		}
		return w.date(day), true
	}
	dur, err := time.ParseDuration(d.Window)
	if err != nil {
		return time.Time{}, false
	}
	return d.Time.Add(-dur), true
}

func (w *world) empIndex(name string) (int, bool) {
	for i := range w.employees {
		if w.employees[i].Name == name {
			return i, true
		}
	}
	return 0, false
}

// afterEpisode reports whether t falls within 24 hours after the window of
// one of emp's episodes.
func (w *world) afterEpisode(emp string, t time.Time) bool {
	for k := range w.episodes {
		ep := &w.episodes[k]
		_, to := ep.window()
		if ep.Employee == emp && t.After(to) && !t.After(to.Add(24*time.Hour)) {
			return true
		}
	}
	return false
}

// shorterEpisodeHolds reports, for a slow-and-low episode i, whether t
// falls within, or 24 hours after, another episode of its employee: an
// alert then is that episode's (the slow read's month is not credited with
// the alerts of a dump in the middle of it, nor of the windows it filled).
func (w *world) shorterEpisodeHolds(i int, t time.Time) bool {
	ep := &w.episodes[i]
	if ep.Type != atkSlow {
		return false
	}
	from, to := ep.window()
	for k := range w.episodes {
		o := &w.episodes[k]
		if k == i || o.Employee != ep.Employee {
			continue
		}
		of, ot := o.window()
		if ot.Sub(of) < to.Sub(from) && !t.Before(of) && !t.After(ot.Add(24*time.Hour)) {
			return true
		}
	}
	return false
}

// unrelatedToSlow reports whether a decision cannot be about a slow read:
// the slow reader's extra lookups run in their usual hours, from their
// usual address and application, on tables they use, so an alert of a
// first client, application or table, or of an unusual hour, is caused by
// something else (in organisation B: the renumbered office, the shift
// change) and does not count as finding the slow read.
func unrelatedToSlow(d guard.Decision) bool {
	switch d.Kind {
	case "off_hours", "novel_client", "novel_application", "novel_table":
		return d.Source == "norm"
	}
	return false
}

func evaluate(w *world, r *runner, decisions []guard.Decision) *report {
	rep := &report{Meta: reportMeta{Org: w.cfg.org}}
	sort.SliceStable(decisions, func(i, j int) bool { return decisions[i].Time.Before(decisions[j].Time) })
	empIndex := map[string]int{}
	for i, e := range w.employees {
		empIndex[e.Name] = i
	}
	// Episodes.
	for i := range w.episodes {
		ep := w.episodes[i]
		er := episodeResult{episode: ep}
		from, to := ep.window()
		for _, d := range decisions {
			if d.Employee == ep.Employee && isAlert(d) && !d.Time.Before(from) && !d.Time.After(to) && !w.shorterEpisodeHolds(i, d.Time) &&
				!(ep.Type == atkSlow && unrelatedToSlow(d)) {
				t := d.Time
				er.Detected, er.FirstAlert, er.FirstAlertRule = true, &t, d.Rule
				if er.FirstAlertRule == "" {
					er.FirstAlertRule = d.Source + ":" + d.Kind
				}
				break
			}
		}
		outs := slices.Clone(r.results[i])
		sort.SliceStable(outs, func(a, b int) bool { return outs[a].order < outs[b].order })
		er.Statements = len(outs)
		for _, o := range outs {
			er.LeakedPII += o.PII
			er.LeakedRows += o.Rows
			if o.stopped() {
				er.Blocked = true
				break
			}
		}
		if er.Detected {
			e := &w.employees[empIndex[ep.Employee]]
			alertDay := w.dayOf(*er.FirstAlert)
			for d := ep.StartDay; d <= alertDay && d < w.cfg.days; d++ {
				if w.works(e, d) {
					er.DaysToAlert++
				}
			}
		}
		rep.Episodes = append(rep.Episodes, er)
	}
	// Per type and class.
	detected, total := 0, 0
	classLeaks := map[string][2][]float64{}
	for _, typ := range w.attackTypes() {
		tr := typeResult{Type: typ, Class: attackClass(typ)}
		var pii, rows, days []float64
		first := map[string]int{}
		for _, er := range rep.Episodes {
			if er.Type != typ {
				continue
			}
			tr.Episodes++
			if er.Detected {
				tr.Detected++
				days = append(days, float64(er.DaysToAlert))
				first[er.FirstAlertRule]++
			}
			if er.Blocked {
				tr.Blocked++
			}
			pii = append(pii, float64(er.LeakedPII))
			rows = append(rows, float64(er.LeakedRows))
		}
		if tr.Episodes == 0 {
			continue
		}
		tr.Recall = float64(tr.Detected) / float64(tr.Episodes)
		tr.LeakPIIMedian, tr.LeakPIIP95 = quantile(pii, 0.5), quantile(pii, 0.95)
		tr.LeakRowMedian, tr.LeakRowP95 = quantile(rows, 0.5), quantile(rows, 0.95)
		tr.LeakPIIMax, tr.FirstAlerts = quantile(pii, 1), fmtCounts(first)
		if len(days) > 0 {
			tr.DaysMedian = quantile(days, 0.5)
		}
		cl := classLeaks[tr.Class]
		cl[0] = append(cl[0], pii...)
		cl[1] = append(cl[1], rows...)
		classLeaks[tr.Class] = cl
		detected += tr.Detected
		total += tr.Episodes
		rep.Types = append(rep.Types, tr)
	}
	if total > 0 {
		rep.Recall = float64(detected) / float64(total)
	} else {
		rep.Recall = 0 // no episode; JSON has no NaN
	}
	for _, class := range []string{"single statement", "packed", "channel, one statement", "channel, many statements", "multi-statement/session", "slow-and-low"} {
		cl, ok := classLeaks[class]
		if !ok {
			continue
		}
		rep.Classes = append(rep.Classes, classResult{Class: class, Episodes: len(cl[0]),
			LeakPIIMedian: quantile(cl[0], 0.5), LeakPIIP95: quantile(cl[0], 0.95),
			LeakRowMedian: quantile(cl[1], 0.5), LeakRowP95: quantile(cl[1], 0.95)})
	}
	// Normal traffic.
	n := &rep.Normal
	n.FalseByRule = map[string]int{}
	n.DecisionsByAction = map[string]int{}
	n.DecisionsBySource = map[string]int{}
	n.NormalBlockedClient = r.stats.NormalBlocked
	for _, st := range r.normalStops {
		if !w.inEpisode(st.Emp, st.At) {
			n.FalseBlockedClient++
		}
	}
	for i := range w.employees {
		for d := range w.cfg.days {
			if w.active[i][d] {
				n.EmployeeDays++
			}
		}
	}
	falseDays := map[[2]int]bool{}
	for _, d := range decisions {
		n.DecisionsTotal++
		n.DecisionsByAction[d.Action]++
		n.DecisionsBySource[d.Source]++
		if !isAlert(d) {
			continue
		}
		n.AlertDecisionsTotal++
		ei, ok := empIndex[d.Employee]
		if !ok {
			// An organisation-level alert (an office renumbered, a
			// team's hours moved) names no one; it still reaches
			// security and counts.
			n.UnattributedAlerts++
			n.FalseAlerts++
			n.FalseByRule[d.Rule]++
			continue
		}
		if w.aboutEpisode(d) {
			if !w.inEpisode(d.Employee, d.Time) {
				n.AftermathCredited++
			}
			continue
		}
		fd := falseDecision{Time: d.Time, Employee: d.Employee, Action: d.Action, Source: d.Source, Rule: d.Rule, Kind: d.Kind, Reason: d.Reason}
		n.FalseAlerts++
		if w.afterEpisode(d.Employee, d.Time) {
			n.FalseAftermath++
		}
		falseDays[[2]int{ei, w.dayOf(d.Time)}] = true
		key := d.Rule
		if key == "" {
			key = d.Source + ":" + d.Kind
		}
		n.FalseByRule[key]++
		if len(n.FalseAlertExamples) < 10 {
			n.FalseAlertExamples = append(n.FalseAlertExamples, fd)
		}
		if isBlock(d) {
			n.FalseBlocks++
			if len(n.FalseBlockExamples) < 10 {
				n.FalseBlockExamples = append(n.FalseBlockExamples, fd)
			}
		}
	}
	n.FalseAlertDays = len(falseDays)
	n.ByRole, n.JobsBlocked = byRole(w, r, decisions)
	if n.EmployeeDays > 0 {
		n.FalseAlertsPerDay = float64(n.FalseAlerts) / float64(n.EmployeeDays)
	}
	rep.Targets = targets(rep)
	return rep
}

// isJob reports whether a role is a backup or batch job, which reads every
// row by design and must never be stopped.
func isJob(role string) bool { return role == roleBackup || role == roleBatch || role == roleBilling }

// byRole splits normal traffic's false alerts and blocks by the role the
// employee had that day, and counts the jobs' stopped statements.
func byRole(w *world, r *runner, decisions []guard.Decision) ([]roleResult, int) {
	var order []string
	idx := map[string]int{}
	rules := map[string]map[string]int{}
	res := []roleResult{}
	get := func(role string) *roleResult {
		k, ok := idx[role]
		if !ok {
			k = len(res)
			idx[role] = k
			order = append(order, role)
			res = append(res, roleResult{Role: role})
			rules[role] = map[string]int{}
		}
		return &res[k]
	}
	empIndex := map[string]int{}
	for i := range w.employees {
		e := &w.employees[i]
		empIndex[e.Name] = i
		for d := range w.cfg.days {
			rr := get(e.roleOn(d))
			if w.active[i][d] {
				rr.EmployeeDays++
			}
		}
	}
	jobs := 0
	for _, d := range decisions {
		if !isAlert(d) {
			continue
		}
		ei, ok := empIndex[d.Employee]
		if !ok {
			rr := get("organisation")
			rr.FalseAlerts++
			rules["organisation"][d.Rule]++
			continue
		}
		e := &w.employees[ei]
		role := e.roleOn(w.dayOf(d.Time))
		if isJob(role) && isBlock(d) {
			jobs++
		}
		if w.aboutEpisode(d) {
			continue
		}
		rr := get(role)
		rr.FalseAlerts++
		if isBlock(d) {
			rr.FalseBlocks++
		}
		key := d.Rule
		if key == "" {
			key = d.Source + ":" + d.Kind
		}
		rules[role][key]++
	}
	for _, st := range r.normalStops {
		ei := empIndex[st.Emp]
		role := w.employees[ei].roleOn(w.dayOf(st.At))
		if isJob(role) {
			jobs++
		}
		if !w.inEpisode(st.Emp, st.At) {
			get(role).BlockedClient++
		}
	}
	for k := range res {
		rr := &res[k]
		if rr.EmployeeDays > 0 {
			rr.FalseAlertsPerDay = float64(rr.FalseAlerts) / float64(rr.EmployeeDays)
		}
		type kv struct {
			k string
			v int
		}
		var top []kv
		for k, v := range rules[rr.Role] {
			top = append(top, kv{k, v})
		}
		sort.Slice(top, func(i, j int) bool { return top[i].v > top[j].v || top[i].v == top[j].v && top[i].k < top[j].k })
		var parts []string
		for _, t := range top[:min(3, len(top))] {
			parts = append(parts, fmt.Sprintf("%s %d", t.k, t.v))
		}
		rr.TopRules = strings.Join(parts, ", ")
	}
	return res, jobs
}

func targets(rep *report) []targetResult {
	var ts []targetResult
	add := func(name, value, target string, met bool) {
		ts = append(ts, targetResult{Name: name, Value: value, Target: target, Met: met})
	}
	if len(rep.Types) > 0 {
		add("recall overall", fmt.Sprintf("%.3f", rep.Recall), ">= 0.99", rep.Recall >= 0.99)
		minType, minName := 2.0, ""
		for _, t := range rep.Types {
			if t.Recall < minType {
				minType, minName = t.Recall, t.Type
			}
		}
		add("recall, worst type ("+minName+")", fmt.Sprintf("%.3f", minType), ">= 0.95", minType >= 0.95)
	}
	add("false alerts per employee-day", fmt.Sprintf("%.4f", rep.Normal.FalseAlertsPerDay), "<= 0.01", rep.Normal.FalseAlertsPerDay <= 0.01)
	worst, worstRole := -1.0, ""
	for _, rr := range rep.Normal.ByRole {
		if rr.EmployeeDays > 0 && rr.FalseAlertsPerDay > worst {
			worst, worstRole = rr.FalseAlertsPerDay, rr.Role
		}
	}
	if worst >= 0 {
		add("false alerts per employee-day, worst role ("+worstRole+")", fmt.Sprintf("%.4f", worst), "<= 0.02", worst <= 0.02)
	}
	add("backup and batch jobs stopped", fmt.Sprint(rep.Normal.JobsBlocked), "0", rep.Normal.JobsBlocked == 0)
	add("false blocks (decision log)", fmt.Sprint(rep.Normal.FalseBlocks), "0", rep.Normal.FalseBlocks == 0)
	add("normal statements blocked outside attack windows", fmt.Sprint(rep.Normal.FalseBlockedClient), "0", rep.Normal.FalseBlockedClient == 0)
	for _, c := range rep.Classes {
		switch c.Class {
		case "single statement":
			add("leaked PII median, single statement", fmtNum(c.LeakPIIMedian), "<= 10", c.LeakPIIMedian <= 10)
		case "packed":
			add("leaked PII median, packed", fmtNum(c.LeakPIIMedian), "0", c.LeakPIIMedian == 0)
		case "multi-statement/session":
			add("leaked PII median, multi-statement/session", fmtNum(c.LeakPIIMedian), "<= 100", c.LeakPIIMedian <= 100)
		}
	}
	if rep.Meta.Org == orgB {
		// One statement's channel: no more than the statement limit of
		// organisation B's policy (250 PII values) delivered.
		for _, t := range rep.Types {
			if t.Class == "single statement" || t.Class == "channel, one statement" {
				add("leaked PII max, "+t.Type, fmtNum(t.LeakPIIMax), "<= 250", t.LeakPIIMax <= 250)
			}
		}
	}
	for _, er := range rep.Episodes {
		if er.Type == atkSlow && er.Factor == 1 {
			v := "not detected"
			if er.Detected {
				v = fmt.Sprintf("%d working days", er.DaysToAlert)
			}
			add("slow-and-low 1x ("+er.Employee+") time to alert", v, "<= 3 working days", er.Detected && er.DaysToAlert <= 3)
		}
	}
	return ts
}

func fmtNum(f float64) string {
	if math.IsNaN(f) {
		return "-"
	}
	if f == math.Trunc(f) {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%.1f", f)
}

func (rep *report) print(out io.Writer) {
	m := rep.Meta
	org := "A"
	if m.Org == orgB {
		org = "B"
	}
	fmt.Fprintf(out, "\npgwarden simulation, organisation %s: %d employees, %d days from %s (holidays: day %v), %d customers, seed %d\n",
		org, m.Employees, m.Days, m.Start, plusOne(m.Holidays), m.Customers, m.Seed)
	fmt.Fprintf(out, "policy: %s\n", m.Policy)
	fmt.Fprintf(out, "ran %d statements (%d normal, %d attack) on %d connections, %d clock moves, %s -> %s, in %.0fs; %d unexpected errors\n",
		rep.Run.Statements, rep.Run.NormalStatements, rep.Run.AttackStatements, rep.Run.Connections, rep.Run.ClockPosts,
		rep.Run.VirtualStart, rep.Run.VirtualEnd, rep.Run.ElapsedSeconds, rep.Run.Errors)
	fmt.Fprintf(out, "decisions: %d (%s)\n\n", rep.Normal.DecisionsTotal, fmtCounts(rep.Normal.DecisionsByAction))

	if len(rep.Types) > 0 {
		fmt.Fprintf(out, "%-18s %-24s %4s %5s %7s %7s %17s %17s %5s  %s\n", "attack", "class", "eps", "det", "recall", "blocked", "leaked PII med/max", "leaked rows med/p95", "days", "first alerts")
		for _, t := range rep.Types {
			days := "-"
			if t.Detected > 0 {
				days = fmtNum(t.DaysMedian)
			}
			fmt.Fprintf(out, "%-18s %-24s %4d %5d %7.2f %7d %17s %17s %5s  %s\n", t.Type, t.Class, t.Episodes, t.Detected, t.Recall, t.Blocked,
				fmtNum(t.LeakPIIMedian)+" / "+fmtNum(t.LeakPIIMax), fmtNum(t.LeakRowMedian)+" / "+fmtNum(t.LeakRowP95), days, t.FirstAlerts)
		}
		fmt.Fprintf(out, "(days: median working days from the episode's start to its first alert, 1 being the same day)\n")
		fmt.Fprintf(out, "%-18s %-24s %4s %5s %7.2f\n\n", "overall", "", "", "", rep.Recall)
		fmt.Fprintf(out, "leaked before the first block, by class:\n")
		for _, c := range rep.Classes {
			fmt.Fprintf(out, "  %-26s %3d episodes  PII median %s p95 %s  rows median %s p95 %s\n", c.Class, c.Episodes,
				fmtNum(c.LeakPIIMedian), fmtNum(c.LeakPIIP95), fmtNum(c.LeakRowMedian), fmtNum(c.LeakRowP95))
		}
		fmt.Fprintln(out)
		var slow []episodeResult
		for _, er := range rep.Episodes {
			if er.Type == atkSlow {
				slow = append(slow, er)
			}
		}
		if len(slow) > 0 {
			fmt.Fprintf(out, "slow-and-low (from day %d):\n", slow[0].StartDay+1)
			for _, er := range slow {
				v := "not detected"
				if er.Detected {
					v = fmt.Sprintf("first alert after %d working days (%s, %s)", er.DaysToAlert, er.FirstAlert.Format("Mon 01-02 15:04"), er.FirstAlertRule)
				}
				fmt.Fprintf(out, "  %.2gx %-10s %s; leaked %d PII before any block\n", er.Factor, er.Employee, v, er.LeakedPII)
			}
			fmt.Fprintln(out)
		}
		var missed []string
		for _, er := range rep.Episodes {
			if !er.Detected && er.Type != atkSlow {
				missed = append(missed, fmt.Sprintf("#%d %s %s %s", er.ID, er.Type, er.Employee, er.Start.Format("01-02 15:04")))
			}
		}
		if len(missed) > 0 {
			fmt.Fprintf(out, "missed episodes: %s\n\n", strings.Join(missed, "; "))
		}
	}
	n := rep.Normal
	fmt.Fprintf(out, "normal traffic: %d employee-days; %d false alerts (%.4f per employee-day) on %d employee-days; %d false blocks in the decision log\n",
		n.EmployeeDays, n.FalseAlerts, n.FalseAlertsPerDay, n.FalseAlertDays, n.FalseBlocks)
	fmt.Fprintf(out, "  client side: %d normal statements blocked (%d outside attack windows), %d connections refused\n",
		n.NormalBlockedClient, n.FalseBlockedClient, rep.Run.NormalRefused)
	if n.AftermathCredited > 0 {
		fmt.Fprintf(out, "  %d alerts after an episode counted its reads (a window or drift still holding the attack): credited to the episode, not counted false\n", n.AftermathCredited)
	}
	if n.FalseAftermath > 0 {
		fmt.Fprintf(out, "  of the false alerts, %d came within 24 hours after an episode of the same employee\n", n.FalseAftermath)
	}
	if n.UnattributedAlerts > 0 {
		fmt.Fprintf(out, "  of the false alerts, %d are organisation-level (no employee named)\n", n.UnattributedAlerts)
	}
	if len(n.FalseByRule) > 0 {
		fmt.Fprintf(out, "  false alerts by rule: %s\n", fmtCounts(n.FalseByRule))
	}
	if len(n.ByRole) > 0 {
		fmt.Fprintf(out, "\n  %-10s %9s %12s %14s %12s %14s  %s\n", "role", "emp-days", "false alerts", "per emp-day", "false blocks", "stopped (cli)", "commonest causes")
		for _, rr := range n.ByRole {
			fmt.Fprintf(out, "  %-10s %9d %12d %14.4f %12d %14d  %s\n", rr.Role, rr.EmployeeDays, rr.FalseAlerts, rr.FalseAlertsPerDay, rr.FalseBlocks, rr.BlockedClient, rr.TopRules)
		}
		fmt.Fprintf(out, "  backup and batch jobs stopped: %d\n\n", n.JobsBlocked)
	}
	for _, d := range n.FalseBlockExamples {
		fmt.Fprintf(out, "  false block: %s %s %s %s: %s\n", d.Time.Format("01-02 15:04"), d.Employee, d.Action, d.Rule, d.Reason)
	}
	fmt.Fprintf(out, "\n%-52s %-24s %-18s %s\n", "target", "value", "target", "")
	for _, t := range rep.Targets {
		ok := "MISSED"
		if t.Met {
			ok = "ok"
		}
		fmt.Fprintf(out, "%-52s %-24s %-18s %s\n", t.Name, t.Value, t.Target, ok)
	}
	fmt.Fprintf(out, "\nreproduce: %s\n", m.Command)
}

func plusOne(xs []int) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = x + 1
	}
	return out
}

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
