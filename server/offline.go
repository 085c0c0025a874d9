package server

import (
	"context"
	"path/filepath"
	"time"

	"github.com/pgwarden/pgwarden/state/adminlog"
	"github.com/pgwarden/pgwarden/state/quarantine"
)

// Quarantine is the quarantine list where serve keeps it, opened by a
// command beside a running server, with where to record the command's
// changes for the server to audit.
type Quarantine struct {
	quarantine.Store
	Record func(adminlog.Action) error
	Close  func()
}

// OpenQuarantine opens the quarantine list of the state database at
// stateURL (password in StatePasswordEnv when the URL has none), or else
// of the state directory dir.
func OpenQuarantine(stateURL, dir string) (*Quarantine, error) {
	if stateURL == "" {
		q, err := quarantine.Open(filepath.Join(dir, QuarantineFile))
		if err != nil {
			return nil, err
		}
		return &Quarantine{Store: q, Record: func(a adminlog.Action) error { return adminlog.Write(dir, a) }, Close: func() {}}, nil
	}
	pool, err := NewPool(context.Background(), "state", stateURL, StatePasswordEnv, 1)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	q, err := quarantine.OpenPG(ctx, pool)
	if err != nil {
		cancel()
		pool.Close()
		return nil, err
	}
	return &Quarantine{Store: q, Record: func(a adminlog.Action) error { return adminlog.WritePG(ctx, pool, a) },
		Close: func() { cancel(); pool.Close() }}, nil
}
