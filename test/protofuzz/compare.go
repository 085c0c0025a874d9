package protofuzz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Class sorts a divergence by how the proxy's answer differs.
type Class string

// Divergence classes, from the worst.
const (
	ClassHang     Class = "hang"                           // the proxy went silent
	ClassClosed   Class = "connection closed"              // the proxy closed the connection
	ClassLeak     Class = "leaked session or backend"      // something stayed open after the client left
	ClassReady    Class = "missing or extra ReadyForQuery" // a different number of ReadyForQuery
	ClassSQLState Class = "different SQLSTATE"             // the same shape, other errors
	ClassOrder    Class = "wrong message order"            // anything else
	ClassStall    Class = "stall"                          // the same replies, one after a long wait
)

// StallAfter is the wait for a reply that counts as a stall when
// PostgreSQL answered without one: a request held until pgwarden's hold
// timeout answers right, but late.
var StallAfter = time.Second

// Classify says how proxied differs from direct; "" when it does not.
func Classify(direct, proxied *Transcript) Class {
	if direct.Key() == proxied.Key() {
		if proxied.Stall > StallAfter && direct.Stall < StallAfter/2 {
			return ClassStall
		}
		return ""
	}
	switch {
	case proxied.End == EndHang && direct.End != EndHang:
		return ClassHang
	case proxied.End == EndClosed && direct.End != EndClosed:
		return ClassClosed
	case len(proxied.Leaks) > 0 && len(direct.Leaks) == 0:
		return ClassLeak
	case count(direct, "ReadyForQuery") != count(proxied, "ReadyForQuery"):
		return ClassReady
	case !slices.Equal(codes(direct), codes(proxied)) && len(direct.Lines) == len(proxied.Lines):
		return ClassSQLState
	}
	return ClassOrder
}

func count(t *Transcript, prefix string) int {
	n := 0
	for _, l := range t.Lines {
		if strings.HasPrefix(l.Key, prefix) {
			n++
		}
	}
	return n
}

func codes(t *Transcript) []string {
	var out []string
	for _, l := range t.Lines {
		if strings.HasPrefix(l.Key, "ErrorResponse") {
			out = append(out, l.Key)
		}
	}
	return out
}

// ErrFlaky is Minimize's error for a divergence that did not come back
// when the sequence was sent again.
var ErrFlaky = errors.New("did not diverge again (flaky)")

// Divergence is a sequence whose answer through a proxy differs from
// PostgreSQL's, minimized.
type Divergence struct {
	Proxy     string
	Class     Class
	Seq       Sequence // minimized
	Direct    *Transcript
	Proxied   *Transcript
	Original  int    // message count before minimizing
	Seed      uint64 // the generator's seed, when it came from one
	Flaky     bool   // seen once, not again: not minimized
	Signature string
}

// Report renders d in Markdown.
func (d *Divergence) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s through %s\n\n", d.Class, d.Proxy)
	if d.Flaky {
		fmt.Fprintf(&b, "Flaky: it did not come back when sent again, so it is not minimized. ")
	} else {
		fmt.Fprintf(&b, "Minimized from %d to %d messages. ", d.Original, len(d.Seq.Msgs))
	}
	fmt.Fprintf(&b, "Sent (then the trailer: %s):\n\n```\n", strings.Join(renderAll(Trailer()), ", "))
	for _, l := range RenderSequence(d.Seq) {
		b.WriteString(l + "\n")
	}
	if n := d.Direct.Settled; d.Seq.Settle && n >= 0 {
		fmt.Fprintf(&b, "-- then wait for %d ReadyForQuery before the trailer --\n", n)
	}
	fmt.Fprintf(&b, "```\n\nPostgreSQL:\n\n```\n%s```\n\npgwarden (%s):\n\n```\n%s```\n", d.Direct, d.Proxy, d.Proxied)
	return b.String()
}

func renderAll(ms []pgproto3.FrontendMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = Render(m)
	}
	return out
}

// Compare sends seq to PostgreSQL and to proxy and classifies the
// difference. A proxy that blocks is compared with PostgreSQL's answer to
// the sequence's ErrorTwin.
func (e *Env) Compare(ctx context.Context, proxy Target, seq Sequence) (class Class, direct, proxied *Transcript, err error) {
	sent := seq
	if proxy.Blocks {
		sent, _ = ErrorTwin(seq)
	}
	direct, err = e.Runner.Run(ctx, e.Direct, sent, -1)
	if err != nil {
		return "", nil, nil, err
	}
	return e.CompareWith(ctx, proxy, seq, direct)
}

// CompareWith sends seq to proxy and classifies the difference with
// direct, PostgreSQL's answer to seq (to its ErrorTwin, for a proxy that
// blocks).
func (e *Env) CompareWith(ctx context.Context, proxy Target, seq Sequence, direct *Transcript) (class Class, _, proxied *Transcript, err error) {
	proxied, err = e.Runner.Run(ctx, proxy, seq, direct.Settled)
	if err != nil {
		return "", nil, nil, err
	}
	direct = afterTerminate(seq, direct, proxied)
	if proxy.Blocks {
		return Classify(direct, blockAsError(proxied)), direct, proxied, nil
	}
	return Classify(direct, proxied), direct, proxied, nil
}

// blockAsError returns t with pgwarden's blocks (42501) written as the
// error of the statements' twins (22012).
func blockAsError(t *Transcript) *Transcript {
	c := *t
	c.Lines = slices.Clone(t.Lines)
	for i, l := range c.Lines {
		if l.Key == "ErrorResponse ERROR 42501" {
			c.Lines[i].Key = "ErrorResponse ERROR 22012"
		}
	}
	return &c
}

// afterTerminate returns direct, cut to proxied's length when seq ends the
// session with Terminate and proxied's replies are a prefix of direct's: a
// client that sent Terminate reads nothing more, so pgwarden may close
// without relaying what the server still sent.
func afterTerminate(seq Sequence, direct, proxied *Transcript) *Transcript {
	if !slices.ContainsFunc(seq.Msgs, func(m pgproto3.FrontendMessage) bool { _, ok := m.(*pgproto3.Terminate); return ok }) ||
		direct.End != EndClosed || proxied.End != EndClosed || len(proxied.Lines) > len(direct.Lines) {
		return direct
	}
	for i, l := range proxied.Lines {
		if l.Key != direct.Lines[i].Key && !(i == len(proxied.Lines)-1 && partOf(l.Key, direct.Lines[i].Key)) {
			return direct
		}
	}
	cut := *direct
	cut.Lines = slices.Clone(direct.Lines[:len(proxied.Lines)])
	if n := len(proxied.Lines); n > 0 {
		// A run cut short (CopyData x1746 of PostgreSQL's 1747) is the
		// proxied one's.
		cut.Lines[n-1] = proxied.Lines[n-1]
	}
	return &cut
}

// Minimize drops messages and cuts from seq while it still diverges
// through proxy in the same class (delta debugging, ddmin), within
// budget, and returns the smallest diverging sequence found.
func (e *Env) Minimize(ctx context.Context, proxy Target, seq Sequence, class Class, budget time.Duration) (*Divergence, error) {
	deadline := time.Now().Add(budget)
	d := &Divergence{Proxy: proxy.Name, Class: class, Seq: seq, Original: len(seq.Msgs)}
	test := func(s Sequence) (bool, error) {
		c, direct, proxied, err := e.Compare(ctx, proxy, s)
		if err != nil {
			return false, err
		}
		if c != class {
			return false, nil
		}
		d.Seq, d.Direct, d.Proxied = s, direct, proxied
		return true, nil
	}
	if ok, err := test(seq); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%s: %w", class, ErrFlaky)
		}
		return nil, err
	}
	if len(d.Seq.Cuts) > 0 || d.Seq.Settle {
		s := d.Seq
		s.Cuts, s.Settle = nil, false
		if _, err := test(s); err != nil {
			return nil, err
		}
	}
	n := 2
	for len(d.Seq.Msgs) >= 1 && time.Now().Before(deadline) && ctx.Err() == nil {
		cur := d.Seq
		size := (len(cur.Msgs) + n - 1) / n
		reduced := false
		for start := 0; start < len(cur.Msgs) && time.Now().Before(deadline); start += size {
			cand := without(cur, start, min(start+size, len(cur.Msgs)))
			ok, err := test(cand)
			if err != nil {
				return nil, err
			}
			if ok {
				reduced = true
				n = max(n-1, 2)
				break
			}
		}
		if !reduced {
			if size == 1 {
				break
			}
			n = min(n*2, len(cur.Msgs))
		}
	}
	for i := 0; i < len(d.Seq.Cuts) && time.Now().Before(deadline); {
		s := d.Seq
		s.Cuts = slices.Delete(slices.Clone(s.Cuts), i, i+1)
		ok, err := test(s)
		if err != nil {
			return nil, err
		}
		if !ok {
			i++
		}
	}
	d.Signature = proxy.Name + "|" + string(class) + "|" + strings.Join(RenderSequence(d.Seq), "|")
	return d, nil
}

// without is seq minus messages [i, j), its cuts renumbered.
func without(seq Sequence, i, j int) Sequence {
	out := Sequence{Msgs: slices.Concat(seq.Msgs[:i], seq.Msgs[j:]), Settle: seq.Settle}
	for _, c := range seq.Cuts {
		switch {
		case c.Before < i:
			out.Cuts = append(out.Cuts, c)
		case c.Before >= j:
			c.Before -= j - i
			out.Cuts = append(out.Cuts, c)
		}
	}
	return out
}

// partOf says whether a run of rows ("DataRow x2450") is the start of
// another ("DataRow x3000").
func partOf(part, whole string) bool {
	pk, pn, ok1 := strings.Cut(part, " x")
	wk, wn, ok2 := strings.Cut(whole, " x")
	if !ok1 || !ok2 || pk != wk {
		return false
	}
	p, err1 := strconv.Atoi(pn)
	w, err2 := strconv.Atoi(wn)
	return err1 == nil && err2 == nil && p <= w
}

// firstDifference is the first pair of lines (or ends) where a and b
// differ, to tell flaky divergences apart.
func firstDifference(a, b *Transcript) string {
	ak, bk := strings.Split(a.Key(), "\n"), strings.Split(b.Key(), "\n")
	for i := range min(len(ak), len(bk)) {
		if ak[i] != bk[i] {
			return ak[i] + " / " + bk[i]
		}
	}
	return fmt.Sprintf("%d / %d lines", len(ak), len(bk))
}

// Families of divergences known from the fuzzer's reports (see Family).
const (
	FamilyFailedCopy = "failed-copy" // a failed COPY FROM STDIN upsets an inspector's queue
	FamilyBlock      = "block"       // a block through the limit proxy
	FamilyTerminate  = "terminate"   // FATAL 08006 after the client's Terminate
)

// Family sorts d into one of the known families of divergences, broadly
// (a family stands for many sequences), or returns "".
func Family(d *Divergence) string {
	switch {
	case d.Proxy == "limit" && strings.Contains(d.Proxied.Key(), "ErrorResponse ERROR 42501"):
		return FamilyBlock
	case d.Proxy != "plain" && slices.ContainsFunc(d.Seq.Msgs, func(m pgproto3.FrontendMessage) bool {
		switch m := m.(type) {
		case *pgproto3.Parse:
			return strings.Contains(m.Query, "from stdin")
		case *pgproto3.Query:
			return strings.Contains(m.String, "from stdin")
		}
		return false
	}):
		return FamilyFailedCopy
	case slices.ContainsFunc(d.Seq.Msgs, func(m pgproto3.FrontendMessage) bool { _, ok := m.(*pgproto3.Terminate); return ok }) &&
		strings.Contains(d.Proxied.Key(), "ErrorResponse FATAL 08006"):
		return FamilyTerminate
	}
	return ""
}
