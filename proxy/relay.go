package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/internal/crash"
)

// relay runs both directions until one ends, then stops the other.
func (s *session) relay() error {
	s.fromClient.starve = s.clientStarve
	s.fromServer.starve = func() error {
		if err := s.toClient.flush(); err != nil {
			return &clientWriteError{err}
		}
		return nil
	}
	// The client -> server direction runs on the session's goroutine,
	// whose stack the startup has grown: a goroutine fewer to start, grow
	// and wake per session. Whichever direction ends first stops the
	// other, and its error is the session's.
	var first atomic.Bool
	errc := make(chan error, 1)
	go func() {
		growStack()
		err := s.contain("server_to_client", s.serverToClient)
		if first.CompareAndSwap(false, true) {
			s.interrupt()
		}
		errc <- err
	}()
	err := s.contain("client_to_server", s.clientToServer)
	if !first.CompareAndSwap(false, true) {
		// The server -> client direction ended first, and interrupted
		// this one.
		return <-errc
	}
	if errors.Is(err, errClientTerminated) && s.queue.len() > 0 {
		// The server answers what the client sent before its Terminate,
		// then closes, as it would have for the client directly: relay
		// that, for a while. With nothing in flight it has nothing to
		// answer, and its close is not waited for.
		t := time.NewTimer(terminateDrain)
		defer t.Stop()
		select {
		case <-errc:
			return err
		case <-t.C:
		}
	}
	s.interrupt()
	<-errc
	return err
}

// terminateDrain bounds how long the server's last answers are relayed
// after the client's Terminate.
const terminateDrain = time.Second

// clientWriteError is a failed write to the client, met while reading the
// server: it ends the session as the client's doing, not the server's.
type clientWriteError struct{ err error }

func (e *clientWriteError) Error() string { return "write to client: " + e.err.Error() }
func (e *clientWriteError) Unwrap() error { return e.err }

// errInternal is what a client is told when pgwarden's own code failed
// while serving it: the session ends rather than go on uninspected.
var errInternal = "internal error, the session was closed"

// contain runs one of the session's jobs and turns a panic in it (in the
// relay, the inspector or authentication) into a FATAL XX000 for this
// session alone.
func (s *session) contain(where string, f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			p := crash.Recovered(s.log, where, v)
			err = &wireError{Severity: "FATAL", Code: codeInternalError, Message: errInternal, Err: p}
		}
	}()
	return f()
}

// clientStarve runs before the client reader blocks: it flushes what the
// client sent, and arms the idle timeout when nothing is in flight.
func (s *session) clientStarve() error {
	if err := s.toServer.flush(); err != nil {
		return fmt.Errorf("write to upstream: %w", err)
	}
	if s.cfg.IdleTimeout > 0 {
		s.armIdle(false)
	}
	return nil
}

// armIdle sets the client read deadline to the idle timeout when no request
// awaits an answer, and clears it otherwise. Both directions call it; the
// queue lock orders their calls.
func (s *session) armIdle(fromServer bool) {
	s.queue.mu.Lock()
	defer s.queue.mu.Unlock()
	switch {
	case s.wake.Load():
		// wakeClientReader's deadline stands.
	case len(s.queue.items)-s.queue.head == 0:
		s.client.SetReadDeadline(s.cfg.Now().Add(s.cfg.IdleTimeout))
	case !fromServer:
		s.client.SetReadDeadline(time.Time{})
	}
}

// wakeClientReader interrupts the client -> server goroutine's read, for
// it to send the server the Syncs a failed COPY did not read (see
// settleCopy) although the client sends nothing more.
func (s *session) wakeClientReader() {
	s.queue.mu.Lock()
	defer s.queue.mu.Unlock()
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.wake.Store(true)
	s.client.SetReadDeadline(aLongTimeAgo)
}

// woken reports whether a read ended by its deadline was woken by
// wakeClientReader, and if so restores the deadline, unless the session is
// being stopped.
func (s *session) woken() bool {
	s.queue.mu.Lock()
	defer s.queue.mu.Unlock()
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if !s.wake.Swap(false) {
		return false
	}
	select {
	case <-s.stop:
		return false
	default:
	}
	if s.cfg.IdleTimeout > 0 && len(s.queue.items)-s.queue.head == 0 {
		s.client.SetReadDeadline(s.cfg.Now().Add(s.cfg.IdleTimeout))
	} else {
		s.client.SetReadDeadline(time.Time{})
	}
	return true
}

// clientToServer relays client -> server, recording each request that the
// server will answer.
func (s *session) clientToServer() error {
	for {
		frame, err := s.fromClient.next()
		if err != nil {
			if isTimeout(err) && s.woken() {
				if err := s.settleCopy(false); err != nil {
					return err
				}
				if err := s.toServer.flush(); err != nil {
					return fmt.Errorf("write to upstream: %w", err)
				}
				continue
			}
			if isTimeout(err) && s.reason.Load() == nil && s.cfg.IdleTimeout > 0 {
				return fatalf(codeIdleSessionTimeout, nil, "terminating connection due to idle-session timeout")
			}
			return clientFrameError(err)
		}
		s.idle.Store(false)
		typ, body := frame[0], frame[headerLen:]
		switch typ {
		case 'Q', 'P', 'B', 'D', 'E', 'C', 'S', 'F':
			// Until its Sync, an extended-protocol request holds the server in an implicit transaction.
			s.unsynced = typ != 'S' && (s.unsynced || typ != 'Q' && typ != 'F')
			if typ == 'S' && s.mayCopyIn {
				if err := s.awaitCopyIn(); err != nil {
					return err
				}
			}
			if err := s.settleCopy(typ == 'S'); err != nil {
				return err
			}
			if err := s.awaitRoom(); err != nil {
				return err
			}
			// A Sync runs nothing and may be what the server needs to
			// answer the batch in flight (after an error), so it is never held.
			if s.insp != nil && typ != 'S' {
				if err := s.awaitBatch(); err != nil {
					return err
				}
			}
			if typ != 'S' && s.failTx.Load() && s.failTx.Swap(false) {
				// A block inside a transaction block: the client was told
				// the transaction failed; make it so on the server, as an
				// error of its own would have, before anything else runs
				// in it. (A Sync runs nothing; its ReadyForQuery says 'E'
				// meanwhile.)
				if err := s.awaitBatch(); err != nil {
					return err
				}
				s.queue.push(&pending{kind: pendQuery, hidden: true})
				if err := s.toServer.write(failTxQuery); err != nil {
					return fmt.Errorf("write to upstream: %w", err)
				}
			}
			if typ == 'S' && s.batchExecutes > 1 {
				if err := s.settleBatch(); err != nil {
					return err
				}
			}
			if (typ == 'Q' || typ == 'F') && s.insp != nil && s.batchExecutes > 0 {
				// A Query (or FunctionCall) inside an unsynced
				// extended-protocol batch: had a
				// statement of the batch failed, the server would skip it
				// to the Sync. A blocked one must have the same effect,
				// whether or not the cancel landed in time.
				if err := s.settleBatch(); err != nil {
					return err
				}
				s.batchExecutes = 0
			}
			replace, err := s.trackRequest(typ, body)
			if err != nil {
				var we *wireError
				if errors.As(err, &we) {
					return err
				}
				return fatalf(codeProtocolViolation, err, "invalid %q message from client", typ)
			}
			if replace != nil {
				frame = replace
			}
		case 'd': // CopyData
			// A COPY in text or CSV fails on a line only once the line is
			// whole: what matters for the Syncs deferred after it is
			// whether a line end was sent.
			if n := bytes.Count(body, newline); n > 0 {
				s.queue.copyInput(int64(n))
			}
		case 'c', 'f': // CopyDone, CopyFail
			s.queue.endCopyIn()
		case 'X':
			s.clientQuit.Store(true)
			if s.upstream != nil && s.queue.len() == 0 {
				// The server connection may serve another session:
				// teardown decides.
				s.quitWithheld = true
			} else {
				s.toServer.write(frame)
			}
			s.toServer.flush()
			return errClientTerminated
		}
		if err := s.toServer.write(frame); err != nil {
			return fmt.Errorf("write to upstream: %w", err)
		}
	}
}

// awaitCopyIn holds a Sync sent behind a statement that may begin a COPY
// FROM STDIN until the server has begun it or answered the statement: a
// Sync the server reads as COPY input is one pgwarden must defer, not
// forward (see pendingQueue.copyInEnded).
func (s *session) awaitCopyIn() error {
	s.mayCopyIn = false
	_, err := s.awaitServer(s.queue.settled(), s.cfg.HoldTimeout)
	return err
}

// awaitServer waits until ch is closed (nil: at once), at most wait
// (expired), having sent what is buffered for the server with a Flush: the
// server holds its answers to an extended-protocol batch until a Sync or a
// Flush.
func (s *session) awaitServer(ch <-chan struct{}, wait time.Duration) (expired bool, err error) {
	if ch == nil {
		return false, nil
	}
	if err := s.toServer.write(flushMsg); err != nil {
		return false, fmt.Errorf("write to upstream: %w", err)
	}
	if err := s.toServer.flush(); err != nil {
		return false, fmt.Errorf("write to upstream: %w", err)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
		return false, nil
	case <-t.C:
		s.log.Debug("hold_expired", "waited", wait)
		return true, nil
	case <-s.stop:
		return false, net.ErrClosed
	}
}

// settleCopy runs before a request when Syncs sent as COPY input are
// deferred: it waits for the COPY's outcome, and sends the server the
// Syncs a failed COPY would not have read. A Sync sent while the COPY lasts
// does not wait: it is deferred too.
func (s *session) settleCopy(sync bool) error {
	if !s.queue.copyWork.Load() {
		return nil
	}
	if ch, inCopy := s.queue.copyOutcome(sync); ch != nil {
		wait := s.cfg.HoldTimeout
		if inCopy {
			// A request during the COPY fails it, unless the COPY has
			// failed already and its error is on the way: wait for that
			// error only as long as it takes to cross.
			wait = min(wait, copyRaceWait)
		}
		expired, err := s.awaitServer(ch, wait)
		if err != nil {
			return err
		}
		if expired && !inCopy {
			s.queue.forgetDeferred()
		}
	}
	for n := s.queue.takeRelease(); n > 0; n-- {
		s.queue.push(&pending{kind: pendSync})
		if err := s.toServer.write(syncMsg); err != nil {
			return fmt.Errorf("write to upstream: %w", err)
		}
	}
	return nil
}

// mentionsStdin reports whether sql holds the word STDIN in any case: a
// statement that may begin a COPY FROM STDIN.
func mentionsStdin(sql []byte) bool {
	for i := 0; i+5 <= len(sql); i++ {
		if sql[i]|0x20 == 's' && sql[i+1]|0x20 == 't' && sql[i+2]|0x20 == 'd' && sql[i+3]|0x20 == 'i' && sql[i+4]|0x20 == 'n' {
			return true
		}
	}
	return false
}

// copyRaceWait bounds how long a request sent during a COPY FROM STDIN
// waits for the error of a COPY that may have failed already.
const copyRaceWait = 200 * time.Millisecond

// syncMsg is a Sync, sent for the client when a deferred one is released.
var syncMsg = []byte{'S', 0, 0, 0, 4}

// awaitBatch holds a request of a new batch until the batches before it
// are answered (their ReadyForQuery has arrived), in inspected sessions. A
// block can then always cancel the upstream query: no later batch is on the
// server for the cancel to hit. Clients that do not pipeline across Syncs
// never wait here.
//
// The hold lasts at most Config.HoldTimeout: past it the request goes on,
// and a block of the batch before only drains its result instead of
// cancelling it. So an order of messages that leaves the server waiting
// for input behind the held request (one pgwarden does not foresee) costs
// that much time, never the session.
func (s *session) awaitBatch() error {
	var expired <-chan time.Time
	for {
		ch := s.queue.awaitingReady()
		if ch == nil {
			return nil
		}
		if err := s.toServer.flush(); err != nil {
			return fmt.Errorf("write to upstream: %w", err)
		}
		if expired == nil {
			t := time.NewTimer(s.cfg.HoldTimeout)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-ch:
		case <-expired:
			s.log.Debug("hold_expired", "waited", s.cfg.HoldTimeout)
			return nil
		case <-s.stop:
			return net.ErrClosed
		}
	}
}

// abortPortal names a portal no client can have bound: executing it makes
// the server fail the batch it is in.
var flushMsg = []byte{'H', 0, 0, 0, 4}

// describePortalFrame encodes Describe of the named portal.
func describePortalFrame(name []byte) []byte {
	b, _ := (&pgproto3.Describe{ObjectType: 'P', Name: string(name)}).Encode(nil)
	return b
}

var abortPortal, _ = (&pgproto3.Execute{Portal: "pgwarden: batch blocked"}).Encode(nil)

// settleBatch runs before the Sync of an extended-protocol batch with more
// than one Execute, in inspected sessions. It waits until the server has
// answered the batch, and if a statement of it was blocked, makes the server
// fail the batch before the Sync commits it: the client was told the batch
// failed, so the statements after the blocked one, which the server may have
// run when the cancel came too late, must not take effect. The cost is one
// round trip per multi-statement batch.
func (s *session) settleBatch() error {
	// As in awaitBatch, past HoldTimeout the Sync goes on: a statement of
	// the batch blocked later is drained, not rolled back by it.
	if expired, err := s.awaitServer(s.queue.settled(), s.cfg.HoldTimeout); err != nil || expired {
		return err
	}
	if s.blockedBatch.Load() != s.queue.nextBatch() || s.queue.isFailing() {
		// Not blocked, or the server is failing the batch already.
		return nil
	}
	// Its ErrorResponse is dropped with everything else the server sends
	// for a blocked batch.
	s.queue.push(&pending{kind: pendExecute})
	return s.toServer.write(abortPortal)
}

// copyFailBlocked ends a COPY FROM STDIN the server began for a blocked
// statement. Written straight to the server by the server -> client
// goroutine: a net.Conn's writes are whole, and the client -> server
// goroutine writes whole frames too.
var copyFailBlocked, _ = (&pgproto3.CopyFail{Message: "pgwarden: statement blocked"}).Encode(nil)

// failTxQuery fails the server's transaction block after a block.
var failTxQuery, _ = (&pgproto3.Query{String: "pgwarden: transaction failed after a block"}).Encode(nil)

// Requests sent to the server in place of a statement the inspector refused:
// each fails, so the server ends the batch (and fails the transaction, if one
// is open) as it would have for an error of its own.
var (
	deniedQuery, _   = (&pgproto3.Query{String: "pgwarden: statement refused"}).Encode(nil)
	deniedExecute, _ = (&pgproto3.Execute{Portal: "pgwarden: statement refused"}).Encode(nil)
	deniedCall, _    = (&pgproto3.FunctionCall{Function: 0}).Encode(nil)
)

// screen shows a new statement to the inspector. It returns the verdict when
// the statement is refused, and a *wireError for Kill.
func (s *session) screen(st *Statement) (*Verdict, error) {
	v := s.insp.Statement(st)
	switch v.Action {
	case Block:
		s.guardStopped.Store(true)
		return &v, nil
	case Kill:
		s.insp.Blocked(st, v)
		s.log.Warn("session_killed", "statement_seq", st.Seq, "reason", v.Reason)
		return nil, &wireError{Severity: "FATAL", Code: codeInsufficientPrivilege, Message: v.Reason}
	}
	return nil, nil
}

// trackRequest queues the answer a request expects; with an inspector it
// also follows prepared statements and portals so that each Execute is known
// by its SQL, and returns the frame to send instead when the inspector
// refused the statement.
func (s *session) trackRequest(typ byte, body []byte) ([]byte, error) {
	if s.insp == nil {
		var k pendingKind
		switch typ {
		case 'Q':
			k = pendQuery
		case 'F':
			k = pendFunctionCall
		case 'P':
			k = pendParse
		case 'B':
			k = pendBind
		case 'D':
			k = pendDescribePortal
			if len(body) > 0 && body[0] == 'S' {
				k = pendDescribeStmt
			}
		case 'E':
			k = pendExecute
		case 'C':
			k = pendClose
		case 'S':
			if !s.queue.pushSync() {
				return dropFrame, nil
			}
			return nil, nil
		}
		s.queue.push(&pending{kind: k})
		return nil, nil
	}

	switch typ {
	case 'Q':
		sql, _, err := cstring(body)
		if err != nil {
			return nil, err
		}
		st := s.newStatement(SimpleQuery, string(sql))
		if mentionsStdin(sql) {
			s.mayCopyIn = true
		}
		denied, err := s.screen(st)
		if err != nil {
			return nil, err
		}
		s.queue.push(&pending{kind: pendQuery, stmt: st, denied: denied})
		if denied != nil {
			return deniedQuery, nil
		}
	case 'F':
		if len(body) < 4 {
			return nil, errMalformed
		}
		st := s.newStatement(FunctionCall, "")
		st.FunctionOID = binary.BigEndian.Uint32(body)
		denied, err := s.screen(st)
		if err != nil {
			return nil, err
		}
		s.queue.push(&pending{kind: pendFunctionCall, stmt: st, denied: denied})
		if denied != nil {
			return deniedCall, nil
		}
	case 'P':
		name, rest, err := cstring(body)
		if err != nil {
			return nil, err
		}
		sql, rest, err := cstring(rest)
		if err != nil {
			return nil, err
		}
		oids, err := parseParamOIDs(rest)
		if err != nil {
			return nil, err
		}
		ps := &preparedStmt{sql: string(sql), paramOIDs: oids, mayCopyIn: mentionsStdin(sql)}
		s.prepared[string(name)] = ps
		s.queue.push(&pending{kind: pendParse, ps: ps})
	case 'B':
		portalName, stmtName, params, formats, err := bindNames(body)
		if err != nil {
			return nil, err
		}
		ps := s.prepared[string(stmtName)]
		if ps == nil {
			// Prepared with SQL PREPARE, or unknown: the server will say.
			ps = &preparedStmt{}
		}
		if len(s.portals) >= portalsSweepAt {
			s.sweepPortals()
		}
		p := &portal{ps: ps, resultFormats: formats, batch: s.queue.nextBatch()}
		if len(params) > 4 && len(params) <= MaxKeptParams && s.wantsParams() {
			// Kept for Statement.Params: body is reused by the next read.
			p.params = bytes.Clone(params)
		}
		s.portals[string(portalName)] = p
		s.queue.push(&pending{kind: pendBind, portal: p})
	case 'D':
		if len(body) < 2 {
			return nil, errMalformed
		}
		name, _, err := cstring(body[1:])
		if err != nil {
			return nil, err
		}
		if body[0] == 'S' {
			ps := s.prepared[string(name)]
			if ps == nil {
				ps = &preparedStmt{}
			}
			ps.described = true
			s.queue.push(&pending{kind: pendDescribeStmt, ps: ps})
		} else {
			p := s.portals[string(name)]
			if p == nil {
				p = &portal{}
			}
			p.descRequested = true
			s.queue.push(&pending{kind: pendDescribePortal, portal: p})
		}
	case 'E':
		name, rest, err := cstring(body)
		if err != nil || len(rest) < 4 {
			return nil, errMalformed
		}
		p := s.portals[string(name)]
		if p == nil {
			p = &portal{ps: &preparedStmt{}}
		}
		if !p.descRequested && !p.ps.described && !p.ps.descKnown.Load() {
			// The client never asked what the rows look like, so the server
			// would send no RowDescription: ask for it, ahead of the
			// Execute, and keep the answer from the client.
			p.descRequested = true
			s.queue.push(&pending{kind: pendDescribePortal, portal: p, hidden: true})
			if err := s.toServer.write(describePortalFrame(name)); err != nil {
				return nil, err
			}
		}
		if p.ps.mayCopyIn {
			s.mayCopyIn = true
		}
		// Executes that resume a suspended portal continue its statement:
		// a result fetched a few rows at a time is still one result.
		s.batchExecutes++
		st := p.stmt
		if st == nil {
			st = s.newStatement(ExtendedExecute, p.ps.sql)
			st.Portal = string(name)
			st.MaxRows = binary.BigEndian.Uint32(rest)
			st.params, st.paramOIDs = p.params, p.ps.paramOIDs
			denied, err := s.screen(st)
			if err != nil {
				return nil, err
			}
			p.stmt, p.denied = st, denied
		}
		s.queue.push(&pending{kind: pendExecute, stmt: st, portal: p, denied: p.denied})
		if p.denied != nil {
			return deniedExecute, nil
		}
	case 'C':
		if len(body) < 2 {
			return nil, errMalformed
		}
		name, _, err := cstring(body[1:])
		if err != nil {
			return nil, err
		}
		if body[0] == 'S' {
			delete(s.prepared, string(name))
		} else {
			delete(s.portals, string(name))
		}
		s.queue.push(&pending{kind: pendClose})
	case 'S':
		s.batchExecutes = 0
		if !s.queue.pushSync() {
			// COPY input: deferred (see pendingQueue.copyInEnded).
			return dropFrame, nil
		}
	}
	return nil, nil
}

// dropFrame, returned by trackRequest, forwards nothing.
var dropFrame = []byte{}

// portalsSweepAt is the number of portals past which a Bind forgets those
// of ended transactions.
const portalsSweepAt = 64

// sweepPortals forgets the portals whose transaction has ended: PostgreSQL
// drops portals at the end of their transaction, and a client that binds
// new names without closing them must not grow the session without bound.
func (s *session) sweepPortals() {
	ended := s.idleAfter.Load()
	for name, p := range s.portals {
		if p.batch <= ended {
			delete(s.portals, name)
		}
	}
}

// wantsParams reports whether the inspector reads Statement.Params: an
// inspector that does not say is given them.
func (s *session) wantsParams() bool {
	w, ok := s.cfg.Inspector.(ParamsWanter)
	return !ok || w.WantsParams()
}

func (s *session) newStatement(kind StatementKind, sql string) *Statement {
	s.seq++
	return &Statement{Seq: s.seq, Kind: kind, SQL: sql}
}

// serverToClient relays server -> client. It matches every response to the
// request at the head of the pending queue, shows results to the inspector,
// and carries out its verdicts.
func (s *session) serverToClient() error {
	for {
		frame, err := s.fromServer.next()
		if err != nil {
			var cw *clientWriteError
			if errors.As(err, &cw) {
				return err
			}
			var fe *FrameError
			if errors.As(err, &fe) {
				return fatalf(codeProtocolViolation, err, "invalid message from the upstream server")
			}
			if isClosedConn(err) && s.reason.Load() == nil {
				if s.clientQuit.Load() {
					// The server's close answers the client's Terminate.
					return errClientTerminated
				}
				if s.serverFatal {
					// The server said why (a FATAL ErrorResponse, relayed).
					return fmt.Errorf("upstream server ended the session: %w", err)
				}
				return fatalf(codeConnectionFailure, err, "upstream server closed the connection")
			}
			return err
		}
		forward, err := s.onServerMessage(frame)
		if err != nil {
			return err
		}
		if forward {
			if err := s.toClient.write(frame); err != nil {
				return fmt.Errorf("write to client: %w", err)
			}
		}
		if frame[0] == 'Z' && s.txStatus == 'I' && s.queue.len() == 0 {
			s.idle.Store(true)
			if s.srv.isShuttingDown() {
				// Between transactions with nothing in flight: a clean
				// point to end the session during a graceful shutdown.
				if err := s.toClient.flush(); err != nil {
					return err
				}
				return errShutdownIdle
			}
			if s.signInExpired.Load() {
				if err := s.toClient.flush(); err != nil {
					return err
				}
				return errSignInAgain
			}
		}
	}
}

// onServerMessage does the bookkeeping for one server message and reports
// whether to forward it.
func (s *session) onServerMessage(frame []byte) (forward bool, err error) {
	typ, body := frame[0], frame[headerLen:]
	switch typ {
	case 'D': // DataRow
		if s.insp == nil {
			return true, nil
		}
		if s.blocked {
			return false, nil
		}
		return s.onRow(body)
	case 'd': // CopyData
		if s.insp == nil || !s.copyOut {
			return !s.blocked, nil
		}
		if s.blocked {
			return false, nil
		}
		e := s.head()
		if e == nil || e.stmt == nil {
			return false, s.desync("CopyData")
		}
		return s.onCopyData(e, s.insp.CopyData(e.stmt, body))
	case 'C', 'I', 's': // CommandComplete, EmptyQueryResponse, PortalSuspended
		s.copyOut = false
		if s.copyIn {
			s.copyIn = false
			s.queue.copyInEnded(typ == 'C', false, 0)
		}
		e := s.head()
		if typ == 'C' {
			tag := body
			if n := len(tag); n > 0 && tag[n-1] == 0 {
				tag = tag[:n-1]
			}
			if s.cfg.OnDDL != nil && s.cfg.IsDDLTag != nil && s.cfg.IsDDLTag(tag) {
				s.cfg.OnDDL()
				// Other connections see the change only once it commits.
				s.ddlInTx = true
			}
			if s.insp != nil && e != nil && !s.blocked {
				s.insp.CommandComplete(e.stmt, tag)
			}
		}
		if e != nil && e.kind == pendExecute {
			s.lastDone = e.stmt
			s.popHead()
		}
	case 'Z': // ReadyForQuery
		hidden := false
		var batch uint64
		for e := s.head(); e != nil; e = s.head() {
			s.popHead()
			if e.kind.endsWithReady() {
				hidden, batch = e.hidden, e.batch
				break
			}
		}
		if len(body) > 0 {
			s.txStatus = body[0]
		}
		if s.txStatus == 'I' && batch > 0 {
			// The transaction ended, and with it the portals bound in
			// this batch or before.
			s.idleAfter.Store(batch)
		}
		if hidden {
			// The end of pgwarden's own query.
			return false, nil
		}
		if s.failTx.Load() && s.txStatus == 'T' && len(body) > 0 {
			// The client was told its transaction failed; pgwarden makes
			// it so before the client's next statement.
			body[0], s.txStatus = 'E', 'E'
		}
		if s.blocked && s.txStatus == 'T' && len(body) > 0 {
			// The server finished the blocked statement before the cancel
			// landed, so its transaction is healthy; the client, told of an
			// error, must see it failed, and the server is made to agree
			// before the client's next request.
			body[0], s.txStatus = 'E', 'E'
			s.failTx.Store(true)
		}
		if s.ddlInTx && s.txStatus == 'I' {
			s.ddlInTx = false
			s.cfg.OnDDL()
		}
		s.copyOut = false
		if s.insp != nil {
			if v := s.insp.ReadyForQuery(s.txStatus); v.Action == Kill {
				s.log.Warn("session_killed", "reason", v.Reason)
				return false, &wireError{Severity: "FATAL", Code: codeInsufficientPrivilege, Message: v.Reason}
			}
		}
		if s.cfg.IdleTimeout > 0 {
			s.armIdle(true)
		}
		s.blocked, s.withheld, s.lastDone = false, false, nil
		return true, nil
	case 'E': // ErrorResponse
		s.copyOut = false
		if s.copyIn {
			s.copyIn = false
			// 57014: a CopyFail, a cancel or a timeout, each met once the
			// COPY had read all there was.
			canceled := string(errorField(body, 'C')) == "57014"
			if s.queue.copyInEnded(false, canceled, copyFailLine(errorField(body, 'W'))) > 0 {
				s.wakeClientReader()
			}
		}
		if isFatal(body) {
			s.serverFatal = true
		}
		e := s.head()
		if e == nil {
			break
		}
		if e.hidden && e.kind == pendQuery {
			return false, nil
		}
		if e.denied != nil {
			// The failure pgwarden caused in place of a refused statement:
			// the client hears why instead.
			s.insp.Blocked(e.stmt, *e.denied)
			s.log.Warn("statement_refused", "statement_seq", seqOf(e.stmt), "reason", e.denied.Reason)
			if !e.kind.endsWithReady() {
				s.skipToSync()
			}
			if s.blocked {
				return false, nil
			}
			return false, s.toClient.write(errorFrame(&wireError{Code: codeInsufficientPrivilege, Message: e.denied.Reason}))
		}
		var replace []byte
		if s.insp != nil && !s.blocked {
			var er pgproto3.ErrorResponse
			if err := er.Decode(body); err == nil {
				v := s.insp.Error(e.stmt, &er)
				if replace, err = s.errorVerdict(e, &er, v); err != nil {
					return false, err
				}
			}
		}
		if !e.kind.endsWithReady() {
			s.skipToSync()
		}
		if replace != nil {
			return false, s.toClient.write(replace)
		}
	case '1', '2', '3': // ParseComplete, BindComplete, CloseComplete
		s.popHead()
	case 'n': // NoData
		if e := s.head(); e != nil && e.hidden {
			s.popHead()
			return false, nil
		}
		s.popHead()
	case 'T': // RowDescription
		e := s.head()
		if e == nil || s.insp == nil {
			if e != nil && e.kind != pendQuery {
				s.popHead()
			}
			break
		}
		switch e.kind {
		case pendQuery:
			if err := s.rowDesc.Decode(body); err != nil {
				return false, fatalf(codeProtocolViolation, err, "invalid RowDescription from the upstream server")
			}
			if !s.blocked {
				s.insp.RowDescription(e.stmt, s.rowDesc.Fields)
			}
		case pendDescribeStmt, pendDescribePortal:
			fields, err := copyFields(body)
			if err != nil {
				return false, fatalf(codeProtocolViolation, err, "invalid RowDescription from the upstream server")
			}
			ps := e.ps
			if e.kind == pendDescribePortal {
				e.portal.desc, ps = fields, e.portal.ps
			}
			if ps != nil {
				ps.desc = fields
				ps.descKnown.Store(true)
			}
			s.popHead()
			if e.hidden {
				return false, nil
			}
		default:
			s.popHead()
		}
	case 'H': // CopyOutResponse
		s.copyOut = true
		if e := s.head(); s.insp != nil && e != nil && !s.blocked {
			var r pgproto3.CopyOutResponse
			if err := r.Decode(body); err == nil {
				s.insp.CopyOut(e.stmt, &r)
			}
		}
	case 'c': // CopyDone
		if ce, ok := s.insp.(CopyEnder); ok && s.copyOut && !s.blocked {
			if e := s.head(); e != nil && e.stmt != nil {
				if _, err := s.onCopyData(e, ce.CopyDone(e.stmt)); err != nil || s.blocked {
					return false, err
				}
			}
		}
		s.copyOut = false
	case 'G', 'W': // CopyInResponse, CopyBothResponse
		if s.blocked {
			// A COPY FROM STDIN of a blocked Query, begun before the
			// cancel landed: the client, told of the block, will send
			// it no data, so pgwarden fails it.
			if _, err := s.server.Write(copyFailBlocked); err != nil {
				return false, fmt.Errorf("write to upstream: %w", err)
			}
			return false, nil
		}
		s.copyIn = true
		s.queue.beginCopyIn()
	case 'A': // NotificationResponse
		if s.insp != nil && !s.blocked {
			var n pgproto3.NotificationResponse
			if err := n.Decode(body); err != nil {
				return false, fatalf(codeProtocolViolation, err, "invalid NotificationResponse from the upstream server")
			}
			e := s.head()
			return s.actOnMessage(e, s.insp.Notification(s.messageStmt(e), &n), "notification", nil)
		}
	case 'S': // ParameterStatus
		inspect := s.insp != nil && !s.blocked
		if s.upstream == nil && !inspect {
			break
		}
		var ps pgproto3.ParameterStatus
		if err := ps.Decode(body); err != nil {
			return false, fatalf(codeProtocolViolation, err, "invalid ParameterStatus from the upstream server")
		}
		if s.upstream != nil {
			s.upstream.set(ps.Name, ps.Value)
		}
		if inspect {
			e := s.head()
			v := s.insp.ParameterStatus(s.messageStmt(e), &ps)
			return s.actOnMessage(e, v, "parameter_status", func() ([]byte, error) {
				if len(v.Values) == 0 {
					return nil, nil
				}
				return (&pgproto3.ParameterStatus{Name: ps.Name, Value: string(v.Values[0])}).Encode(nil)
			})
		}
	case 'V': // FunctionCallResponse
		if s.insp != nil && !s.blocked {
			if e := s.head(); e != nil {
				var r pgproto3.FunctionCallResponse
				if err := r.Decode(body); err != nil {
					return false, fatalf(codeProtocolViolation, err, "invalid FunctionCallResponse from the upstream server")
				}
				return s.act(e, s.insp.FunctionResult(e.stmt, r.Result))
			}
		}
	case 'N': // NoticeResponse
		if s.insp != nil && !s.blocked {
			var n pgproto3.NoticeResponse
			if err := n.Decode(body); err != nil {
				return false, fatalf(codeProtocolViolation, err, "invalid NoticeResponse from the upstream server")
			}
			e := s.head()
			v := s.insp.Notice(s.messageStmt(e), &n)
			return s.actOnMessage(e, v, "notice", func() ([]byte, error) {
				return (&pgproto3.NoticeResponse{Severity: n.Severity, SeverityUnlocalized: n.SeverityUnlocalized,
					Code: n.Code, Message: "pgwarden: " + v.Reason}).Encode(nil)
			})
		}
	}
	return !s.blocked, nil
}

// messageStmt is the statement a notice, notification or parameter
// status belongs to: the one in progress, else the batch's last one to
// complete (the server reports a changed parameter at the end of the
// batch, after the Execute that changed it).
func (s *session) messageStmt(e *pending) *Statement {
	if e != nil && e.stmt != nil {
		return e.stmt
	}
	return s.lastDone
}

// actOnMessage carries out a verdict on a message that is not a row of a
// result (a notice, a notification, a parameter status): Block withholds it
// and blocks the statement in progress, if any; Rewrite forwards what
// rewrite returns, or withholds the message when it returns nil.
func (s *session) actOnMessage(e *pending, v Verdict, what string, rewrite func() ([]byte, error)) (bool, error) {
	switch v.Action {
	case Continue:
		return true, nil
	case Rewrite:
		var msg []byte
		if rewrite != nil {
			var err error
			if msg, err = rewrite(); err != nil {
				return false, fatalf(codeInternalError, err, "could not encode a rewritten %s", what)
			}
		}
		if msg == nil {
			if !s.withheld {
				s.withheld = true
				s.log.Info("message_withheld", "message", what, "reason", v.Reason)
			}
			return false, nil
		}
		return false, s.toClient.write(msg)
	case Block:
		if e != nil && e.stmt != nil {
			return false, s.block(e, v)
		}
		// Between statements there is nothing to stop but the message;
		// the inspector withholds the others up to the next
		// ReadyForQuery, logged once.
		if !s.withheld {
			s.withheld = true
			s.log.Warn("message_withheld", "message", what, "reason", v.Reason)
		}
		return false, nil
	case Kill:
		if e == nil {
			e = &pending{}
		}
		return s.act(e, v)
	}
	return true, nil
}

// errorVerdict returns what the client receives instead of an
// ErrorResponse the inspector stopped, nil to forward it. Block replaces
// it with SQLSTATE 42501, the server's SQLSTATE class in the detail;
// Rewrite keeps its SQLSTATE and severity and replaces its texts.
func (s *session) errorVerdict(e *pending, er *pgproto3.ErrorResponse, v Verdict) ([]byte, error) {
	sev := er.Severity
	if sev != "FATAL" && sev != "PANIC" {
		sev = "ERROR"
	}
	switch v.Action {
	case Block:
		s.insp.Blocked(e.stmt, v)
		s.log.Warn("error_replaced", "statement_seq", seqOf(e.stmt), "reason", v.Reason)
		class := er.Code
		if len(class) > 2 {
			class = class[:2]
		}
		return errorFrame(&wireError{Severity: sev, Code: codeInsufficientPrivilege, Message: v.Reason,
			Detail: "The server's error, of SQLSTATE class " + class + ", was withheld."}), nil
	case Rewrite:
		s.log.Info("error_rewritten", "statement_seq", seqOf(e.stmt), "reason", v.Reason)
		return errorFrame(&wireError{Severity: sev, Code: er.Code, Message: v.Reason}), nil
	case Kill:
		s.insp.Blocked(e.stmt, v)
		s.log.Warn("session_killed", "statement_seq", seqOf(e.stmt), "reason", v.Reason)
		return nil, &wireError{Severity: "FATAL", Code: codeInsufficientPrivilege, Message: v.Reason}
	}
	return nil, nil
}

// onRow shows a DataRow to the inspector.
func (s *session) onRow(body []byte) (bool, error) {
	e := s.head()
	if e == nil || e.stmt == nil {
		return false, s.desync("DataRow")
	}
	vals, err := decodeDataRow(body, s.row)
	s.row = vals
	if err != nil {
		return false, fatalf(codeProtocolViolation, err, "invalid DataRow from the upstream server")
	}
	if e.kind == pendExecute && e.portal != nil && !e.portal.described {
		e.portal.described = true
		if fields := e.portal.rowFields(); fields != nil {
			s.insp.RowDescription(e.stmt, fields)
		}
	}
	v := s.insp.DataRow(e.stmt, vals)
	if v.Action == Rewrite {
		if len(v.Values) != len(vals) {
			return false, fatalf(codeInternalError, nil, "inspector rewrote a row of %d values with %d", len(vals), len(v.Values))
		}
		s.rowBuf = encodeDataRow(s.rowBuf[:0], v.Values)
		return false, s.toClient.write(s.rowBuf)
	}
	return s.act(e, v)
}

// onCopyData carries out a verdict on a CopyData of a COPY TO STDOUT:
// Rewrite sends the client the verdict's first value as the data in its
// place, or nothing when it is empty.
func (s *session) onCopyData(e *pending, v Verdict) (bool, error) {
	if v.Action != Rewrite {
		return s.act(e, v)
	}
	if len(v.Values) == 0 || len(v.Values[0]) == 0 {
		return false, nil
	}
	data := v.Values[0]
	s.rowBuf = append(s.rowBuf[:0], 'd')
	s.rowBuf = binary.BigEndian.AppendUint32(s.rowBuf, uint32(4+len(data)))
	s.rowBuf = append(s.rowBuf, data...)
	return false, s.toClient.write(s.rowBuf)
}

// desync ends a session whose server sent data that no statement pgwarden
// knows of asked for: its bookkeeping lost track of the protocol. Relaying
// the data uninspected would be a way around the guard, so the session
// ends instead.
func (s *session) desync(what string) error {
	s.log.Error("protocol_desync", "message", what, "consequence", "the session was closed rather than relay data uninspected")
	return fatalf(codeProtocolViolation, nil, "lost track of the server's answers; the session was closed")
}

// act carries out a verdict on the message at hand.
func (s *session) act(e *pending, v Verdict) (bool, error) {
	switch v.Action {
	case Continue:
		return true, nil
	case Block:
		return false, s.block(e, v)
	case Kill:
		s.insp.Blocked(e.stmt, v)
		s.log.Warn("session_killed", "statement_seq", seqOf(e.stmt), "reason", v.Reason)
		return false, &wireError{Severity: "FATAL", Code: codeInsufficientPrivilege, Message: v.Reason}
	}
	return true, nil
}

// block stops the result in progress: the client is told at once with
// SQLSTATE 42501, the upstream query is cancelled, and everything the server
// still sends for it is dropped up to the ReadyForQuery that ends its batch,
// which is forwarded with the true transaction status.
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-CANCELING-REQUESTS
func (s *session) block(e *pending, v Verdict) error {
	s.blocked = true
	s.guardStopped.Store(true)
	if e.kind == pendExecute {
		s.blockedBatch.Store(e.batch)
	}
	s.copyOut = false
	s.insp.Blocked(e.stmt, v)
	s.log.Warn("statement_blocked", "statement_seq", seqOf(e.stmt), "reason", v.Reason)
	if err := s.toClient.write(errorFrame(&wireError{Code: codeInsufficientPrivilege, Message: v.Reason})); err != nil {
		return err
	}
	if err := s.toClient.flush(); err != nil {
		return err
	}

	// Hold back the client's next requests until the cancel has landed, so
	// that it cannot hit them. If requests of a later batch are already on
	// their way, a cancel could hit those: then the rest of this result is
	// only drained.
	gate := make(chan struct{})
	s.gate.Store(&gate)
	if !s.queue.onlyBatchAfterHead() {
		s.gate.Store(nil)
		close(gate)
		return nil
	}
	go func() {
		defer close(gate)
		defer s.gate.Store(nil)
		defer crash.Catch(s.log, "cancel_after_block", nil)
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CancelTimeout)
		defer cancel()
		if err := s.cancelUpstream(ctx); err != nil {
			s.log.Warn("cancel_after_block_failed", "error", err)
		}
	}()
	return nil
}

func seqOf(st *Statement) uint64 {
	if st == nil {
		return 0
	}
	return st.Seq
}

// head returns the oldest pending request. Only the server -> client
// goroutine removes entries, so it may keep the head between messages
// instead of locking the queue for every row.
func (s *session) head() *pending {
	if s.cur == nil {
		s.cur = s.queue.peek()
	}
	return s.cur
}

func (s *session) popHead() {
	s.queue.pop()
	s.cur = nil
}

func (s *session) skipToSync() {
	s.queue.skipToSync()
	s.cur = nil
}

var newline = []byte{'\n'}

// copyFailLine reads the line a COPY FROM STDIN failed on from its error's
// context ("COPY t, line 2: ..."), 0 when it names none.
func copyFailLine(where []byte) int64 {
	i := bytes.Index(where, []byte("COPY "))
	if i < 0 {
		return 0
	}
	rest := where[i:]
	j := bytes.Index(rest, []byte(", line "))
	if j < 0 {
		return 0
	}
	var n int64
	for _, c := range rest[j+len(", line "):] {
		if c < '0' || c > '9' || n > 1<<40 {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// isFatal reports whether an ErrorResponse body has severity FATAL or
// PANIC: the server closes the connection after it.
func isFatal(body []byte) bool {
	v := errorField(body, 'V')
	if v == nil {
		v = errorField(body, 'S')
	}
	return string(v) == "FATAL" || string(v) == "PANIC"
}

// errorField returns the value of field code of an ErrorResponse body, or
// nil.
func errorField(body []byte, code byte) []byte {
	for len(body) > 1 && body[0] != 0 {
		c := body[0]
		v, rest, err := cstring(body[1:])
		if err != nil {
			return nil
		}
		if c == code {
			return v
		}
		body = rest
	}
	return nil
}
