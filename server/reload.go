package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/policy"
)

// reloader watches the policy file and applies a valid new version; an
// invalid one is logged and alerted, and the policy in force stays.
type reloader struct {
	mu     sync.Mutex // reloads come from the watcher and from SIGHUP
	path   string
	g      *guard.Guard
	alerts guard.Alerter
	log    *slog.Logger
	stamp  fileStamp
	// failures and reloads count the reloads refused and applied, for
	// the metrics.
	failures, reloads atomic.Int64
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func statStamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// reload reads the file now; why says what triggered it.
func (r *reloader) reload(why string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, _ := statStamp(r.path)
	r.stamp = st
	p, err := policy.Load(r.path)
	var keys map[string][]byte
	if err == nil {
		keys, err = guard.LoadServiceKeys(p, os.LookupEnv, os.ReadFile)
	}
	if err == nil {
		err = r.g.SetPolicyAndKeys(p, keys)
	}
	if err != nil {
		r.failures.Add(1)
		r.log.Error("policy_reload_failed", "trigger", why, "policy", r.path, "error", err.Error(), "kept", "the policy in force")
		if r.alerts != nil {
			r.alerts.Notify(notify.Alert{Action: "alert", Rule: "policy-reload", Severity: "high",
				Reason: fmt.Sprintf("the policy file %s was not applied: %v", r.path, firstLine(err.Error()))})
		}
		return err
	}
	r.reloads.Add(1)
	r.log.Info("policy_reloaded", "trigger", why, "policy", r.path, "rules", len(p.Rules()))
	return nil
}

// watch polls the file's modification time and size.
func (r *reloader) watch(ctx context.Context, every time.Duration) {
	r.mu.Lock()
	r.stamp, _ = statStamp(r.path)
	r.mu.Unlock()
	var pending fileStamp
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// A change is applied once the file has stopped changing for
			// one tick, so that a file being written is not read half-way.
			st, err := statStamp(r.path)
			r.mu.Lock()
			current := r.stamp
			r.mu.Unlock()
			switch {
			case err != nil || st == current:
				pending = fileStamp{}
			case st == pending:
				r.reload("file changed")
				pending = fileStamp{}
			default:
				pending = st
			}
		}
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " (and more)"
	}
	return s
}
