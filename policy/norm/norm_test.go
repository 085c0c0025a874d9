package norm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNormalWorkHasFewFalseAnomalies(t *testing.T) {
	var anomalies, learning, empDays int
	kinds := map[string]int{}
	for seed := uint64(1); seed <= 4; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		m := newModel(t)
		ws := population(20, rng)
		got := run(t, m, ws, 0, 30, rng, nil)
		for _, w := range ws {
			for d := range 30 {
				if len(workday(w, d, rand.New(rand.NewPCG(9, 9)))) > 0 {
					empDays++
				}
			}
		}
		for _, a := range got {
			anomalies++
			kinds[a.Kind]++
			if a.Learning {
				learning++
			}
			t.Logf("seed %d: %s %s %s %s %s score %.2f learning=%v peer=%v: %s", seed, a.At.Format(time.DateTime), a.Employee, a.Kind, a.Feature, a.Window, a.Score, a.Learning, a.PeerNorm, a.Explanation)
		}
	}
	rate := float64(anomalies) / float64(empDays)
	t.Logf("%d anomalies (%d in learning) %v over %d active employee-days: %.4f per employee-day", anomalies, learning, kinds, empDays, rate)
	if rate > 0.01 {
		t.Errorf("false anomaly rate %.4f per employee-day, want <= 0.01", rate)
	}
}

// established returns a model that has learned 14 days of a population.
func established(t testing.TB, seed uint64) (*Model, []worker, *rand.Rand) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 2))
	m := newModel(t)
	ws := population(6, rng)
	run(t, m, ws, 0, 14, rng, nil)
	return m, ws, rng
}

func find(as []Anomaly, employee, kind string) []Anomaly {
	var out []Anomaly
	for _, a := range as {
		if a.Employee == employee && (kind == "" || a.Kind == kind) {
			out = append(out, a)
		}
	}
	return out
}

func TestBulkDumpIsScoredWithNumbers(t *testing.T) {
	m, ws, _ := established(t, 3)
	agent := ws[0]
	at := dayStart(14).Add(10*time.Hour + 5*time.Minute) // a Monday morning
	got := m.Observe(lookup(agent, at, 2000))            // 6,000 values: about 100x the 10-minute norm
	vol := find(got, agent.name, "volume")
	if len(vol) == 0 {
		t.Fatalf("no volume anomaly for a bulk dump: %+v", got)
	}
	var a Anomaly
	for _, x := range vol {
		if x.Feature == "pii_values" && x.Window == "10m" {
			a = x
		}
	}
	if a.Score < 1 || a.Learning || a.PeerNorm || a.Observed != 6000 {
		t.Errorf("anomaly %+v", a)
	}
	if !strings.Contains(a.Explanation, "6,000 PII values in 10 minutes") || !strings.Contains(a.Explanation, num(a.Norm)) {
		t.Errorf("explanation %q lacks the numbers", a.Explanation)
	}
	t.Logf("%s (score %.1f)", a.Explanation, a.Score)
	// Within the same bucket, the anomaly is not repeated unless the score doubles.
	if again := find(m.Observe(lookup(agent, at.Add(time.Second), 1)), agent.name, "volume"); len(again) != 0 {
		t.Errorf("repeated: %+v", again)
	}
	if again := find(m.Observe(lookup(agent, at.Add(2*time.Second), 3000)), agent.name, "volume"); len(again) == 0 {
		t.Errorf("a doubled score was not reported again")
	}
}

func TestPagingManyStatementsInMinutes(t *testing.T) {
	m, ws, _ := established(t, 4)
	agent := ws[1]
	at := dayStart(14).Add(11 * time.Hour)
	var got []Anomaly
	for i := range 40 { // LIMIT 50 OFFSET 50*i, a statement every 5 seconds
		got = append(got, m.Observe(lookup(agent, at.Add(time.Duration(i)*5*time.Second), 50))...)
	}
	if len(find(got, agent.name, "volume")) == 0 {
		t.Fatalf("paging not caught: %+v", got)
	}
}

func TestSeasonality(t *testing.T) {
	m, ws, _ := established(t, 5)
	var agent, batch worker
	for _, w := range ws {
		switch w.role {
		case "support":
			agent = w
		case "batch":
			batch = w
		}
	}
	at := dayStart(14).Add(2*time.Hour + time.Minute)
	var batchGot []Anomaly
	for _, o := range workday(batch, 14, rand.New(rand.NewPCG(1, 2))) {
		batchGot = append(batchGot, m.Observe(o)...)
	}
	if len(batchGot) != 0 {
		t.Errorf("the nightly batch raised %+v", batchGot)
	}
	var got []Anomaly
	for i := range 10 {
		got = append(got, m.Observe(lookup(agent, at.Add(time.Duration(i)*time.Minute), 1))...)
	}
	off := find(got, agent.name, "off_hours")
	if len(off) != 1 || off[0].Score < 1 || off[0].Subject != agent.role {
		t.Fatalf("agent at 02:00: %+v", got)
	}
	t.Log(off[0].Explanation)
	// Weekend work is unusual for an agent too.
	sat := dayStart(19).Add(11 * time.Hour)
	got = nil
	for i := range 10 {
		got = append(got, m.Observe(lookup(agent, sat.Add(time.Duration(i)*time.Minute), 1))...)
	}
	if len(find(got, agent.name, "off_hours")) != 1 {
		t.Errorf("agent on Saturday: %+v", got)
	}
}

func TestNewHireUsesPeerNormFromDayOne(t *testing.T) {
	m, ws, rng := established(t, 6)
	hire := worker{name: "newbie", role: "support", addr: "10.0.1.1", app: "crm", scale: 1, start: 9}
	// Normal work on the first days raises nothing.
	got := run(t, m, append(ws, hire), 14, 17, rng, nil)
	if a := find(got, hire.name, ""); len(a) != 0 {
		t.Errorf("new hire's normal work: %+v", a)
	}
	n := m.Norm(hire.name, dayStart(17))
	if !n.PeerNorm || !n.Learning || n.Peer != "support" {
		t.Errorf("norm %+v", n)
	}
	got = m.Observe(lookup(hire, dayStart(17).Add(10*time.Hour), 500))
	vol := find(got, hire.name, "volume")
	if len(vol) == 0 || !vol[0].PeerNorm || !vol[0].Learning || vol[0].Defaulted {
		t.Fatalf("new hire bulk: %+v", got)
	}
	t.Log(vol[0].Explanation)
	// A group of one established member (dba1) has no group norm: a new
	// DBA is judged by their own days, not by one colleague's habit.
	dba := worker{name: "newdba", role: "dba", addr: "10.0.1.3", app: "psql", scale: 1, start: 8}
	run(t, m, []worker{dba}, 14, 17, rng, nil)
	if n := m.Norm(dba.name, dayStart(17)); n.PeerNorm || !n.Learning {
		t.Errorf("a new DBA beside one established DBA: %+v", n)
	}
	// An account with no peer group and no history is judged against the
	// default threshold, and says so.
	loner := worker{name: "loner", addr: "10.0.1.2", app: "batch", scale: 1}
	got = m.Observe(lookup(loner, dayStart(17).Add(10*time.Hour), 500))
	if vol := find(got, loner.name, "volume"); len(vol) == 0 || !vol[0].Defaulted || !vol[0].Learning {
		t.Errorf("an account without any norm: %+v", got)
	}
}

func TestRoleChangeSwitchesPeer(t *testing.T) {
	m, ws, rng := established(t, 7)
	var analyst worker
	for _, w := range ws {
		if w.role == "analyst" {
			analyst = w
			break
		}
	}
	if n := m.Norm(analyst.name, dayStart(14)); n.PeerNorm || n.Peer != "analyst" {
		t.Fatalf("before: %+v", n)
	}
	moved := analyst
	moved.role, moved.scale, moved.start = "support", 1, 9
	var others []worker
	for _, w := range ws {
		if w.name != analyst.name {
			others = append(others, w)
		}
	}
	got := run(t, m, append(others, moved), 14, 16, rng, nil)
	if a := find(got, moved.name, ""); len(a) != 0 {
		t.Errorf("support work after a role change: %+v", a)
	}
	if n := m.Norm(moved.name, dayStart(16)); !n.PeerNorm || n.Peer != "support" {
		t.Errorf("after the change: %+v", n)
	}
	// Bulk under the new role is scored against the new peers.
	got = m.Observe(lookup(moved, dayStart(16).Add(10*time.Hour), 400))
	if vol := find(got, moved.name, "volume"); len(vol) == 0 || !vol[0].PeerNorm {
		t.Errorf("bulk after role change: %+v", got)
	}
	run(t, m, append(others, moved), 17, 26, rng, nil)
	if n := m.Norm(moved.name, dayStart(26)); n.PeerNorm || n.ActiveDays < 5 {
		t.Errorf("after enough history under the new peer: PeerNorm %v, %d active days", n.PeerNorm, n.ActiveDays)
	}
}

// slowAndLow runs 20 days of normal work, then adds x times agent a's mean
// daily volume spread over working hours, and returns the number of working
// days of attack until the first drift anomaly (0: never, in 10 days) and
// until the first anomaly of any kind.
func slowAndLow(t *testing.T, x float64, seed uint64) (drift, anyKind int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	m := newModel(t)
	ws := population(6, rng)
	run(t, m, ws, 0, 21, rng, nil) // day 21 is a Monday after a weekend
	a := ws[0]
	daily := lookupsPerHour * a.scale * 8 * 1.4 // customers a day, search listings included
	attackDays := 0
	for d := 21; d < 35; d++ {
		var extra func(int) []Observation
		if !isWeekend(d) {
			attackDays++
			extra = func(d int) []Observation {
				n := int(x*daily + 0.5)
				var out []Observation
				for i := range n {
					out = append(out, lookup(a, dayStart(d).Add(9*time.Hour+time.Duration(i)*8*time.Hour/time.Duration(n)), 1))
				}
				return out
			}
		}
		got := find(run(t, m, ws, d, d+1, rng, extra), a.name, "")
		for _, an := range got {
			if anyKind == 0 {
				anyKind = attackDays
				t.Logf("%.1fx: first anomaly on attack day %d: %s %s %s: %s", x, attackDays, an.Kind, an.Feature, an.Window, an.Explanation)
			}
			if an.Kind == "drift" && drift == 0 {
				drift = attackDays
				t.Logf("%.1fx: first drift on attack day %d: %s", x, attackDays, an.Explanation)
			}
		}
		if drift != 0 {
			return drift, anyKind
		}
	}
	return drift, anyKind
}

func TestSlowAndLow(t *testing.T) {
	for _, tt := range []struct {
		x       float64
		maxDays int
	}{{2, 2}, {1, 3}, {0.5, 0}} { // 0.5x: reported, not required
		t.Run(fmt.Sprintf("%.1fx", tt.x), func(t *testing.T) {
			for seed := uint64(1); seed <= 3; seed++ {
				d, first := slowAndLow(t, tt.x, seed)
				t.Logf("seed %d: drift on attack day %d, first anomaly on attack day %d", seed, d, first)
				if tt.maxDays > 0 && (d == 0 || d > tt.maxDays) {
					t.Errorf("seed %d: drift on working day %d, want 1..%d", seed, d, tt.maxDays)
				}
			}
		})
	}
}

// TestSlowReaderOverTwoWeeks: half the employee's own daily volume more,
// every working day from the second week on, right after the only normal
// week there is: within a week it is inside the days' variation, over two
// it is not, and the 14-day drift tells it.
func TestSlowReaderOverTwoWeeks(t *testing.T) {
	found := 0
	for seed := uint64(1); seed <= 8; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		m := newModel(t)
		ws := population(6, rng)
		run(t, m, ws, 0, 7, rng, nil)
		a := ws[0]
		daily := lookupsPerHour * a.scale * 8 * 1.4
		attackDays, at := 0, 0
		var window string
		for d := 7; d < 35 && at == 0; d++ {
			var extra func(int) []Observation
			if !isWeekend(d) {
				attackDays++
				extra = func(d int) []Observation {
					n := int(0.5*daily + 0.5)
					var out []Observation
					for i := range n {
						out = append(out, lookup(a, dayStart(d).Add(9*time.Hour+time.Duration(i)*8*time.Hour/time.Duration(n)), 1))
					}
					return out
				}
			}
			for _, an := range find(run(t, m, ws, d, d+1, rng, extra), a.name, "drift") {
				at, window = attackDays, an.Window
				t.Logf("seed %d: drift on attack day %d: %s", seed, at, an.Explanation)
			}
		}
		if at > 0 {
			found++
			if window != "14d" && at > 7 {
				t.Errorf("seed %d: found on attack day %d by the %s drift", seed, at, window)
			}
		}
	}
	// Within a week's drift, 3 of these 8 are found (by the days'
	// variation, on days 1 to 3); the 14-day drift finds 2 more.
	if found < 5 {
		t.Errorf("a slow reader at half the daily volume found on %d of 8 seeds within 20 working days, want 5 at least", found)
	}
}

func TestRampIsNotLearned(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 3))
	m := newModel(t)
	ws := population(6, rng)
	run(t, m, ws, 0, 10, rng, nil)
	a := ws[0]
	daily := lookupsPerHour * a.scale * 8 * 1.4
	flagged := map[int]bool{}
	for d := 10; d < 40; d++ {
		k := d - 10
		extra := func(d int) []Observation {
			if isWeekend(d) {
				return nil
			}
			n := int(daily*(pow(1.2, k)-1) + 0.5) // volume 1.2^k times the normal
			var out []Observation
			for i := range n {
				out = append(out, lookup(a, dayStart(d).Add(9*time.Hour+time.Duration(i)*8*time.Hour/time.Duration(n)), 1))
			}
			return out
		}
		if len(find(run(t, m, ws, d, d+1, rng, extra), a.name, "")) > 0 {
			flagged[k] = true
		}
	}
	var days []int
	for k := range 30 {
		if flagged[k] {
			days = append(days, k)
		}
	}
	t.Logf("ramp flagged on days %v", days)
	for k := 25; k < 30; k++ {
		if !isWeekend(k+10) && !flagged[k] {
			t.Errorf("ramp day %d (volume x%.0f) not flagged: the norm followed", k, pow(1.2, k))
		}
	}
}

func pow(b float64, k int) float64 {
	r := 1.0
	for range k {
		r *= b
	}
	return r
}

func TestNovelty(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 3))
	m := newModel(t)
	ws := population(3, rng)
	a := ws[0]
	run(t, m, ws, 0, 2, rng, nil)
	// During learning: nothing is reported, the new things are learned.
	o := lookup(a, dayStart(2).Add(10*time.Hour), 1)
	o.Tables, o.ClientAddr, o.Application = []string{"public.invoices"}, "192.168.1.1", "excel"
	if got := m.Observe(o); len(got) != 0 {
		t.Errorf("during learning: %+v", got)
	}
	run(t, m, ws, 2, 10, rng, nil)
	// Used without receiving PII (a catalog view, a driver's first
	// statement from a new address): neither reported nor learned.
	p := plain(a, dayStart(10).Add(10*time.Hour), "pg_catalog.pg_locks", 100)
	p.ClientAddr, p.Application = "203.0.113.7", "python-requests"
	if got := m.Observe(p); len(got) != 0 {
		t.Errorf("without PII: %+v", got)
	}
	o = lookup(a, dayStart(10).Add(11*time.Hour), 1)
	// orders: known (without PII); invoices: learned; pg_locks: met
	// without PII just before.
	o.Tables = []string{"public.invoices", "hr.salaries", "public.orders", "pg_catalog.pg_locks"}
	o.ClientAddr, o.Application = "203.0.113.7", "python-requests"
	got := m.Observe(o)
	want := map[string]bool{"novel_table hr.salaries": true, "novel_table pg_catalog.pg_locks": true,
		"novel_client 203.0.113.7": true, "novel_application python-requests": true}
	for _, x := range got {
		if k := x.Kind + " " + x.Subject; !want[k] || x.Score < 1 || x.Score > 1.1 || x.Learning {
			t.Errorf("unexpected %+v", x)
		}
		delete(want, x.Kind+" "+x.Subject)
		t.Log(x.Explanation)
	}
	if len(want) != 0 || len(got) != 4 {
		t.Errorf("got %+v, missing %v", got, want)
	}
	// Known now: not repeated.
	o.Time = o.Time.Add(time.Minute)
	if got := m.Observe(o); len(got) != 0 {
		t.Errorf("repeated: %+v", got)
	}
	// A table a peer uses is not novel.
	p = lookup(ws[1], dayStart(10).Add(12*time.Hour), 1)
	p.Tables = []string{"hr.salaries"}
	if got := m.Observe(p); len(got) != 0 {
		t.Errorf("table known to the peer group: %+v", got)
	}
	// A first COPY with PII.
	c := lookup(ws[2], dayStart(10).Add(13*time.Hour), 5)
	c.Copy = 1
	if got := m.Observe(c); len(find(got, ws[2].name, "copy")) != 1 {
		t.Errorf("first COPY: %+v", got)
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	rngA := rand.New(rand.NewPCG(13, 3))
	a := newModel(t)
	ws := population(4, rngA)
	run(t, a, ws, 0, 15, rngA, nil)
	// Leave a bucket open, with an anomaly already reported in it.
	a.Observe(lookup(ws[0], dayStart(15).Add(10*time.Hour), 1000))
	var buf bytes.Buffer
	if err := a.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	b := newModel(t)
	if err := b.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := b.Snapshot(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatal("snapshot of the restored model differs")
	}
	extra := func(d int) []Observation {
		if d == 20 {
			return []Observation{lookup(ws[1], dayStart(d).Add(3*time.Hour), 700)}
		}
		return nil
	}
	seed := uint64(99)
	gotA := run(t, a, ws, 15, 25, rand.New(rand.NewPCG(seed, 1)), extra)
	gotB := run(t, b, ws, 15, 25, rand.New(rand.NewPCG(seed, 1)), extra)
	if sa, sb := fmt.Sprint(norm(gotA)), fmt.Sprint(norm(gotB)); sa != sb {
		t.Errorf("after restore:\n%s\nwant\n%s", sb, sa)
	}
	if len(gotA) == 0 {
		t.Error("no anomalies to compare")
	}
	var sa, sb bytes.Buffer
	_ = a.Snapshot(&sa)
	_ = b.Snapshot(&sb)
	if !bytes.Equal(sa.Bytes(), sb.Bytes()) {
		t.Error("final snapshots differ")
	}
	if err := b.Restore(strings.NewReader(`{"version":4}`)); err == nil {
		t.Error("restored an unknown version")
	}
}

func norm(as []Anomaly) []Anomaly {
	for i := range as {
		as[i].At = as[i].At.UTC()
	}
	return as
}

func TestDeterministic(t *testing.T) {
	var outs []string
	for range 2 {
		rng := rand.New(rand.NewPCG(21, 3))
		m := newModel(t)
		ws := population(4, rng)
		got := run(t, m, ws, 0, 12, rng, func(d int) []Observation {
			return []Observation{lookup(ws[0], dayStart(d).Add(3*time.Hour), 30)}
		})
		var buf bytes.Buffer
		_ = m.Snapshot(&buf)
		outs = append(outs, fmt.Sprint(got)+buf.String())
	}
	if outs[0] != outs[1] {
		t.Error("same inputs, different outputs")
	}
}

func TestConfig(t *testing.T) {
	if _, err := New(Config{LearningDays: -1}); err == nil {
		t.Error("negative LearningDays accepted")
	}
	loc := time.FixedZone("UTC+5:30", 5*3600+1800)
	m, err := New(Config{Location: loc})
	if err != nil {
		t.Fatal(err)
	}
	// 23:50 local on one day and 00:05 local the next are different days.
	o := Observation{Employee: "x", Time: time.Date(2026, 3, 2, 23, 50, 0, 0, loc), Features: Features{Statements: 1}}
	m.Observe(o)
	o.Time = o.Time.Add(15 * time.Minute)
	m.Observe(o)
	if n := m.Norm("x", o.Time); n.ActiveDays != 1 {
		t.Errorf("%d active days, want 1", n.ActiveDays)
	}
}

// BenchmarkObserve measures the common path: an established agent's
// lookup, one a minute through weekday working hours, below every
// threshold (buckets, hours and days close along the way).
func BenchmarkObserve(b *testing.B) {
	m, ws, _ := established(b, 8)
	agent := ws[0]
	o := lookup(agent, dayStart(14), 1)
	b.ReportAllocs()
	b.ResetTimer()
	var n int
	for i := range b.N {
		day := 14 + 7*(i/2400) + (i/480)%5 // weekdays from Monday the 14th
		o.Time = dayStart(day).Add(9*time.Hour + time.Duration(i%480)*time.Minute)
		n += len(m.Observe(o))
	}
	if n > b.N/100 {
		b.Fatalf("%d anomalies in %d statements", n, b.N)
	}
}

// TestRestoreOlderVersions: snapshots taken before pii_statements (version
// 1) and unexplained_statements (version 2) existed restore with those features
// at zero, and snapshot again as the current version.
func TestRestoreOlderVersions(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 3))
	a := newModel(t)
	run(t, a, population(4, rng), 0, 12, rng, nil)
	var cur bytes.Buffer
	if err := a.Snapshot(&cur); err != nil {
		t.Fatal(err)
	}
	// older writes the snapshot as a version without the given features
	// (which the run left at zero: no explained_access, and pii_statements
	// set to zero first).
	older := func(version int, drop ...int) []byte {
		var s snapshot
		if err := json.Unmarshal(cur.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		del := func(v []int64) []int64 {
			for _, f := range drop {
				if len(v) > f {
					v = slices.Delete(v, f, f+1)
				}
			}
			return v
		}
		delF := func(v []float64) []float64 {
			for _, f := range drop {
				if len(v) > f {
					v = slices.Delete(v, f, f+1)
				}
			}
			return v
		}
		for i := range s.Employees {
			es := &s.Employees[i]
			for w := range es.Cur {
				es.Cur[w] = del(es.Cur[w])
			}
			for w := range es.DayMax {
				es.DayMax[w] = del(es.DayMax[w])
			}
			for k := range es.Days {
				d := &es.Days[k]
				d.Total, d.Max10m, d.Max1h = del(d.Total), del(d.Max10m), del(d.Max1h)
			}
			if ns := es.Own; ns != nil {
				for w := range ns.High {
					ns.High[w], ns.Median[w] = delF(ns.High[w]), delF(ns.Median[w])
				}
				ns.DayMed, ns.DaySigma = delF(ns.DayMed), delF(ns.DaySigma)
			}
			es.Reported = nil
		}
		s.Version = version
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The run has no unexplained rows; for version 1, pii_statements
	// must be zero too to come back equal.
	want := func(zeroStatements bool) string {
		b := older(snapshotVersion)
		if !zeroStatements {
			return string(b)
		}
		var s snapshot
		json.Unmarshal(b, &s)
		zero := func(v []int64) {
			if len(v) > fPIIStatements {
				v[fPIIStatements] = 0
			}
		}
		zeroF := func(v []float64) {
			if len(v) > fPIIStatements {
				v[fPIIStatements] = 0
			}
		}
		for i := range s.Employees {
			es := &s.Employees[i]
			for w := range es.Cur {
				zero(es.Cur[w])
			}
			for w := range es.DayMax {
				zero(es.DayMax[w])
			}
			for k := range es.Days {
				zero(es.Days[k].Total)
				zero(es.Days[k].Max10m)
				zero(es.Days[k].Max1h)
			}
			if ns := es.Own; ns != nil {
				for w := range ns.Median { // thresholds stay at the floor
					zeroF(ns.Median[w])
				}
				zeroF(ns.DayMed)
				zeroF(ns.DaySigma)
			}
		}
		out, _ := json.Marshal(s)
		return string(out)
	}
	for _, tt := range []struct {
		version int
		drop    []int
		zero    bool
	}{
		{2, []int{fUnexplained}, false},
		{1, []int{fUnexplained, fPIIStatements}, true},
	} {
		b := newModel(t)
		if err := b.Restore(bytes.NewReader(older(tt.version, tt.drop...))); err != nil {
			t.Fatalf("version %d: %v", tt.version, err)
		}
		var got bytes.Buffer
		if err := b.Snapshot(&got); err != nil {
			t.Fatal(err)
		}
		var s snapshot
		json.Unmarshal(got.Bytes(), &s)
		for i := range s.Employees {
			s.Employees[i].Reported = nil
		}
		gotJSON, _ := json.Marshal(s)
		if w := want(tt.zero); string(gotJSON) != w {
			i := 0
			for i < len(w) && i < len(gotJSON) && w[i] == gotJSON[i] {
				i++
			}
			t.Errorf("version %d restored differently at byte %d: got ...%s... want ...%s...", tt.version, i,
				gotJSON[max(0, i-80):min(len(gotJSON), i+80)], w[max(0, i-80):min(len(w), i+80)])
		}
	}
}

// TestUnexplainedDrift: an employee whose lookups are mostly explained
// (a ticket assigned to them names the customer) starts a slow read of
// half their daily volume, of customers no ticket explains. Drift on
// unexplained rows finds it within three working days, after one week of
// history, where the volume alone is within the days' variation; without
// the read, nothing is flagged in two months.
func TestUnexplainedDrift(t *testing.T) {
	series := func(seed uint64, attack bool) (first int, why string) {
		rng := rand.New(rand.NewPCG(seed, 11))
		m := newModel(t)
		w := worker{name: "agent", role: "support", addr: "10.0.0.9", app: "crm", scale: 1}
		attackDays := 0
		for d := range 63 {
			if isWeekend(d) {
				m.Advance(dayStart(d + 1))
				continue
			}
			n, extra := 30+rng.IntN(31), 0
			if attack && d >= 7 {
				attackDays++
				extra = 22
			}
			var got []Anomaly
			for i := range n + extra {
				o := lookup(w, dayStart(d).Add(9*time.Hour+time.Duration(i)*8*time.Hour/time.Duration(n+extra)), 1)
				if i >= n || rng.IntN(10) == 0 { // the read, and one lookup in ten of work
					o.UnexplainedStatements = 1
				}
				got = append(got, m.Observe(o)...)
			}
			got = append(got, m.Advance(dayStart(d+1))...)
			for _, an := range got {
				if an.Kind == "drift" && first == 0 {
					first, why = max(attackDays, 1), an.Feature+": "+an.Explanation
				}
			}
			if attack && (first > 0 || attackDays == 15) {
				break
			}
		}
		return first, why
	}
	for seed := uint64(1); seed <= 6; seed++ {
		if d, why := series(seed, false); d != 0 {
			t.Errorf("seed %d: no read, yet drift on day %d: %s", seed, d, why)
		}
		d, why := series(seed, true)
		if d == 0 || d > 3 || !strings.HasPrefix(why, "unexplained_statements") {
			t.Errorf("seed %d: the read found on attack day %d (%s); want by unexplained rows within 3", seed, d, why)
			continue
		}
		t.Logf("seed %d: attack day %d: %s", seed, d, why)
	}
}

// TestNovelCategory: a PII category that neither the employee nor the
// peer group reads, read in quantity, is reported once, naming the
// category; one the peer group reads routinely, or a single value, is not.
func TestNovelCategory(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	m := newModel(t)
	ws := population(3, rng)
	agent, other, analyst1, analyst2 := ws[0], ws[1], ws[3], ws[4]
	ssn := func(w worker, at time.Time, n int64) Observation {
		o := lookup(w, at, n)
		o.PIIValues = map[string]int64{"national_id": n, "name": n}
		return o
	}
	// analyst1 reads a few SSNs on most days: routine for analysts.
	all := run(t, m, ws, 0, 12, rng, func(d int) []Observation {
		if isWeekend(d) || d%3 == 0 {
			return nil
		}
		return []Observation{ssn(analyst1, dayStart(d).Add(11*time.Hour), 4)}
	})
	if got := findKind(all, "novel_category"); len(got) != 0 {
		t.Fatalf("normal work: %+v", got)
	}
	at := dayStart(14).Add(10 * time.Hour) // a Monday, after learning
	got := m.Observe(ssn(agent, at, 50))
	nc := find(got, agent.name, "novel_category")
	if len(nc) != 1 || nc[0].Feature != "pii_values.national_id" || nc[0].Observed != 50 || nc[0].Score < 1 ||
		!strings.Contains(nc[0].Explanation, "national_id") || !strings.Contains(nc[0].Explanation, `peer group "support"`) {
		t.Fatalf("50 SSNs read by a support agent: %+v", got)
	}
	t.Log(nc[0].Explanation)
	if got := m.Observe(ssn(agent, at.Add(time.Minute), 50)); len(find(got, agent.name, "novel_category")) != 0 {
		t.Errorf("reported again the same day: %+v", got)
	}
	// One SSN (verifying a caller) is no anomaly.
	if got := m.Observe(ssn(other, at, 1)); len(find(got, other.name, "novel_category")) != 0 {
		t.Errorf("a single value: %+v", got)
	}
	// The peer group reads SSNs routinely: analyst2 reading 50 is not novel.
	if got := m.Observe(ssn(analyst2, at, 50)); len(find(got, analyst2.name, "novel_category")) != 0 {
		t.Errorf("a category the peer group reads: %+v", got)
	}
	// Colleagues' novelties do not make it routine: after agent's day of
	// SSNs and a third agent's the next, SSNs are still not the support
	// group's work.
	third := ws[2]
	if got := m.Observe(ssn(third, at.Add(24*time.Hour), 50)); len(find(got, third.name, "novel_category")) != 1 {
		t.Errorf("a second agent the next day: %+v", got)
	}
	// A statement making several categories novel is one anomaly.
	wide := ssn(agent, at.Add(48*time.Hour+time.Hour), 20)
	wide.PIIValues["iban"], wide.PIIValues["address"] = 20, 20
	nc = find(m.Observe(wide), agent.name, "novel_category")
	if len(nc) != 1 || nc[0].Subject != "address,iban" || !strings.Contains(nc[0].Explanation, "address, iban") {
		t.Errorf("two new categories in one statement: %+v", nc)
	}
	m.Observe(lookup(agent, at.Add(48*time.Hour), 1)) // closes agent's day
	if e := m.emps[other.name]; m.peerRoutine(e, numFixed+m.cats["national_id"]) {
		t.Errorf("two colleagues' novelties made SSNs routine for %s", other.name)
	}
}

func findKind(as []Anomaly, kind string) []Anomaly {
	var out []Anomaly
	for _, a := range as {
		if a.Kind == kind {
			out = append(out, a)
		}
	}
	return out
}

// TestDriftTellsAnExcessOnce: a slow read found as drift is not reported
// again the next days for the same days' excess; a later excess is.
func TestDriftTellsAnExcessOnce(t *testing.T) {
	m, ws, rng := established(t, 9)
	agent := ws[0]
	all := run(t, m, ws, 14, 28, rng, func(d int) []Observation {
		if isWeekend(d) {
			return nil
		}
		var out []Observation
		for k := range 40 {
			out = append(out, lookup(agent, dayStart(d).Add(10*time.Hour+time.Duration(k)*7*time.Minute), 1))
		}
		return out
	})
	drifts := find(all, agent.name, "drift")
	for _, a := range drifts {
		t.Logf("%s %s %s: %s", a.At.Format(time.DateOnly), a.Feature, a.Window, a.Explanation)
	}
	if len(drifts) == 0 {
		t.Fatal("a doubled daily volume over two weeks was not found as drift")
	}
	// Ten working days: windows of two days or more that never share a
	// day make five reports at most.
	if len(drifts) > 5 {
		t.Errorf("%d drift reports in ten working days: the same days' excess was told again", len(drifts))
	}
}

// TestNovelCategoryWhileLearning: in the learning period a new member of a
// team whose members have days of work behind them, reading a category
// none of them reads, is told (alert only); with too few colleagues of
// history to judge by, it is not.
func TestNovelCategoryWhileLearning(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	m := newModel(t)
	ws := population(4, rng)
	newcomer := worker{name: "agentz", role: "support", addr: "10.0.0.99", app: "crm", scale: 1, start: 9}
	run(t, m, ws, 0, 3, rng, nil) // Monday to Wednesday
	o := lookup(newcomer, dayStart(3).Add(10*time.Hour), 30)
	o.PIIValues["national_id"] = 30
	nc := find(m.Observe(o), newcomer.name, "novel_category")
	if len(nc) != 1 || !nc[0].Learning || nc[0].Subject != "national_id" {
		t.Fatalf("a newcomer reading 30 SSNs no colleague reads: %+v", nc)
	}
	// The analysts are two: too few to say what their work reads.
	a := worker{name: "analyst3", role: "analyst", addr: "10.0.0.98", app: "dbeaver", scale: 1, start: 10}
	o = lookup(a, dayStart(3).Add(11*time.Hour), 30)
	o.PIIValues["national_id"] = 30
	if nc := find(m.Observe(o), a.name, "novel_category"); len(nc) != 0 {
		t.Errorf("judged against two colleagues: %+v", nc)
	}
	// Nor on the first days, before the team has history.
	m2 := newModel(t)
	run(t, m2, ws, 0, 1, rng, nil)
	o = lookup(newcomer, dayStart(1).Add(10*time.Hour), 30)
	o.PIIValues["national_id"] = 30
	if nc := find(m2.Observe(o), newcomer.name, "novel_category"); len(nc) != 0 {
		t.Errorf("judged on the second day: %+v", nc)
	}
}
