package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/internal/atomicfile"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/state/cluster/normshare"
	"github.com/pgwarden/pgwarden/state/pgstate"
)

// normsFile holds the norm model's state in the state directory.
const normsFile = "norms.json"

// normsSharing is what openNorms needs to share the norms with the other
// instances: the state database's pool and this instance's name.
type normsSharing struct {
	pool     *pgxpool.Pool
	instance string
	onRemote func([]norm.Anomaly)
}

// openNorms builds the norm model from the policy's norms settings and
// restores what it learned before: from pgwarden's own database when
// --state-url is set, else from the state directory. The returned func
// saves it to both when configured (the file atomically); with neither,
// what is learned is lost at exit, which is logged. With sh, the model is
// fed through a normshare.Sharer (returned; the caller runs it), and what
// is saved carries the shared rows the model includes.
func openNorms(fc *config.Config, pol *policy.Policy, logger *slog.Logger, sh *normsSharing) (*norm.Model, *normshare.Sharer, func(), error) {
	nc := pol.Norms()
	m, err := norm.New(norm.Config{Location: pol.Location(), LearningDays: nc.LearningDays,
		MinActiveDays: nc.MinActiveDays, HistoryDays: nc.HistoryDays, MaxDailyRise: nc.MaxDailyRise})
	if err != nil {
		return nil, nil, nil, err
	}
	snapshot := m.Snapshot
	restore := func(r io.Reader) error {
		// What a sharing instance saved holds the model and more.
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		return m.Restore(bytes.NewReader(normshare.ModelOnly(b)))
	}
	var sharer *normshare.Sharer
	if sh != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		sharer, err = normshare.New(ctx, normshare.Config{Pool: sh.pool, Instance: sh.instance, Model: m,
			OnRemote: sh.onRemote, Logger: logger})
		cancel()
		if err != nil {
			return nil, nil, nil, err
		}
		snapshot, restore = sharer.Snapshot, sharer.Restore
	}
	var saves []func() error
	restored := false
	if fc.StateURL != "" {
		pool, err := newPool("state", fc.StateURL, "PGWARDEN_STATE_PASSWORD", 2)
		if err != nil {
			return nil, nil, nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		store, err := pgstate.Open(ctx, pool)
		if err == nil {
			var b []byte
			var ok bool
			if b, ok, err = store.Load(ctx, "norms"); err == nil && ok {
				if err = restore(bytes.NewReader(b)); err != nil {
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
			return nil, nil, nil, err
		}
		saves = append(saves, func() error {
			var buf bytes.Buffer
			if err := snapshot(&buf); err != nil {
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
			if err := restore(bytes.NewReader(b)); err != nil {
				return nil, nil, nil, fmt.Errorf("norms %s: %w (move it away to start learning afresh)", path, err)
			}
			logger.Info("norms_restored", "file", path)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil, fmt.Errorf("norms: %w", err)
		}
		saves = append(saves, func() error { return saveSnapshot(snapshot, path) })
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
	return m, sharer, save, nil
}

// saveModel writes a snapshot to a temporary file, fsyncs it and renames
// it over path.
func saveModel(m *norm.Model, path string) error { return saveSnapshot(m.Snapshot, path) }

// saveSnapshot writes what snapshot writes to a temporary file, fsyncs it
// and renames it over path.
func saveSnapshot(snapshot func(io.Writer) error, path string) error {
	var buf bytes.Buffer
	if err := snapshot(&buf); err != nil {
		return err
	}
	return atomicfile.Write(path, buf.Bytes())
}
