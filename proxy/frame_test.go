package proxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
)

// TestFrameWriterWholeFrames: a notice written from another goroutine
// (SessionInfo.Notice) while the relay queues and flushes its frames
// lands between two frames, never inside one.
func TestFrameWriterWholeFrames(t *testing.T) {
	client, peer := net.Pipe()
	defer client.Close()
	fw := newFrameWriter(client)
	frame := func(typ byte, n int) []byte {
		b := make([]byte, 5+n)
		b[0] = typ
		binary.BigEndian.PutUint32(b[1:], uint32(4+n))
		copy(b[5:], bytes.Repeat([]byte{typ}, n))
		return b
	}
	const rows, notices = 2000, 200
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range rows {
			fw.write(frame('D', 1+i%3000)) // some past the buffer, written through
			if i%50 == 0 {
				fw.flush()
			}
		}
		fw.flush()
	}()
	go func() {
		defer wg.Done()
		for range notices {
			fw.writeNow(frame('N', 40))
		}
	}()
	go func() { wg.Wait(); client.Close() }()
	fr := newFrameReader(peer, 1<<20, nil)
	got := map[byte]int{}
	for {
		f, err := fr.next()
		if err == io.EOF || err != nil && got['D']+got['N'] == rows+notices {
			break
		}
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		typ := f[0]
		if body := f[5:]; len(body) == 0 || bytes.Count(body, []byte{typ}) != len(body) {
			t.Fatalf("frame %q mixes bytes of another frame", typ)
		}
		got[typ]++
	}
	if got['D'] != rows || got['N'] != notices {
		t.Errorf("received %v, want %d rows and %d notices", got, rows, notices)
	}
}
