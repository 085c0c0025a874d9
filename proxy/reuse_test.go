package proxy

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// terminated reports whether the server end received Terminate and then
// the close of the connection.
func terminated(t *testing.T, server net.Conn) bool {
	t.Helper()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(server)
	return err == nil && bytes.Equal(b, []byte{'X', 0, 0, 0, 4})
}

func TestServerPool(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	cfg := Reuse{MaxIdle: 2, IdleTimeout: time.Hour, MaxLifetime: 2 * time.Hour}
	newConn := func(key string) (*serverConn, net.Conn) {
		ours, theirs := tcpPair(t)
		return &serverConn{conn: ours, key: key, created: clock.Now()}, theirs
	}

	t.Run("most recent first, per key", func(t *testing.T) {
		p := newServerPool(cfg, clock.Now)
		a, _ := newConn("k")
		b, _ := newConn("k")
		other, _ := newConn("other")
		for _, c := range []*serverConn{a, b, other} {
			if !p.put(c) {
				t.Fatal("put refused")
			}
		}
		if got := p.get("k"); got != b {
			t.Error("get did not return the connection parked last")
		}
		if got := p.get("k"); got != a {
			t.Error("get did not return the other connection of the key")
		}
		if got := p.get("k"); got != nil {
			t.Error("get returned a connection of another key")
		}
		if st := p.stats(); st.Parked != 1 || st.Reused != 2 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("at most MaxIdle per key", func(t *testing.T) {
		p := newServerPool(cfg, clock.Now)
		for i := range 3 {
			c, _ := newConn("k")
			if got, want := p.put(c), i < cfg.MaxIdle; got != want {
				t.Errorf("put %d: %v, want %v", i+1, got, want)
			}
		}
	})

	t.Run("idle timeout at checkout", func(t *testing.T) {
		p := newServerPool(cfg, clock.Now)
		c, server := newConn("k")
		p.put(c)
		clock.add(cfg.IdleTimeout)
		if p.get("k") != nil {
			t.Error("a connection idle past the timeout was handed out")
		}
		if !terminated(t, server) {
			t.Error("the server did not get Terminate and a close")
		}
	})

	t.Run("lifetime", func(t *testing.T) {
		p := newServerPool(cfg, clock.Now)
		c, server := newConn("k")
		clock.add(cfg.MaxLifetime - time.Minute)
		p.put(c)
		clock.add(2 * time.Minute)
		if p.get("k") != nil {
			t.Error("a connection past its lifetime was handed out")
		}
		if !terminated(t, server) {
			t.Error("the server did not get Terminate and a close")
		}
		late, _ := newConn("k")
		clock.add(cfg.MaxLifetime)
		if p.put(late) {
			t.Error("a connection past its lifetime was parked")
		}
	})

	t.Run("closed by the server while parked", func(t *testing.T) {
		p := newServerPool(cfg, clock.Now)
		c, server := newConn("k")
		p.put(c)
		server.Write([]byte("E"))
		server.Close()
		if p.get("k") != nil {
			t.Error("a connection the server had written to and closed was handed out")
		}
	})

	t.Run("idle timer", func(t *testing.T) {
		p := newServerPool(Reuse{MaxIdle: 1, IdleTimeout: 20 * time.Millisecond, MaxLifetime: time.Hour}, clock.Now)
		c, server := newConn("k")
		p.put(c)
		if !terminated(t, server) {
			t.Error("the server did not get Terminate and a close")
		}
		if st := p.stats(); st.Parked != 0 {
			t.Errorf("stats %+v after the idle timeout", st)
		}
	})

	t.Run("close", func(t *testing.T) {
		p := newServerPool(cfg, clock.Now)
		a, aServer := newConn("a")
		b, bServer := newConn("b")
		p.put(a)
		p.put(b)
		p.close()
		if !terminated(t, aServer) || !terminated(t, bServer) {
			t.Error("close did not end every parked connection with Terminate")
		}
		c, _ := newConn("a")
		if p.put(c) || p.stats().Parked != 0 {
			t.Error("a closed pool parked a connection")
		}
	})
}

func TestReuseKeyIgnoresParameterOrder(t *testing.T) {
	a := &startupMessage{ProtocolVersion: 196608, Parameters: map[string]string{"user": "r", "database": "d"}, order: []string{"user", "database"}}
	b := &startupMessage{ProtocolVersion: 196608, Parameters: map[string]string{"user": "r", "database": "d"}, order: []string{"database", "user"}}
	if reuseKey(TLSDisable, a) != reuseKey(TLSDisable, b) {
		t.Error("the order of the parameters changed the key")
	}
	for name, other := range map[string]string{
		"TLS mode": reuseKey(TLSRequire, a),
		"database": reuseKey(TLSDisable, &startupMessage{ProtocolVersion: 196608, Parameters: map[string]string{"user": "r", "database": "e"}, order: []string{"user", "database"}}),
		"option":   reuseKey(TLSDisable, &startupMessage{ProtocolVersion: 196608, Parameters: map[string]string{"user": "r", "database": "d", "options": "-c x=1"}, order: []string{"user", "database", "options"}}),
		"protocol": reuseKey(TLSDisable, &startupMessage{ProtocolVersion: 196610, Parameters: a.Parameters, order: a.order}),
	} {
		if other == reuseKey(TLSDisable, a) {
			t.Errorf("another %s, the same key", name)
		}
	}
}
