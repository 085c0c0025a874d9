package proxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgwarden/pgwarden/internal/crash"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("pgwarden: server closed")

// Server accepts PostgreSQL clients and relays each to the upstream server.
type Server struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	byPID     map[uint32]*session // pgwarden's BackendKeyData process id -> session
	closing   bool

	conns    atomic.Int64 // client connections open, including those in startup
	startups startupSlots // per address, connections not yet authenticated
	sessWG   sync.WaitGroup
	shutdown chan struct{}
	pool     *serverPool // parked upstream connections; nil without Config.Reuse
}

// NewServer validates cfg and returns a Server.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		listeners: make(map[net.Listener]struct{}),
		sessions:  make(map[*session]struct{}),
		byPID:     make(map[uint32]*session),
		shutdown:  make(chan struct{}),
	}
	if cfg.Reuse != nil {
		s.pool = newServerPool(*cfg.Reuse, cfg.Now)
	}
	return s, nil
}

// ReuseStats reports the reuse of upstream connections (Config.Reuse);
// zero without it.
func (s *Server) ReuseStats() ReuseStats {
	if s.pool == nil {
		return ReuseStats{}
	}
	return s.pool.stats()
}

// Serve accepts connections on ln until Shutdown or Close. It always returns
// a non-nil error; ErrServerClosed after a shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			select {
			case <-s.shutdown:
				return ErrServerClosed
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				// Out of file descriptors or similar: back off, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept_failed", "error", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.conns.Add(1)
		s.sessWG.Add(1)
		go func() {
			defer s.sessWG.Done()
			defer s.conns.Add(-1)
			growStack()
			s.serveConn(conn)
		}()
	}
}

// Shutdown stops accepting, then waits for sessions to end by themselves
// until ctx is done, and then closes the remaining ones, telling each client
// why. It returns ctx.Err() if sessions had to be closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.shutdown)
	}
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	if s.pool != nil {
		// Parked connections end now; sessions still running close
		// theirs when they end.
		s.pool.close()
	}

	// Sessions waiting for their client between transactions end now;
	// the others end as soon as they reach that point, or at the deadline.
	s.mu.Lock()
	for sess := range s.sessions {
		if sess.idle.Load() {
			sess.terminate(errShutdownIdle)
		}
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.sessWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for sess := range s.sessions {
		sess.terminate(fatalf(codeAdminShutdown, nil, "terminating connection because pgwarden is shutting down"))
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// Close closes the listeners and every session at once.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Shutdown(ctx)
	return nil
}

func (s *Server) isShuttingDown() bool {
	select {
	case <-s.shutdown:
		return true
	default:
		return false
	}
}

// errShutdownIdle ends a session at a clean point during a graceful shutdown.
var errShutdownIdle = fatalf(codeAdminShutdown, nil, "terminating connection because pgwarden is shutting down")

// Sessions reports the number of client connections open.
func (s *Server) Sessions() int { return int(s.conns.Load()) }

// SessionSnapshot is what the admin API shows of a live session.
type SessionSnapshot struct {
	ID           string    `json:"id"`
	User         string    `json:"user"`
	Employee     string    `json:"employee"`
	IdentifiedBy string    `json:"identified_by"`
	Database     string    `json:"database"`
	Application  string    `json:"application_name"`
	ClientAddr   string    `json:"client_addr"`
	ClientTLS    bool      `json:"client_tls"`
	StartedAt    time.Time `json:"started_at"`

	// Issuer, Subject and Groups are what the identity provider's token
	// said, for identified_by "oidc".
	Issuer  string   `json:"issuer,omitempty"`
	Subject string   `json:"subject,omitempty"`
	Groups  []string `json:"groups,omitempty"`
}

// List returns the sessions that have completed their startup, oldest
// first.
func (s *Server) List() []SessionSnapshot {
	s.mu.Lock()
	out := make([]SessionSnapshot, 0, len(s.sessions))
	for sess := range s.sessions {
		info := sess.published.Load()
		if info == nil {
			continue
		}
		snap := SessionSnapshot{ID: info.ID, User: info.User, Employee: info.Employee, IdentifiedBy: info.IdentifiedBy,
			Issuer: info.Issuer, Subject: info.Subject, Groups: info.Groups,
			Database: info.Database, Application: info.ApplicationName,
			ClientTLS: info.ClientTLS, StartedAt: info.StartedAt}
		if info.ClientAddr != nil {
			snap.ClientAddr = info.ClientAddr.String()
		}
		out = append(out, snap)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b SessionSnapshot) int { return a.StartedAt.Compare(b.StartedAt) })
	return out
}

// Kill ends the session with the given id, telling its client why (FATAL
// 57P01), and reports whether there was one.
func (s *Server) Kill(id, reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.sessions {
		if info := sess.published.Load(); info != nil && info.ID == id {
			msg := "session ended by an administrator"
			if reason != "" {
				msg += ": " + reason
			}
			sess.terminate(&wireError{Severity: "FATAL", Code: codeAdminShutdown, Message: msg})
			return true
		}
	}
	return false
}

// register gives sess a BackendKeyData of pgwarden's own, unique among live
// sessions, sized like the upstream server's key. The process id is the
// upstream backend's when no other session has it, so that it matches
// pg_backend_pid() and the pid in the session's own NotificationResponses;
// the secret is always pgwarden's own.
func (s *Server) register(sess *session, upstreamPID uint32, keyLen int) (pid uint32, secret []byte) {
	secret = make([]byte, keyLen)
	s.mu.Lock()
	defer s.mu.Unlock()
	pid = upstreamPID
	for {
		if _, taken := s.byPID[pid]; !taken && pid != 0 {
			break
		}
		var b [4]byte
		rand.Read(b[:])
		pid = binary.BigEndian.Uint32(b[:]) &^ (1 << 31) // positive, as a real pid
	}
	rand.Read(secret)
	sess.key = cancelKey{pid: pid, secret: secret}
	s.byPID[pid] = sess
	return pid, secret
}

func (s *Server) unregister(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byPID[sess.key.pid] == sess {
		delete(s.byPID, sess.key.pid)
	}
	delete(s.sessions, sess)
}

// cancelKey is a BackendKeyData: process id and secret.
type cancelKey struct {
	pid    uint32
	secret []byte
}

// forwardCancel maps a client's CancelRequest to the upstream key of the
// session it names and forwards it. A request whose secret does not match
// cancels nothing, and the client learns nothing either way.
func (s *Server) forwardCancel(pid uint32, secret []byte, log *slog.Logger) {
	s.mu.Lock()
	sess := s.byPID[pid]
	s.mu.Unlock()
	if sess == nil || subtle.ConstantTimeCompare(sess.key.secret, secret) != 1 {
		log.Info("cancel_request_unmatched")
		return
	}
	log.Info("cancel_request_forwarded", "target_session_id", sess.id)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CancelTimeout)
	defer cancel()
	if err := sess.cancelUpstream(ctx); err != nil {
		log.Warn("cancel_request_failed", "target_session_id", sess.id, "error", err)
	}
}

// serveConn runs one client connection from accept to close.
func (s *Server) serveConn(conn net.Conn) {
	if s.cfg.Observe != nil {
		s.cfg.Observe("connection")
	}
	release, ok := s.startups.acquire(conn.RemoteAddr(), s.cfg.MaxStartupPerAddress)
	if !ok {
		s.refuse(conn, errTooManyStartups)
		return
	}
	defer release()
	sess := newSession(s, conn)
	sess.authenticated = release
	// Known to Shutdown from the start, so that a client that never
	// finishes startup cannot hold it past its deadline.
	s.mu.Lock()
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	defer s.unregister(sess)
	defer func() {
		// The last line of defence: a session contains the panics of its
		// jobs; this catches one in its teardown.
		if v := recover(); v != nil {
			crash.Recovered(sess.log, "session", v)
			sess.connMu.Lock()
			client, server := sess.client, sess.server
			sess.connMu.Unlock()
			client.Close()
			if server != nil {
				server.Close()
			}
		}
	}()
	sess.run()
}

func newSessionID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// isClosedConn reports errors that mean the peer went away, which are logged
// as a normal end rather than a failure.
func isClosedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscallECONNRESET) || errors.Is(err, syscallEPIPE)
}
