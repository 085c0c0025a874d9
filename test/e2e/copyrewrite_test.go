package e2e

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// copyHolder rewrites COPY TO STDOUT data: it holds back each odd
// CopyData, sends it with the next one, both upper-cased, and sends what
// it still holds at CopyDone.
type copyHolder struct{}

func (copyHolder) StartSession(context.Context, *proxy.SessionInfo) (proxy.SessionInspector, error) {
	return &copyHolderSession{}, nil
}

type copyHolderSession struct {
	proxy.NopSessionInspector
	mu   sync.Mutex
	held []byte
	n    int
}

func (s *copyHolderSession) CopyData(_ *proxy.Statement, data []byte) proxy.Verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	s.held = append(s.held, bytes.ToUpper(data)...)
	if s.n%2 == 1 {
		return proxy.Verdict{Action: proxy.Rewrite}
	}
	out := s.held
	s.held = nil
	return proxy.Verdict{Action: proxy.Rewrite, Values: [][]byte{out}}
}

func (s *copyHolderSession) CopyDone(*proxy.Statement) proxy.Verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.held
	s.held, s.n = nil, 0
	if len(out) == 0 {
		return proxy.Verdict{}
	}
	return proxy.Verdict{Action: proxy.Rewrite, Values: [][]byte{out}}
}

// TestRewrittenCopyData: COPY TO STDOUT data an inspector rewrites, holds
// back and sends at CopyDone reaches the client whole and in order, and
// the session goes on.
func TestRewrittenCopyData(t *testing.T) {
	t.Parallel()
	p := proxytest.Start(t, proxytest.WithInspector(copyHolder{}))
	ctx := proxytest.Ctx(t, 0)
	conn := proxytest.Connect(t, ctx, p.DSN(pgtest.TrustUser))
	for _, rows := range []int{0, 1, 4, 7} {
		var sb strings.Builder
		sql := "COPY (SELECT 'row' || i FROM generate_series(1, " + strconv.Itoa(rows) + ") i) TO STDOUT"
		tag, err := conn.PgConn().CopyTo(ctx, &sb, sql)
		if err != nil {
			t.Fatalf("%d rows: %v", rows, err)
		}
		var want strings.Builder
		for i := 1; i <= rows; i++ {
			want.WriteString("ROW" + strconv.Itoa(i) + "\n")
		}
		if sb.String() != want.String() || tag.RowsAffected() != int64(rows) {
			t.Errorf("%d rows: received %q (%s), want %q", rows, sb.String(), tag, want.String())
		}
	}
	proxytest.CheckUsable(t, ctx, conn)
}
