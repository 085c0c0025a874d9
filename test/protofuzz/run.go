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
	// Blocks says the proxy blocks the results larger than BlockRows
	// (SQLSTATE 42501), so its replies are compared with PostgreSQL's
	// answer to the sequence's ErrorTwin.
	Blocks bool
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
	// Stall is the longest wait for a message, while the client waited.
	Stall time.Duration
	// Settled is the number of ReadyForQuery messages that came before
	// the trailer was sent, for a settled sequence; -1 otherwise.
	Settled int
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

// String renders the transcript for a report, error texts included.
func (t *Transcript) String() string {
	var b strings.Builder
	for _, l := range t.Lines {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "<%s> (longest wait %v)\n", t.End, t.Stall.Round(time.Millisecond))
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
	// Admin is a superuser pool, to look for backends that a proxy left
	// behind.
	Admin *pgxpool.Pool
	// Silence is how long a reply may take before the target counts as
	// hung (default 4s).
	Silence time.Duration
	// Pause is the wait at each Cut (default 20ms).
	Pause time.Duration
	// Quiet is the silence after which PostgreSQL has answered a settled
	// sequence (default 100ms). Too short a wait only makes the proxies'
	// runs wait for fewer replies.
	Quiet time.Duration
	// Linger bounds the wait for a session and its backend to end after
	// the client closed (default 2s).
	Linger time.Duration
}

var runCount atomic.Uint64

// Run connects to target, creates the temporary table t (id int, email
// text) the statements use, sends seq and its trailer, and returns the
// normalized replies. When seq.Settle is set, the trailer waits for the
// replies to seq: for ready ReadyForQuery messages, as a client that
// counts its Syncs and Queries does, or, when ready < 0, for Runner.Quiet
// of silence (for PostgreSQL itself, whose count the proxies then get).
func (r *Runner) Run(ctx context.Context, target Target, seq Sequence, ready int) (*Transcript, error) {
	silence := orDefault(r.Silence, 4*time.Second)
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
	if !seq.Settle {
		last := len(chunks) - 1
		chunks[last] = append(chunks[last], trailer[0]...)
	}
	done := make(chan struct{})
	st := &settler{ready: ready, quiet: orDefault(r.Quiet, 100*time.Millisecond), ch: make(chan struct{})}
	if !seq.Settle || ready == 0 {
		st.settle(0)
	}
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
		if seq.Settle {
			select {
			case <-st.ch:
				conn.Write(trailer[0])
			case <-done:
			}
		}
	})
	tr := r.read(fe, conn, silence, st)
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
func (r *Runner) read(fe *pgproto3.Frontend, conn net.Conn, silence time.Duration, st *settler) *Transcript {
	tr := &Transcript{Settled: -1}
	defer func() {
		if st.done {
			tr.Settled = st.at
		}
	}()
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
	last := time.Now()
	for {
		quiet := !st.done && st.ready < 0
		if quiet {
			conn.SetReadDeadline(time.Now().Add(st.quiet))
		} else {
			conn.SetReadDeadline(time.Now().Add(silence))
		}
		m, err := fe.Receive()
		var ne net.Error
		if quiet && errors.As(err, &ne) && ne.Timeout() {
			st.settle(readies)
			last = time.Now()
			continue
		}
		now := time.Now()
		tr.Stall = max(tr.Stall, now.Sub(last))
		last = now
		if err != nil {
			flush()
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
			if !st.done && readies == st.ready {
				st.settle(readies)
			}
		}
	}
}

// settler releases the trailer of a settled sequence.
type settler struct {
	ready int           // ReadyForQuery messages to wait for; < 0: wait for quiet
	quiet time.Duration // the silence that settles when ready < 0
	ch    chan struct{} // closed when settled
	done  bool
	at    int // ReadyForQuery messages received when it settled
}

func (s *settler) settle(readies int) {
	if !s.done {
		s.done, s.at = true, readies
		close(s.ch)
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
	if r.Admin != nil && target.Sessions != nil {
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
