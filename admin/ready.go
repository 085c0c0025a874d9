package admin

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// A ReadyCheck tells whether one dependency of the proxy can serve now:
// the upstream server, the audit log, the catalog connection, the state
// database. Check returns nil when it can.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// DefaultReadyTimeout bounds each check of a readiness request when
// Config.ReadyTimeout is zero. It is below Kubernetes' default probe
// timeout of one second, so that a hung dependency answers 503, not a
// timed-out probe.
const DefaultReadyTimeout = 800 * time.Millisecond

// readiness runs the checks of GET /v1/ready and logs each change of a
// dependency's state once, not on every probe.
type readiness struct {
	checks  []ReadyCheck
	timeout time.Duration
	log     *slog.Logger

	mu   sync.Mutex
	last map[string]string // name -> last error ("" when ready)
}

// CheckResult is one dependency's answer in GET /v1/ready.
type CheckResult struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
	// Error says why it is not ready; only to a request with the token
	// (it may name hosts and paths).
	Error string `json:"error,omitempty"`
	// Seconds the check took.
	Seconds float64 `json:"seconds"`
}

// run checks every dependency concurrently, each bounded by the timeout.
func (r *readiness) run(ctx context.Context) []CheckResult {
	out := make([]CheckResult, len(r.checks))
	var wg sync.WaitGroup
	for i, c := range r.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, r.timeout)
			defer cancel()
			start := time.Now()
			err := c.Check(cctx)
			out[i] = CheckResult{Name: c.Name, Ready: err == nil, Seconds: time.Since(start).Seconds()}
			if err != nil {
				out[i].Error = err.Error()
			}
		}()
	}
	wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, res := range out {
		prev, seen := r.last[res.Name]
		if seen && prev == res.Error {
			continue
		}
		switch {
		case res.Error != "":
			r.log.Warn("not_ready", "dependency", res.Name, "error", res.Error)
		case seen:
			r.log.Info("ready_again", "dependency", res.Name)
		}
		r.last[res.Name] = res.Error
	}
	return out
}

// ready answers 200 when every dependency is ready, else 503, with
// {"ready": bool, "not_ready": [names], "checks": [...]}. Like the health
// check it needs no token (probes carry none); the errors' text is shown
// only with one.
func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	results := h.readiness.run(r.Context())
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	_, err := h.check(tok, time.Now())
	detail := ok && err == nil ||
		h.cfg.ClientCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0
	notReady := []string{}
	for i := range results {
		if !results[i].Ready {
			notReady = append(notReady, results[i].Name)
			if !detail {
				results[i].Error = "not ready"
			}
		}
	}
	code := http.StatusOK
	if len(notReady) > 0 {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, map[string]any{"ready": len(notReady) == 0, "not_ready": notReady, "checks": results})
}
