//go:build linux

package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestSockIOMatchesConn checks that the raw socket I/O behaves as
// net.Conn where the relay relies on it: every byte of a write larger than
// the socket buffers arrives in order while the reader is slow, a deadline
// in the past interrupts a blocked read as a timeout, the peer's close is
// io.EOF, and a write to a reset connection fails as a closed connection.
func TestSockIOMatchesConn(t *testing.T) {
	a, b := tcpPair(t)
	ra, rb := newSockIO(a), newSockIO(b)
	if ra == nil || rb == nil {
		t.Fatal("no raw socket I/O for a TCP connection")
	}

	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	werr := make(chan error, 1)
	go func() {
		n, err := ra.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		werr <- err
	}()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 1000)
	for len(got) < len(want) {
		n, err := rb.Read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
		if len(got) < 1<<20 {
			time.Sleep(time.Millisecond) // slow at first: the writer meets EAGAIN
		}
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the bytes read differ from those written")
	}

	done := make(chan error, 1)
	go func() {
		_, err := rb.Read(buf)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	b.SetReadDeadline(aLongTimeAgo)
	select {
	case err := <-done:
		if !isTimeout(err) {
			t.Fatalf("read interrupted by a past deadline: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a past deadline did not interrupt the read")
	}
	b.SetReadDeadline(time.Time{})

	a.Close()
	if _, err := rb.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the peer's close: %v, want io.EOF", err)
	}
	var err error
	for range 100 {
		if _, err = rb.Write([]byte("x")); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err == nil || !isClosedConn(err) {
		t.Fatalf("write to a closed peer: %v, want a closed-connection error", err)
	}
}

// TestSockIOReusesItsState checks that a read and a write of a message
// allocate nothing (a closure per call that escaped through the RawConn
// was two allocations each), and that each call starts from its own
// state: messages written one after another arrive whole and in order.
func TestSockIOReusesItsState(t *testing.T) {
	a, b := tcpPair(t)
	ra, rb := newSockIO(a), newSockIO(b)
	msg := []byte("Q\x00\x00\x00\x0dSELECT 1\x00")
	buf := make([]byte, len(msg))
	var i byte
	allocs := testing.AllocsPerRun(200, func() {
		i++
		msg[len(msg)-2] = i
		if n, err := ra.Write(msg); err != nil || n != len(msg) {
			t.Fatalf("write: %d, %v", n, err)
		}
		if _, err := io.ReadFull(rb, buf); err != nil {
			t.Fatalf("read: %v", err)
		}
		if !bytes.Equal(buf, msg) {
			t.Fatalf("read %q, want %q", buf, msg)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations a write and read, want 0", allocs)
	}
}
