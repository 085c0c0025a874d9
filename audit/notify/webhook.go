package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
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

// Webhook headers.
const (
	HeaderSignature = "X-Pgwarden-Signature" // "sha256=" + hex HMAC-SHA256 of "<timestamp>.<body>"
	HeaderTimestamp = "X-Pgwarden-Timestamp" // unix seconds
	HeaderAlertID   = "X-Pgwarden-Alert-Id"
)

// PayloadVersion is the "version" field of webhook bodies.
const PayloadVersion = 1

// ErrSignature is returned (wrapped) by VerifySignature for a signature or
// timestamp that does not verify.
var ErrSignature = errors.New("notify: invalid webhook signature")

const defaultHTTPTimeout = 10 * time.Second

// WebhookConfig configures a Webhook sink.
type WebhookConfig struct {
	// Name of the sink (its outbox queue); default "webhook". Give each of
	// several webhooks its own name.
	Name    string
	URL     string // http or https
	Secret  []byte // HMAC-SHA256 key; required
	Timeout time.Duration
	// Client defaults to a client with http.DefaultTransport (TLS
	// verification on) that does not follow redirects.
	Client  *http.Client
	Headers map[string]string // extra request headers
}

// Webhook POSTs each alert as JSON, signed with HMAC-SHA256.
//
// The body is the Alert with snake_case field names plus "version": 1. The
// request carries X-Pgwarden-Timestamp (unix seconds), X-Pgwarden-Alert-Id
// and X-Pgwarden-Signature: "sha256=" followed by the hex HMAC-SHA256, under
// the secret, of the timestamp, a dot and the body. Receivers check it with
// VerifySignature and dedupe on the alert ID.
//
// A 2xx response is an acknowledgement. A 4xx other than 408 and 429 is a
// permanent failure (the alert is dropped for this sink and logged). Any
// other status and network errors are retried.
type Webhook struct {
	name    string
	secret  []byte
	headers map[string]string
	post    httpPoster
}

// NewWebhook returns a Webhook sink.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("notify: webhook: Secret is required")
	}
	p, err := newHTTPPoster(cfg.URL, cfg.Timeout, cfg.Client)
	if err != nil {
		return nil, fmt.Errorf("notify: webhook: %w", err)
	}
	w := &Webhook{
		name:    cfg.Name,
		secret:  bytes.Clone(cfg.Secret),
		headers: make(map[string]string, len(cfg.Headers)),
		post:    p,
	}
	if w.name == "" {
		w.name = "webhook"
	}
	for k, v := range cfg.Headers {
		w.headers[k] = v
	}
	return w, nil
}

// Name implements Sink.
func (w *Webhook) Name() string { return w.name }

// webhookPayload is the JSON body: the Alert's fields plus "version".
type webhookPayload struct {
	Version int `json:"version"`
	Alert
}

// Deliver implements Sink.
func (w *Webhook) Deliver(ctx context.Context, a Alert) error {
	if a.AuditSeqs == nil {
		a.AuditSeqs = []uint64{}
	}
	body, err := json.Marshal(webhookPayload{Version: PayloadVersion, Alert: a})
	if err != nil {
		return Permanent(fmt.Errorf("notify: webhook: encoding alert %s: %w", a.ID, err))
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	h := make(http.Header, len(w.headers)+5)
	for k, v := range w.headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderAlertID, a.ID)
	h.Set(HeaderSignature, Sign(w.secret, []byte(ts), body))
	if err := w.post.do(ctx, h, body); err != nil {
		return fmt.Errorf("notify: webhook: %w", err)
	}
	return nil
}

// Sign returns the X-Pgwarden-Signature header value for a body sent with
// the given timestamp.
func Sign(secret, timestamp, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(timestamp)
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a webhook request: header is the
// X-Pgwarden-Signature value, timestamp the X-Pgwarden-Timestamp value and
// body the raw request body. It fails if the signature does not match or, if
// maxSkew > 0, if the timestamp is more than maxSkew away from now (which
// bounds replays; receivers should also dedupe on the alert ID). The
// comparison is constant-time.
func VerifySignature(secret, timestamp, body []byte, header string, now time.Time, maxSkew time.Duration) error {
	sec, err := strconv.ParseInt(string(timestamp), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: malformed timestamp", ErrSignature)
	}
	if maxSkew > 0 {
		skew := now.Sub(time.Unix(sec, 0))
		if skew > maxSkew || skew < -maxSkew {
			return fmt.Errorf("%w: timestamp is %s away from now (max %s)", ErrSignature, skew.Round(time.Second), maxSkew)
		}
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return fmt.Errorf("%w: header does not start with sha256=", ErrSignature)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return fmt.Errorf("%w: malformed hex", ErrSignature)
	}
	m := hmac.New(sha256.New, secret)
	m.Write(timestamp)
	m.Write([]byte{'.'})
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return fmt.Errorf("%w: mismatch", ErrSignature)
	}
	return nil
}

// httpPoster POSTs JSON bodies and classifies the outcome. Its errors name
// the URL without userinfo, path or query, which may hold secrets (as Slack
// webhook paths do).
type httpPoster struct {
	url      string
	redacted string
	timeout  time.Duration
	client   *http.Client
}

func newHTTPPoster(rawURL string, timeout time.Duration, client *http.Client) (httpPoster, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the URL
		}
		return httpPoster{}, fmt.Errorf("invalid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return httpPoster{}, errors.New("invalid URL: want http:// or https:// and a host")
	}
	if timeout <= 0 {
		timeout = defaultHTTPTimeout
	}
	if client == nil {
		client = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return httpPoster{
		url:      rawURL,
		redacted: u.Scheme + "://" + u.Host,
		timeout:  timeout,
		client:   client,
	}, nil
}

func (p httpPoster) do(ctx context.Context, h http.Header, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return Permanent(fmt.Errorf("POST %s: building request failed", p.redacted))
	}
	req.Header = h
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "pgwarden-notify/1")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("POST %s: %w", p.redacted, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // allow connection reuse
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("POST %s: %s%s", p.redacted, resp.Status, printableSnippet(snippet))
	if permanentStatus(resp.StatusCode) {
		return Permanent(err)
	}
	return err
}

// permanentStatus reports whether an HTTP status means retrying is useless.
func permanentStatus(code int) bool {
	return code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
}

// printableSnippet renders the start of a response body for an error
// message: one line, printable ASCII only, at most 200 bytes.
func printableSnippet(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if sb.Len() >= 200 {
			sb.WriteString("...")
			break
		}
		switch {
		case c >= 0x20 && c < 0x7f:
			sb.WriteByte(c)
		case c == '\n' || c == '\r' || c == '\t':
			sb.WriteByte(' ')
		}
	}
	s := strings.TrimSpace(sb.String())
	if s == "" {
		return ""
	}
	return ": " + s
}
