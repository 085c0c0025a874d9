package share

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/policy/window"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// consistencyBound is how far behind the others an instance's remote view
// may be with the default Interval of 500ms: an Add waits up to one Interval
// for its instance's flush, which may commit just after another instance's
// pull, so that instance sees it one Interval later, after its own flush and
// pull. The two Intervals are 1s; the other 1s covers the exchanges, which
// take a few milliseconds on an idle machine but up to half a second each
// under -race on a 2-core machine busy with other work, and the test's
// sampling step.
const consistencyBound = 2 * time.Second

// addRecord is one Add made under load: whose, how many rows, and when,
// measured from the start of the load. The time is taken before the Add, so
// the lags measured against it are never too small.
type addRecord struct {
	employee int
	rows     int64
	at       time.Duration
}

// viewSample is every instance's remote view of the tracked employees at one
// moment: seen[o][s][e] is how many of instance s's Adds for employee e
// instance o's Remote holds.
type viewSample struct {
	at   time.Duration // after the reads
	seen [][][]int64
}

// TestConsistencyBoundUnderLoad runs three instances, each adding figures
// from several goroutines at thousands of Adds a second, and measures how
// long each Add takes to appear in the other instances' remote views. Every
// instance tags its Adds with a custom category of its own, so a view tells
// which instance's Adds it holds. Once the load stops and the bound passes,
// every view must hold exactly the others' Adds.
func TestConsistencyBoundUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("puts PostgreSQL under load for several seconds")
	}
	const (
		employees   = 50
		tracked     = 10 // employees whose views are sampled: the first ones
		writers     = 8  // goroutines adding per instance
		load        = 5 * time.Second
		pause       = 2 * time.Millisecond // between one writer's Adds
		sampleEvery = 20 * time.Millisecond
	)
	instances := []string{"a", "b", "c"}
	db := pgtest.Shared(t)
	db.Exec(t, "DROP TABLE IF EXISTS pgwarden_window_deltas")
	ctx := t.Context()

	sharers := make([]*Sharer, len(instances))
	for i, name := range instances {
		pool, err := pgxpool.New(ctx, db.DSN(pgtest.SuperUser))
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		if sharers[i], err = New(ctx, Config{Pool: pool, Instance: name}); err != nil {
			t.Fatal(err)
		}
	}
	names := make([]string, employees)
	for e := range names {
		names[e] = fmt.Sprintf("emp%02d", e)
	}
	tag := func(i int) string { return "custom:from_" + instances[i] }

	runCtx, stopRuns := context.WithCancel(ctx)
	var runs sync.WaitGroup
	defer runs.Wait()
	defer stopRuns()
	for _, s := range sharers {
		runs.Go(func() { s.Run(runCtx) })
	}

	start := time.Now()
	loadEnd := start.Add(load)
	sampleEnd := loadEnd.Add(consistencyBound)

	// logs[i][w] is what writer w of instance i added, in order.
	logs := make([][][]addRecord, len(instances))
	var writing sync.WaitGroup
	for i, s := range sharers {
		logs[i] = make([][]addRecord, writers)
		custom := map[string]int64{tag(i): 1} // only read by Add
		for w := range writers {
			writing.Go(func() {
				log := make([]addRecord, 0, int(load/pause))
				for {
					at := time.Now()
					if !at.Before(loadEnd) {
						break
					}
					e, n := rand.IntN(employees), 1+rand.Int64N(5)
					log = append(log, addRecord{employee: e, rows: n, at: at.Sub(start)})
					f := window.Figures{Statements: 1, Rows: n, PIIRows: n, Custom: custom}
					f.PIIValues[pii.IdxEmail] = n
					s.Add(names[e], at, f)
					time.Sleep(pause)
				}
				logs[i][w] = log
			})
		}
	}

	var samples []viewSample
	var sampling sync.WaitGroup
	sampling.Go(func() {
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		for range tick.C {
			var v viewSample
			v.seen = make([][][]int64, len(instances))
			for o, s := range sharers {
				v.seen[o] = make([][]int64, len(instances))
				for src := range instances {
					v.seen[o][src] = make([]int64, tracked)
				}
				now := time.Now()
				for e, name := range names[:tracked] {
					tot, _ := s.Remote().GetCounts(name, now)
					for src := range instances {
						v.seen[o][src][e] = tot[window.Hour].Custom[tag(src)]
					}
				}
				v.at = time.Since(start)
			}
			samples = append(samples, v)
			if !time.Now().Before(sampleEnd) {
				return
			}
		}
	})
	writing.Wait()
	sampling.Wait()

	// made[i][e] holds the times of instance i's Adds for employee e, in
	// order: the k-th is no later than the moment i's total reached k+1.
	made := make([][][]time.Duration, len(instances))
	type sums struct{ adds, rows int64 }
	truth := make([][]sums, len(instances))
	total := 0
	for i := range instances {
		made[i] = make([][]time.Duration, employees)
		truth[i] = make([]sums, employees)
		for _, log := range logs[i] {
			total += len(log)
			for _, r := range log {
				made[i][r.employee] = append(made[i][r.employee], r.at)
				truth[i][r.employee].adds++
				truth[i][r.employee].rows += r.rows
			}
		}
		for e := range made[i] {
			slices.Sort(made[i][e])
		}
	}
	t.Logf("%d Adds in %v (%.0f a second) by %d instances × %d goroutines for %d employees; %d samples of the remote views",
		total, load, float64(total)/load.Seconds(), len(instances), writers, employees, len(samples))

	// The lag of a total is the time from the moment its instance had made
	// it to the first sample in which another instance's view includes it.
	var lags []time.Duration
	var unseen int64
	var oldestUnseen time.Duration // age at the last sample
	last := samples[len(samples)-1].at
	for o := range instances {
		for src := range instances {
			if src == o {
				continue
			}
			for e := range tracked {
				times := made[src][e]
				var have int64
				for _, v := range samples {
					n := v.seen[o][src][e]
					if n > int64(len(times)) {
						t.Fatalf("at %v instance %s sees %d Adds of %s for %s; %s made %d",
							v.at, instances[o], n, instances[src], names[e], instances[src], len(times))
					}
					if n < have {
						t.Fatalf("at %v instance %s's view of %s's Adds for %s went back from %d to %d",
							v.at, instances[o], instances[src], names[e], have, n)
					}
					for ; have < n; have++ {
						lags = append(lags, v.at-times[have])
					}
				}
				if missing := int64(len(times)) - have; missing > 0 {
					unseen += missing
					oldestUnseen = max(oldestUnseen, last-times[have])
				}
			}
		}
	}
	if unseen > 0 {
		t.Errorf("%d (Add, other instance) pairs never met: the oldest Add missing was made %v before the last sample", unseen, oldestUnseen)
	}
	if len(lags) == 0 {
		t.Fatal("no Add reached another instance")
	}
	slices.Sort(lags)
	pct := func(p float64) time.Duration { return lags[int(p*float64(len(lags)-1))] }
	t.Logf("remote view lag over %d (Add, other instance) pairs: p50 %v, p99 %v, max %v (bound %v)",
		len(lags), pct(0.50), pct(0.99), lags[len(lags)-1], consistencyBound)
	if worst := lags[len(lags)-1]; worst > consistencyBound {
		t.Errorf("an Add took %v to reach another instance; the bound is %v", worst, consistencyBound)
	}

	// The load stopped more than the bound ago: every view holds exactly the
	// other instances' Adds, none lost, none counted twice.
	var wrong []string
	now := time.Now()
	for o, s := range sharers {
		for e, name := range names {
			tot, _ := s.Remote().GetCounts(name, now)
			hour := tot[window.Hour]
			var want sums
			for src := range instances {
				w := truth[src][e].adds
				if src == o {
					w = 0 // its own Adds are not remote
				} else {
					want.adds += truth[src][e].adds
					want.rows += truth[src][e].rows
				}
				if got := hour.Custom[tag(src)]; got != w {
					wrong = append(wrong, fmt.Sprintf("%s holds %d of %s's Adds for %s, want %d", instances[o], got, instances[src], name, w))
				}
			}
			if hour.Statements != want.adds || hour.Rows != want.rows || hour.PIIRows != want.rows || hour.PIIValues[pii.IdxEmail] != want.rows {
				wrong = append(wrong, fmt.Sprintf("%s holds %d statements, %d rows, %d PII rows, %d emails for %s, want %d, %d, %d, %d",
					instances[o], hour.Statements, hour.Rows, hour.PIIRows, hour.PIIValues[pii.IdxEmail], name,
					want.adds, want.rows, want.rows, want.rows))
			}
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d remote figures are wrong %v after the load stopped; the first: %s", len(wrong), consistencyBound, wrong[0])
	}
}
