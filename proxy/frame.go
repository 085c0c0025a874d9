package proxy

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

const (
	// headerLen is the type byte plus the int32 length of every message after startup.
	headerLen = 5

	// readBufSize is the steady-state size of a direction's read buffer. Frames
	// larger than this are read into a temporary buffer sized for them.
	readBufSize = 64 * 1024

	// DefaultMaxMessageSize is the default cap on a client message once
	// the session is authenticated (Config.MaxMessageSize). PostgreSQL
	// allows 1 GiB, but pgwarden holds a whole frame in memory before it
	// forwards it; bulk data comes in COPY, whose frames are small.
	DefaultMaxMessageSize = 64 << 20

	// pgMaxMessageSize is PostgreSQL's own limit on a message
	// (MaxAllocSize): the cap on the server's messages.
	pgMaxMessageSize = 1<<30 - 1

	// maxAuthMessageSize caps every client message before authentication
	// completes, as PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH does for
	// password and SASL messages.
	maxAuthMessageSize = 65535
)

// FrameError reports a frame that violates the protocol's framing: a length
// below 4 or above the configured maximum.
type FrameError struct {
	Type   byte
	Length int64 // the length field, including itself
	Max    int
}

func (e *FrameError) Error() string {
	if e.Length < 4 {
		return fmt.Sprintf("invalid message length %d for message type %q", e.Length, e.Type)
	}
	return fmt.Sprintf("message type %q of %d bytes exceeds the maximum of %d bytes", e.Type, e.Length-4, e.Max)
}

// frameReader reads whole protocol frames (type byte, length, body) from r
// into a buffer it owns. A frame returned by next is valid until the next call.
//
// Before each read that may block, it calls starve, which the relay uses to
// flush what it has buffered for the other side: output is flushed exactly
// when the input has nothing more to offer.
type frameReader struct {
	r       io.Reader
	buf     []byte
	start   int // first unread byte
	end     int // end of buffered data
	maxBody int
	starve  func() error
}

// bufPool recycles the steady-state buffers of readers and writers: a
// session holds four, and allocating them for every connection costs more
// than the connection's own set-up.
var bufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

func getBuf() []byte { return *(bufPool.Get().(*[]byte)) }

func putBuf(b []byte) {
	if cap(b) == readBufSize {
		b = b[:readBufSize]
		bufPool.Put(&b)
	}
}

func newFrameReader(r io.Reader, maxBody int, starve func() error) *frameReader {
	if maxBody <= 0 {
		maxBody = pgMaxMessageSize
	}
	return &frameReader{r: r, buf: getBuf(), maxBody: maxBody, starve: starve}
}

// release returns the reader's buffer to the pool; the reader is unusable after.
func (fr *frameReader) release() {
	putBuf(fr.buf)
	fr.buf, fr.start, fr.end = nil, 0, 0
}

// next returns the next frame, header included. The frame aliases the
// reader's buffer.
func (fr *frameReader) next() (frame []byte, err error) {
	for {
		if n := fr.end - fr.start; n >= headerLen {
			length := int64(binary.BigEndian.Uint32(fr.buf[fr.start+1:]))
			if length < 4 || length-4 > int64(fr.maxBody) {
				return nil, &FrameError{Type: fr.buf[fr.start], Length: length, Max: fr.maxBody}
			}
			total := int(length) + 1
			if n >= total {
				frame = fr.buf[fr.start : fr.start+total]
				fr.start += total
				return frame, nil
			}
			if err := fr.fill(total); err != nil {
				return nil, err
			}
			continue
		}
		if err := fr.fill(headerLen); err != nil {
			return nil, err
		}
	}
}

// fill reads until at least need bytes are buffered from start. A buffer
// for a frame larger than the steady-state one grows with the bytes that
// arrive, so that a length field alone, or a peer that trickles, costs no
// more memory than it has sent.
func (fr *frameReader) fill(need int) error {
	if fr.starve != nil {
		if err := fr.starve(); err != nil {
			return err
		}
	}
	n := fr.end - fr.start
	switch {
	case len(fr.buf) > readBufSize && need <= readBufSize:
		// The previous frame was oversized; return to the steady-state buffer
		// so one huge message does not pin memory for the whole session.
		nb := getBuf()
		copy(nb, fr.buf[fr.start:fr.end])
		fr.buf, fr.start, fr.end = nb, 0, n
	case fr.start+need > len(fr.buf) || (n == 0 && fr.start > 0):
		copy(fr.buf, fr.buf[fr.start:fr.end])
		fr.start, fr.end = 0, n
	}
	for fr.end-fr.start < need {
		if fr.end == len(fr.buf) {
			// A frame larger than the buffer: grow it, at most doubling.
			nb := make([]byte, min(need, 2*len(fr.buf)))
			copy(nb, fr.buf[fr.start:fr.end])
			fr.buf, fr.start, fr.end = nb, 0, fr.end-fr.start
		}
		m, err := fr.r.Read(fr.buf[fr.end:])
		fr.end += m
		if err != nil {
			if err == io.EOF && fr.end-fr.start > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// frameWriter buffers frames for one connection. After a failed write the
// peer may have received part of a frame, so the writer refuses further
// writes: err is sticky. Writes are whole frames, serialized by mu, so a
// notice written from another goroutine (SessionInfo.Notice) lands
// between two frames.
type frameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
	err error
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: w, buf: getBuf()[:0]}
}

// release returns the writer's buffer to the pool; the writer is unusable after.
func (fw *frameWriter) release() {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	putBuf(fw.buf)
	fw.buf, fw.err = nil, io.ErrClosedPipe
}

// write queues p, flushing first when it does not fit. Frames larger than the
// buffer are written through.
func (fw *frameWriter) write(p []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.err != nil {
		return fw.err
	}
	if len(fw.buf)+len(p) > cap(fw.buf) {
		if err := fw.flushLocked(); err != nil {
			return err
		}
		if len(p) > cap(fw.buf) {
			_, fw.err = fw.w.Write(p)
			return fw.err
		}
	}
	fw.buf = append(fw.buf, p...)
	return nil
}

// writeNow writes p and everything queued before it at once.
func (fw *frameWriter) writeNow(p []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.err != nil {
		return fw.err
	}
	fw.buf = append(fw.buf, p...)
	return fw.flushLocked()
}

func (fw *frameWriter) flush() error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.flushLocked()
}

func (fw *frameWriter) flushLocked() error {
	if fw.err != nil || len(fw.buf) == 0 {
		return fw.err
	}
	_, fw.err = fw.w.Write(fw.buf)
	fw.buf = fw.buf[:0]
	return fw.err
}
