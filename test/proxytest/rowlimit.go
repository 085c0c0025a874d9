package proxytest

import (
	"context"
	"fmt"

	"github.com/pgwarden/pgwarden/proxy"
)

// RowLimit is a proxy.Inspector that blocks any statement whose result passes
// Max rows (DataRow messages, or CopyData messages of COPY TO STDOUT, which
// carry a row each in text and CSV format). With Kill set it ends the session
// instead. It is the inspector the end-to-end suite uses to prove that a
// result can be stopped mid-stream, with nothing else in the way; pgwarden
// serve runs package guard, which has the same limit.
type RowLimit struct {
	Max  int64
	Kill bool
}

// StartSession implements proxy.Inspector.
func (r *RowLimit) StartSession(context.Context, *proxy.SessionInfo) (proxy.SessionInspector, error) {
	return &rowLimitSession{limit: r}, nil
}

type rowLimitSession struct {
	proxy.NopSessionInspector
	limit *RowLimit
	rows  int64
	stmt  *proxy.Statement
}

func (r *rowLimitSession) count(st *proxy.Statement) proxy.Verdict {
	if st != r.stmt {
		r.stmt, r.rows = st, 0
	}
	r.rows++
	if r.rows <= r.limit.Max {
		return proxy.Verdict{}
	}
	v := proxy.Verdict{Action: proxy.Block, Reason: fmt.Sprintf("statement returned more than %d rows (limit max_rows_per_statement)", r.limit.Max)}
	if r.limit.Kill {
		v.Action = proxy.Kill
	}
	return v
}

func (r *rowLimitSession) DataRow(st *proxy.Statement, _ [][]byte) proxy.Verdict { return r.count(st) }

func (r *rowLimitSession) CopyData(st *proxy.Statement, _ []byte) proxy.Verdict { return r.count(st) }
