package notify

import (
	"log/slog"
	"sync"
)

// DefaultSpoolMax bounds the alerts a Spool holds.
const DefaultSpoolMax = 10000

// Accepter takes alerts; *Notifier is one.
type Accepter interface {
	Notify(a Alert) error
}

// SpoolConfig configures a Spool.
type SpoolConfig struct {
	// Next is where alerts go, typically the Notifier of the outbox.
	Next Accepter
	// Max bounds the alerts held (default DefaultSpoolMax); past it the
	// oldest is dropped, and logged.
	Max    int
	Logger *slog.Logger
}

// Spool holds in memory, in order, the alerts its Next could not accept
// (the outbox's disk is full, its database unreachable) and retries them
// until it does, so that an alert is not lost while the process lives.
// Notify returns nil once the alert is accepted or held; each Notify, and
// Retry (serve calls it every second), hands the held alerts over first.
// Safe for concurrent use.
type Spool struct {
	cfg SpoolConfig

	mu      sync.Mutex
	held    []Alert
	dropped uint64
}

// NewSpool returns a Spool.
func NewSpool(cfg SpoolConfig) *Spool {
	if cfg.Max <= 0 {
		cfg.Max = DefaultSpoolMax
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Spool{cfg: cfg}
}

// Notify hands a to Next, after the alerts held (they keep their order),
// or holds it when Next fails.
func (s *Spool) Notify(a Alert) error {
	if a.ID == "" {
		a.ID = newID()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retry()
	if len(s.held) == 0 {
		err := s.cfg.Next.Notify(a)
		if err == nil {
			return nil
		}
		s.cfg.Logger.Error("alerts_held", "error", err, "detail", "alerts are kept in memory and retried until the outbox takes them")
	}
	if len(s.held) >= s.cfg.Max {
		s.dropped++
		s.cfg.Logger.Error("alert_dropped", "alert_id", s.held[0].ID, "rule", s.held[0].Rule, "held", len(s.held))
		s.held = s.held[1:]
	}
	s.held = append(s.held, a)
	return nil
}

// Held reports the alerts held and those dropped since NewSpool.
func (s *Spool) Held() (held int, dropped uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held), s.dropped
}

// Retry hands the held alerts to Next, in order, until one fails.
func (s *Spool) Retry() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retry()
}

func (s *Spool) retry() {
	n := 0
	for _, a := range s.held {
		if err := s.cfg.Next.Notify(a); err != nil {
			break
		}
		n++
	}
	if n == 0 {
		return
	}
	s.held = append(s.held[:0], s.held[n:]...)
	if len(s.held) == 0 {
		s.cfg.Logger.Info("alerts_released", "alerts", n)
	}
}
