package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// startupSlots counts, per client IP address, the connections that have
// not yet authenticated.
type startupSlots struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire takes one of addr's max slots. It returns the function that gives
// the slot back, safe to call more than once, or false when addr holds max
// already. An IPv6 address counts with its /64, which one host usually
// holds whole. Addresses other than TCP (a Unix socket) are not counted.
func (s *startupSlots) acquire(addr net.Addr, max int) (release func(), ok bool) {
	ta, isTCP := addr.(*net.TCPAddr)
	if max < 0 || !isTCP {
		return func() {}, true
	}
	ip := ta.IP
	if ip.To4() == nil {
		ip = ip.Mask(net.CIDRMask(64, 128))
	}
	key := ip.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[key] >= max {
		return nil, false
	}
	if s.n == nil {
		s.n = make(map[string]int)
	}
	s.n[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.n[key]--; s.n[key] <= 0 {
				delete(s.n, key)
			}
		})
	}, true
}

// errTooManyStartups refuses a connection from an address that has too many
// connections in startup already.
var errTooManyStartups = fatalf(codeTooManyConnections, nil, "too many connections from this address in startup")

// refuse tells a client why it is refused, before reading anything from it,
// and closes the connection.
func (s *Server) refuse(conn net.Conn, why *wireError) {
	if s.cfg.Observe != nil {
		s.cfg.Observe("failed:" + why.Code)
	}
	s.log.Warn("connection_refused", "client_addr", conn.RemoteAddr().String(), "error", why.Message)
	conn.SetWriteDeadline(s.cfg.Now().Add(time.Second))
	conn.Write(errorFrame(why))
	conn.Close()
}

// codeProgramLimitExceeded is program_limit_exceeded, for a client message
// larger than Config.MaxMessageSize.
const codeProgramLimitExceeded = "54000"

// clientFrameError is the error that ends a session whose client sent a
// frame pgwarden cannot read. A frame cannot be skipped without reading it,
// so the session ends, as PostgreSQL ends a connection on an invalid length.
func clientFrameError(err error) error {
	var fe *FrameError
	if !errors.As(err, &fe) {
		return err
	}
	if fe.Length < 4 || fe.Length-4 > pgMaxMessageSize {
		// Not a length PostgreSQL would accept either.
		return fatalf(codeProtocolViolation, err, "invalid message length %d for message type %q", fe.Length, fe.Type)
	}
	return fatalf(codeProgramLimitExceeded, err,
		"message of %d bytes exceeds pgwarden's limit of %d bytes (max_message_size)", fe.Length-4, fe.Max)
}

// authFrameError is the error that ends a session whose client sent a frame
// pgwarden cannot read before authentication completes.
func authFrameError(err error) error {
	var fe *FrameError
	if !errors.As(err, &fe) {
		return err
	}
	if fe.Length < 4 {
		return fatalf(codeProtocolViolation, err, "invalid message length %d", fe.Length)
	}
	return fatalf(codeProtocolViolation, err,
		"invalid message length: message of %d bytes before authentication exceeds the limit of %d bytes", fe.Length-4, fe.Max)
}

// maxPendingRequests bounds the requests a session has sent upstream and
// not yet seen answered. A client that pipelines without reading the
// answers would otherwise grow the pending queue for as long as the
// sockets' buffers take its requests; past the bound the session stops
// reading the client until the server has answered half of them, as a
// server that cannot send its answers stops reading requests.
const maxPendingRequests = 1 << 16

// room returns a channel that is closed once no more than max/2 entries
// are left, or nil when there are fewer than max.
func (q *pendingQueue) room(max int) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items)-q.head < max {
		return nil
	}
	if q.roomc == nil {
		q.roomc = make(chan struct{})
	}
	q.lowWater = max / 2
	return q.roomc
}

// signalRoom wakes a room waiter when the queue is short enough; q.mu is
// held.
func (q *pendingQueue) signalRoom() {
	if q.roomc != nil && len(q.items)-q.head <= q.lowWater {
		close(q.roomc)
		q.roomc = nil
	}
}

// awaitRoom holds the client's next request while maxPendingRequests
// requests are in flight, after sending the server what is buffered.
func (s *session) awaitRoom() error {
	ch := s.queue.room(maxPendingRequests)
	if ch == nil {
		return nil
	}
	if err := s.toServer.flush(); err != nil {
		return fmt.Errorf("write to upstream: %w", err)
	}
	// Answers come as soon as the client reads them. A wait past
	// roomTimeout lets one request through: a queue that disagreed with
	// the server would otherwise never empty, and the session would never
	// see its client leave; growth is then one request per roomTimeout.
	t := time.NewTimer(roomTimeout)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		s.log.Warn("pending_requests_full", "in_flight", s.queue.len(), "waited", roomTimeout)
		return nil
	case <-s.stop:
		return net.ErrClosed
	}
}

// roomTimeout bounds one wait for room in the pending queue.
const roomTimeout = 10 * time.Second

// drainClient half-closes the client's connection and discards what the
// client still sends, up to the rest of a refused frame of length n, until
// the client closes its side or the deadline passes. Closing a socket with
// unread data resets the connection, and a client still writing the
// message pgwarden refused would see the reset instead of the error that
// says why.
func drainClient(c net.Conn, n int64, deadline time.Time) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(deadline)
	io.CopyN(io.Discard, c, n+readBufSize)
}
