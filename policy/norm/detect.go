package norm

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

var windowPhrases = [numWindows]string{"10 minutes", "an hour", "one day"}

func (m *Model) label(f int) string {
	switch f {
	case fPIIValues:
		return "PII values"
	case fPIIRows:
		return "rows with PII"
	case fSubjects:
		return "distinct data subjects"
	case fBytes:
		return "bytes"
	case fStatements:
		return "statements"
	case fFailed:
		return "failed statements"
	case fPIIStatements:
		return "statements with PII"
	case fUnexplained:
		return "lookups no recorded reason explains"
	case fCopy:
		return "COPY statements"
	}
	return m.catNames[f-numFixed] + " values"
}

// num formats v for people: 12,400 or 2.5.
func num(v float64) string {
	if v != math.Trunc(v) && math.Abs(v) < 100 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// basis says whose norm a figure came from.
func (m *Model) basis(e *employee, ns *normSet, peer bool) string {
	switch {
	case ns == nil && e.peer == "":
		return fmt.Sprintf("%s has no history yet and no peer group; the default", e.name)
	case ns == nil:
		return fmt.Sprintf("%s has no history yet and peer group %q has no norm; the default", e.name, e.peer)
	case peer:
		return fmt.Sprintf("%s has too little history of their own; for peer group %q the usual", e.name, e.peer)
	}
	return fmt.Sprintf("over %d active days the usual", len(e.days))
}

// volume reports the features the observation raised above their threshold
// in an open bucket: per kind ("volume", "failed_statements") the one with
// the highest score, so that one statement makes one alert; the others are
// remembered as reported.
func (m *Model) volume(e *employee, o *Observation, ns *normSet, peer, learning bool, out []Anomaly) []Anomaly {
	type cand struct {
		w, f     int
		obs, hi  float64
		score    float64
		reported bool
	}
	var best [2]cand
	for w := range numWindows {
		bucket := e.day
		switch w {
		case w10m:
			bucket = e.b10
		case w1h:
			bucket = e.b1h
		}
		for f, dv := range e.delta {
			if dv <= 0 || f == fCopy || f == fPIIStatements {
				continue
			}
			obs := float64(e.cur[w][f])
			hi := ns.high(w, f)
			if obs < hi {
				continue
			}
			score := obs / hi
			k, kcode := 0, kVolume
			if f == fFailed {
				k, kcode = 1, kFailed
			}
			key := repKey{Kind: kcode, Feature: int32(family(f)), Window: uint8(w), Bucket: bucket}
			if ns == nil {
				// Without any norm, one alert per kind and day is enough.
				key = repKey{Kind: kcode, Feature: -1, Window: w1d, Bucket: e.day}
			}
			if last, ok := e.reported[key]; ok && (ns == nil || score < 2*last) {
				continue
			}
			e.reported[key] = score
			if !best[k].reported || score > best[k].score {
				best[k] = cand{w, f, obs, hi, score, true}
			}
		}
	}
	if best[0].reported && family(best[0].f) == fPIIValues && ns != nil {
		m.markWindows(e, ns)
	}
	for k, c := range best {
		if !c.reported {
			continue
		}
		kind := "volume"
		if k == 1 {
			kind = "failed_statements"
		}
		var expl string
		if ns == nil {
			expl = fmt.Sprintf("%s received %s %s in %s; %s threshold is %s",
				e.name, num(c.obs), m.label(c.f), windowPhrases[c.w], m.basis(e, ns, peer), num(c.hi))
		} else {
			what := "maximum for " + windowPhrases[c.w]
			if c.w == w1d {
				what = "daily total"
			}
			expl = fmt.Sprintf("%s received %s %s in %s; %s %s is %s (alert threshold %s)",
				e.name, num(c.obs), m.label(c.f), windowPhrases[c.w], m.basis(e, ns, peer), what, num(ns.median(c.w, c.f)), num(c.hi))
		}
		out = append(out, Anomaly{
			Employee: e.name, Kind: kind, Feature: m.featureName(c.f), Window: windowNames[c.w],
			Observed: c.obs, Norm: c.hi, Score: c.score, Learning: learning, PeerNorm: peer,
			Defaulted: ns == nil, Explanation: expl, At: o.Time,
		})
	}
	return out
}

// family is the feature under which a volume anomaly is remembered as
// reported: the PII features (values, per category, rows, subjects) rise
// together and are one family, told once per bucket (again only when the
// score doubles); the operational features are their own.
func family(f int) int {
	switch f {
	case fBytes, fStatements, fFailed, fCopy, fPIIStatements:
		return f
	}
	return fPIIValues
}

// markWindows remembers, once a PII anomaly has been reported, each open
// bucket's current PII score as reported: the longer windows hold the
// excess just told, and report it again only when their score doubles
// (so that the rest of a day's ordinary work, on top of an alerted burst,
// does not alert the daily total hours later).
func (m *Model) markWindows(e *employee, ns *normSet) {
	for w := range numWindows {
		bucket := e.day
		switch w {
		case w10m:
			bucket = e.b10
		case w1h:
			bucket = e.b1h
		}
		var score float64
		for f := range e.cur[w] {
			if family(f) == fPIIValues {
				score = max(score, float64(e.cur[w][f])/ns.high(w, f))
			}
		}
		key := repKey{Kind: kVolume, Feature: fPIIValues, Window: uint8(w), Bucket: bucket}
		if last, ok := e.reported[key]; !ok || score > last {
			e.reported[key] = score
		}
	}
}

// offHours reports PII read in an hour of the day (or on a weekend) in which
// the employee is (almost) never active.
func (m *Model) offHours(e *employee, o *Observation, ns *normSet, peer, learning bool, hour int64, out []Anomaly) []Anomaly {
	obs := float64(e.cur[w1h][fPIIValues])
	if ns == nil || ns.Provisional || e.delta[fPIIValues] <= 0 || obs < offHoursFloor || hour < 0 || hour >= 24 {
		return out
	}
	wk := weekend(e.day)
	if ns.Usual&(1<<hour) != 0 && (!wk || !ns.WeekendKnown || ns.WeekendOK) {
		return out
	}
	score := 1 + math.Log10(obs/offHoursFloor)
	key := repKey{Kind: kOffHours, Feature: fPIIValues, Window: w1h, Bucket: e.b1h}
	if last, ok := e.reported[key]; ok && score < 2*last {
		return out
	}
	e.reported[key] = score
	m.markWindows(e, ns)
	when := "at that hour"
	if ns.Usual&(1<<hour) != 0 {
		when = "on weekends"
	}
	whose := e.name + " is"
	if peer {
		whose = fmt.Sprintf("peer group %q is", e.peer)
	}
	day := "a weekday"
	if wk {
		day = "a weekend day"
	}
	out = append(out, Anomaly{
		Employee: e.name, Kind: "off_hours", Feature: "pii_values", Window: "1h", Subject: e.peer,
		Observed: obs, Norm: offHoursFloor, Score: score, Learning: learning, PeerNorm: peer,
		Explanation: fmt.Sprintf("%s received %s PII values between %02d:00 and %02d:00 on %s; %s (almost) never active %s",
			e.name, num(obs), hour, (hour+1)%24, day, whose, when),
		At: o.Time,
	})
	return out
}

// novelty records the tables, client address and application of the
// observation and, after the learning period, reports the first-ever ones
// (tables and applications only when no one in the peer group uses them)
// and a first COPY TO STDOUT carrying PII. A first-ever one met without
// PII (a catalog view in an incident, a driver's first statements from a
// new address) is neither learned nor reported then: the first statement
// that brings PII through it is the novelty. What is known is kept known
// with or without PII.
func (m *Model) novelty(e *employee, o *Observation, learning bool, out []Anomaly) []Anomaly {
	pii := e.delta[fPIIValues] > 0
	see := func(set map[string]int64, kind, feature, name, what string, peers func(*employee) map[string]int64) {
		if _, ok := set[name]; !ok && !learning {
			if !pii {
				return
			}
			if peers == nil || !m.peerUses(e, name, peers) {
				out = append(out, Anomaly{
					Employee: e.name, Kind: kind, Feature: feature, Window: fmt.Sprintf("%dd", m.cfg.HistoryDays),
					Observed: 1, Norm: 0, Score: noveltyScore, At: o.Time, Subject: name,
					Explanation: fmt.Sprintf("%s used %s %q for the first time in %d days", e.name, what, name, m.cfg.HistoryDays),
				})
			}
		}
		set[name] = e.day
	}
	for _, t := range o.Tables {
		see(e.tables, "novel_table", "tables", t, "table", func(x *employee) map[string]int64 { return x.tables })
	}
	if a := o.ClientAddr; a != "" {
		see(e.clients, "novel_client", "clients", a, "client address", nil)
	}
	if a := o.Application; a != "" {
		see(e.apps, "novel_application", "applications", a, "application", func(x *employee) map[string]int64 { return x.apps })
	}
	if !learning || m.peerEstablished(e) {
		// In the learning period, a category the colleagues have not
		// read, while they have days of work behind them, is still new
		// (a first-week reader of what the team never touches).
		n := len(out)
		out = m.novelCategories(e, o, out)
		for i := n; i < len(out); i++ {
			out[i].Learning = learning
		}
	}
	if o.Copy > 0 && e.delta[fPIIValues] > 0 && !learning && e.cur[w1d][fCopy] == o.Copy && !m.copied(e) {
		key := repKey{Kind: kCopy, Feature: fCopy, Window: w1d, Bucket: e.day}
		if _, ok := e.reported[key]; !ok {
			e.reported[key] = noveltyScore
			_, peer := m.normsFor(e)
			out = append(out, Anomaly{
				Employee: e.name, Kind: "copy", Feature: "copy", Window: "1d",
				Observed: float64(e.delta[fPIIValues]), Score: noveltyScore, PeerNorm: peer, At: o.Time,
				Explanation: fmt.Sprintf("%s ran COPY TO STDOUT returning %s PII values; neither %s nor peer group %q has used COPY in %d days",
					e.name, num(float64(e.delta[fPIIValues])), e.name, e.peer, m.cfg.HistoryDays),
			})
		}
	}
	return out
}

// novelCategories reports the PII categories the observation raised to
// novelCategoryFloor values in the open day that the employee did not read
// on any day of the history, and that the peer group does not read
// routinely (peerRoutine): an agent whose work never
// touches social security numbers reading fifty of them. Once per
// category and day; the next day, the category is in the history.
func (m *Model) novelCategories(e *employee, o *Observation, out []Anomaly) []Anomaly {
	var cats []string
	var total int64
	first := -1
	for cat, v := range o.PIIValues {
		f := numFixed + m.cats[cat]
		today := e.cur[w1d][f]
		if v <= 0 || today < novelCategoryFloor || today-v >= novelCategoryFloor {
			// Judged once a day, as the day's values cross the floor.
			continue
		}
		key := repKey{Kind: kNovelCategory, Feature: int32(f), Window: w1d, Bucket: e.day}
		if _, ok := e.reported[key]; ok {
			continue
		}
		if readDays(e, f) > 0 || m.peerRoutine(e, f) {
			continue
		}
		e.reported[key] = noveltyScore
		cats = append(cats, cat)
		total += today
		if first < 0 || f < first {
			first = f
		}
	}
	if len(cats) == 0 {
		return out
	}
	// One anomaly for the categories one statement made novel: a SELECT *
	// of a table is one event, not one per column.
	slices.Sort(cats)
	_, peer := m.normsFor(e)
	whose := e.name + " has not read"
	if e.peer != "" {
		whose = fmt.Sprintf("neither %s nor peer group %q has read", e.name, e.peer)
	}
	what := fmt.Sprintf("%s values today, a PII category", cats[0])
	if len(cats) > 1 {
		what = fmt.Sprintf("values of %s today, PII categories", strings.Join(cats, ", "))
	}
	return append(out, Anomaly{
		Employee: e.name, Kind: "novel_category", Feature: m.featureName(first), Window: fmt.Sprintf("%dd", m.cfg.HistoryDays),
		Observed: float64(total), Score: noveltyScore, PeerNorm: peer, At: o.Time, Subject: strings.Join(cats, ","),
		Explanation: fmt.Sprintf("%s received %s %s %s in %d days", e.name, num(float64(total)), what, whose, m.cfg.HistoryDays),
	})
}

// readDays counts the active days of e's history on which it read
// feature f.
func readDays(e *employee, f int) int {
	n := 0
	for i := range e.days {
		if e.days[i].get(w1d, f) > 0 {
			n++
		}
	}
	return n
}

// peerRoutine reports whether reading feature f is part of the work of
// e's peer group: another member read it on peerRoutineDays days (today
// included), leaving out the days it was a novelty of theirs.
func (m *Model) peerRoutine(e *employee, f int) bool {
	if e.peer == "" {
		return false
	}
	for _, name := range m.names {
		x := m.emps[name]
		if x == e || x.peer != e.peer {
			continue
		}
		n := 0
		for i := range x.days {
			if d := &x.days[i]; d.get(w1d, f) > 0 && !d.novel(f) {
				n++
			}
		}
		if f < len(x.cur[w1d]) && x.cur[w1d][f] > 0 {
			if _, novel := x.reported[repKey{Kind: kNovelCategory, Feature: int32(f), Window: w1d, Bucket: x.day}]; !novel {
				n++
			}
		}
		if n >= peerRoutineDays {
			return true
		}
	}
	return false
}

// peerEstablished reports whether e's peer group has history enough to
// say what its work reads while e is learning: peerEstablishedMembers
// other members with peerRoutineDays active days or more.
func (m *Model) peerEstablished(e *employee) bool {
	if e.peer == "" {
		return false
	}
	n := 0
	for _, name := range m.names {
		if x := m.emps[name]; x != e && x.peer == e.peer && len(x.days) >= peerRoutineDays {
			if n++; n >= peerEstablishedMembers {
				return true
			}
		}
	}
	return false
}

// peerUses reports whether another member of e's peer group has name in
// the set that set returns.
func (m *Model) peerUses(e *employee, name string, set func(*employee) map[string]int64) bool {
	if e.peer == "" {
		return false
	}
	for _, n := range m.names {
		x := m.emps[n]
		if x != e && x.peer == e.peer {
			if _, ok := set(x)[name]; ok {
				return true
			}
		}
	}
	return false
}

// copied reports whether e or its peer group has used COPY in the history.
func (m *Model) copied(e *employee) bool {
	for i := range e.days {
		if e.days[i].get(w1d, fCopy) > 0 {
			return true
		}
	}
	ns := m.peerNorms(e.peer)
	return ns != nil && ns.Copy
}

// drift compares, for the day just closed, the totals of the last N active
// days with N times the usual daily total, which comes from the days before
// them and is rise-capped. The anomaly with the highest score, if any, goes
// to m.pending, for Advance.
func (m *Model) drift(e *employee) {
	at := m.dayEnd(e.day)
	learning := at.Before(e.firstSeen.Add(timeDays(m.cfg.LearningDays)))
	if k := len(e.days); k == 0 || e.days[k-1].Flagged {
		return // the day's excess was reported as it happened
	}
	// Days whose excess was already reported are left out, of the N days
	// and of the days before them.
	var dbuf [64]dayRec
	var ibuf [64]int
	days, idx := dbuf[:0], ibuf[:0] // the days left in, and where they are in e.days
	for i := range e.days {
		if !e.days[i].Flagged {
			days = append(days, e.days[i])
			idx = append(idx, i)
		}
	}
	n := len(days)
	var buf [64]float64
	var best Anomaly
	var bestDays int
	for j, nd := range driftDays {
		if n < nd {
			continue
		}
		win, hist := days[n-nd:], days[:n-nd]
		if slices.ContainsFunc(win, func(d dayRec) bool { return d.Told }) {
			continue
		}
		for _, f := range driftFeatures {
			var sum float64
			for i := range win {
				sum += float64(win[i].get(w1d, f))
			}
			var base, sigma, h float64
			rel, peer := driftRel[j], false
			switch {
			case e.established() && len(hist) >= m.cfg.MinActiveDays:
				v := buf[:0]
				for i := range hist {
					v = append(v, float64(hist[i].get(w1d, f)))
				}
				usual, sig := usualDay(v)
				capped, _ := e.own.dayMed(f)
				base, sigma, h = min(usual, capped), sig, float64(len(hist))
			case e.established():
				base, sigma = e.own.dayMed(f)
				h = float64(n)
			default:
				pn := m.peerNorms(e.peer)
				if pn == nil {
					continue
				}
				base, sigma = pn.dayMed(f)
				rel, peer, h = driftPeerRel, true, 1e9
			}
			// The N-day sum varies with the days (N*sigma^2) and with the
			// error of a usual figure learned from h days (N^2*1.2*sigma^2/h).
			fn := float64(nd)
			sigma = max(sigma, driftMinSigma*base)
			sd := sigma * math.Sqrt(fn+fn*fn*1.2/h)
			margin := max(driftK*sd, rel*fn*base, driftFloor[f][j])
			excess := sum - fn*base
			if excess < margin || excess/margin <= best.Score {
				continue
			}
			whose := "the usual for " + e.name
			if peer {
				whose = fmt.Sprintf("the usual for peer group %q", e.peer)
			}
			bestDays = nd
			best = Anomaly{
				Employee: e.name, Kind: "drift", Feature: m.featureName(f), Window: fmt.Sprintf("%dd", nd),
				Observed: sum, Norm: fn * base, Score: excess / margin, Learning: learning, PeerNorm: peer,
				Explanation: fmt.Sprintf("%s received %s %s over the last %d active days; %s is %s a day (%s for %d days), and more than %s is beyond normal variation",
					e.name, num(sum), m.label(f), nd, whose, num(base), num(fn*base), nd, num(fn*base+margin)),
				At: at,
			}
		}
	}
	if best.Score > 0 {
		m.pending = append(m.pending, best)
		// The excess of those days has been told: the days after do
		// not report it again.
		for _, i := range idx[len(idx)-bestDays:] {
			e.days[i].Told = true
		}
	}
}
