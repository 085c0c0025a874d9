package proxy

import (
	"context"
	"fmt"
)

// RowLimit is an Inspector that blocks any statement whose result passes
// Max rows (DataRow messages, or CopyData messages of COPY TO STDOUT, which
// carry a row each in text and CSV format). With Kill set it ends the session
// instead. It is the inspector the proxy's own tests and the end-to-end suite
// use to prove that a result can be stopped mid-stream, with nothing else in
// the way; pgwarden serve runs package guard, which has the same limit.
type RowLimit struct {
	Max  int64
	Kill bool
}

// StartSession implements Inspector.
func (r *RowLimit) StartSession(context.Context, *SessionInfo) (SessionInspector, error) {
	return &rowLimitSession{limit: r}, nil
}

type rowLimitSession struct {
	NopSessionInspector
	limit *RowLimit
	rows  int64
	stmt  *Statement
}

func (r *rowLimitSession) count(st *Statement) Verdict {
	if st != r.stmt {
		r.stmt, r.rows = st, 0
	}
	r.rows++
	if r.rows <= r.limit.Max {
		return Verdict{}
	}
	v := Verdict{Action: Block, Reason: fmt.Sprintf("statement returned more than %d rows (limit max_rows_per_statement)", r.limit.Max)}
	if r.limit.Kill {
		v.Action = Kill
	}
	return v
}

func (r *rowLimitSession) DataRow(st *Statement, _ [][]byte) Verdict { return r.count(st) }

func (r *rowLimitSession) CopyData(st *Statement, _ []byte) Verdict { return r.count(st) }
