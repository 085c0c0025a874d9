package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.etcd.io/bbolt"

	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/internal/atomicfile"
	"github.com/pgwarden/pgwarden/internal/crash"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/state/holds"
	"github.com/pgwarden/pgwarden/state/quarantine"
)

// Files of the state directory.
const (
	quarantineFile = "quarantine.json"
	holdsDir       = "holds"
	outboxFile     = "notify.db"
)

// stateParts is what serve keeps in its state directory.
type stateParts struct {
	quarantine *quarantine.List
	holds      *holds.Registry
	notifier   *notify.Notifier
	db         *bbolt.DB
}

// sharedState is the state database several instances share
// (--share-state), and this instance's name among them.
type sharedState struct {
	pool     *pgxpool.Pool
	instance string
}

// openState opens the state directory and the notifier. Notifications need
// the directory for their outbox, or with shared state the state database;
// quarantine and hold rules need the directory to act.
func openState(fc *config.Config, pol *policy.Policy, logger *slog.Logger, shared *sharedState) (*stateParts, func(), error) {
	n := &fc.Notify
	if n.Slack.URL == "" {
		n.Slack.URL = os.Getenv("PGWARDEN_SLACK_URL")
	}
	if fc.StateDir == "" && shared == nil && (n.Webhook.URL != "" || n.Slack.URL != "" || n.Syslog.Addr != "") {
		return nil, nil, errors.New("notifications need a state directory for their outbox: set --state-dir (or state_dir), or share the state database (--share-state)")
	}
	sinks, err := notifySinks(fc)
	if err != nil {
		return nil, nil, err
	}
	st := &stateParts{}
	if shared != nil && len(sinks) > 0 {
		// One outbox for every instance, in the state database.
		st.notifier, err = notify.New(notify.Config{Pool: shared.pool, Instance: shared.instance, Sinks: sinks,
			DedupeWindow: time.Duration(fc.Notify.DedupeWindow), RatePerEmployee: fc.Notify.RatePerEmployee, Logger: logger})
		if err != nil {
			return nil, nil, err
		}
		sinks = nil // the directory, if any, keeps no outbox
	}
	stop := func() {}
	if st.notifier != nil {
		stop = runNotifier(st.notifier, "pgwarden_outbox in the state database", logger)
	}
	if fc.StateDir == "" {
		for _, r := range pol.Rules() {
			if r.Action == policy.ActionQuarantine && fc.StateURL == "" || r.Action == policy.ActionHold {
				logger.Warn("no_state_dir", "rule", r.Name, "action", string(r.Action),
					"consequence", "quarantine ends the session only; hold blocks at once", "fix", "set --state-dir")
			}
		}
		return st, stop, nil
	}
	fail := func(err error) (*stateParts, func(), error) {
		stop()
		return nil, nil, err
	}
	if err := os.MkdirAll(fc.StateDir, 0o700); err != nil {
		return fail(fmt.Errorf("state directory: %w", err))
	}
	for _, dir := range []string{fc.StateDir, filepath.Join(fc.StateDir, holdsDir)} {
		// Left by a crash in the middle of replacing a state file.
		removed, err := atomicfile.RemoveStale(dir, time.Now())
		if len(removed) > 0 {
			logger.Warn("stale_temp_files_removed", "dir", dir, "files", strings.Join(removed, ","))
		}
		if err != nil {
			logger.Warn("stale_temp_files_not_removed", "dir", dir, "error", err)
		}
	}
	if st.quarantine, err = quarantine.Open(filepath.Join(fc.StateDir, quarantineFile)); err != nil {
		return fail(err)
	}
	if st.holds, err = holds.Open(filepath.Join(fc.StateDir, holdsDir)); err != nil {
		return fail(err)
	}
	if len(sinks) == 0 {
		return st, stop, nil
	}
	st.db, err = bbolt.Open(filepath.Join(fc.StateDir, outboxFile), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("notification outbox %s: %w (is another pgwarden using this state directory?)", filepath.Join(fc.StateDir, outboxFile), err)
	}
	st.notifier, err = notify.New(notify.Config{DB: st.db, Sinks: sinks, DedupeWindow: time.Duration(fc.Notify.DedupeWindow),
		RatePerEmployee: fc.Notify.RatePerEmployee, Logger: logger})
	if err != nil {
		st.db.Close()
		return nil, nil, err
	}
	stop = runNotifier(st.notifier, filepath.Join(fc.StateDir, outboxFile), logger)
	return st, func() {
		stop()
		st.db.Close()
	}, nil
}

// runNotifier delivers from n's outbox (named where) until the returned
// func is called.
func runNotifier(n *notify.Notifier, where string, logger *slog.Logger) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	crash.Loop(logger, "notifier", done, func() {
		if err := n.Run(ctx); err != nil {
			logger.Error("notifier_stopped", "error", err)
		}
	})
	names := slices.Sorted(maps.Keys(n.Stats().Sinks))
	logger.Info("notifications_ready", "sinks", strings.Join(names, ","), "outbox", where)
	return func() {
		// Give deliveries in progress a moment; the outbox keeps the rest
		// for the next start.
		fctx, fcancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := n.Flush(fctx); err != nil {
			logger.Warn("notifications_pending_at_exit", "kept_in", where)
		}
		fcancel()
		cancel()
		<-done
	}
}

// notifySinks builds the configured alert destinations.
func notifySinks(fc *config.Config) ([]notify.Sink, error) {
	var sinks []notify.Sink
	n := &fc.Notify
	if n.Webhook.URL != "" {
		secret, err := webhookSecret(n.Webhook.SecretFile)
		if err != nil {
			return nil, err
		}
		w, err := notify.NewWebhook(notify.WebhookConfig{URL: n.Webhook.URL, Secret: secret})
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, w)
	}
	if n.Slack.URL != "" {
		s, err := notify.NewSlack(notify.SlackConfig{URL: n.Slack.URL})
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, s)
	}
	if n.Syslog.Addr != "" {
		s, err := notify.NewSyslog(notify.SyslogConfig{Addr: n.Syslog.Addr, Network: n.Syslog.Network, Format: n.Syslog.Format})
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, s)
	}
	return sinks, nil
}

// webhookSecret reads the webhook's HMAC key from a file, or from
// PGWARDEN_WEBHOOK_SECRET.
func webhookSecret(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("webhook secret: %w", err)
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("webhook secret file %s is empty", file)
	}
	if s := os.Getenv("PGWARDEN_WEBHOOK_SECRET"); s != "" {
		return []byte(s), nil
	}
	return nil, errors.New("the webhook needs a signing secret: --webhook-secret-file or PGWARDEN_WEBHOOK_SECRET")
}

// reloader watches the policy file and applies a valid new version; an
// invalid one is logged and alerted, and the policy in force stays.
type reloader struct {
	mu     sync.Mutex // reloads come from the watcher and from SIGHUP
	path   string
	g      *guard.Guard
	alerts guard.Alerter
	log    *slog.Logger
	stamp  fileStamp
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
		r.log.Error("policy_reload_failed", "trigger", why, "policy", r.path, "error", err.Error(), "kept", "the policy in force")
		if r.alerts != nil {
			r.alerts.Notify(notify.Alert{Action: "alert", Rule: "policy-reload", Severity: "high",
				Reason: fmt.Sprintf("the policy file %s was not applied: %v", r.path, firstLine(err.Error()))})
		}
		return err
	}
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
