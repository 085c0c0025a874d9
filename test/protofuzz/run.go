package protofuzz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Target is a server a sequence is sent to: PostgreSQL itself, or a
// pgwarden in front of it.
type Target struct {
	Name string
	Addr string
	// Sessions, for a proxy, counts its open client sessions.
	Sessions func() int
}

// End says how a transcript ended.
type End string

// The ends of a transcript.
const (
	EndComplete End = "complete" // the trailer's ReadyForQuery arrived
	EndHang     End = "hang"     // silence for Runner.Silence before it did
	EndClosed   End = "closed"   // the server closed the connection
)

// Transcript is the normalized answer of a target to a sequence and its
// trailer, and what was left behind when the client went away.
type Transcript struct {
	Lines []Line
	End   End
	// Leaks name sessions or backends still open after the client closed.
	Leaks []string
}

// Key is the transcript as compared: message types, SQLSTATEs, command
// tags, row counts, the end and the leaks.
func (t *Transcript) Key() string {
	var b strings.Builder
	for _, l := range t.Lines {
		b.WriteString(l.Key)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "<%s>\n", t.End)
	for _, l := range t.Leaks {
		fmt.Fprintf(&b, "leak: %s\n", l)
	}
	return b.String()
}

// Ready is the number of ReadyForQuery messages that answered the
// sequence, the trailer's left out; 0 unless the transcript is complete.
func (t *Transcript) Ready() int {
	if t.End != EndComplete {
		return 0
	}
	return count(t, "ReadyForQuery") - trailerReady
}

// trailerReady is the number of ReadyForQuery messages that answer the
// trailer: its Sync's and its Query's.
const trailerReady = 2

// String renders the transcript for a report, error texts included.
func (t *Transcript) String() string {
	var b strings.Builder
	for _, l := range t.Lines {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "<%s>\n", t.End)
	for _, l := range t.Leaks {
		fmt.Fprintf(&b, "leak: %s\n", l)
	}
	return b.String()
}

// Runner sends sequences to targets over raw connections.
type Runner struct {
	// User and Database of the startup message; the user must be trusted
	// (no password).
	User, Database string
	// Admin is a superuser pool, to look for backends left behind.
	Admin *pgxpool.Pool
	// Silence is how long a reply may take before the target counts as
	// hung (default 2s).
	Silence time.Duration
	// Pause is the wait at each Cut (default 20ms).
	Pause time.Duration
	// Linger bounds the wait for a session and its backend to end after
	// the client closed (default 2s).
	Linger time.Duration
}

var runCount atomic.Uint64

// Run connects to target, creates the temporary table t (id int, email
// text) the statements use, sends seq and its trailer, and returns the
// normalized replies. When seq.Settle is set and ready > 0, the trailer
// waits until ready ReadyForQuery messages have arrived, as a client that
// counts its Syncs and Queries does.
func (r *Runner) Run(ctx context.Context, target Target, seq Sequence, ready int) (*Transcript, error) {
	silence := orDefault(r.Silence, 2*time.Second)
	app := fmt.Sprintf("protofuzz_%d_%d", os.Getpid(), runCount.Add(1))
	var before int
	if target.Sessions != nil {
		before = target.Sessions()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", target.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target.Name, err)
	}
	defer conn.Close()
	fe := pgproto3.NewFrontend(conn, conn)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": r.User, "database": r.Database, "application_name": app}})
	fe.Send(&pgproto3.Query{String: "create temp table t (id int, email text)"})
	if err := fe.Flush(); err != nil {
		return nil, fmt.Errorf("%s: startup: %w", target.Name, err)
	}
	for ready := 0; ready < 2; {
		m, err := fe.Receive()
		if err != nil {
			return nil, fmt.Errorf("%s: startup: %w", target.Name, err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			return nil, fmt.Errorf("%s: startup: %s %s", target.Name, m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			ready++
		}
	}
	conn.SetDeadline(time.Time{})

	chunks, err := encode(seq.Msgs, seq.Cuts)
	if err != nil {
		return nil, err
	}
	trailer, err := encode(Trailer(), nil)
	if err != nil {
		return nil, err
	}
	if !seq.Settle || ready <= 0 {
		ready = 0
		last := len(chunks) - 1
		chunks[last] = append(chunks[last], trailer[0]...)
	}
	settled, done := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i, c := range chunks {
			if i > 0 {
				time.Sleep(orDefault(r.Pause, 20*time.Millisecond))
			}
			if _, err := conn.Write(c); err != nil {
				return
			}
		}
		if ready > 0 {
			select {
			case <-settled:
				conn.Write(trailer[0])
			case <-done:
			}
		}
	})
	tr := r.read(fe, conn, silence, func(n int) {
		if n == ready {
			close(settled)
		}
	})
	close(done)
	fe.Send(&pgproto3.Terminate{})
	fe.Flush()
	conn.Close()
	wg.Wait()
	tr.Leaks = r.leaks(ctx, target, app, before)
	return tr, nil
}

// read collects replies up to the ReadyForQuery that follows the marker
// row, collapsing runs of DataRow and CopyData into counts.
func (r *Runner) read(fe *pgproto3.Frontend, conn net.Conn, silence time.Duration, onReady func(n int)) *Transcript {
	tr := &Transcript{}
	readies := 0
	var run string
	var runLen int
	flush := func() {
		if runLen > 0 {
			tr.Lines = append(tr.Lines, Line{Key: fmt.Sprintf("%s x%d", run, runLen)})
			runLen = 0
		}
	}
	marker := false
	for {
		conn.SetReadDeadline(time.Now().Add(silence))
		m, err := fe.Receive()
		if err != nil {
			flush()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				tr.End = EndHang
			} else {
				tr.End = EndClosed
			}
			return tr
		}
		var kind string
		switch m := m.(type) {
		case *pgproto3.DataRow:
			if len(m.Values) == 1 && string(m.Values[0]) == endMarker {
				marker = true
			}
			kind = "DataRow"
		case *pgproto3.CopyData:
			kind = "CopyData"
		}
		if kind != "" {
			if kind != run {
				flush()
				run = kind
			}
			runLen++
			continue
		}
		flush()
		if l, ok := lineOf(m); ok {
			tr.Lines = append(tr.Lines, l)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			if marker {
				tr.End = EndComplete
				return tr
			}
			readies++
			onReady(readies)
		}
	}
}

// encode frames msgs into the chunks to write, cut at cuts.
func encode(msgs []pgproto3.FrontendMessage, cuts []Cut) ([][]byte, error) {
	var chunks [][]byte
	var cur []byte
	for i, m := range msgs {
		frame, err := m.Encode(nil)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", Render(m), err)
		}
		for _, c := range cuts {
			if c.Before != i {
				continue
			}
			off := min(c.Offset, len(frame)-1)
			cur = append(cur, frame[:off]...)
			frame = frame[off:]
			if len(cur) > 0 {
				chunks = append(chunks, cur)
				cur = nil
			}
		}
		cur = append(cur, frame...)
	}
	return append(chunks, cur), nil
}

// leaks waits up to Linger for the target's sessions and the run's
// backend to end, and names those that did not.
func (r *Runner) leaks(ctx context.Context, target Target, app string, before int) []string {
	deadline := time.Now().Add(orDefault(r.Linger, 2*time.Second))
	var out []string
	if target.Sessions != nil {
		n := poll(deadline, func() int { return max(target.Sessions()-before, 0) })
		if n > 0 {
			out = append(out, fmt.Sprintf("%d more pgwarden session(s) open than before the run", n))
		}
	}
	if r.Admin != nil {
		var state string
		n := poll(deadline, func() int {
			var n int
			err := r.Admin.QueryRow(ctx, `select count(*), coalesce(string_agg(state, ','), '')
				from pg_stat_activity where application_name = $1`, app).Scan(&n, &state)
			if err != nil {
				state = err.Error()
				return -1
			}
			return n
		})
		if n != 0 {
			out = append(out, fmt.Sprintf("%d backend(s) still there (%s)", n, state))
		}
	}
	return out
}

func poll(deadline time.Time, f func() int) int {
	for {
		n := f()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
