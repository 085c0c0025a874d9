package guard

import (
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/policy/sqltext"
)

// A statement whose text is past sqltext's limits (MaxAnalyzedBytes,
// MaxAnalyzedTokens, MaxAnalyzedRelations) is not analyzed: reading it
// would cost the client more than running it. What the guard learns from the parse it then assumes,
// on the side of caution, so that making a statement large is no way
// around the policy:
//   - kinds are every kind the text's words allow (a COPY ... TO PROGRAM
//     or an lo_export is found whatever pads it);
//   - a rule's tables condition holds (policy.Context.TablesUnknown);
//   - an expression column (no table in RowDescription) counts as derived
//     from a declared column when the text names one anywhere, as lineage
//     would count md5(email);
//   - no planner estimate is asked for, as for any statement that cannot
//     be estimated: estimated_rows conditions do not hold, and thresholds
//     on what the result returns still do.
// The results themselves are counted as always: declared columns through
// the catalog, the others by the content detectors.

// skipLogEvery spaces the log lines about skipped statements.
const skipLogEvery = time.Minute

// skipLog rate-limits the log lines about skipped statements, per reason.
type skipLog struct {
	mu    sync.Mutex
	last  map[string]time.Time
	count map[string]int
}

// noteSkipped counts a statement that is not analyzed, and says so in the
// log at most once a minute per reason.
func (s *session) noteSkipped(sql string, info *sqltext.Info) {
	if m := s.g.cfg.Metrics; m != nil {
		m.AnalysisSkipped.WithLabelValues(info.Skipped).Inc()
	}
	l := &s.g.skips
	now := s.g.cfg.Now()
	l.mu.Lock()
	if l.last == nil {
		l.last, l.count = make(map[string]time.Time), make(map[string]int)
	}
	l.count[info.Skipped]++
	n := l.count[info.Skipped]
	due := now.Sub(l.last[info.Skipped]) >= skipLogEvery
	if due {
		l.last[info.Skipped], l.count[info.Skipped] = now, 0
	}
	l.mu.Unlock()
	if due {
		s.log.Warn("sql_analysis_skipped", "reason", info.Skipped, "sql_bytes", len(sql),
			"max_bytes", sqltext.MaxAnalyzedBytes, "max_tokens", sqltext.MaxAnalyzedTokens,
			"max_relations", sqltext.MaxAnalyzedRelations, "statements", n,
			"consequence", "kinds and tables assumed from the text's words; results scanned by the detectors")
	}
}

// skimmedCategory is the category an expression column of a skipped text
// is counted as derived from: that of a declared column the text names
// anywhere (any declared column when its words do not tell), or "".
func skimmedCategory(p *policy.Policy, info *sqltext.Info) pii.Category {
	if info.AnyWord {
		c, _ := p.AnyColumnDeclared()
		return c
	}
	for _, w := range info.Words {
		if c, ok := p.ColumnNamed(w); ok {
			return c
		}
	}
	return ""
}

// deriveSkimmed marks the expression columns of a skipped text's result.
func (s *session) deriveSkimmed(info *sqltext.Info, fields []pgproto3.FieldDescription, plan []colPlan) {
	cat := skimmedCategory(s.cc().p, info)
	if cat == "" {
		return
	}
	for i, fd := range fields {
		if fd.TableOID == 0 && plan[i].declared == "" {
			plan[i].derived = cat
		}
	}
}
