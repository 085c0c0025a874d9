package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The seed corpora live in testdata/fuzz/<target>; `make fuzz` runs each
// target for a while.

// FuzzFrameReader checks that the frame reader returns exactly the frames the
// input holds, never reads past a length it rejected, and never panics.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte("Q\x00\x00\x00\x0dselect 1\x00"), uint16(7))
	f.Add([]byte("D\x00\x00\x00\x03"), uint16(1))
	f.Add([]byte("X\x00\x00\x00\x04Q\x00\x00\x01"), uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16) {
		r := &chunkedReader{data: data, chunk: int(chunk%64) + 1}
		fr := newFrameReader(r, 256, nil)
		var total int
		for {
			frame, err := fr.next()
			if err != nil {
				var fe *FrameError
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &fe) {
					return
				}
				t.Fatalf("unexpected error %v", err)
			}
			if len(frame) < headerLen || len(frame) > headerLen+256 {
				t.Fatalf("frame of %d bytes", len(frame))
			}
			if !bytes.Equal(frame, data[total:total+len(frame)]) {
				t.Fatalf("frame differs from input at offset %d", total)
			}
			total += len(frame)
		}
	})
}

type chunkedReader struct {
	data  []byte
	chunk int
}

func (r *chunkedReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.chunk, len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// FuzzStartupPacket checks the startup-phase parser on arbitrary packets.
func FuzzStartupPacket(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x08\x04\xd2\x16\x2f"))
	f.Add([]byte("\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x01\x00\x00\x00\x02"))
	f.Add([]byte("\x00\x00\x00\x17\x00\x03\x00\x00user\x00alice\x00\x00"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := readStartupPacket(bytes.NewReader(data))
		if err != nil {
			return
		}
		if sm, ok := msg.(*startupMessage); ok {
			// What is parsed re-encodes to a packet that parses the same.
			again, err := readStartupPacket(bytes.NewReader(sm.encode()))
			if err != nil {
				t.Fatalf("re-encoded startup message does not parse: %v", err)
			}
			sm2 := again.(*startupMessage)
			if sm2.ProtocolVersion != sm.ProtocolVersion || len(sm2.Parameters) != len(sm.Parameters) {
				t.Fatalf("round trip changed the message: %+v vs %+v", sm, sm2)
			}
		}
	})
}

// FuzzSession feeds arbitrary client and server frames through the session's
// bookkeeping, with an inspector installed, interleaving the two directions.
func FuzzSession(f *testing.F) {
	f.Add([]byte("Q\x00\x00\x00\x0dselect 1\x00"),
		[]byte("T\x00\x00\x00\x1b\x00\x01a\x00\x00\x00@\x00\x00\x02\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x011C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I"))
	f.Add([]byte("P\x00\x00\x00\x0ds\x00select\x00\x00\x00B\x00\x00\x00\x0e\x00s\x00\x00\x00\x00\x00\x00\x01\x00\x01E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04"),
		[]byte("1\x00\x00\x00\x042\x00\x00\x00\x04D\x00\x00\x00\x06\x00\x01\xff\xff\xff\xffC\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I"))
	f.Fuzz(func(t *testing.T, fromClient, fromServer []byte) {
		rec := &recorder{}
		insp, _ := rec.StartSession(context.Background(), nil)
		s := &session{cfg: &Config{}, insp: insp, prepared: map[string]*preparedStmt{}, portals: map[string]*portal{},
			toServer: newFrameWriter(io.Discard)}
		cr := newFrameReader(bytes.NewReader(fromClient), 1<<16, nil)
		sr := newFrameReader(bytes.NewReader(fromServer), 1<<16, nil)
		for cr != nil || sr != nil {
			if cr != nil {
				frame, err := cr.next()
				if err != nil {
					cr = nil
				} else if t := frame[0]; t == 'Q' || t == 'P' || t == 'B' || t == 'D' || t == 'E' || t == 'C' || t == 'S' || t == 'F' {
					s.trackRequest(t, frame[headerLen:])
				}
			}
			if sr != nil {
				frame, err := sr.next()
				if err != nil {
					sr = nil
				} else {
					s.onServerMessage(frame)
				}
			}
		}
	})
}

// TestPortalsOfEndedTransactionsForgotten: PostgreSQL drops a transaction's
// portals when it ends; a client that binds a new portal name in every
// transaction and never closes one must not grow its session, while the
// portals of an open transaction stay known.
func TestPortalsOfEndedTransactionsForgotten(t *testing.T) {
	rec := &recorder{}
	insp, _ := rec.StartSession(context.Background(), nil)
	s := &session{cfg: &Config{}, insp: insp, prepared: map[string]*preparedStmt{}, portals: map[string]*portal{},
		toServer: newFrameWriter(io.Discard)}
	request := func(m pgproto3.FrontendMessage) {
		t.Helper()
		frame, err := m.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.trackRequest(frame[0], frame[headerLen:]); err != nil {
			t.Fatal(err)
		}
	}
	answer := func(m pgproto3.BackendMessage) {
		t.Helper()
		frame, err := m.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.onServerMessage(frame); err != nil {
			t.Fatal(err)
		}
	}
	batch := func(portal string, status byte) {
		request(&pgproto3.Bind{DestinationPortal: portal})
		request(&pgproto3.Sync{})
		answer(&pgproto3.BindComplete{})
		answer(&pgproto3.ReadyForQuery{TxStatus: status})
	}
	for i := range 10_000 {
		batch(fmt.Sprintf("p%d", i), 'I')
	}
	if n := len(s.portals); n > portalsSweepAt {
		t.Errorf("%d portals known after 10,000 ended transactions, want at most %d", n, portalsSweepAt)
	}
	// Inside a transaction block, every portal lives on.
	for i := range 2 * portalsSweepAt {
		batch(fmt.Sprintf("open%d", i), 'T')
	}
	for i := range 2 * portalsSweepAt {
		if s.portals[fmt.Sprintf("open%d", i)] == nil {
			t.Fatalf("portal open%d of the open transaction was forgotten", i)
		}
	}
}
