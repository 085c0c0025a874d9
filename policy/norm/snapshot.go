package norm

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"
)

// snapshotVersion is the version of the Snapshot format. Version 2 added
// the fixed feature pii_statements, version 3 unexplained_statements; Restore
// reads the older versions too (those features then start at zero).
const snapshotVersion = 3

type snapshot struct {
	Version    int            `json:"version"`
	Categories []string       `json:"categories"`
	Employees  []employeeSnap `json:"employees"`
	Pending    []Anomaly      `json:"pending,omitempty"`
}

type employeeSnap struct {
	Name      string              `json:"name"`
	Peer      string              `json:"peer,omitempty"`
	FirstSeen time.Time           `json:"first_seen"`
	PeerSince int64               `json:"peer_since"`
	Day       int64               `json:"day"`
	B10       int64               `json:"b10"`
	B1h       int64               `json:"b1h"`
	Cur       [numWindows][]int64 `json:"open"`
	DayMax    [2][]int64          `json:"open_day_max"`
	Hours     uint32              `json:"open_hours"`
	Days      []dayRec            `json:"days"`
	Tables    map[string]int64    `json:"tables"`
	Clients   map[string]int64    `json:"clients"`
	Apps      map[string]int64    `json:"applications"`
	Own       *normSet            `json:"norm,omitempty"`
	Reported  []reportedSnap      `json:"reported,omitempty"`
}

type reportedSnap struct {
	Key   repKey  `json:"key"`
	Score float64 `json:"score"`
}

// Snapshot writes all learned state as JSON (version 2), with sorted keys:
// the same state always gives the same bytes.
func (m *Model) Snapshot(w io.Writer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := snapshot{Version: snapshotVersion, Categories: m.catNames, Pending: m.pending}
	for _, name := range m.names {
		e := m.emps[name]
		es := employeeSnap{
			Name: e.name, Peer: e.peer, FirstSeen: e.firstSeen, PeerSince: e.peerSince,
			Day: e.day, B10: e.b10, B1h: e.b1h, Cur: e.cur, DayMax: e.dayMax, Hours: e.hours,
			Days: e.days, Tables: e.tables, Clients: e.clients, Apps: e.apps, Own: e.own,
		}
		for k, v := range e.reported {
			es.Reported = append(es.Reported, reportedSnap{k, v})
		}
		slices.SortFunc(es.Reported, func(a, b reportedSnap) int {
			return cmp.Or(cmp.Compare(a.Key.Bucket, b.Key.Bucket), cmp.Compare(a.Key.Kind, b.Key.Kind),
				cmp.Compare(a.Key.Feature, b.Key.Feature), cmp.Compare(a.Key.Window, b.Key.Window))
		})
		s.Employees = append(s.Employees, es)
	}
	if err := json.NewEncoder(w).Encode(&s); err != nil {
		return fmt.Errorf("norm: snapshot: %w", err)
	}
	return nil
}

// Restore replaces all learned state with a snapshot written by Snapshot.
// On error the model is unchanged.
func (m *Model) Restore(r io.Reader) error {
	var s snapshot
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		return fmt.Errorf("norm: restore: %w", err)
	}
	switch s.Version {
	case snapshotVersion:
	case 1, 2:
		if s.Version == 1 {
			s.insertFeature(fPIIStatements)
		}
		s.insertFeature(fUnexplained)
		s.Version = snapshotVersion
	default:
		return fmt.Errorf("norm: restore: snapshot version %d, want %d", s.Version, snapshotVersion)
	}
	cats := map[string]int{}
	for i, c := range s.Categories {
		if _, dup := cats[c]; dup {
			return fmt.Errorf("norm: restore: category %q twice", c)
		}
		cats[c] = i
	}
	nf := numFixed + len(s.Categories)
	emps := map[string]*employee{}
	var names []string
	for _, es := range s.Employees {
		if es.Name == "" || emps[es.Name] != nil {
			return fmt.Errorf("norm: restore: employee %q empty or twice", es.Name)
		}
		e := &employee{
			name: es.Name, peer: es.Peer, firstSeen: es.FirstSeen, peerSince: es.PeerSince,
			day: es.Day, b10: es.B10, b1h: es.B1h, cur: es.Cur, dayMax: es.DayMax, hours: es.Hours,
			days: es.Days, tables: orEmpty(es.Tables), clients: orEmpty(es.Clients), apps: orEmpty(es.Apps),
			own: es.Own, reported: map[repKey]float64{},
		}
		for _, v := range e.cur {
			if len(v) > nf {
				return fmt.Errorf("norm: restore: employee %q has more features than categories", es.Name)
			}
		}
		for _, rs := range es.Reported {
			e.reported[rs.Key] = rs.Score
		}
		emps[e.name] = e
		names = append(names, e.name)
	}
	slices.Sort(names)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reset()
	m.cats, m.catNames, m.emps, m.names, m.pending = cats, s.Categories, emps, names, s.Pending
	return nil
}

func orEmpty(s map[string]int64) map[string]int64 {
	if s == nil {
		return map[string]int64{}
	}
	return s
}

// upgrade1 turns a version 1 snapshot into version 2: a zero for
// pii_statements, inserted before the categories in every vector.
// insertFeature upgrades a snapshot taken before fixed feature f existed:
// a zero column at f everywhere, and the later features renumbered.
func (s *snapshot) insertFeature(f int) {
	ins := func(v []int64) []int64 {
		if len(v) < f {
			return v
		}
		return slices.Insert(slices.Clone(v), f, 0)
	}
	insF := func(v []float64, x float64) []float64 {
		if len(v) < f {
			return v
		}
		return slices.Insert(slices.Clone(v), f, x)
	}
	for i := range s.Employees {
		es := &s.Employees[i]
		for w := range es.Cur {
			es.Cur[w] = ins(es.Cur[w])
		}
		for w := range es.DayMax {
			es.DayMax[w] = ins(es.DayMax[w])
		}
		for k := range es.Days {
			d := &es.Days[k]
			d.Total, d.Max10m, d.Max1h = ins(d.Total), ins(d.Max10m), ins(d.Max1h)
		}
		if ns := es.Own; ns != nil {
			// A threshold starts at the feature's floor, as a norm
			// learned without it would have it.
			for w := range ns.High {
				ns.High[w], ns.Median[w] = insF(ns.High[w], floorOf(w, f)), insF(ns.Median[w], 0)
			}
			ns.DayMed, ns.DaySigma = insF(ns.DayMed, 0), insF(ns.DaySigma, 0)
		}
		for k := range es.Reported {
			if int(es.Reported[k].Key.Feature) >= f {
				es.Reported[k].Key.Feature++
			}
		}
	}
}
