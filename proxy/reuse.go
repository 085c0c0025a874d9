package proxy

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Defaults of Reuse.
const (
	DefaultReuseMaxIdle     = 10
	DefaultReuseIdleTimeout = 60 * time.Second
	DefaultReuseMaxLifetime = time.Hour
)

const (
	// resetTimeout bounds DISCARD ALL before a connection is parked.
	resetTimeout = 5 * time.Second
	// terminateTimeout bounds the Terminate that closes a parked one.
	terminateTimeout = time.Second
	discardAllTag    = "DISCARD ALL"
)

// States of a session's server connection (session.upstreamState).
const (
	upstreamAttached int32 = iota // the session owns it
	upstreamCanceled              // a CancelRequest was sent for it: never reused
	upstreamDetached              // parked: it no longer belongs to the session
)

// Reuse configures the reuse of upstream connections (Config.Reuse), as
// PgBouncer's session pooling does, for the sessions pgwarden's own login
// authenticates: there the client never authenticates to the server, so a
// server connection that a session left clean can serve the next session
// of the same role, database and startup parameters.
//
// A connection is parked only when its session ended cleanly: the client
// left (Terminate or a close) outside any transaction with nothing in
// flight, no COPY, and neither the guard nor an administrator stopped
// anything in it; then DISCARD ALL must answer with ReadyForQuery 'I'.
// The next client gets AuthenticationOk, the server's ParameterStatus as
// it stands after the reset, a BackendKeyData of pgwarden's own and
// ReadyForQuery 'I', as from a fresh connection. What DISCARD ALL does not
// reset stays for it, as under PgBouncer: dblink's named connections, the
// session state of procedural languages.
type Reuse struct {
	// MaxIdle caps the parked connections per role, database and
	// startup parameters (default 10).
	MaxIdle int
	// IdleTimeout closes a connection parked this long (default 60s).
	IdleTimeout time.Duration
	// MaxLifetime closes a connection this long after it was opened, at
	// the end of the session that holds it then (default 1h).
	MaxLifetime time.Duration
}

func (r *Reuse) setDefaults() {
	if r.MaxIdle <= 0 {
		r.MaxIdle = DefaultReuseMaxIdle
	}
	if r.IdleTimeout <= 0 {
		r.IdleTimeout = DefaultReuseIdleTimeout
	}
	if r.MaxLifetime <= 0 {
		r.MaxLifetime = DefaultReuseMaxLifetime
	}
}

// ReuseStats counts the reuse of upstream connections (Server.ReuseStats).
type ReuseStats struct {
	// Parked is the number of connections waiting for a session now.
	Parked int
	// Opened counts the connections opened for sessions that may reuse
	// one, Reused the sessions that took a parked connection.
	Opened, Reused uint64
}

// serverConn is an upstream connection of a session under pgwarden's own
// login, with what a later session needs to take it over.
type serverConn struct {
	conn    net.Conn
	key     string
	cancel  cancelKey // the server's BackendKeyData
	created time.Time
	// negotiate is the server's NegotiateProtocolVersion, if it sent one.
	negotiate []byte
	// params is every parameter the server reported, with its latest
	// value, in the order first reported.
	params []paramStatus

	parked bool      // in the pool (under serverPool.mu)
	since  time.Time // when it was parked
	timer  *time.Timer
}

type paramStatus struct{ name, value string }

// reuseKey is what two sessions must share to share a server connection:
// the upstream TLS mode, the protocol version and every parameter of the
// startup message sent upstream (role, database, options...), exactly;
// only their order, which clients vary, does not count.
func reuseKey(mode TLSMode, sm *startupMessage) string {
	sorted := &startupMessage{ProtocolVersion: sm.ProtocolVersion, Parameters: sm.Parameters, order: slices.Sorted(maps.Keys(sm.Parameters))}
	return string(mode) + "\x00" + string(sorted.encode())
}

// setParam records a ParameterStatus body.
func (c *serverConn) setParam(body []byte) error {
	var ps pgproto3.ParameterStatus
	if err := ps.Decode(body); err != nil {
		return err
	}
	c.set(ps.Name, ps.Value)
	return nil
}

// set records a parameter's value.
func (c *serverConn) set(name, value string) {
	for i := range c.params {
		if c.params[i].name == name {
			c.params[i].value = value
			return
		}
	}
	c.params = append(c.params, paramStatus{name, value})
}

// serverPool holds the parked upstream connections, by key.
type serverPool struct {
	cfg Reuse
	now func() time.Time

	mu     sync.Mutex
	idle   map[string][]*serverConn // oldest first
	n      int
	closed bool

	opened, reused atomic.Uint64
}

func newServerPool(cfg Reuse, now func() time.Time) *serverPool {
	return &serverPool{cfg: cfg, now: now, idle: make(map[string][]*serverConn)}
}

// get takes the most recently parked live connection for key; nil if
// there is none. Connections found expired or dead are closed.
func (p *serverPool) get(key string) *serverConn {
	for {
		p.mu.Lock()
		list := p.idle[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		c := list[len(list)-1]
		p.removeLocked(key, len(list)-1)
		p.mu.Unlock()
		c.timer.Stop()
		now := p.now()
		if now.Sub(c.since) >= p.cfg.IdleTimeout || now.Sub(c.created) >= p.cfg.MaxLifetime || readable(c.conn) {
			// Bytes from a parked connection are the server's goodbye
			// (a FATAL before it closes) or nothing a session can use.
			go closeServer(c.conn)
			continue
		}
		p.reused.Add(1)
		return c
	}
}

// put parks c and reports whether it did; the caller closes c otherwise.
func (p *serverPool) put(c *serverConn) bool {
	now := p.now()
	left := p.cfg.MaxLifetime - now.Sub(c.created)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || left <= 0 || len(p.idle[c.key]) >= p.cfg.MaxIdle {
		return false
	}
	c.parked, c.since = true, now
	p.idle[c.key] = append(p.idle[c.key], c)
	p.n++
	c.timer = time.AfterFunc(min(p.cfg.IdleTimeout, left), func() { p.expire(c) })
	return true
}

// expire closes c if it is still parked.
func (p *serverPool) expire(c *serverConn) {
	p.mu.Lock()
	list := p.idle[c.key]
	i := -1
	if c.parked {
		for j, x := range list {
			if x == c {
				i = j
			}
		}
	}
	if i >= 0 {
		p.removeLocked(c.key, i)
	}
	p.mu.Unlock()
	if i >= 0 {
		closeServer(c.conn)
	}
}

func (p *serverPool) removeLocked(key string, i int) {
	list := p.idle[key]
	list[i].parked = false
	list = append(list[:i], list[i+1:]...)
	if len(list) == 0 {
		delete(p.idle, key)
	} else {
		p.idle[key] = list
	}
	p.n--
}

// close closes every parked connection, and parks none after.
func (p *serverPool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*serverConn
	for _, list := range p.idle {
		all = append(all, list...)
	}
	for _, c := range all {
		c.parked = false
	}
	clear(p.idle)
	p.n = 0
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		c.timer.Stop()
		wg.Add(1)
		go func() {
			defer wg.Done()
			closeServer(c.conn)
		}()
	}
	wg.Wait()
}

func (p *serverPool) stats() ReuseStats {
	p.mu.Lock()
	n := p.n
	p.mu.Unlock()
	return ReuseStats{Parked: n, Opened: p.opened.Load(), Reused: p.reused.Load()}
}

// closeServer ends an idle upstream session with Terminate and closes it.
func closeServer(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(terminateTimeout))
	conn.Write([]byte{'X', 0, 0, 0, 4})
	conn.Close()
}

// discardAll is the Query that resets a server connection before it is
// parked: it drops temporary tables, prepared statements, cursors,
// listens, advisory locks and plans, and resets every setting.
// https://www.postgresql.org/docs/current/sql-discard.html
var discardAll = func() []byte {
	b, _ := (&pgproto3.Query{String: discardAllTag}).Encode(nil)
	return b
}()

// errNotReusable is why a server connection was not parked.
var errNotReusable = errors.New("server connection not reusable")

// parkable reports whether the session, ended with err, left its server
// connection in a state another session may take over: no transaction,
// not even the implicit one of an extended-protocol batch without its
// Sync, nothing in flight, no COPY. It runs after both directions of the
// relay have stopped.
func (s *session) parkable(err error) bool {
	// The client left: it sent Terminate, which was not forwarded, or
	// closed its connection (an EOF of the client's, not wrapped in an
	// error of pgwarden's).
	_, wire := asWireError(err)
	left := s.quitWithheld && errors.Is(err, errClientTerminated) || !wire && errors.Is(err, io.EOF)
	return left && s.upstream != nil && s.srv.pool != nil && s.published.Load() != nil &&
		s.reason.Load() == nil && !s.srv.isShuttingDown() &&
		s.txStatus == 'I' && s.queue.len() == 0 && !s.unsynced && !s.queue.copyWork.Load() && !s.copyIn && !s.copyOut &&
		!s.blocked && !s.guardStopped.Load() && !s.failTx.Load() && !s.serverFatal && s.gate.Load() == nil
}

// park hands the session's server connection to the pool: the session's
// cancel key is withdrawn first, then DISCARD ALL resets the server
// session. It reports whether the pool took the connection; if not, the
// caller still owns it.
func (s *session) park() bool {
	s.srv.unregister(s)
	// A CancelRequest forwarded for this session from now on is dropped;
	// one forwarded before may yet land, so the connection is not reused.
	if !s.upstreamState.CompareAndSwap(upstreamAttached, upstreamDetached) {
		return false
	}
	if err := s.reset(); err != nil {
		s.log.Debug("upstream_not_parked", "error", err)
		return false
	}
	s.upstream.conn, s.upstream.cancel = s.server, s.upstreamKey
	return s.srv.pool.put(s.upstream)
}

// reset runs DISCARD ALL on the server connection and reads its answer up
// to ReadyForQuery 'I', with nothing after it.
func (s *session) reset() error {
	if s.fromServer.end > s.fromServer.start {
		return errNotReusable
	}
	s.fromServer.starve = nil
	if err := s.server.SetDeadline(s.cfg.Now().Add(resetTimeout)); err != nil {
		return err
	}
	if err := s.toServer.writeNow(discardAll); err != nil {
		return err
	}
	discarded := false
	for {
		frame, err := s.fromServer.next()
		if err != nil {
			return err
		}
		switch body := frame[headerLen:]; frame[0] {
		case 'S':
			if err := s.upstream.setParam(body); err != nil {
				return err
			}
		case 'N', 'A': // NoticeResponse, NotificationResponse
		case 'C':
			discarded = string(bytes.TrimSuffix(body, []byte{0})) == discardAllTag
		case 'Z':
			if !discarded || len(body) != 1 || body[0] != 'I' || s.fromServer.end > s.fromServer.start {
				return errNotReusable
			}
			return s.server.SetDeadline(time.Time{})
		default:
			return errNotReusable
		}
	}
}

// resume starts the session on a parked server connection: the client
// gets what a fresh connection would have sent after authentication.
func (s *session) resume(sc *serverConn) error {
	s.upstream = sc
	s.upstreamKey = sc.cancel
	s.useServer(sc.conn)
	if sc.negotiate != nil {
		if err := s.toClient.write(sc.negotiate); err != nil {
			return err
		}
	}
	ok, _ := (&pgproto3.AuthenticationOk{}).Encode(nil)
	if err := s.toClient.write(ok); err != nil {
		return err
	}
	for _, p := range sc.params {
		out, _ := (&pgproto3.ParameterStatus{Name: p.name, Value: p.value}).Encode(nil)
		if err := s.toClient.write(out); err != nil {
			return err
		}
	}
	if err := s.writeKeyData(); err != nil {
		return err
	}
	s.log.Debug("upstream_reused")
	return s.ready([]byte{'Z', 0, 0, 0, 5, 'I'})
}
