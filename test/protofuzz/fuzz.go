package protofuzz

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Config bounds a fuzzing run.
type Config struct {
	// Seed of the first sequence; sequence i uses Seed+i.
	Seed uint64
	// Count and Duration bound the run; the first reached ends it (zero:
	// no bound of that kind).
	Count    int
	Duration time.Duration
	// MaxAtoms bounds a sequence's length in steps (default 8).
	MaxAtoms int
	// MinimizeBudget bounds the minimizing of one divergence (default 1m).
	MinimizeBudget time.Duration
	// Known, if set, says a divergence is known (not counted as new).
	Known func(*Divergence) bool
	// Skip, if set, says a divergence is not worth minimizing: it is
	// counted as known, and neither minimized nor reported.
	Skip func(*Divergence) bool
	// OnDivergence is called for each unique minimized divergence.
	OnDivergence func(*Divergence)
	// Progress is called every ProgressEvery (default 30s).
	Progress      func(Summary)
	ProgressEvery time.Duration
}

// Summary counts what a run found.
type Summary struct {
	Sequences   int
	Divergences int // sequences that diverged through some proxy
	Unique      []*Divergence
	Known       int // unique divergences that Config.Known recognised
	Flaky       int // unique divergences that did not come back
	Skipped     int // divergences that Config.Skip left out
	Errors      []error
	Elapsed     time.Duration
}

func (s Summary) String() string {
	return fmt.Sprintf("%d sequences, %d diverging, %d unique divergences (%d flaky, %d known), %d skipped, %d errors, in %v",
		s.Sequences, s.Divergences, len(s.Unique), s.Flaky, s.Known, s.Skipped, len(s.Errors), s.Elapsed.Round(time.Second))
}

// Fuzz generates sequences from cfg.Seed on, compares each through every
// proxy with PostgreSQL, and minimizes the divergences.
func (e *Env) Fuzz(ctx context.Context, cfg Config) Summary {
	start := time.Now()
	maxAtoms := cfg.MaxAtoms
	if maxAtoms <= 0 {
		maxAtoms = 8
	}
	every := orDefault(cfg.ProgressEvery, 30*time.Second)
	nextProgress := start.Add(every)
	var sum Summary
	seen := map[string]bool{}
	for i := 0; cfg.Count == 0 || i < cfg.Count; i++ {
		if ctx.Err() != nil || cfg.Duration > 0 && time.Since(start) > cfg.Duration {
			break
		}
		seed := cfg.Seed + uint64(i)
		seq := Generate(NewRand(seed), maxAtoms)
		sum.Sequences++
		diverged := false
		first, err := e.Runner.Run(ctx, e.Direct, seq, -1)
		if err != nil {
			sum.Errors = append(sum.Errors, fmt.Errorf("seed %d: %w", seed, err))
			continue
		}
		twin, changed := ErrorTwin(seq)
		var twinFirst *Transcript
		for _, p := range e.Proxies {
			direct := first
			if p.Blocks && changed {
				if twinFirst == nil {
					if twinFirst, err = e.Runner.Run(ctx, e.Direct, twin, -1); err != nil {
						sum.Errors = append(sum.Errors, fmt.Errorf("seed %d: %w", seed, err))
						continue
					}
				}
				direct = twinFirst
			}
			class, direct, proxied, err := e.CompareWith(ctx, p, seq, direct)
			if err != nil {
				sum.Errors = append(sum.Errors, fmt.Errorf("seed %d via %s: %w", seed, p.Name, err))
				continue
			}
			if class == "" {
				continue
			}
			diverged = true
			if cfg.Skip != nil && cfg.Skip(&Divergence{Proxy: p.Name, Class: class, Seq: seq, Direct: direct, Proxied: proxied}) {
				sum.Skipped++
				continue
			}
			d, err := e.Minimize(ctx, p, seq, class, orDefault(cfg.MinimizeBudget, time.Minute))
			if errors.Is(err, ErrFlaky) {
				d, err = &Divergence{Proxy: p.Name, Class: class, Seq: seq, Direct: direct, Proxied: proxied,
					Original: len(seq.Msgs), Flaky: true}, nil
				d.Signature = p.Name + "|" + string(class) + "|flaky|" + firstDifference(direct, proxied)
			}
			if err != nil {
				sum.Errors = append(sum.Errors, fmt.Errorf("seed %d via %s: minimize: %w", seed, p.Name, err))
				continue
			}
			d.Seed = seed
			if seen[d.Signature] {
				continue
			}
			seen[d.Signature] = true
			sum.Unique = append(sum.Unique, d)
			if d.Flaky {
				sum.Flaky++
			}
			if cfg.Known != nil && cfg.Known(d) {
				sum.Known++
			}
			if cfg.OnDivergence != nil {
				cfg.OnDivergence(d)
			}
		}
		if diverged {
			sum.Divergences++
		}
		if cfg.Progress != nil && time.Now().After(nextProgress) {
			sum.Elapsed = time.Since(start)
			cfg.Progress(sum)
			nextProgress = time.Now().Add(every)
		}
	}
	sum.Elapsed = time.Since(start)
	return sum
}
