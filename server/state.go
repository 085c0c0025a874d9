package server

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/pgwarden/pgwarden/admin"
	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/internal/atomicfile"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/state/holds"
	"github.com/pgwarden/pgwarden/state/quarantine"
)

// Files of the state directory.
const (
	QuarantineFile = "quarantine.json" // the quarantine list
	HoldsDir       = "holds"           // results held for approval
	OutboxFile     = "notify.db"       // the notifier's outbox
	NormsFile      = "norms.json"      // what the norm model learned
	LoginsFile     = "users.json"      // pgwarden's own logins
)

// openState opens the state directory and the notifier. Notifications need
// the directory for their outbox, or with shared state the state database;
// quarantine and hold rules need the directory to act.
func (s *Server) openState(pol *policy.Policy) error {
	fc := &s.cfg
	n := &fc.Notify
	if n.Slack.URL == "" {
		n.Slack.URL = os.Getenv("PGWARDEN_SLACK_URL")
	}
	if fc.StateDir == "" && !fc.ShareWindows && (n.Webhook.URL != "" || n.Slack.URL != "" || n.Syslog.Addr != "") {
		return errors.New("notifications need a state directory for their outbox: set --state-dir (or state_dir), or share the state database (--share-state)")
	}
	sinks, err := notifySinks(fc)
	if err != nil {
		return err
	}
	if fc.Admin.PublicURL != "" && n.Slack.URL == "" {
		s.logger.Warn("admin_public_url_unused", "hint", "admin.public_url puts approve and deny links in the Slack messages of holds: set the Slack sink (PGWARDEN_SLACK_URL)")
	}
	if len(sinks) == 0 {
		s.logger.Warn("alerts_go_nowhere", "hint", "no webhook, Slack or syslog is set: alerts reach only the log, the decision log and the admin API's queue (--webhook-url, PGWARDEN_SLACK_URL, --syslog-addr)")
	}
	if fc.Audit.Dir == "" && fc.Audit.URL == "" {
		s.logger.Warn("no_audit_trail", "hint", "no audit log is set: decisions and statements are not recorded in a tamper-evident trail (--audit-dir)")
	}
	ncfg := notify.Config{Sinks: sinks, DedupeWindow: time.Duration(n.DedupeWindow), RatePerEmployee: n.RatePerEmployee, Logger: s.logger}
	if fc.ShareWindows && len(sinks) > 0 {
		// One outbox for every instance, in the state database.
		ncfg.Pool, ncfg.Instance = s.statePool, s.instance
		if s.notifier, err = notify.New(ncfg); err != nil {
			return err
		}
		s.notifierReady("pgwarden_outbox in the state database")
		sinks = nil // the directory, if any, keeps no outbox
	}
	if fc.StateDir == "" {
		for _, r := range pol.Rules() {
			if r.Action == policy.ActionQuarantine && fc.StateURL == "" || r.Action == policy.ActionHold {
				s.logger.Warn("no_state_dir", "rule", r.Name, "action", string(r.Action),
					"consequence", "quarantine ends the session only; hold blocks at once", "fix", "set --state-dir")
			}
		}
		return nil
	}
	if err := s.openStateDir(); err != nil {
		return err
	}
	if len(sinks) == 0 && !s.streamInStateDir() {
		return nil
	}
	path := filepath.Join(fc.StateDir, OutboxFile)
	s.outboxDB, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("notification outbox %s: %w (is another pgwarden using this state directory?)", path, err)
	}
	if len(sinks) == 0 {
		return nil
	}
	ncfg.DB = s.outboxDB
	if s.notifier, err = notify.New(ncfg); err != nil {
		return err
	}
	s.notifierReady(path)
	return nil
}

// openStateDir opens the quarantine list and the holds of the state
// directory, after removing what a crash left behind.
func (s *Server) openStateDir() error {
	dir := s.cfg.StateDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	for _, d := range []string{dir, filepath.Join(dir, HoldsDir)} {
		// Left by a crash in the middle of replacing a state file.
		removed, err := atomicfile.RemoveStale(d, time.Now())
		if len(removed) > 0 {
			s.logger.Warn("stale_temp_files_removed", "dir", d, "files", strings.Join(removed, ","))
		}
		if err != nil {
			s.logger.Warn("stale_temp_files_not_removed", "dir", d, "error", err)
		}
	}
	var err error
	if s.fileQuarantine, err = quarantine.Open(filepath.Join(dir, QuarantineFile)); err != nil {
		return err
	}
	s.holds, err = holds.Open(filepath.Join(dir, HoldsDir))
	return err
}

// notifierReady notes where the notifier's outbox is; Run delivers from it.
func (s *Server) notifierReady(where string) {
	s.outboxWhere = where
	names := slices.Sorted(maps.Keys(s.notifier.Stats().Sinks))
	s.logger.Info("notifications_ready", "sinks", strings.Join(names, ","), "outbox", where)
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
		sc := notify.SlackConfig{URL: n.Slack.URL}
		if base := fc.Admin.PublicURL; base != "" {
			secret, err := AdminToken(fc.Admin.TokenFile)
			if err != nil {
				return nil, err
			}
			sc.HoldLinks = func(id string, deadline time.Time) (string, string, error) {
				approve, err := admin.HoldLink(base, secret, id, "approve", deadline)
				if err != nil {
					return "", "", err
				}
				deny, err := admin.HoldLink(base, secret, id, "deny", deadline)
				return approve, deny, err
			}
		}
		s, err := notify.NewSlack(sc)
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
