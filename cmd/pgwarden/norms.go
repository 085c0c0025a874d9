package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
)

// normsFile holds the norm model's state in the state directory.
const normsFile = "norms.json"

// openNorms builds the norm model from the policy's norms settings and
// restores what it learned before, from the state directory. The returned
// func saves it there (atomically); without a state directory what is
// learned is lost at exit, which is logged.
func openNorms(fc *fileConfig, pol *policy.Policy, logger *slog.Logger) (*norm.Model, func(), error) {
	nc := pol.Norms()
	m, err := norm.New(norm.Config{Location: pol.Location(), LearningDays: nc.LearningDays,
		MinActiveDays: nc.MinActiveDays, HistoryDays: nc.HistoryDays, MaxDailyRise: nc.MaxDailyRise})
	if err != nil {
		return nil, nil, err
	}
	if fc.StateDir == "" {
		if nc.Enabled {
			logger.Warn("norms_not_persisted", "consequence", "learned norms are lost when pgwarden stops", "fix", "set --state-dir")
		}
		return m, func() {}, nil
	}
	path := filepath.Join(fc.StateDir, normsFile)
	if b, err := os.ReadFile(path); err == nil {
		if err := m.Restore(bytes.NewReader(b)); err != nil {
			return nil, nil, fmt.Errorf("norms %s: %w (move it away to start learning afresh)", path, err)
		}
		logger.Info("norms_restored", "file", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("norms: %w", err)
	}
	save := func() {
		if err := saveModel(m, path); err != nil {
			logger.Error("norms_save_failed", "file", path, "error", err)
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
