package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// sockIO reads and writes a TCP connection's socket with raw system
// calls, through the connection's RawConn so that deadlines and the
// netpoller work as for the connection itself.
//
// The relay makes a read and a write system call per message in each
// direction, each a few microseconds of kernel work on loopback (the
// write runs the receiver's TCP stack and wakes it). Through net.Conn each
// also enters the scheduler's syscall state: the runtime's monitor then
// wakes every 20 µs to hand the processor of a call it finds in progress
// to another thread, and that thread's wake-up and sleep cost more than
// the call. The sockets are non-blocking, so a raw call never blocks: a
// read or write that would wait returns EAGAIN, and the RawConn parks the
// goroutine on the netpoller as net.Conn would.
type sockIO struct {
	conn net.Conn
	rc   syscall.RawConn

	// The state of the call in progress in each direction, and the
	// functions RawConn runs, bound once: a closure made per call escapes
	// through the RawConn interface, and that was two allocations per
	// message. The mutexes keep concurrent calls of one direction (which
	// the relay does not make) from sharing the state.
	rmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	wmu     sync.Mutex
	wbuf    []byte
	wdone   int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// rawSocket returns sockIO for a plain TCP connection, c itself for any
// other (TLS), and always c under the race detector: net.Conn's reads and
// writes tell the detector that a write happens before the read of what
// it sent, on any socket, and without that the detector would report the
// order the protocol itself gives (a client that reads an answer, then
// changes what the session's goroutines read) as races.
func rawSocket(c net.Conn) io.ReadWriter {
	if raceEnabled {
		return c
	}
	if s := newSockIO(c); s != nil {
		return s
	}
	return c
}

// newSockIO returns sockIO for a plain TCP connection, nil for any other.
func newSockIO(c net.Conn) *sockIO {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &sockIO{conn: c, rc: rc}
	s.readFn = s.readSyscall
	s.writeFn = s.writeSyscall
	return s
}

func (s *sockIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.rbuf, s.rn, s.rerrno = p, 0, 0
	err := s.rc.Read(s.readFn)
	n, errno := s.rn, s.rerrno
	s.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, s.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readSyscall is Read's RawConn function: one read(2) into s.rbuf.
func (s *sockIO) readSyscall(fd uintptr) bool {
	p := s.rbuf
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.rn, s.rerrno = int(r), e
		return true
	}
}

func (s *sockIO) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wbuf, s.wdone, s.werrno = p, 0, 0
	err := s.rc.Write(s.writeFn)
	done, errno := s.wdone, s.werrno
	s.wbuf = nil
	switch {
	case err != nil:
		return done, err
	case errno != 0:
		return done, s.opError("write", errno)
	}
	return done, nil
}

// writeSyscall is Write's RawConn function: write(2) of what is left of
// s.wbuf until it is all written or the socket is full.
func (s *sockIO) writeSyscall(fd uintptr) bool {
	p := s.wbuf
	for s.wdone < len(p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[s.wdone])), uintptr(len(p)-s.wdone))
		switch e {
		case 0:
			s.wdone += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.werrno = e
			return true
		}
	}
	return true
}

// opError is the error net.Conn returns for a failed system call.
func (s *sockIO) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: s.conn.LocalAddr(), Addr: s.conn.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

// readable reports whether an idle connection has bytes to read or its
// peer has closed it, without reading: a peek on the TCP socket (under TLS
// too, whose records are bytes there as well).
func readable(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var b [1]byte
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, perr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	return err != nil || perr != syscall.EAGAIN
}
