package server

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pgwarden/pgwarden/internal/crash"
)

// loop is a long-running job of the server; run returns once ctx is done.
type loop struct {
	name string
	run  func(ctx context.Context)
}

// runLoop runs l until it returns; a panic restarts it (crash.Loop).
func runLoop(ctx context.Context, logger *slog.Logger, l loop) {
	done := make(chan struct{})
	crash.Loop(logger, l.name, done, func() { l.run(ctx) })
	<-done
}

// stage is loops started together and stopped together. Run starts its
// stages in order and stops them in the reverse order, so that a loop
// stops only after those that feed it.
type stage struct {
	cancel context.CancelFunc
	g      errgroup.Group
}

func startStage(logger *slog.Logger, loops []loop) *stage {
	ctx, cancel := context.WithCancel(context.Background())
	st := &stage{cancel: cancel}
	for _, l := range loops {
		st.g.Go(func() error {
			runLoop(ctx, logger, l)
			return nil
		})
	}
	return st
}

// stop cancels the stage's loops and waits for them to return.
func (st *stage) stop() {
	st.cancel()
	st.g.Wait()
}

// deliveryLoops deliver alerts from the outbox and stream the trail.
func (s *Server) deliveryLoops() []loop {
	var loops []loop
	if s.notifier != nil {
		loops = append(loops, loop{"notifier", func(ctx context.Context) {
			if err := s.notifier.Run(ctx); err != nil {
				s.logger.Error("notifier_stopped", "error", err)
			}
		}})
	}
	if st := s.stream.Load(); st != nil {
		loops = append(loops, loop{"stream", func(ctx context.Context) {
			if err := st.Run(ctx); err != nil {
				s.logger.Error("stream_stopped", "error", err)
			}
		}})
	}
	return loops
}

// sharingLoops exchange windows and norm observations with the other
// instances (--share-state); each writes what it holds once more when
// stopped.
func (s *Server) sharingLoops() []loop {
	var loops []loop
	if s.sharer != nil {
		loops = append(loops, loop{"share_run", func(ctx context.Context) { s.sharer.Run(ctx) }})
	}
	if s.normSharer != nil {
		loops = append(loops, loop{"norm_share_run", func(ctx context.Context) { s.normSharer.Run(ctx) }})
	}
	return loops
}

// upkeep moves the guard along with the clock: employees idle for a day
// leave the windows; the norm model closes its buckets and days as the
// clock moves (drift is found then), and its state is saved now and then
// (and by Run at exit); alerts the outbox could not take and the alert
// queue are saved again every second until they are.
func (s *Server) upkeep(ctx context.Context) {
	sweep := time.NewTicker(10 * time.Minute)
	defer sweep.Stop()
	advance := time.NewTicker(2 * time.Second)
	defer advance.Stop()
	save := time.NewTicker(time.Minute)
	defer save.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	var alertsErr error
	for {
		select {
		case <-retry.C:
			if s.spool != nil {
				s.spool.Retry()
			}
			s.drainAdminActions()
			err := s.alerts.Flush()
			if err != nil && alertsErr == nil {
				s.logger.Error("alert_queue_not_saved", "error", err, "detail", "kept in memory and saved again every second")
			} else if err == nil && alertsErr != nil {
				s.logger.Info("alert_queue_saved")
			}
			alertsErr = err
		case <-sweep.C:
			if n := s.guard.Windows().Sweep(s.now()); n > 0 {
				s.logger.Debug("windows_swept", "employees", n)
			}
		case <-advance.C:
			s.guard.AdvanceNorms(s.now())
		case <-save.C:
			s.saveNorms()
		case <-ctx.Done():
			return
		}
	}
}
