package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/internal/crash"
)

// session is one client connection and its upstream connection. Its life:
// startup (SSL/GSSENC negotiation, StartupMessage, or a CancelRequest),
// authentication relayed to the upstream server, then the relay, one
// goroutine per direction, until either side ends; then teardown.
type session struct {
	srv *Server
	cfg *Config
	id  string
	log *slog.Logger

	connMu sync.Mutex // guards client and server while they may be replaced or set
	client net.Conn
	server net.Conn

	serverCert  *x509.Certificate // upstream TLS leaf, for SCRAM channel binding
	key         cancelKey         // pgwarden's key given to the client
	upstreamKey cancelKey         // the upstream server's key

	// upstream is the server connection's record for reuse (Config.Reuse),
	// nil when the session's connection may not be reused.
	upstream *serverConn
	// upstreamState says whether the server connection is the session's,
	// was sent a CancelRequest, or has been parked (upstreamAttached...).
	upstreamState atomic.Int32
	// quitWithheld is set when the client's Terminate was not forwarded,
	// so that the server connection may be parked.
	quitWithheld bool
	// guardStopped is set when the guard blocked or refused a
	// statement: the session's server connection is not reused.
	guardStopped atomic.Bool
	// unsynced is set while extended-protocol requests await their Sync
	// (client -> server goroutine).
	unsynced bool

	info SessionInfo
	insp SessionInspector
	// authenticated, if set, is called once the client has authenticated:
	// it gives back the startup slot of the client's address.
	authenticated func()

	fromClient, fromServer *frameReader
	toClient, toServer     *frameWriter

	queue pendingQueue
	// gate, when set, holds client -> server writes until it is closed: a
	// block waits there for its CancelRequest to land so that the cancel
	// cannot reach a later statement.
	gate atomic.Pointer[chan struct{}]

	// client -> server goroutine state
	prepared      map[string]*preparedStmt
	portals       map[string]*portal
	seq           uint64
	batchExecutes int // Executes since the last Sync

	// blockedBatch is the number of the last extended-protocol batch in
	// which a block stopped an Execute (see settleBatch).
	blockedBatch atomic.Uint64
	// failTx is set when a block ended a batch inside a transaction block
	// the server still thinks healthy: the client was told 'E', and the
	// client -> server goroutine makes the server's transaction fail too
	// before the client's next request.
	failTx atomic.Bool

	// mayCopyIn is set when a request forwarded since the last Sync may
	// begin a COPY FROM STDIN (client -> server goroutine only).
	mayCopyIn bool
	// wake is set by wakeClientReader (under the queue lock).
	wake atomic.Bool
	// clientQuit is set when the client sent Terminate: the server's
	// close that follows is the end the client asked for.
	clientQuit atomic.Bool
	// idleAfter is the last batch whose ReadyForQuery found no
	// transaction open: portals bound in it or before are gone.
	idleAfter atomic.Uint64

	// server -> client goroutine state
	cur     *pending // cached head of queue
	row     [][]byte
	rowBuf  []byte // a rewritten DataRow
	rowDesc pgproto3.RowDescription
	blocked bool // a verdict stopped a result: suppress until ReadyForQuery
	// withheld: a message between statements was withheld since the last
	// ReadyForQuery (logged once).
	withheld bool
	// lastDone is the batch's last Execute to complete, which notices and
	// parameter status that follow it belong to.
	lastDone *Statement
	copyOut  bool
	copyIn   bool // the server reads COPY input (its queue knows too)
	// serverFatal is set when the server sent a FATAL error: its close
	// that follows needs no word of pgwarden's.
	serverFatal bool
	ddlInTx     bool // DDL seen since the last ReadyForQuery 'I'
	txStatus    byte

	// idle is set while the session waits for the client outside any
	// transaction, with nothing in flight: a point where shutdown may end it.
	idle      atomic.Bool
	reason    atomic.Pointer[wireError]   // why the session is being terminated from outside
	published atomic.Pointer[SessionInfo] // the identity, once the session is ready (for List)
	stop      chan struct{}               // closed by interrupt
	stopOnce  sync.Once
	done      chan struct{}
	closeOnce sync.Once

	// signInExpired is set when a token login's SessionEnd has passed.
	signInExpired atomic.Bool
}

func newSession(srv *Server, conn net.Conn) *session {
	id := newSessionID()
	return &session{
		srv:      srv,
		cfg:      &srv.cfg,
		id:       id,
		log:      srv.log.With("session_id", id, slog.Any("client_addr", addrValue{conn.RemoteAddr()})),
		client:   conn,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		txStatus: 'I',
	}
}

// addrValue logs an address as its String, made only when a line is
// written.
type addrValue struct{ a net.Addr }

func (v addrValue) LogValue() slog.Value { return slog.StringValue(v.a.String()) }

// errCancelRequest ends a connection that carried a CancelRequest.
var errCancelRequest = errors.New("cancel request")

// errClientTerminated ends a session whose client sent Terminate.
var errClientTerminated = errors.New("client terminated the session")

// aLongTimeAgo is a deadline that has passed: setting it unblocks reads and
// writes in progress.
var aLongTimeAgo = time.Unix(1, 0)

func (s *session) run() {
	start := s.cfg.Now()
	defer close(s.done)
	err := s.contain("startup", s.startup)
	if err == nil {
		s.log = s.log.With("user", s.info.User, "database", s.info.Database, "employee", s.info.Employee)
		s.log.Info("session_started", "application_name", s.info.ApplicationName,
			"client_tls", s.info.ClientTLS, "upstream_tls", s.info.UpstreamTLS)
		err = s.relay()
	}
	err = s.teardown(err)
	if obs := s.cfg.Observe; obs != nil {
		var we *wireError
		if errors.As(err, &we) && we.Code != "" {
			obs("failed:" + we.Code)
			if we.Code == codeConnectionFailure {
				obs("upstream_error")
			}
		}
	}
	for _, fr := range []*frameReader{s.fromClient, s.fromServer} {
		if fr != nil {
			fr.release()
		}
	}
	for _, fw := range []*frameWriter{s.toClient, s.toServer} {
		if fw != nil {
			fw.release()
		}
	}
	if s.insp != nil {
		func() {
			defer crash.Catch(s.log, "end_session", nil)
			s.insp.EndSession(err)
		}()
	}
	switch {
	case errors.Is(err, errCancelRequest):
	case err == nil, errors.Is(err, errClientTerminated):
		s.log.Info("session_ended", "duration", s.cfg.Now().Sub(start))
	default:
		if s.insp == nil && s.info.User == "" {
			s.log.Warn("startup_failed", "error", err)
			return
		}
		s.log.Info("session_ended", "duration", s.cfg.Now().Sub(start), "error", err)
	}
}

// terminate ends the session from another goroutine, telling the client why.
func (s *session) terminate(why *wireError) {
	s.reason.CompareAndSwap(nil, why)
	s.interrupt()
}

// interrupt unblocks every read and write in progress on both connections.
func (s *session) interrupt() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.client.SetDeadline(aLongTimeAgo)
	if s.server != nil {
		s.server.SetDeadline(aLongTimeAgo)
	}
}

// teardown tells the client why the session ends (when pgwarden ends it and
// the wire is between messages), ends the upstream session, and closes both.
func (s *session) teardown(err error) error {
	s.closeOnce.Do(func() {
		if r := s.reason.Load(); r != nil {
			err = r
		}
		s.connMu.Lock()
		client, server := s.client, s.server
		s.connMu.Unlock()
		deadline := s.cfg.Now().Add(time.Second)
		if we, ok := asWireError(err); ok && we.Severity == "FATAL" {
			// Complete frames still buffered go first; after a failed
			// write the client may hold half a frame and gets nothing more.
			client.SetDeadline(deadline)
			if s.toClient == nil {
				client.Write(errorFrame(we))
			} else if s.toClient.write(errorFrame(we)) == nil {
				s.toClient.flush()
			}
		}
		if server != nil && s.parkable(err) && s.park() {
			server = nil
		}
		if server != nil {
			if !errors.Is(err, errClientTerminated) || s.quitWithheld {
				if s.queue.len() > 0 && s.upstreamKey.pid != 0 {
					ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CancelTimeout)
					s.cancelUpstream(ctx)
					cancel()
				}
				server.SetDeadline(deadline)
				server.Write([]byte{'X', 0, 0, 0, 4})
			}
			server.Close()
		}
		if fe := (*FrameError)(nil); errors.As(err, &fe) {
			n := fe.Length
			if s.published.Load() == nil {
				// Before authentication no honest client sends more.
				n = maxAuthMessageSize
			}
			drainClient(client, n, s.cfg.Now().Add(time.Second))
		}
		client.Close()
	})
	return err
}

// isFalse reports a boolean startup parameter that PostgreSQL reads as off.
func isFalse(v string) bool {
	switch strings.ToLower(v) {
	case "false", "off", "no", "0", "f", "n":
		return true
	}
	return false
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// startup runs the startup phase up to the first ReadyForQuery.
func (s *session) startup() error {
	if err := s.setStartupDeadline(s.client, s.cfg.Now().Add(s.cfg.StartupTimeout)); err != nil {
		return err
	}
	sm, early, err := s.negotiate()
	defer early.discard()
	if err != nil {
		return err
	}
	if err := s.admit(sm); err != nil {
		return err
	}
	s.describe(sm)
	method := s.cfg.Login.method(&s.info)
	sm, password, err := s.identify(sm, method)
	if err != nil {
		return err
	}
	var parked *serverConn
	if method != LoginRelay && s.srv.pool != nil {
		key := reuseKey(s.cfg.UpstreamTLSMode, sm)
		if parked = s.srv.pool.get(key); parked == nil {
			s.upstream = &serverConn{key: key, created: s.cfg.Now()}
		}
	}
	if parked == nil {
		server, err := s.connectUpstream(early)
		if err != nil {
			return err
		}
		if s.upstream != nil {
			s.srv.pool.opened.Add(1)
		}
		if _, err := server.Write(sm.encode()); err != nil {
			return fatalf(codeConnectionFailure, err, "could not send the startup message upstream")
		}
		if method != LoginRelay {
			err = s.authenticateUpstream(s.info.User, password)
		} else {
			err = s.authenticate()
		}
		if err != nil {
			return err
		}
	}
	s.fromClient.maxBody = s.cfg.MaxMessageSize
	if s.authenticated != nil {
		s.authenticated()
	}
	if parked != nil {
		err = s.resume(parked)
	} else {
		err = s.finishStartup()
	}
	if err != nil {
		return err
	}
	if err := s.setStartupDeadline(s.client, time.Time{}); err != nil {
		return err
	}
	return s.setStartupDeadline(s.server, time.Time{})
}

// negotiate reads the client's packets up to its StartupMessage: SSL and
// GSSAPI encryption requests (TLS is done here), or a CancelRequest, which
// ends the connection. With client TLS and no login of pgwarden's own, the
// upstream connection is dialled (early) while the client's TLS handshake
// runs; the caller discards it if it goes unused.
func (s *session) negotiate() (sm *startupMessage, early *earlyDial, err error) {
	var sslSeen, gssSeen bool
	for sm == nil {
		msg, err := readStartupPacket(rawSocket(s.client))
		if err != nil {
			if _, ok := asWireError(err); ok || isClosedConn(err) || isTimeout(err) {
				return nil, early, err
			}
			return nil, early, fatalf(codeProtocolViolation, err, "%v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if sslSeen {
				return nil, early, fatalf(codeProtocolViolation, nil, "duplicate SSLRequest")
			}
			sslSeen = true
			if s.cfg.ClientTLS == nil {
				if _, err := s.client.Write([]byte{'N'}); err != nil {
					return nil, early, err
				}
				continue
			}
			// The upstream connection (and its TLS handshake) is made
			// while the client's TLS handshake runs, not after it; not
			// with pgwarden's own login, which lets nothing go upstream
			// before the client has proved its password.
			if s.cfg.Login == nil {
				early = s.dialEarly()
			}
			if _, err := s.client.Write([]byte{'S'}); err != nil {
				return nil, early, err
			}
			tc := tls.Server(s.client, s.cfg.ClientTLS)
			if err := tc.Handshake(); err != nil {
				return nil, early, fmt.Errorf("client TLS handshake: %w", err)
			}
			s.connMu.Lock()
			s.client = tc
			s.connMu.Unlock()
			s.info.ClientTLS = true
			s.info.ClientCertificates = tc.ConnectionState().PeerCertificates
		case *pgproto3.GSSEncRequest:
			if gssSeen {
				return nil, early, fatalf(codeProtocolViolation, nil, "duplicate GSSENCRequest")
			}
			gssSeen = true
			// Refused: libpq then falls back to SSL or plain.
			if _, err := s.client.Write([]byte{'N'}); err != nil {
				return nil, early, err
			}
		case *pgproto3.CancelRequest:
			s.srv.forwardCancel(m.ProcessID, m.SecretKey, s.log)
			return nil, early, errCancelRequest
		case *startupMessage:
			sm = m
		}
	}

	return sm, early, nil
}

// admit refuses a startup when pgwarden is full or shutting down, and a
// replication connection.
func (s *session) admit(sm *startupMessage) error {
	if s.srv.conns.Load() > int64(s.cfg.MaxConnections) {
		return fatalf(codeTooManyConnections, nil, "sorry, too many clients already")
	}
	select {
	case <-s.srv.shutdown:
		return fatalf(codeCannotConnectNow, nil, "pgwarden is shutting down")
	default:
	}
	if v, ok := sm.Parameters["replication"]; ok && !isFalse(v) {
		// Physical or logical replication streams data past the guard.
		return fatalf(codeInsufficientPrivilege, nil, "replication connections are not allowed through pgwarden")
	}
	return nil
}

// describe fills the session's info from the startup message, and sets up
// the client's frames, bounded until it has authenticated.
func (s *session) describe(sm *startupMessage) {
	s.info.ID = s.id
	s.info.User = sm.Parameters["user"]
	s.info.Employee, s.info.IdentifiedBy = s.info.User, IdentifiedByRole
	s.info.Database = sm.Parameters["database"]
	if s.info.Database == "" {
		s.info.Database = s.info.User
	}
	s.info.ApplicationName = sm.Parameters["application_name"]
	s.info.ClientAddr = s.client.RemoteAddr()
	s.info.Parameters = sm.Parameters
	s.info.Done = s.stop
	s.info.StartedAt = s.cfg.Now()
	// Until the client has authenticated, it gets no more memory than a
	// password or SASL message needs.
	client := rawSocket(s.client)
	s.fromClient = newFrameReader(client, maxAuthMessageSize, nil)
	s.toClient = newFrameWriter(client)
	s.info.Notice = s.notice
}

// identify runs pgwarden's own login when the method is not a relay of
// the server's (the startup message then names the role to log in as
// upstream, with password), and the configured identification of the
// employee.
func (s *session) identify(sm *startupMessage, method LoginMethod) (_ *startupMessage, password string, err error) {
	if method != LoginRelay {
		role, err := s.login(method)
		if err != nil {
			return nil, "", err
		}
		if sm.Parameters["database"] == "" {
			// The server's default, the user name, is now the role's.
			s.info.Database = role
		}
		// The client's parameters stay as it sent them in s.info.
		params := maps.Clone(sm.Parameters)
		params["user"] = role
		sm = &startupMessage{ProtocolVersion: sm.ProtocolVersion, Parameters: params, order: sm.order}
	}
	if s.cfg.Identify != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StartupTimeout)
		err := s.cfg.Identify(ctx, &s.info)
		cancel()
		if err != nil {
			s.log.Warn("session_unidentified", "user", s.info.User, "client_addr", s.info.ClientAddr.String(), "error", err)
			return nil, "", fatalf(codeInvalidAuthorization, err, "%s", err)
		}
	}

	if method != LoginRelay {
		var err error
		if password, err = s.upstreamCredentials(s.info.User); err != nil {
			return nil, "", err
		}
	}
	return sm, password, nil
}

// connectUpstream takes the early upstream connection, or dials it, and
// sets up the server's frames.
func (s *session) connectUpstream(early *earlyDial) (net.Conn, error) {
	server, err := early.take(s)
	if err != nil {
		return nil, fatalf(codeConnectionFailure, err, "could not connect to the upstream server")
	}
	if tc, ok := server.(*tls.Conn); ok {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			s.serverCert = certs[0]
		}
	}
	s.useServer(server)
	server.SetDeadline(s.cfg.Now().Add(s.cfg.StartupTimeout))
	return server, nil
}

// useServer makes server the session's upstream connection and sets up
// its frames.
func (s *session) useServer(server net.Conn) {
	s.connMu.Lock()
	s.server = server
	s.connMu.Unlock()
	s.info.UpstreamTLS = s.cfg.UpstreamTLSMode != TLSDisable
	rawServer := rawSocket(server)
	s.fromServer = newFrameReader(rawServer, pgMaxMessageSize, nil)
	s.toServer = newFrameWriter(gatedWriter{s, rawServer})
}

// setStartupDeadline sets a deadline during startup unless the session has
// been interrupted (Shutdown), whose deadline in the past must stay.
func (s *session) setStartupDeadline(c net.Conn, t time.Time) error {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	select {
	case <-s.stop:
		return net.ErrClosed
	default:
	}
	return c.SetDeadline(t)
}

// earlyDial is an upstream connection being made ahead of need.
type earlyDial struct {
	done  chan struct{}
	conn  net.Conn
	err   error
	taken bool
}

// dialEarly starts connecting to the upstream server.
func (s *session) dialEarly() *earlyDial {
	d := &earlyDial{done: make(chan struct{})}
	go func() {
		defer close(d.done)
		defer crash.Catch(s.log, "dial_upstream", &d.err)
		d.conn, d.err = s.dialUpstream(context.Background())
	}()
	return d
}

// take returns the early connection, or dials now if there is none.
func (d *earlyDial) take(s *session) (net.Conn, error) {
	if d == nil {
		return s.dialUpstream(context.Background())
	}
	<-d.done
	d.taken = true
	return d.conn, d.err
}

// discard closes an early connection that startup did not use.
func (d *earlyDial) discard() {
	if d == nil || d.taken {
		return
	}
	go func() {
		<-d.done
		if d.conn != nil {
			d.conn.Close()
		}
	}()
}

// dialUpstream connects to the upstream server, negotiating TLS as configured.
func (s *session) dialUpstream(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.cfg.UpstreamAddr)
	if err != nil {
		return nil, err
	}
	if s.cfg.UpstreamTLSMode == TLSDisable {
		return conn, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	req := []byte{0, 0, 0, 8, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(req[4:], sslRequestCode)
	var resp [1]byte
	if _, err := conn.Write(req); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := io.ReadFull(conn, resp[:]); err != nil {
		conn.Close()
		return nil, err
	}
	if resp[0] != 'S' {
		conn.Close()
		return nil, errors.New("upstream server does not support TLS")
	}
	tc := tls.Client(conn, s.cfg.upstreamTLSConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("upstream TLS handshake: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return tc, nil
}

// cancelUpstream sends a CancelRequest with the upstream key on a new
// connection and waits for the server to close it, which it does after
// signalling the backend.
func (s *session) cancelUpstream(ctx context.Context) error {
	for {
		st := s.upstreamState.Load()
		if st == upstreamDetached {
			// Parked: the server session is no longer this session's.
			return nil
		}
		if st == upstreamCanceled || s.upstreamState.CompareAndSwap(st, upstreamCanceled) {
			break
		}
	}
	conn, err := s.dialUpstream(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	req := make([]byte, 12+len(s.upstreamKey.secret))
	binary.BigEndian.PutUint32(req, uint32(len(req)))
	binary.BigEndian.PutUint32(req[4:], cancelRequestCode)
	binary.BigEndian.PutUint32(req[8:], s.upstreamKey.pid)
	copy(req[12:], s.upstreamKey.secret)
	if _, err := conn.Write(req); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, conn)
	if err != nil && !isClosedConn(err) {
		return err
	}
	return nil
}

// finishStartup relays what follows AuthenticationOk up to ReadyForQuery,
// replacing the server's BackendKeyData with pgwarden's own.
func (s *session) finishStartup() error {
	for {
		frame, err := s.fromServer.next()
		if err != nil {
			return fatalf(codeConnectionFailure, err, "upstream connection lost during startup")
		}
		switch frame[0] {
		case 'K':
			var kd pgproto3.BackendKeyData
			if err := kd.Decode(frame[headerLen:]); err != nil {
				return fatalf(codeProtocolViolation, err, "invalid BackendKeyData from upstream")
			}
			s.upstreamKey = cancelKey{pid: kd.ProcessID, secret: bytes.Clone(kd.SecretKey)}
			if err := s.writeKeyData(); err != nil {
				return err
			}
			continue
		case 'E':
			s.toClient.write(frame)
			s.toClient.flush()
			return fmt.Errorf("upstream refused the session: %s", errorMessage(frame))
		case 'S':
			if s.upstream != nil {
				if err := s.upstream.setParam(frame[headerLen:]); err != nil {
					return fatalf(codeProtocolViolation, err, "invalid ParameterStatus from upstream")
				}
			}
		case 'Z':
			return s.ready(frame)
		}
		if err := s.toClient.write(frame); err != nil {
			return err
		}
	}
}

// writeKeyData registers the session under a cancel key of pgwarden's own
// and sends it to the client in place of the server's.
func (s *session) writeKeyData() error {
	pid, secret := s.srv.register(s, s.upstreamKey.pid, len(s.upstreamKey.secret))
	s.info.BackendPID = pid
	out, _ := (&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: secret}).Encode(nil)
	return s.toClient.write(out)
}

// ready ends the startup with the server's first ReadyForQuery: the
// inspector's session starts, and the session is published.
func (s *session) ready(frame []byte) error {
	if s.cfg.Inspector != nil {
		insp, err := s.cfg.Inspector.StartSession(context.Background(), &s.info)
		if err != nil {
			return &wireError{Severity: "FATAL", Code: codeInsufficientPrivilege, Message: err.Error(), Err: err}
		}
		s.insp = insp
		s.prepared = make(map[string]*preparedStmt)
		s.portals = make(map[string]*portal)
	}
	info := s.info
	s.published.Store(&info)
	s.idle.Store(true)
	if err := s.toClient.write(frame); err != nil {
		return err
	}
	return s.toClient.flush()
}

// errorMessage extracts the message field of an ErrorResponse frame.
func errorMessage(frame []byte) string {
	var e pgproto3.ErrorResponse
	if err := e.Decode(frame[headerLen:]); err != nil {
		return "malformed ErrorResponse"
	}
	return e.Severity + ": " + e.Message
}

// gatedWriter writes to the upstream connection, waiting first for any gate
// a block has set.
type gatedWriter struct {
	s *session
	w io.Writer // the upstream connection
}

func (g gatedWriter) Write(p []byte) (int, error) {
	if ch := g.s.gate.Load(); ch != nil {
		select {
		case <-*ch:
		case <-g.s.stop:
			return 0, net.ErrClosed
		}
	}
	return g.w.Write(p)
}

// notice sends the client a NoticeResponse at once (SessionInfo.Notice).
func (s *session) notice(message string) error {
	frame, err := (&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "01000",
		Message: "pgwarden: " + message}).Encode(nil)
	if err != nil {
		return err
	}
	return s.toClient.writeNow(frame)
}
