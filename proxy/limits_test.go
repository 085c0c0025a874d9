package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestFrameReaderGrowsWithData: a frame's length field alone does not make
// the reader allocate the whole frame; its buffer grows with what arrives.
func TestFrameReaderGrowsWithData(t *testing.T) {
	const claimed = 64 << 20
	in := append([]byte{'Q', 0, 0, 0, 0}, bytes.Repeat([]byte("x"), 300<<10)...)
	binary.BigEndian.PutUint32(in[1:], claimed+4)
	fr := newFrameReader(bytes.NewReader(in), claimed, nil)
	if _, err := fr.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
	if n := len(fr.buf); n > 1<<20 {
		t.Errorf("reader holds a buffer of %d bytes after 300 KiB of a frame claiming 64 MiB", n)
	}

	// A large frame that does arrive is read whole, and the frames after it too.
	big := frameOf('Q', bytes.Repeat([]byte("y"), 1<<20+7))
	small := frameOf('S', nil)
	fr = newFrameReader(bytes.NewReader(append(append(append([]byte{}, small...), big...), small...)), 2<<20, nil)
	for i, want := range [][]byte{small, big, small} {
		got, err := fr.next()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes, %v; want %d bytes", i, len(got), err, len(want))
		}
	}
	if len(fr.buf) != readBufSize {
		t.Errorf("after the large frame the reader holds %d bytes, want its steady-state %d", len(fr.buf), readBufSize)
	}
}

func frameOf(typ byte, body []byte) []byte {
	b := binary.BigEndian.AppendUint32([]byte{typ}, uint32(len(body)+4))
	return append(b, body...)
}

// TestPendingQueueRoom: room reports a full queue and wakes its waiter
// once half of it has been answered.
func TestPendingQueueRoom(t *testing.T) {
	var q pendingQueue
	for range 8 {
		q.push(&pending{kind: pendSync})
	}
	if q.room(9) != nil {
		t.Fatal("room(9) with 8 entries: want nil")
	}
	ch := q.room(8)
	if ch == nil {
		t.Fatal("room(8) with 8 entries: want a channel")
	}
	for i := range 4 {
		select {
		case <-ch:
			t.Fatalf("woken with %d entries left, want at most 4", 8-i)
		default:
		}
		q.pop()
	}
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("not woken with 4 entries left")
	}
}

// TestPendingQueueReusesRoom: a queue that never empties does not keep
// every entry it ever held.
func TestPendingQueueReusesRoom(t *testing.T) {
	var q pendingQueue
	for range 100 {
		q.push(&pending{kind: pendSync})
	}
	for range 1_000_000 {
		q.push(&pending{kind: pendSync})
		q.pop()
	}
	if q.len() != 100 {
		t.Fatalf("%d entries, want 100", q.len())
	}
	if c := cap(q.items); c > 1024 {
		t.Errorf("the queue's slice has room for %d entries with 100 in flight", c)
	}
}

// TestStartupSlots counts connections per IP address (an IPv6 one per /64),
// not per port, and gives a slot back once however often release is
// called.
func TestStartupSlots(t *testing.T) {
	var s startupSlots
	a1 := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	a2 := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2}
	b := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 1}
	r1, ok := s.acquire(a1, 2)
	if !ok {
		t.Fatal("first slot refused")
	}
	if _, ok := s.acquire(a2, 2); !ok {
		t.Fatal("second slot refused")
	}
	if _, ok := s.acquire(a1, 2); ok {
		t.Fatal("third slot of the same address granted")
	}
	if _, ok := s.acquire(b, 2); !ok {
		t.Fatal("another address refused")
	}
	r1()
	r1()
	if _, ok := s.acquire(a1, 2); !ok {
		t.Fatal("slot not given back")
	}
	if _, ok := s.acquire(a1, 2); ok {
		t.Fatal("a double release gave back two slots")
	}
	v6a := &net.TCPAddr{IP: net.ParseIP("2001:db8:1:2::a")}
	v6b := &net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::b")}
	v6c := &net.TCPAddr{IP: net.ParseIP("2001:db8:1:3::a")}
	if _, ok := s.acquire(v6a, 1); !ok {
		t.Fatal("IPv6 address refused")
	}
	if _, ok := s.acquire(v6b, 1); ok {
		t.Fatal("another address of the same IPv6 /64 granted")
	}
	if _, ok := s.acquire(v6c, 1); !ok {
		t.Fatal("an address of another /64 refused")
	}
	if _, ok := s.acquire(&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.9")}, 1); !ok {
		t.Fatal("an IPv4-mapped address counted with others")
	}
	if _, ok := s.acquire(&net.UnixAddr{Name: "@", Net: "unix"}, 0); !ok {
		t.Fatal("a Unix socket counted")
	}
	if _, ok := s.acquire(a1, -1); !ok {
		t.Fatal("a negative limit counted")
	}
}
