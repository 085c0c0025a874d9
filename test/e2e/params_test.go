package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

// paramsInspector records what Statement.Params gave each Execute, and
// says whether it wants them (proxy.ParamsWanter).
type paramsInspector struct {
	recorder
	want bool
	mu   sync.Mutex
	got  []*proxy.Params
}

func (p *paramsInspector) WantsParams() bool { return p.want }

func (p *paramsInspector) StartSession(ctx context.Context, info *proxy.SessionInfo) (proxy.SessionInspector, error) {
	s, err := p.recorder.StartSession(ctx, info)
	return &paramsSession{SessionInspector: s, p: p}, err
}

type paramsSession struct {
	proxy.SessionInspector
	p *paramsInspector
}

func (s *paramsSession) Statement(st *proxy.Statement) proxy.Verdict {
	if st.Kind == proxy.ExtendedExecute {
		s.p.mu.Lock()
		s.p.got = append(s.p.got, st.Params())
		s.p.mu.Unlock()
	}
	return s.SessionInspector.Statement(st)
}

// TestBindParamsKeptOnlyWhenWanted: an inspector that wants the
// parameters gets them as the client bound them, in binary and text; one
// that does not gets none (the proxy does not copy them).
func TestBindParamsKeptOnlyWhenWanted(t *testing.T) {
	for _, want := range []bool{true, false} {
		insp := &paramsInspector{want: want}
		p := proxytest.Start(t, proxytest.WithInspector(insp))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		conn, err := pgx.Connect(ctx, proxytest.ViaAddr(p.Cluster.DSN(pgtest.TrustUser), p.Addr))
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		var s string
		if err := conn.QueryRow(ctx, "SELECT $1::int8, $2::text", int64(42), "forty-two").Scan(&n, &s); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
		cancel()
		insp.mu.Lock()
		got := insp.got
		insp.mu.Unlock()
		if len(got) != 1 {
			t.Fatalf("want %v: %d executes recorded", want, len(got))
		}
		switch {
		case !want && got[0] != nil:
			t.Errorf("not wanted, yet kept: %+v", got[0])
		case want && (got[0] == nil || len(got[0].Values) != 2 || string(got[0].Values[1]) != "forty-two"):
			t.Errorf("wanted: %+v", got[0])
		}
	}
}
