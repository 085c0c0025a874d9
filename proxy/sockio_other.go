//go:build !linux

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// rawSocket returns c: raw socket I/O is for Linux only (sockio_linux.go).
func rawSocket(c net.Conn) io.ReadWriter { return c }

// readable reports whether an idle connection has bytes to read or its
// peer has closed it; what it reads is lost, which only matters for a
// connection that is then closed.
func readable(c net.Conn) bool {
	c.SetReadDeadline(time.Now())
	defer c.SetReadDeadline(time.Time{})
	var b [1]byte
	_, err := c.Read(b[:])
	return !errors.Is(err, os.ErrDeadlineExceeded)
}
