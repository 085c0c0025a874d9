package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pgwarden/pgwarden/internal/atomicfile"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/state/cluster/normshare"
	"github.com/pgwarden/pgwarden/state/pgstate"
)

// normState is how the norm model's state is written and read: the
// model's own form, or with sharing the shared form, which holds the
// model and the shared rows it includes.
type normState struct {
	snapshot func(io.Writer) error
	restore  func(io.Reader) error
}

// openNorms builds the norm model from the policy's norms settings and
// restores what it learned before: from the state database when
// --state-url is set, else from the state directory. The returned func
// saves it to both when configured (the file atomically); with neither,
// what is learned is lost at exit, which is logged. With --share-state,
// the model is fed through a normshare.Sharer (returned; Run runs it), and
// what is saved carries the shared rows the model includes.
func (s *Server) openNorms(ctx context.Context, pol *policy.Policy) (*norm.Model, *normshare.Sharer, func(), error) {
	nc := pol.Norms()
	m, err := norm.New(norm.Config{Location: pol.Location(), LearningDays: nc.LearningDays,
		MinActiveDays: nc.MinActiveDays, HistoryDays: nc.HistoryDays, MaxDailyRise: nc.MaxDailyRise})
	if err != nil {
		return nil, nil, nil, err
	}
	st := normState{snapshot: m.Snapshot, restore: func(r io.Reader) error {
		// What a sharing instance saved holds the model and more.
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		return m.Restore(bytes.NewReader(normshare.ModelOnly(b)))
	}}
	var sharer *normshare.Sharer
	if s.cfg.ShareWindows {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		sharer, err = normshare.New(sctx, normshare.Config{Pool: s.statePool, Instance: s.instance, Model: m,
			OnRemote: s.enforceRemoteNorms, Logger: s.logger})
		cancel()
		if err != nil {
			return nil, nil, nil, err
		}
		st = normState{snapshot: sharer.Snapshot, restore: sharer.Restore}
	}
	var saves []func() error
	restored := false
	if s.statePool != nil {
		save, ok, err := s.normsInStateDB(ctx, st)
		if err != nil {
			return nil, nil, nil, err
		}
		restored = ok
		saves = append(saves, save)
	}
	if s.cfg.StateDir != "" {
		path := filepath.Join(s.cfg.StateDir, NormsFile)
		if b, err := os.ReadFile(path); err == nil && !restored {
			if err := st.restore(bytes.NewReader(b)); err != nil {
				return nil, nil, nil, fmt.Errorf("norms %s: %w (move it away to start learning afresh)", path, err)
			}
			s.logger.Info("norms_restored", "file", path)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil, fmt.Errorf("norms: %w", err)
		}
		saves = append(saves, func() error { return SaveSnapshot(st.snapshot, path) })
	}
	if len(saves) == 0 && nc.Enabled {
		s.logger.Warn("norms_not_persisted", "consequence", "learned norms are lost when pgwarden stops", "fix", "set --state-dir or --state-url")
	}
	save := func() {
		for _, f := range saves {
			if err := f(); err != nil {
				s.logger.Error("norms_save_failed", "error", err)
			}
		}
	}
	return m, sharer, save, nil
}

// normsInStateDB restores the norms from the state database's
// pgwarden_state table, if they are there (restored), and returns the func
// that saves them there.
func (s *Server) normsInStateDB(ctx context.Context, st normState) (save func() error, restored bool, err error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	store, err := pgstate.Open(lctx, s.statePool)
	if err != nil {
		return nil, false, err
	}
	b, ok, err := store.Load(lctx, "norms")
	if err != nil {
		return nil, false, err
	}
	if ok {
		if err := st.restore(bytes.NewReader(b)); err != nil {
			return nil, false, fmt.Errorf("norms in pgwarden_state: %w", err)
		}
		s.logger.Info("norms_restored", "from", "pgwarden_state")
	}
	return func() error {
		var buf bytes.Buffer
		if err := st.snapshot(&buf); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return store.Save(ctx, "norms", buf.Bytes())
	}, ok, nil
}

// SaveSnapshot writes what snapshot writes to a temporary file, fsyncs it
// and renames it over path.
func SaveSnapshot(snapshot func(io.Writer) error, path string) error {
	var buf bytes.Buffer
	if err := snapshot(&buf); err != nil {
		return err
	}
	return atomicfile.Write(path, buf.Bytes())
}
