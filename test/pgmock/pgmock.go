// Package pgmock is a scripted fake PostgreSQL server for protocol corner
// cases that a real server cannot be made to produce on demand. A Script is
// a list of steps, each expecting a message from the frontend or sending one
// to it; Server runs a script per accepted connection and records cancel
// requests.
package pgmock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Step is one action of a script.
type Step interface {
	Step(*Conn) error
}

// Conn is the server side of one connection.
type Conn struct {
	*pgproto3.Backend
	Net net.Conn
}

// Script is the conversation of one connection.
type Script []Step

type expectStep struct{ want pgproto3.FrontendMessage }

func (e expectStep) Step(b *Conn) error {
	got, err := b.Receive()
	if err != nil {
		return fmt.Errorf("expecting %T: %w", e.want, err)
	}
	if !reflect.DeepEqual(normalize(got), normalize(e.want)) {
		return fmt.Errorf("got %#v, want %#v", got, e.want)
	}
	return nil
}

// normalize maps nil and empty slices to one value so that decoded messages
// compare equal to hand-written ones.
func normalize(m pgproto3.FrontendMessage) any {
	v := reflect.ValueOf(m).Elem()
	out := reflect.New(v.Type()).Elem()
	out.Set(v)
	for i := 0; i < out.NumField(); i++ {
		f := out.Field(i)
		if f.Kind() == reflect.Slice && f.Len() == 0 && f.CanSet() {
			f.Set(reflect.Zero(f.Type()))
		}
	}
	return out.Interface()
}

// Expect expects the frontend to send want next.
func Expect(want pgproto3.FrontendMessage) Step { return expectStep{want} }

type expectTypeStep struct{ want pgproto3.FrontendMessage }

func (e expectTypeStep) Step(b *Conn) error {
	got, err := b.Receive()
	if err != nil {
		return fmt.Errorf("expecting %T: %w", e.want, err)
	}
	if reflect.TypeOf(got) != reflect.TypeOf(e.want) {
		return fmt.Errorf("got %T, want %T", got, e.want)
	}
	return nil
}

// ExpectType expects a message of the same type as want, any content.
func ExpectType(want pgproto3.FrontendMessage) Step { return expectTypeStep{want} }

type startupStep struct{}

func (startupStep) Step(b *Conn) error {
	m, err := b.ReceiveStartupMessage()
	if err != nil {
		return err
	}
	if _, ok := m.(*pgproto3.StartupMessage); !ok {
		return fmt.Errorf("got %T, want StartupMessage", m)
	}
	return nil
}

// ExpectStartup expects a StartupMessage with any parameters.
func ExpectStartup() Step { return startupStep{} }

type sendStep struct{ msgs []pgproto3.BackendMessage }

func (s sendStep) Step(b *Conn) error {
	for _, m := range s.msgs {
		b.Send(m)
	}
	return b.Flush()
}

// Send sends msgs in one write.
func Send(msgs ...pgproto3.BackendMessage) Step { return sendStep{msgs} }

type funcStep func(*pgproto3.Backend) error

func (f funcStep) Step(b *Conn) error { return f(b.Backend) }

// Func runs f as a step.
func Func(f func(*pgproto3.Backend) error) Step { return funcStep(f) }

// Key is the BackendKeyData every mock connection sends.
var Key = pgproto3.BackendKeyData{ProcessID: 4242, SecretKey: []byte{1, 2, 3, 4}}

// AcceptTrust is the startup of a trust-authenticated session, ending in
// ReadyForQuery.
func AcceptTrust() Script {
	key := Key
	return Script{
		ExpectStartup(),
		Send(&pgproto3.AuthenticationOk{},
			&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"},
			&pgproto3.BackendKeyData{ProcessID: key.ProcessID, SecretKey: key.SecretKey},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}),
	}
}

// CancelRequest is a cancel request the server received.
type CancelRequest struct {
	ProcessID uint32
	SecretKey []byte
	At        time.Time
}

// Server accepts connections and runs a script on each session connection,
// in order; cancel requests are recorded instead.
type Server struct {
	ln      net.Listener
	scripts chan Script
	errs    chan error
	wg      sync.WaitGroup

	mu      sync.Mutex
	cancels []CancelRequest
}

// NewServer listens on a loopback port. Queue scripts with Push.
func NewServer() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, scripts: make(chan Script, 16), errs: make(chan error, 16)}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Push queues the script for the next session connection.
func (s *Server) Push(sc Script) { s.scripts <- sc }

// Err waits for the next session script to finish and returns its error.
func (s *Server) Err(timeout time.Duration) error {
	select {
	case err := <-s.errs:
		return err
	case <-time.After(timeout):
		return errors.New("pgmock: script did not finish in time")
	}
}

// Cancels returns the cancel requests received so far.
func (s *Server) Cancels() []CancelRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]CancelRequest(nil), s.cancels...)
}

// Close stops the server and waits for its goroutines.
func (s *Server) Close() {
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.serve(conn)
		}()
	}
}

func (s *Server) serve(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	// Peek at the first packet: a cancel request is recorded, anything else
	// runs the next script.
	var hdr [8]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if binary.BigEndian.Uint32(hdr[4:]) == 80877102 && n >= 12 && n <= 1024 {
		rest := make([]byte, n-8)
		if _, err := io.ReadFull(conn, rest); err != nil {
			return
		}
		s.mu.Lock()
		s.cancels = append(s.cancels, CancelRequest{
			ProcessID: binary.BigEndian.Uint32(rest), SecretKey: rest[4:], At: time.Now()})
		s.mu.Unlock()
		return
	}
	var sc Script
	select {
	case sc = <-s.scripts:
	default:
		s.errs <- errors.New("pgmock: connection with no script queued")
		return
	}
	r := io.MultiReader(bytesReader(hdr[:]), conn)
	b := &Conn{Backend: pgproto3.NewBackend(r, conn), Net: conn}
	for i, st := range sc {
		if err := st.Step(b); err != nil {
			s.errs <- fmt.Errorf("pgmock: step %d: %w", i, err)
			return
		}
	}
	s.errs <- nil
}

type byteReader struct{ b []byte }

func bytesReader(b []byte) io.Reader { return &byteReader{b} }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

type waitCloseStep struct{}

func (waitCloseStep) Step(b *Conn) error {
	for {
		if _, err := b.Receive(); err != nil {
			return nil
		}
	}
}

// WaitClose reads and discards until the frontend closes the connection.
func WaitClose() Step { return waitCloseStep{} }

type quietStep struct{ d time.Duration }

func (q quietStep) Step(b *Conn) error {
	b.Net.SetReadDeadline(time.Now().Add(q.d))
	defer b.Net.SetReadDeadline(time.Now().Add(30 * time.Second))
	msg, err := b.Receive()
	if err == nil {
		return fmt.Errorf("got %T while the frontend should be waiting", msg)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

// ExpectNothing expects the frontend to send nothing for d. It must come
// where the next message would start: a timeout mid-message desynchronises
// the connection.
func ExpectNothing(d time.Duration) Step { return quietStep{d} }
