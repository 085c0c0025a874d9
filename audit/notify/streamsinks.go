package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// recordHead is what the stream's formats read from a trail line.
type recordHead struct {
	Time time.Time `json:"time"`
	Type string    `json:"type"`
}

func head(line []byte) recordHead {
	var h recordHead
	_ = json.Unmarshal(line, &h) // a line the trail wrote always decodes
	return h
}

// SyslogStream sends each trail line as the MSG of one RFC 5424 message,
// over TCP or TLS with octet-counting framing, a batch in one write. MSGID
// is the event's type, the structured data [pgwarden@32473 seq="N"] its
// seq, and the timestamp its time. As for Syslog, an accepted write is the
// acknowledgement.
type SyslogStream struct{ s *Syslog }

// NewSyslogStream returns a SyslogStream; cfg.Network must be tcp or
// tcp+tls (UDP can lose messages unseen), cfg.Format is ignored, and the
// name defaults to "stream_syslog".
func NewSyslogStream(cfg SyslogConfig) (*SyslogStream, error) {
	if cfg.Network != "tcp" && cfg.Network != "tcp+tls" {
		return nil, fmt.Errorf("notify: stream syslog: network %q: want tcp or tcp+tls", cfg.Network)
	}
	if cfg.Name == "" {
		cfg.Name = "stream_syslog"
	}
	cfg.Format = ""
	s, err := NewSyslog(cfg)
	if err != nil {
		return nil, err
	}
	return &SyslogStream{s}, nil
}

// Name implements BatchSink.
func (ss *SyslogStream) Name() string { return ss.s.name }

// Close closes the connection.
func (ss *SyslogStream) Close() error { return ss.s.Close() }

// DeliverBatch implements BatchSink.
func (ss *SyslogStream) DeliverBatch(ctx context.Context, recs []Record) error {
	s := ss.s
	var b []byte
	for _, r := range recs {
		h := head(r.Line)
		sev := 6 // informational
		switch h.Type {
		case "decision":
			sev = sevWarning
		case "session_refused", "admin":
			sev = sevNotice
		}
		ts := "-"
		if !h.Time.IsZero() {
			ts = h.Time.UTC().Format("2006-01-02T15:04:05.000000Z")
		}
		msg := fmt.Sprintf("<%d>1 %s %s %s %s %s [%s seq=\"%d\"] %s", s.facility*8+sev, ts,
			headerField(s.hostname, 255), headerField(s.appName, 48), headerField(s.procID, 128),
			headerField(h.Type, 32), sdID, r.Seq, r.Line)
		b = appendFrame(b, []byte(msg))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write(ctx, b); err != nil {
		return fmt.Errorf("notify: stream syslog: %w", err)
	}
	return nil
}

// Formats of an HTTPStream.
const (
	FormatSplunkHEC   = "splunk_hec"
	FormatElasticBulk = "elastic_bulk"
	FormatNDJSON      = "ndjson"
)

// HTTPStreamConfig configures an HTTPStream.
type HTTPStreamConfig struct {
	// Name of the sink (its queue in the outbox); default "stream_http".
	Name string
	// URL receives the batches: Splunk's .../services/collector/event,
	// Elasticsearch's .../_bulk, or any endpoint taking NDJSON.
	URL string
	// Format is FormatSplunkHEC, FormatElasticBulk or FormatNDJSON
	// (default).
	Format string
	// Token is the HEC token (Authorization: Splunk <token>), an
	// Elasticsearch API key, id:key or its base64 (Authorization: ApiKey),
	// or for ndjson a bearer token. Username and Password give basic
	// authentication instead (elastic_bulk and ndjson).
	Token              string
	Username, Password string
	// Index is the Splunk index (default: the token's) or the
	// Elasticsearch index or data stream (default "pgwarden-audit").
	Index string
	// Host names this instance: Splunk's host field (default: the host
	// name).
	Host    string
	Timeout time.Duration
	Client  *http.Client
}

// HTTPStream POSTs batches of trail lines.
//
//   - ndjson: the lines themselves, one per line (application/x-ndjson).
//   - splunk_hec: one HEC event object per line, {"time": ..., "host":
//     ..., "source": "pgwarden", "sourcetype": "pgwarden:audit", "event":
//     <the line>}, as /services/collector/event takes several at once.
//   - elastic_bulk: per line a {"create": {"_index": ..., "_id": ...}}
//     action and the line with "@timestamp" added; _id is a hash of the
//     line, so a batch sent again creates nothing twice. Per-item errors
//     are read: 409 (already there) counts as delivered, 429 and 5xx retry
//     the batch, others drop that record (RefusedError).
//
// A 2xx response acknowledges the batch; 408, 429, 5xx, 401, 403 and
// network errors are retried (an expired token must not drop the trail);
// other 4xx refuse the batch for good (Permanent).
type HTTPStream struct {
	name   string
	format string
	auth   string
	index  string
	host   string
	post   httpPoster
}

// NewHTTPStream returns an HTTPStream.
func NewHTTPStream(cfg HTTPStreamConfig) (*HTTPStream, error) {
	h := &HTTPStream{name: cfg.Name, format: cfg.Format, index: cfg.Index, host: cfg.Host}
	if h.name == "" {
		h.name = "stream_http"
	}
	if h.format == "" {
		h.format = FormatNDJSON
	}
	switch {
	case cfg.Username != "" && h.format != FormatSplunkHEC:
		h.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.Username+":"+cfg.Password))
	case cfg.Token == "":
	case h.format == FormatSplunkHEC:
		h.auth = "Splunk " + cfg.Token
	case h.format == FormatElasticBulk:
		key := cfg.Token
		if strings.Contains(key, ":") {
			key = base64.StdEncoding.EncodeToString([]byte(key))
		}
		h.auth = "ApiKey " + key
	default:
		h.auth = "Bearer " + cfg.Token
	}
	switch h.format {
	case FormatSplunkHEC, FormatNDJSON:
	case FormatElasticBulk:
		if h.index == "" {
			h.index = "pgwarden-audit"
		}
	default:
		return nil, fmt.Errorf("notify: stream: format %q: want splunk_hec, elastic_bulk or ndjson", cfg.Format)
	}
	if h.format == FormatSplunkHEC && h.auth == "" {
		return nil, errors.New("notify: stream: splunk_hec needs the HEC token")
	}
	p, err := newHTTPPoster(cfg.URL, cfg.Timeout, cfg.Client)
	if err != nil {
		return nil, fmt.Errorf("notify: stream: %w", err)
	}
	h.post = p
	return h, nil
}

// Name implements BatchSink.
func (h *HTTPStream) Name() string { return h.name }

// Body returns the request body of recs in h's format.
func (h *HTTPStream) Body(recs []Record) []byte {
	var b bytes.Buffer
	for _, r := range recs {
		switch h.format {
		case FormatNDJSON:
			b.Write(r.Line)
		case FormatSplunkHEC:
			hd := head(r.Line)
			b.WriteString(`{"time":`)
			b.WriteString(strconv.FormatFloat(float64(hd.Time.UnixMicro())/1e6, 'f', 6, 64))
			if h.host != "" {
				b.WriteString(`,"host":`)
				writeJSONString(&b, h.host)
			}
			b.WriteString(`,"source":"pgwarden","sourcetype":"pgwarden:audit"`)
			if h.index != "" {
				b.WriteString(`,"index":`)
				writeJSONString(&b, h.index)
			}
			b.WriteString(`,"event":`)
			b.Write(r.Line)
			b.WriteByte('}')
		case FormatElasticBulk:
			sum := sha256.Sum256(r.Line)
			b.WriteString(`{"create":{"_index":`)
			writeJSONString(&b, h.index)
			b.WriteString(`,"_id":"`)
			b.WriteString(hex.EncodeToString(sum[:16]))
			b.WriteString(`"}}` + "\n")
			b.WriteString(`{"@timestamp":"`)
			b.WriteString(head(r.Line).Time.UTC().Format(time.RFC3339Nano))
			b.WriteString(`",`)
			b.Write(bytes.TrimPrefix(r.Line, []byte("{")))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func writeJSONString(b *bytes.Buffer, s string) {
	v, _ := json.Marshal(s)
	b.Write(v)
}

// DeliverBatch implements BatchSink.
func (h *HTTPStream) DeliverBatch(ctx context.Context, recs []Record) error {
	hdr := make(http.Header, 3)
	hdr.Set("Content-Type", "application/x-ndjson")
	if h.format == FormatSplunkHEC {
		hdr.Set("Content-Type", "application/json")
	}
	if h.auth != "" {
		hdr.Set("Authorization", h.auth)
	}
	resp, err := h.post.doBody(ctx, hdr, h.Body(recs))
	if err != nil {
		return fmt.Errorf("notify: stream: %w", err)
	}
	if h.format == FormatElasticBulk {
		return bulkErrors(resp, recs)
	}
	return nil
}

// bulkErrors reads the items of an Elasticsearch bulk response.
func bulkErrors(body []byte, recs []Record) error {
	var r struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int             `json:"status"`
			Error  json.RawMessage `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("notify: stream: bulk response: %w", err)
	}
	if !r.Errors {
		return nil
	}
	var refused []uint64
	retry, reason := 0, ""
	for i, item := range r.Items {
		for _, res := range item {
			switch {
			case res.Status < 300 || res.Status == http.StatusConflict:
			case res.Status == http.StatusTooManyRequests || res.Status >= 500:
				retry++
			default:
				if i < len(recs) {
					refused = append(refused, recs[i].Seq)
				}
				if reason == "" {
					reason = printableSnippet(res.Error)
				}
			}
		}
	}
	if retry > 0 {
		return fmt.Errorf("notify: stream: bulk: %d of %d items to retry", retry, len(recs))
	}
	if len(refused) > 0 {
		return &RefusedError{Seqs: refused, Reason: strings.TrimPrefix(reason, ": ")}
	}
	return nil
}

// doBody POSTs body like do, returns the response body (up to 8 MiB: a
// bulk response names every item), and treats 401 and 403 as failures to
// retry.
func (p httpPoster) doBody(ctx context.Context, h http.Header, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, Permanent(fmt.Errorf("POST %s: building request failed", p.redacted))
	}
	req.Header = h
	req.Header.Set("User-Agent", "pgwarden-stream/1")
	resp, err := p.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("POST %s: %w", p.redacted, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("POST %s: reading the response: %w", p.redacted, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return rb, nil
	}
	err = fmt.Errorf("POST %s: %s%s", p.redacted, resp.Status, printableSnippet(rb))
	if permanentStatus(resp.StatusCode) && resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		return nil, Permanent(err)
	}
	return nil, err
}
