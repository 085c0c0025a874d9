package norm

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// day0 is a Monday.
var day0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// holiday is a weekday on which nobody but the batch works.
const holiday = 10

func dayStart(d int) time.Time { return day0.AddDate(0, 0, d) }

func isWeekend(d int) bool {
	wd := dayStart(d).Weekday()
	return wd == time.Saturday || wd == time.Sunday
}

// worker describes one simulated employee.
type worker struct {
	name, role string
	addr, app  string
	scale      float64 // personal volume factor
	start      float64 // usual start hour
}

// lookupsPerHour is the support agents' mean number of customer lookups an
// hour at scale 1; each lookup returns 3 PII values (email, name, phone).
const lookupsPerHour = 6

func lookup(w worker, at time.Time, customers int64) Observation {
	return Observation{
		Employee: w.name, Peer: w.role, Time: at, ClientAddr: w.addr, Application: w.app, SessionID: w.name + "-s",
		Features: Features{
			PIIValues: map[string]int64{"email": customers, "name": customers, "phone": customers},
			PIIRows:   customers, Subjects: customers, Rows: customers, Bytes: 250 * customers, Statements: 1,
			Tables: []string{"public.customers"},
		},
	}
}

func plain(w worker, at time.Time, table string, bytes int64) Observation {
	return Observation{
		Employee: w.name, Peer: w.role, Time: at, ClientAddr: w.addr, Application: w.app, SessionID: w.name + "-s",
		Features: Features{Rows: 10, Bytes: bytes, Statements: 1, Tables: []string{table}},
	}
}

// workday returns w's normal statements on day d, with random variation:
// a day factor and an hour factor, each uniform in [0.6, 1.4].
func workday(w worker, d int, rng *rand.Rand) []Observation {
	var out []Observation
	base := dayStart(d)
	vary := func() float64 { return 0.6 + 0.8*rng.Float64() }
	at := func(h float64) time.Time { return base.Add(time.Duration(h * float64(time.Hour))) }
	off := isWeekend(d) || d == holiday
	switch w.role {
	case "support":
		if off {
			return nil
		}
		start := w.start + (rng.Float64()-0.5)*0.5
		df := vary()
		for h := 0; h < 8; h++ {
			n := poisson(rng, lookupsPerHour*w.scale*df*vary())
			for range n {
				t := at(start + float64(h) + rng.Float64())
				c := int64(1)
				if rng.Float64() < 0.1 {
					c = 2 + rng.Int64N(5) // a search listing a few customers
				}
				out = append(out, lookup(w, t, c))
				out = append(out, plain(w, t.Add(time.Second), "public.orders", 2000))
			}
		}
	case "analyst":
		if off {
			return nil
		}
		for h := 0; h < 8; h++ {
			for range poisson(rng, 4*vary()) {
				t := at(w.start + float64(h) + rng.Float64())
				out = append(out, plain(w, t, "public.orders", 5000+rng.Int64N(50000)))
				if rng.Float64() < 0.03 {
					o := lookup(w, t.Add(time.Second), 1+rng.Int64N(3))
					o.PIIValues = map[string]int64{"email": o.PIIRows}
					out = append(out, o)
				}
			}
		}
	case "batch":
		for i := range 50 {
			t := at(2 + float64(i)/400 + rng.Float64()/1000)
			o := lookup(w, t, 180+rng.Int64N(40))
			o.PIIValues = map[string]int64{"email": o.PIIRows, "name": o.PIIRows}
			o.Tables = []string{"billing.accounts"}
			out = append(out, o)
		}
	case "dba":
		if off {
			return nil
		}
		for h := 0; h < 8; h++ {
			for range poisson(rng, 3*vary()) {
				out = append(out, plain(w, at(w.start+float64(h)+rng.Float64()), "pg_catalog.pg_class", rng.Int64N(5<<20)))
			}
		}
		if dayStart(d).Weekday() == time.Wednesday {
			for i := range 150 {
				out = append(out, plain(w, at(22+float64(i)/200), "public.orders", 1000))
			}
		}
	}
	return out
}

func poisson(rng *rand.Rand, mean float64) int {
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// population returns nSupport agents and a few others.
func population(nSupport int, rng *rand.Rand) []worker {
	var ws []worker
	add := func(name, role, app string, start float64) {
		ws = append(ws, worker{name: name, role: role, addr: "10.0.0." + name, app: app, scale: 0.7 + 0.6*rng.Float64(), start: start})
	}
	for i := range nSupport {
		add("agent"+string(rune('a'+i)), "support", "crm", 8.5+rng.Float64())
	}
	add("analyst1", "analyst", "dbeaver", 10)
	add("analyst2", "analyst", "dbeaver", 9)
	add("billing", "batch", "billing-job", 2)
	add("dba1", "dba", "psql", 8)
	return ws
}

// run feeds the model the statements of days [from, to), in time order,
// with Advance every 10 minutes; extra adds statements per day. It returns
// the anomalies, each Observe's and Advance's.
func run(t testing.TB, m *Model, ws []worker, from, to int, rng *rand.Rand, extra func(d int) []Observation) []Anomaly {
	t.Helper()
	var all []Anomaly
	for d := from; d < to; d++ {
		var obs []Observation
		for _, w := range ws {
			obs = append(obs, workday(w, d, rng)...)
		}
		if extra != nil {
			obs = append(obs, extra(d)...)
		}
		slices.SortStableFunc(obs, func(a, b Observation) int { return a.Time.Compare(b.Time) })
		i := 0
		for tick := dayStart(d).Add(10 * time.Minute); !tick.After(dayStart(d + 1)); tick = tick.Add(10 * time.Minute) {
			for ; i < len(obs) && obs[i].Time.Before(tick); i++ {
				all = append(all, m.Observe(obs[i])...)
			}
			all = append(all, m.Advance(tick)...)
		}
	}
	return all
}

func newModel(t testing.TB) *Model {
	t.Helper()
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
