package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/pgwarden/pgwarden/internal/pgstate"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
)

// normsFile holds the norm model's state in the state directory.
const normsFile = "norms.json"

// openNorms builds the norm model from the policy's norms settings and
// restores what it learned before: from pgwarden's own database when
// --state-url is set, else from the state directory. The returned func
// saves it to both when configured (the file atomically); with neither,
// what is learned is lost at exit, which is logged.
func openNorms(fc *fileConfig, pol *policy.Policy, logger *slog.Logger) (*norm.Model, func(), error) {
	nc := pol.Norms()
	m, err := norm.New(norm.Config{Location: pol.Location(), LearningDays: nc.LearningDays,
		MinActiveDays: nc.MinActiveDays, HistoryDays: nc.HistoryDays, MaxDailyRise: nc.MaxDailyRise})
	if err != nil {
		return nil, nil, err
	}
	var saves []func() error
	restored := false
	if fc.StateURL != "" {
		pool, err := newPool("state", fc.StateURL, "PGWARDEN_STATE_PASSWORD", 2)
		if err != nil {
			return nil, nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		store, err := pgstate.Open(ctx, pool)
		if err == nil {
			var b []byte
			var ok bool
			if b, ok, err = store.Load(ctx, "norms"); err == nil && ok {
				if err = m.Restore(bytes.NewReader(b)); err != nil {
					err = fmt.Errorf("norms in pgwarden_state: %w", err)
				} else {
					restored = true
					logger.Info("norms_restored", "from", "pgwarden_state")
				}
			}
		}
		cancel()
		if err != nil {
			pool.Close()
			return nil, nil, err
		}
		saves = append(saves, func() error {
			var buf bytes.Buffer
			if err := m.Snapshot(&buf); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return store.Save(ctx, "norms", buf.Bytes())
		})
	}
	if fc.StateDir != "" {
		path := filepath.Join(fc.StateDir, normsFile)
		if b, err := os.ReadFile(path); err == nil && !restored {
			if err := m.Restore(bytes.NewReader(b)); err != nil {
				return nil, nil, fmt.Errorf("norms %s: %w (move it away to start learning afresh)", path, err)
			}
			logger.Info("norms_restored", "file", path)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("norms: %w", err)
		}
		saves = append(saves, func() error { return saveModel(m, path) })
	}
	if len(saves) == 0 && nc.Enabled {
		logger.Warn("norms_not_persisted", "consequence", "learned norms are lost when pgwarden stops", "fix", "set --state-dir or --state-url")
	}
	save := func() {
		for _, s := range saves {
			if err := s(); err != nil {
				logger.Error("norms_save_failed", "error", err)
			}
		}
	}
	return m, save, nil
}

// saveModel writes a snapshot to a temporary file, fsyncs it and renames
// it over path.
func saveModel(m *norm.Model, path string) error {
	var buf bytes.Buffer
	if err := m.Snapshot(&buf); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".norms-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(buf.Bytes())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
