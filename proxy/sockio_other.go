//go:build !linux

package proxy

import (
	"io"
	"net"
)

// rawSocket returns c: raw socket I/O is for Linux only (sockio_linux.go).
func rawSocket(c net.Conn) io.ReadWriter { return c }
