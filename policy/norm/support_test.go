package norm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// A second synthetic workload, shaped like the support desk of test/sim:
// agents whose daily number of lookups is their own base (20 to 80) times
// a day factor in [0.7, 1.3]; a lookup returns one customer (3 PII values),
// now and then (3%) a list of 5 to 20 customers (2 PII values each), so
// that daily totals are skewed and subjects vary more than values. Some
// agents have one noisy attack day (a burst that is alerted and partly
// blocked) whose excess must not be reported again for days as drift.

type deskAgent struct {
	name   string
	base   int
	attack int // day of a burst; -1: none
	slow   float64
}

func deskLookup(a deskAgent, at time.Time, rng *rand.Rand) Observation {
	o := Observation{Employee: a.name, Peer: "support", Time: at, ClientAddr: "10.1.0.1", Application: "support-console",
		Features: Features{Statements: 1, Tables: []string{"public.customers"}}}
	if rng.IntN(100) < 3 {
		n := int64(5 + rng.IntN(16))
		o.PIIValues = map[string]int64{"name": n, "email": n}
		o.PIIRows, o.Subjects, o.Rows, o.Bytes = n, n, n, 90*n
	} else {
		o.PIIValues = map[string]int64{"name": 1, "email": 1, "phone": 1}
		o.PIIRows, o.Subjects, o.Rows, o.Bytes = 1, 1, 1, 120
	}
	return o
}

func deskMinute(rng *rand.Rand, d int) time.Time {
	m := rng.IntN(210 + 240)
	if m < 210 {
		m += 9 * 60
	} else {
		m += 13*60 + 30 - 210
	}
	return dayStart(d).Add(time.Duration(m) * time.Minute)
}

// deskDay returns agent a's statements on day d; slowFrom is the first
// day of a slow-and-low attack.
func deskDay(a deskAgent, d, slowFrom int, rng *rand.Rand) []Observation {
	if isWeekend(d) || d == holiday {
		return nil
	}
	var out []Observation
	n := int(math.Round(float64(a.base) * (0.7 + 0.6*rng.Float64())))
	for range n {
		out = append(out, deskLookup(a, deskMinute(rng, d), rng))
	}
	if a.slow > 0 && d >= slowFrom {
		for range int(math.Round(a.slow * float64(a.base))) {
			o := deskLookup(a, deskMinute(rng, d), rng)
			o.PIIValues = map[string]int64{"name": 1, "email": 1, "phone": 1}
			o.PIIRows, o.Subjects, o.Rows = 1, 1, 1
			out = append(out, o)
		}
	}
	if d == a.attack {
		// A burst from psql: 8 pages of 50 customers in two minutes (the
		// rest blocked).
		at := dayStart(d).Add(time.Duration(11*60+rng.IntN(300)) * time.Minute)
		for p := range 8 {
			o := Observation{Employee: a.name, Peer: "support", Time: at.Add(time.Duration(p) * 15 * time.Second),
				ClientAddr: "10.1.0.1", Application: "psql",
				Features: Features{PIIValues: map[string]int64{"name": 50, "email": 50}, PIIRows: 50, Subjects: 50, Rows: 50,
					Bytes: 4000, Statements: 1, Tables: []string{"public.customers"}}}
			out = append(out, o)
		}
	}
	return out
}

type deskResult struct {
	empDays   int
	falseAnom []Anomaly
	slowDays  map[float64][]int // factor -> working days to the first drift, 0: never
}

// runDesk simulates nAgents support agents for days days; the first three
// are slow-and-low attackers from day 7 (0.5x, 1x, 2x), and a few others
// have a burst day.
func runDesk(t testing.TB, seed uint64, nAgents, days int) deskResult {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 77))
	m, err := New(Config{LearningDays: 5, MinActiveDays: 4})
	if err != nil {
		t.Fatal(err)
	}
	const slowFrom = 7
	var as []deskAgent
	for i := range nAgents {
		a := deskAgent{name: fmt.Sprintf("agent%02d", i), base: 20 + rng.IntN(61), attack: -1}
		switch {
		case i < 3:
			a.slow = []float64{0.5, 1, 2}[i]
		case i < 3+nAgents/4:
			a.attack = 8 + rng.IntN(days-8)
			for isWeekend(a.attack) || a.attack == holiday {
				a.attack = 8 + rng.IntN(days-8)
			}
		}
		as = append(as, a)
	}
	res := deskResult{slowDays: map[float64][]int{}}
	firstDrift := map[string]int{}
	for d := range days {
		var obs []Observation
		for _, a := range as {
			obs = append(obs, deskDay(a, d, slowFrom, rng)...)
			if !isWeekend(d) && d != holiday {
				res.empDays++
			}
		}
		slices.SortStableFunc(obs, func(a, b Observation) int { return a.Time.Compare(b.Time) })
		var got []Anomaly
		i := 0
		for tick := dayStart(d).Add(10 * time.Minute); !tick.After(dayStart(d + 1)); tick = tick.Add(10 * time.Minute) {
			for ; i < len(obs) && obs[i].Time.Before(tick); i++ {
				got = append(got, m.Observe(obs[i])...)
			}
			got = append(got, m.Advance(tick)...)
		}
		for _, x := range got {
			var a deskAgent
			for _, y := range as {
				if y.name == x.Employee {
					a = y
				}
			}
			day := int(x.At.Sub(day0).Hours()/24 - 1e-9)
			switch {
			case a.slow > 0 && day >= slowFrom:
				if _, ok := firstDrift[a.name]; !ok {
					firstDrift[a.name] = day
				}
			case a.attack == day && x.At.Sub(dayStart(day)) < 24*time.Hour && x.Kind != "drift":
				// the burst itself, alerted
			default:
				res.falseAnom = append(res.falseAnom, x)
			}
		}
	}
	for _, a := range as[:3] {
		n := 0
		if last, ok := firstDrift[a.name]; ok {
			// Reported during the next working day: that day counts too.
			next := last + 1
			for isWeekend(next) || next == holiday {
				next++
			}
			for d := slowFrom; d <= next; d++ {
				if !isWeekend(d) && d != holiday {
					n++
				}
			}
		}
		res.slowDays[a.slow] = append(res.slowDays[a.slow], n)
	}
	return res
}

// TestSupportDesk: normal support work, with its quiet and busy days and
// its lists, gives few false anomalies, bursts already alerted are not
// reported again as drift on the following days, and slow-and-low attacks
// are found as drift.
func TestSupportDesk(t *testing.T) {
	var empDays int
	var falseAnom []Anomaly
	slow := map[float64][]int{}
	for seed := uint64(1); seed <= 6; seed++ {
		r := runDesk(t, seed, 40, 30)
		empDays += r.empDays
		falseAnom = append(falseAnom, r.falseAnom...)
		for f, d := range r.slowDays {
			slow[f] = append(slow[f], d...)
		}
	}
	kinds := map[string]int{}
	for _, a := range falseAnom {
		kinds[a.Kind+" "+a.Feature+" "+a.Window]++
		if testing.Verbose() && !strings.HasPrefix(a.Kind, "novel") {
			t.Logf("%s %s %s %s %s score %.2f: %s", a.At.Format(time.DateTime), a.Employee, a.Kind, a.Feature, a.Window, a.Score, a.Explanation)
		}
	}
	rate := float64(len(falseAnom)) / float64(empDays)
	t.Logf("%d false anomalies %v over %d employee-days: %.4f per employee-day", len(falseAnom), kinds, empDays, rate)
	t.Logf("slow-and-low working days to drift (0: never): 0.5x %v, 1x %v, 2x %v", slow[0.5], slow[1], slow[2])
	if rate > 0.01 {
		t.Errorf("false anomaly rate %.4f per employee-day, want <= 0.01", rate)
	}
	for _, f := range []float64{1, 2} {
		for i, d := range slow[f] {
			if d == 0 || d > 3 {
				t.Errorf("%.0fx, seed %d: drift after %d working days, want 1..3", f, i+1, d)
			}
		}
	}
}
