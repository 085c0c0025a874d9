package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// report is everything a run measured; it is also the -json output.
type report struct {
	Meta      meta             `json:"meta"`
	Workloads []workloadResult `json:"workloads"`
	Errors    []string         `json:"errors,omitempty"`
}

// meta says what ran where.
type meta struct {
	Command        string   `json:"command"`
	Date           string   `json:"date"`
	GoVersion      string   `json:"go_version"`
	CPUs           int      `json:"cpus"`
	CPUModel       string   `json:"cpu_model,omitempty"`
	LoadStart      string   `json:"load_avg_start"`
	LoadEnd        string   `json:"load_avg_end"`
	ElapsedSeconds float64  `json:"elapsed_seconds"`
	PostgreSQL     string   `json:"postgresql"`
	Pgwarden       string   `json:"pgwarden_command,omitempty"`
	Baseline       string   `json:"baseline_command,omitempty"` // -baseline
	PgwardenRev    string   `json:"pgwarden_revision,omitempty"`
	PgBouncer      string   `json:"pgbouncer_version,omitempty"`
	PgBouncerCmd   string   `json:"pgbouncer_command,omitempty"`
	Pgbench        string   `json:"pgbench,omitempty"`
	Rounds         int      `json:"rounds"`
	Seconds        int      `json:"pgbench_seconds"`
	Targets        []string `json:"targets"`
	Workloads      []string `json:"workloads"`
	Notes          []string `json:"notes,omitempty"`
}

// workloadResult holds one workload's samples, by target, in round order.
type workloadResult struct {
	Key           string              `json:"key"`
	Title         string              `json:"title"`
	Unit          string              `json:"unit"`
	CPUUnit       string              `json:"cpu_unit"`
	LowerIsBetter bool                `json:"lower_is_better,omitempty"`
	Samples       map[string][]sample `json:"samples"`
	Summary       []summary           `json:"summary"`
}

// sample is one run of one workload against one target.
type sample struct {
	Round           int      `json:"round"`
	Position        int      `json:"position"` // 1-based place of the target in the round's order
	Value           float64  `json:"value"`
	Units           int64    `json:"units"` // transactions, rows or connections
	WallSeconds     float64  `json:"wall_seconds"`
	ProxyCPUSeconds *float64 `json:"proxy_cpu_seconds,omitempty"`
	CPUPerUnitUS    *float64 `json:"proxy_cpu_us_per_unit,omitempty"`
	Error           string   `json:"error,omitempty"`
}

// ratio is a target's value over direct's in the same round.
type ratio struct {
	Round   int      `json:"round"`
	Ratio   float64  `json:"ratio"`
	AddedMS *float64 `json:"added_ms,omitempty"` // for times: target minus direct
}

// summary is one target's line of medians for a workload.
type summary struct {
	Target        string   `json:"target"`
	Runs          int      `json:"runs"`   // successful ones
	Failed        int      `json:"failed"` // runs that ended in an error
	MedianValue   *float64 `json:"median_value,omitempty"`
	Ratios        []ratio  `json:"ratios,omitempty"`
	MedianRatio   *float64 `json:"median_ratio,omitempty"`
	MedianAddedMS *float64 `json:"median_added_ms,omitempty"`
	MedianCPUUS   *float64 `json:"median_proxy_cpu_us_per_unit,omitempty"`
}

func (r *report) hasSamples() bool {
	for _, w := range r.Workloads {
		for _, ss := range w.Samples {
			if len(ss) > 0 {
				return true
			}
		}
	}
	return false
}

// summarize fills each workload's Summary from its samples.
func (r *report) summarize() {
	for i := range r.Workloads {
		w := &r.Workloads[i]
		w.Summary = nil
		directByRound := map[int]float64{}
		for _, s := range w.Samples[targetDirect] {
			if s.Error == "" {
				directByRound[s.Round] = s.Value
			}
		}
		for _, name := range r.Meta.Targets {
			sm := summary{Target: name}
			var vals, cpus, ratios, added []float64
			for _, s := range w.Samples[name] {
				if s.Error != "" {
					sm.Failed++
					continue
				}
				sm.Runs++
				vals = append(vals, s.Value)
				if s.CPUPerUnitUS != nil {
					cpus = append(cpus, *s.CPUPerUnitUS)
				}
				d, ok := directByRound[s.Round]
				if name == targetDirect || !ok || d == 0 {
					continue
				}
				rt := ratio{Round: s.Round, Ratio: s.Value / d}
				if w.LowerIsBetter {
					a := s.Value - d
					rt.AddedMS = &a
					added = append(added, a)
				}
				sm.Ratios = append(sm.Ratios, rt)
				ratios = append(ratios, rt.Ratio)
			}
			sm.MedianValue = median(vals)
			sm.MedianCPUUS = median(cpus)
			sm.MedianRatio = median(ratios)
			sm.MedianAddedMS = median(added)
			w.Summary = append(w.Summary, sm)
		}
	}
}

// median returns the median of xs, or nil when there are none.
func median(xs []float64) *float64 {
	if len(xs) == 0 {
		return nil
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + m) / 2
	}
	return &m
}

// write prints the table on stdout and the JSON to jsonPath; with jsonPath "-",
// only the JSON, on stdout.
func (r *report) write(stdout io.Writer, jsonPath string) error {
	r.summarize()
	if jsonPath != "-" {
		r.writeTable(stdout)
	}
	if jsonPath == "" {
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if jsonPath == "-" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(jsonPath, b, 0o644)
}

func (r *report) writeTable(out io.Writer) {
	m := r.Meta
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(out, "%-12s %s\n", k+":", v)
		}
	}
	fmt.Fprintln(out)
	line("command", m.Command)
	line("date", m.Date)
	line("go", m.GoVersion)
	line("cpus", fmt.Sprintf("%d  %s", m.CPUs, m.CPUModel))
	line("load avg", fmt.Sprintf("%s at start, %s at end (1/5/15 min)", m.LoadStart, m.LoadEnd))
	line("postgresql", m.PostgreSQL)
	rev := ""
	if m.PgwardenRev != "" {
		rev = "  (" + m.PgwardenRev + ")"
	}
	line("pgwarden", m.Pgwarden+rev)
	if m.Baseline != "" {
		line("baseline", m.Baseline)
	}
	bouncer := m.PgBouncer
	if m.PgBouncerCmd != "" {
		bouncer += ": " + m.PgBouncerCmd + "  (pool_mode=session, default_pool_size=20)"
	}
	line("pgbouncer", bouncer)
	line("pgbench", m.Pgbench)
	line("rounds", fmt.Sprintf("%d, targets rotated each round; %.0fs in all", m.Rounds, m.ElapsedSeconds))
	for _, n := range m.Notes {
		line("note", n)
	}
	fmt.Fprintln(out)

	proxies := slices.DeleteFunc(slices.Clone(m.Targets), func(s string) bool { return s == targetDirect })
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	head := []string{"workload", "direct"}
	for _, p := range proxies {
		head = append(head, p+" (ratio)")
	}
	for _, p := range proxies {
		head = append(head, p+" CPU")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, w := range r.Workloads {
		cells := []string{w.Title}
		sums := map[string]summary{}
		for _, s := range w.Summary {
			sums[s.Target] = s
		}
		d := sums[targetDirect]
		if d.MedianValue != nil {
			cells = append(cells, fmtValue(w.Unit, *d.MedianValue)+" "+w.Unit)
		} else {
			cells = append(cells, noValue(d))
		}
		for _, p := range proxies {
			s := sums[p]
			switch {
			case s.MedianValue == nil:
				cells = append(cells, noValue(s))
			case s.MedianRatio == nil:
				cells = append(cells, fmtValue(w.Unit, *s.MedianValue))
			case s.MedianAddedMS != nil:
				cells = append(cells, fmt.Sprintf("%s (%.2f, %+.3f ms)", fmtValue(w.Unit, *s.MedianValue), *s.MedianRatio, *s.MedianAddedMS))
			default:
				cells = append(cells, fmt.Sprintf("%s (%.2f)", fmtValue(w.Unit, *s.MedianValue), *s.MedianRatio))
			}
		}
		for _, p := range proxies {
			if s := sums[p]; s.MedianCPUUS != nil {
				cells = append(cells, fmtCPU(*s.MedianCPUUS)+" us/"+w.CPUUnit)
			} else {
				cells = append(cells, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()

	if len(proxies) > 0 {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "paired ratios target/direct, round by round (the table shows their median):")
		tw = tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
		fmt.Fprintln(tw, "workload\t"+strings.Join(proxies, "\t"))
		for _, w := range r.Workloads {
			cells := []string{w.Title}
			for _, s := range w.Summary {
				if s.Target == targetDirect {
					continue
				}
				var rs []string
				for _, rt := range s.Ratios {
					rs = append(rs, fmt.Sprintf("%.2f", rt.Ratio))
				}
				if len(rs) == 0 {
					rs = []string{"-"}
				}
				cells = append(cells, strings.Join(rs, " "))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		tw.Flush()
	}
	for _, e := range r.Errors {
		first, _, _ := strings.Cut(e, "\n")
		fmt.Fprintln(out, "error:", first)
	}
}

// noValue is what a cell shows when no run succeeded.
func noValue(s summary) string {
	if s.Failed > 0 {
		return "error"
	}
	return "-" // not run, as after an interruption
}

func fmtValue(unit string, v float64) string {
	switch unit {
	case "MB/s":
		return fmt.Sprintf("%.1f", v)
	case "ms/conn":
		return fmt.Sprintf("%.3f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func fmtCPU(us float64) string {
	switch {
	case us >= 100:
		return fmt.Sprintf("%.0f", us)
	case us >= 10:
		return fmt.Sprintf("%.1f", us)
	case us >= 1:
		return fmt.Sprintf("%.2f", us)
	default:
		return fmt.Sprintf("%.3f", us)
	}
}
