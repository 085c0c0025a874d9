// Package metrics is pgwarden's Prometheus instrumentation. Labels are
// bounded: categories, actions, sources and rule names come from the
// policy, never from employees, statements or addresses.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pgwarden/pgwarden/internal/buildinfo"
	"github.com/pgwarden/pgwarden/internal/crash"
)

// Metrics holds pgwarden's collectors, registered in Registry.
type Metrics struct {
	Registry *prometheus.Registry

	Connections     prometheus.Counter
	Failed          *prometheus.CounterVec // sqlstate
	UpstreamErrors  prometheus.Counter
	SessionsStarted prometheus.Counter
	SessionsRefused *prometheus.CounterVec // reason: quarantine, audit
	SessionsOpen    prometheus.Gauge
	Statements      prometheus.Counter
	StatementErrors prometheus.Counter
	Rows            prometheus.Counter
	Bytes           prometheus.Counter
	PIIValues       *prometheus.CounterVec // category
	Decisions       *prometheus.CounterVec // source, action, rule
	StatementTime   prometheus.Histogram
	DescribeTime    prometheus.Histogram // inspection: classifying a result's columns
	AuditAppendTime prometheus.Histogram
	AuditFailures   prometheus.Counter
	AnalysisSkipped *prometheus.CounterVec // reason: size, tokens, relations
}

// New returns registered collectors, with Go runtime and process metrics.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Connections: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgwarden_connections_total",
			Help: "Client connections accepted."}),
		Failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgwarden_sessions_failed_total",
			Help: "Sessions that ended in an error, by the SQLSTATE their client was sent."}, []string{"sqlstate"}),
		UpstreamErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgwarden_upstream_errors_total",
			Help: "Sessions that could not reach the upstream server, or lost it."}),
		SessionsStarted: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgwarden_sessions_started_total",
			Help: "Client sessions that authenticated and started."}),
		SessionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgwarden_sessions_refused_total",
			Help: "Sessions refused by the guard, by reason."}, []string{"reason"}),
		SessionsOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgwarden_sessions_open",
			Help: "Sessions open now."}),
		Statements: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgwarden_statements_total",
			Help: "Statements recorded."}),
		StatementErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgwarden_statement_errors_total",
			Help: "Statements that ended in an error from the server."}),
		Rows: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgwarden_rows_total",
			Help: "Rows (and COPY lines) relayed to clients."}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgwarden_result_bytes_total",
			Help: "Bytes of result values relayed to clients."}),
		PIIValues: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgwarden_pii_values_total",
			Help: "PII values relayed to clients, by category."}, []string{"category"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgwarden_decisions_total",
			Help: "Decisions made, by source (rule, norm), action and rule."}, []string{"source", "action", "rule"}),
		StatementTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pgwarden_statement_duration_seconds",
			Help: "Time from a statement's first result message to the end of its batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}),
		DescribeTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pgwarden_inspect_describe_seconds",
			Help: "Time the guard spends classifying a result's columns (catalog, lineage, rules).", Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10)}),
		AuditAppendTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pgwarden_audit_append_seconds",
			Help: "Time to append an event to the audit trail (fsync included).", Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10)}),
		AuditFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgwarden_audit_failures_total",
			Help: "Audit events that could not be written."}),
		AnalysisSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgwarden_analysis_skipped_total",
			Help: "Statements whose text was too large to analyze (by reason: size, tokens, relations), decided from their words."}, []string{"reason"}),
	}
	r.MustRegister(m.Connections, m.Failed, m.UpstreamErrors, m.SessionsStarted, m.SessionsRefused, m.SessionsOpen, m.Statements, m.StatementErrors,
		m.Rows, m.Bytes, m.PIIValues, m.Decisions, m.StatementTime, m.DescribeTime, m.AuditAppendTime, m.AuditFailures, m.AnalysisSkipped,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pgwarden_internal_errors_total",
			Help: "Panics recovered: each ended one session, or restarted one background job."}, func() float64 { return float64(crash.Total()) }),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bi := buildinfo.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgwarden_build_info",
		Help:        "Always 1; the labels say which build of pgwarden is running.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Commit, "build_date": bi.Date, "goversion": bi.GoVersion}})
	build.Set(1)
	r.MustRegister(build)
	return m
}

// Since observes the seconds since t in h; a nil Metrics observes nothing.
func Since(h prometheus.Histogram, t time.Time) {
	if h != nil {
		h.Observe(time.Since(t).Seconds())
	}
}

// GaugeFunc registers a gauge read at scrape time (outbox depth, ...).
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// CounterFunc registers a counter read at scrape time.
func (m *Metrics) CounterFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// Observe counts a proxy connection event (proxy.Config.Observe).
func (m *Metrics) Observe(event string) {
	switch {
	case event == "connection":
		m.Connections.Inc()
	case event == "upstream_error":
		m.UpstreamErrors.Inc()
	case len(event) > 7 && event[:7] == "failed:":
		m.Failed.WithLabelValues(event[7:]).Inc()
	}
}
