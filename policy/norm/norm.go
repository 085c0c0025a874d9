package norm

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Features is what one statement contributed (or, summed, a bucket).
type Features struct {
	PIIValues   map[string]int64 // per category name ("email", "phone", "name", "custom:x", ...)
	PIIRows     int64
	Subjects    int64 // distinct data subjects the statement touched (estimate)
	Rows, Bytes int64
	Statements  int64    // 1 for a statement
	Failed      int64    // 1 if the statement failed (enumeration signal)
	Copy        int64    // 1 if it was COPY TO STDOUT
	Tables      []string // "schema.table" touched
	// UnexplainedStatements is 1 for a statement that returned rows of
	// the explained_access table the employee had no recorded reason to
	// see (summed, the statements of a bucket that did).
	UnexplainedStatements int64
}

// Observation is one statement of one employee.
type Observation struct {
	Employee    string
	Peer        string    // peer group (policy group or PostgreSQL role); "" = none
	Time        time.Time // when it ended
	ClientAddr  string    // IP only
	Application string
	SessionID   string
	Features
}

// Config tunes a Model. The zero value of every field means its default.
type Config struct {
	// Location is the zone in which buckets, days and hours of the day are
	// aligned; default UTC.
	Location *time.Location
	// LearningDays is the number of days after an employee's first
	// observation during which anomalies carry Learning=true (alert only)
	// and novelty is learned, not reported; default 7.
	LearningDays int
	// MinActiveDays is the number of active days of history before an
	// employee's own norm is used; before that, the peer group's; default 5.
	MinActiveDays int
	// HistoryDays is the number of days of history kept; default 30.
	HistoryDays int
	// MaxDailyRise is the fraction by which a learned norm may rise per
	// active day, so that an attacker's slow ramp is not learned; default 0.25.
	MaxDailyRise float64
}

func (c *Config) fill() error {
	if c.Location == nil {
		c.Location = time.UTC
	}
	if c.LearningDays < 0 || c.MinActiveDays < 0 || c.HistoryDays < 0 || c.MaxDailyRise < 0 {
		return errors.New("norm: negative Config value")
	}
	if c.LearningDays == 0 {
		c.LearningDays = 7
	}
	if c.MinActiveDays == 0 {
		c.MinActiveDays = 5
	}
	if c.HistoryDays == 0 {
		c.HistoryDays = 30
	}
	if c.MaxDailyRise == 0 {
		c.MaxDailyRise = 0.25
	}
	if c.HistoryDays < c.MinActiveDays+7 {
		return fmt.Errorf("norm: HistoryDays %d must be at least MinActiveDays+7 (%d)", c.HistoryDays, c.MinActiveDays+7)
	}
	return nil
}

// Anomaly is one observed figure outside an employee's norm.
type Anomaly struct {
	Employee    string
	Kind        string  // "volume", "drift", "novel_table", "novel_client", "novel_application", "novel_category", "off_hours", "failed_statements", "copy"
	Feature     string  // "pii_values", "pii_values.email", "pii_rows", "subjects", "bytes", "statements", "failed", "tables", ...
	Window      string  // "10m", "1h", "1d", "3d", "7d"
	Observed    float64 // the figure observed in Window
	Norm        float64 // the figure compared with, after the rise cap (for drift: N days of the daily norm)
	Score       float64 // >= 1 means alert-worthy; 1 at the threshold, grows with the excess
	Learning    bool    // in the learning period: alert only
	PeerNorm    bool    // scored against the peer group's norm
	Explanation string  // plain language with the numbers
	At          time.Time
	// Defaulted is set on a volume anomaly judged against the default
	// threshold: neither the employee nor their peer group has a norm yet.
	Defaulted bool `json:",omitempty"`
	// Subject is what a novelty is new: the table, client address,
	// application or PII category; for off_hours, the employee's peer
	// group (a team whose shift moved is one change).
	Subject string `json:",omitempty"`
}

// EmployeeNorm describes what the model has learned about an employee.
type EmployeeNorm struct {
	Employee   string    `json:"employee"`
	FirstSeen  time.Time `json:"first_seen"`
	ActiveDays int       `json:"active_days"` // active days in history (under the current peer group)
	Learning   bool      `json:"learning"`
	Peer       string    `json:"peer,omitempty"`
	// PeerNorm is true when the employee is scored against the peer group
	// (Features are then the peer group's).
	PeerNorm bool `json:"peer_norm"`
	// Features is keyed by "feature/window", such as "pii_values/10m".
	Features     map[string]FeatureNorm `json:"features"`
	Tables       []string               `json:"tables"`
	Clients      []string               `json:"clients"`
	Applications []string               `json:"applications"`
}

// FeatureNorm is the learned norm of one feature in one window.
type FeatureNorm struct {
	Window string `json:"window"`
	// Median is the median, over active days, of the day's largest bucket
	// (10m, 1h) or of the day's total (1d).
	Median float64 `json:"median"`
	// High is the threshold: a bucket above it is a volume anomaly.
	High float64 `json:"high"`
}

// Model learns per-employee norms and reports anomalies. It is safe for
// concurrent use (one mutex).
type Model struct {
	cfg  Config
	utc  bool
	mu   sync.Mutex
	cats map[string]int // category name -> index among the category features
	// catNames lists categories by index.
	catNames []string
	emps     map[string]*employee
	names    []string // sorted employee names
	peers    map[string]*peerCache
	pending  []Anomaly // drift found when days closed, returned by Advance
}

type peerCache struct {
	dirty bool
	ns    *normSet // nil: no established member
}

// New returns an empty model.
func New(cfg Config) (*Model, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	m := &Model{cfg: cfg, utc: cfg.Location == time.UTC}
	m.reset()
	return m, nil
}

func (m *Model) reset() {
	m.cats = map[string]int{}
	m.catNames = nil
	m.emps = map[string]*employee{}
	m.names = nil
	m.peers = map[string]*peerCache{}
	m.pending = nil
}

// Window indexes.
const (
	w10m = iota
	w1h
	w1d
	numWindows
)

var windowNames = [numWindows]string{"10m", "1h", "1d"}

// Fixed features; category features follow, at numFixed+category index.
const (
	fPIIValues = iota
	fPIIRows
	fSubjects
	fBytes
	fStatements
	fFailed
	fCopy
	// fPIIStatements counts the statements that returned PII: the
	// lookups, whose number varies less from day to day than what each
	// returns (drift only).
	fPIIStatements
	// fUnexplained counts the statements that returned rows of the
	// explained_access table the employee had no recorded reason to see:
	// a slow reader's lookups, which their work does not explain. A list
	// of many customers is one statement, so the odd search does not
	// swamp it (drift only).
	fUnexplained
	numFixed
)

var fixedNames = [numFixed]string{"pii_values", "pii_rows", "subjects", "bytes", "statements", "failed", "copy", "pii_statements", "unexplained_statements"}

func (m *Model) numFeatures() int { return numFixed + len(m.catNames) }

func (m *Model) featureName(f int) string {
	if f < numFixed {
		return fixedNames[f]
	}
	return "pii_values." + m.catNames[f-numFixed]
}

func (m *Model) catIndex(cat string) int {
	if i, ok := m.cats[cat]; ok {
		return i
	}
	i := len(m.catNames)
	m.cats[cat] = i
	m.catNames = append(m.catNames, cat)
	return i
}

// local returns t as seconds on the wall clock of cfg.Location.
func (m *Model) local(t time.Time) int64 {
	s := t.Unix()
	if m.utc {
		return s
	}
	_, off := t.In(m.cfg.Location).Zone()
	return s + int64(off)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// dayEnd returns the instant the local day number day ends.
func (m *Model) dayEnd(day int64) time.Time {
	y, mo, d := time.Unix(day*86400, 0).UTC().Date()
	return time.Date(y, mo, d+1, 0, 0, 0, 0, m.cfg.Location)
}

func weekend(day int64) bool {
	wd := (day%7 + 7 + 4) % 7 // 1970-01-01 was a Thursday; 0 = Sunday
	return wd == 0 || wd == 6
}

// employee is the state of one employee.
type employee struct {
	name      string
	peer      string
	firstSeen time.Time
	peerSince int64 // local day on which the current peer group began
	day       int64 // open day
	b10, b1h  int64 // open 10-minute and hour buckets
	cur       [numWindows][]int64
	dayMax    [2][]int64 // largest closed 10m and 1h bucket of the open day
	hours     uint32     // hours of the open day with a statement
	delta     []int64    // scratch: the current observation's features
	days      []dayRec   // closed active days, oldest first
	tables    map[string]int64
	clients   map[string]int64
	apps      map[string]int64
	own       *normSet // nil until MinActiveDays active days
	reported  map[repKey]float64
}

// dayRec is one closed active day.
type dayRec struct {
	Day    int64   `json:"day"`
	Hours  uint32  `json:"hours"`
	Total  []int64 `json:"total"`
	Max10m []int64 `json:"max_10m"`
	Max1h  []int64 `json:"max_1h"`
	// Flagged: a volume or off-hours anomaly of PII was reported on the
	// day. Its excess has been told; drift leaves the day out.
	Flagged bool `json:"flagged,omitempty"`
	// Novel are the category features reported as novel_category on the
	// day: what an employee read out of the ordinary does not make the
	// category part of their peers' work.
	Novel []int `json:"novel,omitempty"`
	// Told: the day was in the days of a drift anomaly reported since;
	// a drift over days that include it would tell the same excess again.
	Told bool `json:"told,omitempty"`
}

// novel reports whether feature f was reported novel on the day.
func (d *dayRec) novel(f int) bool { return slices.Contains(d.Novel, f) }

func (d *dayRec) get(w, f int) int64 {
	var v []int64
	switch w {
	case w10m:
		v = d.Max10m
	case w1h:
		v = d.Max1h
	default:
		v = d.Total
	}
	if f < len(v) {
		return v[f]
	}
	return 0
}

type repKey struct {
	Kind    uint8
	Feature int32
	Window  uint8
	Bucket  int64
}

// Kind codes for repKey.
const (
	kVolume uint8 = iota
	kFailed
	kOffHours
	kCopy
	kNovelCategory
)

func (m *Model) employee(o *Observation, ls int64) *employee {
	if e, ok := m.emps[o.Employee]; ok {
		return e
	}
	day := floorDiv(ls, 86400)
	e := &employee{
		name: o.Employee, peer: o.Peer, firstSeen: o.Time, peerSince: day,
		day: day, b10: floorDiv(ls, 600), b1h: floorDiv(ls, 3600),
		tables: map[string]int64{}, clients: map[string]int64{}, apps: map[string]int64{},
		reported: map[repKey]float64{},
	}
	m.emps[e.name] = e
	i, _ := slices.BinarySearch(m.names, e.name)
	m.names = slices.Insert(m.names, i, e.name)
	if e.peer != "" {
		m.markPeer(e.peer)
	}
	return e
}

// grow makes e's vectors as long as the model's feature list.
func (m *Model) grow(e *employee) {
	n := m.numFeatures()
	if len(e.delta) == n {
		return
	}
	for w := range e.cur {
		e.cur[w] = growTo(e.cur[w], n)
	}
	for w := range e.dayMax {
		e.dayMax[w] = growTo(e.dayMax[w], n)
	}
	e.delta = growTo(e.delta, n)
}

func growTo(v []int64, n int) []int64 {
	if len(v) >= n {
		return v
	}
	return append(v, make([]int64, n-len(v))...)
}

// roll closes the buckets of e that ended before local second ls.
func (m *Model) roll(e *employee, ls int64) {
	m.grow(e)
	if b := floorDiv(ls, 600); b > e.b10 {
		foldMax(e.dayMax[0], e.cur[w10m])
		e.b10 = b
	}
	if b := floorDiv(ls, 3600); b > e.b1h {
		foldMax(e.dayMax[1], e.cur[w1h])
		e.b1h = b
	}
	if day := floorDiv(ls, 86400); day > e.day {
		m.closeDay(e)
		clear(e.cur[w1d])
		clear(e.dayMax[0])
		clear(e.dayMax[1])
		e.hours = 0
		e.day = day
		clear(e.reported)
	}
}

func foldMax(dst, src []int64) {
	for i, v := range src {
		dst[i] = max(dst[i], v)
		src[i] = 0
	}
}

// closeDay records the open day of e (whose 10m and 1h buckets are already
// folded) if it was active, checks drift, and relearns e's norm.
func (m *Model) closeDay(e *employee) {
	if e.cur[w1d][fStatements] == 0 {
		return
	}
	rec := dayRec{
		Day: e.day, Hours: e.hours,
		Total:   slices.Clone(e.cur[w1d]),
		Max10m:  slices.Clone(e.dayMax[0]),
		Max1h:   slices.Clone(e.dayMax[1]),
		Flagged: e.flaggedToday(),
		Novel:   e.novelToday(),
	}
	e.days = append(e.days, rec)
	oldest := e.day - int64(m.cfg.HistoryDays) + 1
	k := 0
	for k < len(e.days) && e.days[k].Day < oldest {
		k++
	}
	if k > 0 {
		e.days = slices.Delete(e.days, 0, k)
	}
	for _, set := range []map[string]int64{e.tables, e.clients, e.apps} {
		for name, last := range set {
			if last < oldest {
				delete(set, name)
			}
		}
	}
	m.drift(e)
	m.relearn(e)
	if e.peer != "" {
		m.markPeer(e.peer)
	}
}

// flaggedToday reports whether a volume anomaly of a PII feature or an
// off-hours anomaly was reported in the open day.
func (e *employee) flaggedToday() bool {
	for k := range e.reported {
		if k.Kind == kOffHours || k.Kind == kVolume && k.Feature == fPIIValues {
			return true
		}
	}
	return false
}

// novelToday lists the category features reported novel in the open day.
func (e *employee) novelToday() []int {
	var out []int
	for k := range e.reported {
		if k.Kind == kNovelCategory {
			out = append(out, int(k.Feature))
		}
	}
	slices.Sort(out)
	return out
}

func (m *Model) markPeer(peer string) {
	if pc, ok := m.peers[peer]; ok {
		pc.dirty = true
	}
}

// established reports whether e has MinActiveDays active days under its
// current peer group, so that its own norm is used.
func (e *employee) established() bool { return e.own != nil && !e.own.Provisional }

// normsFor returns the norm e is scored against: its own once established,
// else the peer group's, else its provisional own norm, else nil.
func (m *Model) normsFor(e *employee) (ns *normSet, peer bool) {
	if e.established() {
		return e.own, false
	}
	if ns := m.peerNorms(e.peer); ns != nil {
		return ns, true
	}
	return e.own, false
}

// Observe adds a statement to the employee's open buckets and returns the
// anomalies they now show. See the package documentation.
func (m *Model) Observe(o Observation) []Anomaly {
	if o.Employee == "" {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ls := m.local(o.Time)
	e := m.employee(&o, ls)
	var fresh []string
	for cat := range o.PIIValues {
		if _, ok := m.cats[cat]; !ok {
			fresh = append(fresh, cat)
		}
	}
	// New categories are numbered in name order, not in the map's random
	// order, so that the same calls give the same snapshot.
	slices.Sort(fresh)
	for _, cat := range fresh {
		m.catIndex(cat)
	}
	m.roll(e, ls)
	if o.Peer != "" && o.Peer != e.peer {
		m.changePeer(e, o.Peer)
	}

	d := e.delta
	clear(d)
	d[fPIIRows] = o.PIIRows
	d[fSubjects] = o.Subjects
	d[fBytes] = o.Bytes
	d[fStatements] = o.Statements
	d[fFailed] = o.Failed
	d[fCopy] = o.Copy
	d[fUnexplained] = o.UnexplainedStatements
	for cat, v := range o.PIIValues {
		d[fPIIValues] += v
		d[numFixed+m.cats[cat]] += v
	}
	if d[fPIIValues] > 0 {
		d[fPIIStatements] = o.Statements
	}
	for w := range e.cur {
		c := e.cur[w]
		for f, v := range d {
			c[f] += v
		}
	}
	hour := floorDiv(ls, 3600) - e.day*24
	if e.b1h > floorDiv(ls, 3600) { // out of order: counted in the open hour
		hour = e.b1h - e.day*24
	}
	if hour >= 0 && hour < 24 {
		e.hours |= 1 << hour
	}

	learning := o.Time.Before(e.firstSeen.Add(timeDays(m.cfg.LearningDays)))
	var out []Anomaly
	out = m.novelty(e, &o, learning, out)
	ns, peer := m.normsFor(e)
	out = m.volume(e, &o, ns, peer, learning, out)
	out = m.offHours(e, &o, ns, peer, learning, hour, out)
	return out
}

func timeDays(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

// changePeer moves e to a new peer group: its history under the old one no
// longer describes its work, so it is dropped and the new group's norm is
// used until MinActiveDays active days accumulate.
func (m *Model) changePeer(e *employee, peer string) {
	if e.peer != "" {
		m.markPeer(e.peer)
	}
	m.markPeer(peer)
	e.peer = peer
	e.peerSince = e.day
	e.days = nil
	e.own = nil
}

// Advance closes every bucket that ended before now, for all employees, and
// returns the anomalies found when days closed (drift), sorted.
func (m *Model) Advance(now time.Time) []Anomaly {
	m.mu.Lock()
	defer m.mu.Unlock()
	ls := m.local(now)
	for _, name := range m.names {
		m.roll(m.emps[name], ls)
	}
	out := m.pending
	m.pending = nil
	slices.SortStableFunc(out, func(a, b Anomaly) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		if a.Employee != b.Employee {
			if a.Employee < b.Employee {
				return -1
			}
			return 1
		}
		return 0
	})
	return out
}

// Norm describes what the model has learned about an employee.
func (m *Model) Norm(employee string, now time.Time) EmployeeNorm {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.emps[employee]
	if !ok {
		return EmployeeNorm{Employee: employee}
	}
	en := EmployeeNorm{
		Employee: employee, FirstSeen: e.firstSeen, ActiveDays: len(e.days), Peer: e.peer,
		Learning: now.Before(e.firstSeen.Add(timeDays(m.cfg.LearningDays))),
		Tables:   sortedKeys(e.tables), Clients: sortedKeys(e.clients), Applications: sortedKeys(e.apps),
		Features: map[string]FeatureNorm{},
	}
	ns, peer := m.normsFor(e)
	en.PeerNorm = peer
	for w := range numWindows {
		for f := range m.numFeatures() {
			if f == fCopy {
				continue
			}
			en.Features[m.featureName(f)+"/"+windowNames[w]] = FeatureNorm{
				Window: windowNames[w], Median: ns.median(w, f), High: ns.high(w, f),
			}
		}
	}
	return en
}

func sortedKeys(s map[string]int64) []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Employees lists, sorted, the employees the model has observed.
func (m *Model) Employees() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.emps))
	for name := range m.emps {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
