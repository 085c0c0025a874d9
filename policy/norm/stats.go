package norm

import (
	"math"
	"slices"
)

// floors are the absolute floors of the thresholds, per fixed feature and
// window: a bucket below its floor is never a volume anomaly, whatever the
// norm. Categories use the floors of pii_values.
var floors = [numFixed][numWindows]float64{
	fPIIValues:  {50, 100, 300},
	fPIIRows:    {25, 50, 150},
	fSubjects:   {25, 50, 150},
	fBytes:      {32 << 20, 128 << 20, 1 << 30},
	fStatements: {300, 1000, 5000},
	fFailed:     {20, 50, 200},
	fCopy:       {math.MaxInt32, math.MaxInt32, math.MaxInt32}, // COPY is judged as a kind, not a volume
	// statements with PII and unexplained rows are judged by drift only
	fPIIStatements: {math.MaxInt32, math.MaxInt32, math.MaxInt32},
	fUnexplained:   {math.MaxInt32, math.MaxInt32, math.MaxInt32},
}

// defaultFactor multiplies the floors when an employee has neither a norm
// of their own nor a peer group's.
const defaultFactor = 4

// A volume threshold is max(floor, q75Factor*q75, q95Factor*q95) of the
// daily maxima; PII features are judged tighter than operational ones.
func factors(f int) (q75Factor, q95Factor float64) {
	switch f {
	case fBytes, fStatements, fFailed, fPIIStatements:
		return 4, 2
	}
	return 3, 1.5
}

func floorOf(w, f int) float64 {
	if f < numFixed {
		return floors[f][w]
	}
	return floors[fPIIValues][w]
}

// minPeerMembers is the least number of established members whose norms
// make a peer group's.
const minPeerMembers = 2

// Drift: the last N active days are compared with N times the daily norm.
var (
	driftDays = [...]int{2, 3, 7, 14}
	driftRel  = [...]float64{0.6, 0.6, 0.4, 0.4} // excess at least this fraction of the N-day norm
	// driftPeerRel replaces driftRel against a peer group's norm, whose
	// members differ more from each other than one employee from day to day.
	driftPeerRel  = 1.0
	driftFeatures = [...]int{fPIIValues, fPIIStatements, fUnexplained}
	// driftFloor is the least excess ever reported, per drift feature and N.
	driftFloor = map[int][len(driftDays)]float64{fPIIValues: {120, 150, 250, 400}, fPIIStatements: {30, 40, 70, 120}, fUnexplained: {15, 20, 30, 50}}
)

const (
	driftK = 3.5 // excess beyond k standard deviations of the N-day sum
	// driftMinSigma is the least relative deviation of daily totals assumed.
	driftMinSigma = 0.2
	// offHoursFloor is the least number of PII values in an hour that makes
	// activity at an unusual hour an anomaly.
	offHoursFloor = 20.0
	// noveltyScore is just above 1: alert, do not block.
	noveltyScore = 1.05
	// novelCategoryFloor is the least number of values of a PII category
	// in a day that makes a category the employee never read an anomaly:
	// one social security number read to verify a caller is not.
	novelCategoryFloor = 10
	// peerRoutineDays is the number of days on which one of a peer
	// group's other members must have read a category, other than as a
	// novelty of their own, for the category to be part of the group's
	// work: another insider's one day of it does not make it so.
	peerRoutineDays = 2
	// peerEstablishedMembers is how many colleagues with history a
	// category novelty in the learning period is judged against.
	peerEstablishedMembers = 3
)

// normSet is a learned norm: an employee's own, or a peer group's.
type normSet struct {
	High   [numWindows][]float64 `json:"high"`   // thresholds, per window and feature
	Median [numWindows][]float64 `json:"median"` // median daily maximum (10m, 1h) or total (1d)
	// DayMed is the rise-capped median daily total, DaySigma the robust
	// deviation (1.4826 MAD) of daily totals, per feature.
	DayMed   []float64 `json:"day_median"`
	DaySigma []float64 `json:"day_sigma"`
	Usual    uint32    `json:"usual_hours"` // hours of the day (bits) the employee is usually active in
	// WeekendKnown is set once the history spans two weeks; WeekendOK then
	// says whether the employee usually works on weekends too.
	WeekendKnown bool `json:"weekend_known"`
	WeekendOK    bool `json:"weekend_ok"`
	Copy         bool `json:"copy"` // has used COPY TO STDOUT
	// Provisional: learned from fewer than MinActiveDays days, used only
	// when there is no peer norm, and never for off-hours.
	Provisional bool `json:"provisional,omitempty"`
}

func (ns *normSet) high(w, f int) float64 {
	if ns == nil {
		return defaultFactor * floorOf(w, f)
	}
	if f < len(ns.High[w]) {
		return ns.High[w][f]
	}
	return floorOf(w, f)
}

func (ns *normSet) median(w, f int) float64 {
	if ns == nil || f >= len(ns.Median[w]) {
		return 0
	}
	return ns.Median[w][f]
}

func (ns *normSet) dayMed(f int) (med, sigma float64) {
	if ns == nil || f >= len(ns.DayMed) {
		return 0, 0
	}
	return ns.DayMed[f], ns.DaySigma[f]
}

// quantile returns the q-quantile of sorted s by linear interpolation.
func quantile(s []float64, q float64) float64 {
	if len(s) == 0 {
		return 0
	}
	pos := q * float64(len(s)-1)
	i := int(pos)
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[i] + (pos-float64(i))*(s[i+1]-s[i])
}

// usualDay returns the usual daily total of v, the larger of its median and
// its 20%-trimmed mean (daily totals are skewed: the median alone
// underestimates their sum over several days), and 1.4826 times its median
// absolute deviation; it sorts v.
func usualDay(v []float64) (usual, sigma float64) {
	slices.Sort(v)
	med := quantile(v, 0.5)
	cut := len(v) / 5
	var sum float64
	for _, x := range v[cut : len(v)-cut] {
		sum += x
	}
	usual = max(med, sum/float64(len(v)-2*cut))
	var mean, ss float64
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	sd := 0.0
	if len(v) > 1 {
		sd = math.Sqrt(ss / float64(len(v)-1))
	}
	for i := range v {
		v[i] = math.Abs(v[i] - med)
	}
	slices.Sort(v)
	return usual, max(1.4826*quantile(v, 0.5), sd)
}

// relearn recomputes e's own norm from its active days, each figure rising
// at most MaxDailyRise above the previous (non-provisional) norm.
func (m *Model) relearn(e *employee) {
	n := len(e.days)
	if n == 0 {
		e.own = nil
		return
	}
	prev := e.own
	if prev != nil && prev.Provisional {
		prev = nil
	}
	rise := 1 + m.cfg.MaxDailyRise
	nf := m.numFeatures()
	ns := &normSet{DayMed: make([]float64, nf), DaySigma: make([]float64, nf), Provisional: n < m.cfg.MinActiveDays}
	buf := make([]float64, n)
	for w := range numWindows {
		ns.High[w] = make([]float64, nf)
		ns.Median[w] = make([]float64, nf)
		for f := range nf {
			for i := range e.days {
				buf[i] = float64(e.days[i].get(w, f))
			}
			slices.Sort(buf)
			a, b := factors(f)
			fl := floorOf(w, f)
			hi := max(fl, a*quantile(buf, 0.75), b*quantile(buf, 0.95))
			if prev != nil {
				hi = max(fl, min(hi, prev.high(w, f)*rise))
			}
			ns.High[w][f] = hi
			ns.Median[w][f] = quantile(buf, 0.5)
		}
	}
	for f := range nf {
		for i := range e.days {
			buf[i] = float64(e.days[i].get(w1d, f))
		}
		med, sigma := usualDay(buf)
		if prev != nil {
			pm, _ := prev.dayMed(f)
			med = min(med, max(pm, 0.2*floorOf(w1d, f))*rise)
		}
		ns.DayMed[f], ns.DaySigma[f] = med, sigma
	}
	thr := max(2, int(math.Ceil(0.1*float64(n))))
	weekendDays := 0
	for h := range 24 {
		mask := uint32(1)<<h | uint32(1)<<((h+1)%24) | uint32(1)<<((h+23)%24)
		c := 0
		for i := range e.days {
			if e.days[i].Hours&mask != 0 {
				c++
			}
		}
		if c >= thr {
			ns.Usual |= 1 << h
		}
	}
	for i := range e.days {
		if weekend(e.days[i].Day) {
			weekendDays++
		}
		if e.days[i].get(w1d, fCopy) > 0 {
			ns.Copy = true
		}
	}
	ns.WeekendOK = weekendDays >= 2
	ns.WeekendKnown = e.days[n-1].Day-e.days[0].Day >= 11
	e.own = ns
}

// peerNorms returns the norm of a peer group, aggregated from the own norms
// of its established members (nil when it has fewer than minPeerMembers:
// one colleague's habit is not a group's norm, and a service account beside
// a nightly job would be judged by the job): the upper quartile of their
// thresholds, the median of their medians, the hours a quarter of them
// usually work in. It is cached until a member's norm changes.
func (m *Model) peerNorms(peer string) *normSet {
	if peer == "" {
		return nil
	}
	pc := m.peers[peer]
	if pc == nil {
		pc = &peerCache{dirty: true}
		m.peers[peer] = pc
	}
	if !pc.dirty {
		return pc.ns
	}
	pc.dirty = false
	var members []*normSet
	for _, name := range m.names {
		if e := m.emps[name]; e.peer == peer && e.established() {
			members = append(members, e.own)
		}
	}
	if len(members) < minPeerMembers {
		pc.ns = nil
		return nil
	}
	nf := m.numFeatures()
	ns := &normSet{DayMed: make([]float64, nf), DaySigma: make([]float64, nf)}
	buf := make([]float64, len(members))
	for w := range numWindows {
		ns.High[w] = make([]float64, nf)
		ns.Median[w] = make([]float64, nf)
		for f := range nf {
			for i, mn := range members {
				buf[i] = mn.high(w, f)
			}
			slices.Sort(buf)
			ns.High[w][f] = quantile(buf, 0.75)
			for i, mn := range members {
				buf[i] = mn.median(w, f)
			}
			slices.Sort(buf)
			ns.Median[w][f] = quantile(buf, 0.5)
		}
	}
	for f := range nf {
		for i, mn := range members {
			buf[i], _ = mn.dayMed(f)
		}
		slices.Sort(buf)
		ns.DayMed[f] = quantile(buf, 0.5)
		for i, mn := range members {
			_, buf[i] = mn.dayMed(f)
		}
		slices.Sort(buf)
		ns.DaySigma[f] = quantile(buf, 0.5)
	}
	need := max(1, int(math.Ceil(0.25*float64(len(members)))))
	for h := range 24 {
		c := 0
		for _, mn := range members {
			if mn.Usual&(1<<h) != 0 {
				c++
			}
		}
		if c >= need {
			ns.Usual |= 1 << h
		}
	}
	wk, known := 0, 0
	for _, mn := range members {
		if mn.WeekendOK {
			wk++
		}
		if mn.WeekendKnown {
			known++
		}
		ns.Copy = ns.Copy || mn.Copy
	}
	ns.WeekendOK = wk >= need
	ns.WeekendKnown = known >= need
	pc.ns = ns
	return ns
}
