package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/config"
)

// Environment variables holding the stream's secrets.
const (
	// StreamTokenEnv holds the Splunk HEC token, the Elasticsearch API key
	// or the bearer token of --stream-url.
	StreamTokenEnv = "PGWARDEN_STREAM_TOKEN"
	// StreamPasswordEnv holds the basic authentication password of
	// --stream-username.
	StreamPasswordEnv = "PGWARDEN_STREAM_PASSWORD"
)

// streaming reports whether a SIEM receives the trail.
func streaming(fc *config.Config) bool {
	return fc.Stream.HTTP.URL != "" || fc.Stream.Syslog.Addr != ""
}

// streamInStateDir reports whether the stream keeps its outbox and cursor
// in the state directory's notify.db; else, when it streams, they are in
// the state database (with --share-state, or --state-url without
// --state-dir), where the notifier keeps its outbox then too.
func (s *Server) streamInStateDir() bool {
	fc := &s.cfg
	return streaming(fc) && fc.StateDir != "" && !fc.ShareWindows
}

// tap hands each line of the audit log to the stream (audit.Config.Tap).
// Before the stream exists the lines are left to be read from the trail.
func (s *Server) tap(seq uint64, line []byte) {
	if st := s.stream.Load(); st != nil {
		st.Offer(seq, line)
	}
}

// fileTrail is the audit log as the stream reads it. Each receiver reads
// on from where it stopped; it keeps a LineReader per position so that
// catching up after an outage reads each file once.
type fileTrail struct {
	log *audit.Log
	dir string

	mu      sync.Mutex
	readers []*audit.LineReader
	next    []uint64 // the seq each reader would read next
}

// LastSeq is the last line on stable storage: a line a machine crash can
// take from the trail is not streamed.
func (t *fileTrail) LastSeq() uint64 { return t.log.DurableSeq() }

func (t *fileTrail) ReadFrom(from uint64, max int) ([]notify.Record, error) {
	r, pos := t.take(from)
	lines, err := r.Read(from, max)
	if err == nil {
		pos = from
		if len(lines) > 0 {
			pos = lines[len(lines)-1].Seq + 1
		}
	}
	t.mu.Lock()
	t.readers, t.next = append(t.readers, r), append(t.next, pos)
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	recs := make([]notify.Record, len(lines))
	for i, l := range lines {
		recs[i] = notify.Record{Seq: l.Seq, Line: l.Bytes}
	}
	return recs, nil
}

// take removes from the pool the reader that stopped at from, else the
// oldest, or makes a new one while there are fewer than four.
func (t *fileTrail) take(from uint64) (*audit.LineReader, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := slices.Index(t.next, from)
	if i < 0 {
		if len(t.readers) < 4 {
			return audit.NewLineReader(t.dir), 0
		}
		i = 0
	}
	r, pos := t.readers[i], t.next[i]
	t.readers, t.next = slices.Delete(t.readers, i, i+1), slices.Delete(t.next, i, i+1)
	return r, pos
}

// openStream builds the stream of the whole trail to the configured
// receivers.
func (s *Server) openStream(ctx context.Context) error {
	fc := &s.cfg
	if !streaming(fc) {
		return nil
	}
	if s.audit == nil {
		return errors.New("streaming the audit trail needs the trail: set --audit-dir (or audit.dir)")
	}
	sinks, err := streamSinks(fc)
	if err != nil {
		return err
	}
	scfg := notify.StreamConfig{Sinks: sinks, Trail: &fileTrail{log: s.audit, dir: fc.Audit.Dir}, Queue: fc.Stream.Queue,
		Batch: fc.Stream.Batch, Logger: s.logger}
	switch {
	case s.streamInStateDir():
		scfg.DB = s.outboxDB
		s.streamWhere = fc.StateDir + "/" + OutboxFile
	case s.statePool != nil:
		scfg.Pool, scfg.Instance = s.statePool, s.instance
		if scfg.Instance == "" {
			scfg.Instance = fc.Instance
		}
		if scfg.Instance == "" {
			host, _ := os.Hostname()
			scfg.Instance = host + "/" + fc.Listen
		}
		s.streamWhere = "pgwarden_stream_outbox in the state database"
	default:
		return errors.New("streaming the audit trail needs a place for its outbox and cursor: set --state-dir or --state-url")
	}
	st, err := notify.NewStream(scfg)
	if err != nil {
		return err
	}
	s.stream.Store(st)
	names := make([]string, len(sinks))
	for i, k := range sinks {
		names[i] = k.Name()
	}
	s.logger.Info("stream_ready", "receivers", strings.Join(names, ","), "outbox", s.streamWhere, "trail_seq", s.audit.LastSeq())
	return nil
}

// streamSinks builds the stream's receivers.
func streamSinks(fc *config.Config) ([]notify.BatchSink, error) {
	st := &fc.Stream
	var tc *tls.Config
	if st.CAFile != "" {
		pem, err := os.ReadFile(st.CAFile)
		if err != nil {
			return nil, fmt.Errorf("stream CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("stream CA file %s holds no PEM certificate", st.CAFile)
		}
		tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var sinks []notify.BatchSink
	if st.HTTP.URL != "" {
		token, err := streamToken(st.HTTP.TokenFile)
		if err != nil {
			return nil, err
		}
		host, _ := os.Hostname()
		client := &http.Client{
			Transport:     &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment, MaxIdleConns: 4, IdleConnTimeout: time.Minute},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		h, err := notify.NewHTTPStream(notify.HTTPStreamConfig{URL: st.HTTP.URL, Format: st.HTTP.Format, Token: token,
			Username: st.HTTP.Username, Password: os.Getenv(StreamPasswordEnv), Index: st.HTTP.Index, Host: host, Client: client})
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, h)
	}
	if st.Syslog.Addr != "" {
		network := st.Syslog.Network
		if network == "" {
			network = "tcp"
		}
		sl, err := notify.NewSyslogStream(notify.SyslogConfig{Addr: st.Syslog.Addr, Network: network, TLSConfig: tc})
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, sl)
	}
	return sinks, nil
}

// streamToken reads the stream's token from a file, or from
// PGWARDEN_STREAM_TOKEN; empty when neither is set.
func streamToken(file string) (string, error) {
	if file == "" {
		return os.Getenv(StreamTokenEnv), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("stream token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("stream token file %s is empty", file)
	}
	return t, nil
}

// streamMetrics exports the stream's figures.
func (s *Server) streamMetrics() {
	st := s.stream.Load()
	if st == nil {
		return
	}
	stat := func(f func(notify.StreamStats) float64) func() float64 {
		return func() float64 { return f(st.Stats()) }
	}
	s.metrics.CounterFunc("pgwarden_stream_events_total", "Audit events the SIEM receivers acknowledged.",
		stat(func(x notify.StreamStats) float64 { return float64(x.Delivered) }))
	s.metrics.GaugeFunc("pgwarden_stream_queued", "Audit events waiting for a SIEM receiver, in memory and in the outbox.",
		stat(func(x notify.StreamStats) float64 { return float64(x.Queued) }))
	s.metrics.GaugeFunc("pgwarden_stream_lag", "Audit events written to the trail and not yet acknowledged (the slowest receiver's).",
		stat(func(x notify.StreamStats) float64 { return float64(x.Lag) }))
	s.metrics.CounterFunc("pgwarden_stream_spilled_total", "Audit events moved from memory to the outbox.",
		stat(func(x notify.StreamStats) float64 { return float64(x.Spilled) }))
	s.metrics.CounterFunc("pgwarden_stream_overflow_total", "Audit events neither memory nor the outbox took, read again from the trail.",
		stat(func(x notify.StreamStats) float64 { return float64(x.Overflow) }))
	s.metrics.CounterFunc("pgwarden_stream_dropped_total", "Audit events a receiver refused for good.",
		stat(func(x notify.StreamStats) float64 { return float64(x.Dropped) }))
	s.metrics.CounterFunc("pgwarden_stream_failures_total", "Failed stream deliveries.",
		stat(func(x notify.StreamStats) float64 { return float64(x.Failures) }))
	s.metrics.GaugeFunc("pgwarden_stream_last_error_timestamp_seconds", "Unix time of the last failed stream delivery (0: none).",
		stat(func(x notify.StreamStats) float64 {
			if x.LastErrorTime.IsZero() {
				return 0
			}
			return float64(x.LastErrorTime.UnixMilli()) / 1e3
		}))
}
