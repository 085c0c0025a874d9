package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SyslogConfig configures a Syslog sink.
type SyslogConfig struct {
	Name     string // name of the sink (its outbox queue); default "syslog"
	Network  string // "udp" (default), "tcp" or "tcp+tls"
	Addr     string // host:port
	Hostname string // HOSTNAME field; default os.Hostname()
	AppName  string // APP-NAME field; default "pgwarden"
	// Facility code 1..23; default (0) local0 = 16. (kern, 0, cannot be
	// chosen.)
	Facility  int
	Format    string        // "rfc5424" (default) or "cef" (a CEF record as the MSG of an RFC 5424 message)
	TLSConfig *tls.Config   // for "tcp+tls"; nil verifies the server against the system roots
	Timeout   time.Duration // dial and write timeout; default 10s
}

// Syslog sends each alert as one RFC 5424 message: over UDP one datagram per
// message, over TCP and TLS with octet-counting framing (RFC 6587, RFC 5425).
// It keeps one connection and redials after an error.
//
// Plain syslog has no acknowledgements: a message is "delivered" once the
// kernel accepted it. Over TCP, the sink checks that the receiver has not
// closed the connection before each write, which catches most restarts of
// the receiver, but a message written just before a crash of the receiver
// can be lost.
type Syslog struct {
	name     string
	network  string
	addr     string
	hostname string
	appName  string
	procID   string
	facility int
	cef      bool
	tls      *tls.Config
	timeout  time.Duration

	mu   sync.Mutex
	conn net.Conn
}

// NewSyslog returns a Syslog sink. It does not connect until the first
// delivery.
func NewSyslog(cfg SyslogConfig) (*Syslog, error) {
	s := &Syslog{
		name:     cfg.Name,
		network:  cfg.Network,
		addr:     cfg.Addr,
		hostname: cfg.Hostname,
		appName:  cfg.AppName,
		procID:   strconv.Itoa(os.Getpid()),
		facility: cfg.Facility,
		tls:      cfg.TLSConfig,
		timeout:  cfg.Timeout,
	}
	if s.name == "" {
		s.name = "syslog"
	}
	switch s.network {
	case "":
		s.network = "udp"
	case "udp", "tcp", "tcp+tls":
	default:
		return nil, fmt.Errorf("notify: syslog: unknown network %q (want udp, tcp or tcp+tls)", cfg.Network)
	}
	if _, _, err := net.SplitHostPort(s.addr); err != nil {
		return nil, fmt.Errorf("notify: syslog: address: %w", err)
	}
	switch cfg.Format {
	case "", "rfc5424":
	case "cef":
		s.cef = true
	default:
		return nil, fmt.Errorf("notify: syslog: unknown format %q (want rfc5424 or cef)", cfg.Format)
	}
	if s.facility == 0 {
		s.facility = 16
	}
	if s.facility < 0 || s.facility > 23 {
		return nil, fmt.Errorf("notify: syslog: facility %d out of range 1..23", cfg.Facility)
	}
	if s.hostname == "" {
		s.hostname, _ = os.Hostname()
	}
	if s.appName == "" {
		s.appName = "pgwarden"
	}
	if s.timeout <= 0 {
		s.timeout = 10 * time.Second
	}
	return s, nil
}

// Name implements Sink.
func (s *Syslog) Name() string { return s.name }

// Deliver implements Sink.
func (s *Syslog) Deliver(ctx context.Context, a Alert) error {
	msg := s.format(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.send(ctx, msg); err != nil {
		return fmt.Errorf("notify: syslog: %w", err)
	}
	return nil
}

// Close closes the connection, if any. The sink redials on the next
// delivery.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

func (s *Syslog) send(ctx context.Context, msg []byte) error {
	frame := msg
	if s.network != "udp" {
		frame = appendFrame(make([]byte, 0, len(msg)+8), msg)
	}
	return s.write(ctx, frame)
}

// appendFrame appends msg with octet-counting framing (RFC 6587 3.4.1).
func appendFrame(b, msg []byte) []byte {
	b = strconv.AppendInt(b, int64(len(msg)), 10)
	b = append(b, ' ')
	return append(b, msg...)
}

// write writes framed messages, dialling first if needed.
func (s *Syslog) write(ctx context.Context, frame []byte) error {
	if s.conn != nil && s.network != "udp" && !streamAlive(s.conn) {
		s.conn.Close()
		s.conn = nil
	}
	if s.conn == nil {
		c, err := s.dial(ctx)
		if err != nil {
			return err
		}
		s.conn = c
	}
	deadline := time.Now().Add(s.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = s.conn.SetWriteDeadline(deadline)
	if _, err := s.conn.Write(frame); err != nil {
		s.conn.Close()
		s.conn = nil
		return fmt.Errorf("write to %s: %w", s.addr, err)
	}
	return nil
}

func (s *Syslog) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: s.timeout}
	var (
		c   net.Conn
		err error
	)
	switch s.network {
	case "tcp+tls":
		td := tls.Dialer{NetDialer: &d, Config: s.tls}
		c, err = td.DialContext(ctx, "tcp", s.addr)
	default:
		c, err = d.DialContext(ctx, s.network, s.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", s.network, s.addr, err)
	}
	return c, nil
}

// streamAlive reports whether a stream connection to a syslog receiver is
// still open. Receivers never send anything, so a read that does not time
// out means EOF, a reset or unexpected data: redial in every case.
func streamAlive(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	_ = c.SetReadDeadline(time.Time{})
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}

// Syslog severities (RFC 5424 §6.2.1).
const (
	sevCrit    = 2
	sevErr     = 3
	sevWarning = 4
	sevNotice  = 5
)

func syslogSeverity(sev string) int {
	switch strings.ToLower(sev) {
	case "critical":
		return sevCrit
	case "high":
		return sevErr
	case "low":
		return sevNotice
	default: // "medium" and unknown
		return sevWarning
	}
}

func cefSeverity(sev string) int {
	switch strings.ToLower(sev) {
	case "critical":
		return 10
	case "high":
		return 8
	case "low":
		return 3
	default:
		return 5
	}
}

// Length limits for parts of a message, so that a UDP datagram stays well
// under 64 KiB whatever the alert holds.
const (
	maxParamLen     = 1024
	maxStatementLen = 2048
	maxMsgLen       = 2048
	maxSeqsListed   = 50
)

func (s *Syslog) format(a Alert) []byte {
	if s.cef {
		return formatRFC5424(s.facility, s.hostname, s.appName, s.procID, a, false, formatCEF(a, buildVersion()))
	}
	return formatRFC5424(s.facility, s.hostname, s.appName, s.procID, a, true, oneLine(truncate(orDefault(a.Reason, a.Action+" "+a.Employee), maxMsgLen)))
}

// formatRFC5424 renders
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [pgwarden@32473 k="v" ...] MSG
//
// with the structured data element if withSD, "-" otherwise.
func formatRFC5424(facility int, hostname, appName, procID string, a Alert, withSD bool, msg string) []byte {
	var b strings.Builder
	b.WriteString("<")
	b.WriteString(strconv.Itoa(facility*8 + syslogSeverity(a.Severity)))
	b.WriteString(">1 ")
	if a.Time.IsZero() {
		b.WriteString("-")
	} else {
		b.WriteString(a.Time.UTC().Format("2006-01-02T15:04:05.000000Z"))
	}
	b.WriteByte(' ')
	b.WriteString(headerField(hostname, 255))
	b.WriteByte(' ')
	b.WriteString(headerField(appName, 48))
	b.WriteByte(' ')
	b.WriteString(headerField(procID, 128))
	b.WriteByte(' ')
	b.WriteString(headerField(a.Action, 32))
	b.WriteByte(' ')
	if withSD {
		writeSD(&b, a)
	} else {
		b.WriteString("-")
	}
	if msg != "" {
		b.WriteByte(' ')
		b.WriteString(msg)
	}
	return []byte(b.String())
}

// sdID is the structured data ID: a private enterprise number form
// (32473 is the number reserved for documentation, RFC 5612).
const sdID = "pgwarden@32473"

func writeSD(b *strings.Builder, a Alert) {
	b.WriteString("[" + sdID)
	param := func(name, value string, always bool) {
		if value == "" && !always {
			return
		}
		b.WriteString(" " + name + `="`)
		b.WriteString(sdEscape(value))
		b.WriteString(`"`)
	}
	param("id", truncate(a.ID, maxParamLen), true)
	param("action", truncate(a.Action, maxParamLen), true)
	if a.Shadow {
		param("shadow", "true", true)
	}
	param("employee", truncate(a.Employee, maxParamLen), true)
	param("role", truncate(a.Role, maxParamLen), false)
	param("rule", truncate(a.Rule, maxParamLen), false)
	param("severity", truncate(a.Severity, maxParamLen), false)
	param("observed", strconv.FormatInt(a.Observed, 10), true)
	param("limit", strconv.FormatInt(a.Limit, 10), true)
	param("measure", truncate(a.Measure, maxParamLen), false)
	param("scope", truncate(a.Scope, maxParamLen), false)
	param("session", truncate(a.SessionID, maxParamLen), false)
	param("client", truncate(a.ClientAddr, maxParamLen), false)
	param("application", truncate(a.Application, maxParamLen), false)
	param("database", truncate(a.Database, maxParamLen), false)
	param("audit_seqs", seqList(a.AuditSeqs), false)
	param("statement", truncate(a.Statement, maxStatementLen), false)
	b.WriteString("]")
}

// sdEscape escapes a PARAM-VALUE (RFC 5424 §6.3.3): '"', '\' and ']' get a
// backslash.
func sdEscape(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if !strings.ContainsAny(s, "\"\\]") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', ']':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// headerField makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces (others become '_'), at most max bytes, "-" if empty.
func headerField(s string, limit int) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	if len(b) > limit {
		b = b[:limit]
	}
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}

func seqList(seqs []uint64) string {
	var b strings.Builder
	for i, s := range seqs {
		if i == maxSeqsListed {
			fmt.Fprintf(&b, ",...(+%d)", len(seqs)-i)
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(s, 10))
	}
	return b.String()
}

// oneLine replaces line breaks, which some receivers split messages on.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// formatCEF renders an ArcSight Common Event Format record:
//
//	CEF:0|pgwarden|pgwarden|<version>|<rule or action>|<reason>|<severity 0-10>|suser=... src=... act=...
func formatCEF(a Alert, version string) string {
	var b strings.Builder
	b.WriteString("CEF:0|pgwarden|pgwarden|")
	b.WriteString(cefHeaderEscape(version))
	b.WriteByte('|')
	b.WriteString(cefHeaderEscape(truncate(orDefault(a.Rule, a.Action), 1023)))
	b.WriteByte('|')
	b.WriteString(cefHeaderEscape(truncate(orDefault(a.Reason, a.Action), 512)))
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(cefSeverity(a.Severity)))
	b.WriteByte('|')
	first := true
	ext := func(key, value string) {
		if value == "" {
			return
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(key)
		b.WriteByte('=')
		b.WriteString(cefExtEscape(value))
	}
	ext("rt", func() string {
		if a.Time.IsZero() {
			return ""
		}
		return strconv.FormatInt(a.Time.UnixMilli(), 10)
	}())
	ext("externalId", truncate(a.ID, maxParamLen))
	ext("act", truncate(a.Action, maxParamLen))
	ext("suser", truncate(a.Employee, maxParamLen))
	ext("suid", truncate(a.Role, maxParamLen))
	if host, port, err := net.SplitHostPort(a.ClientAddr); err == nil && net.ParseIP(host) != nil {
		ext("src", host)
		ext("spt", port)
	} else if net.ParseIP(a.ClientAddr) != nil {
		ext("src", a.ClientAddr)
	}
	ext("cnt", strconv.FormatInt(a.Observed, 10))
	ext("msg", truncate(a.Reason, maxMsgLen))
	ext("requestClientApplication", truncate(a.Application, maxParamLen))
	ext("cs1Label", "rule")
	ext("cs1", truncate(a.Rule, maxParamLen))
	ext("cs2Label", "measure")
	ext("cs2", truncate(a.Measure, maxParamLen))
	ext("cs3Label", "session")
	ext("cs3", truncate(a.SessionID, maxParamLen))
	ext("cs4Label", "database")
	ext("cs4", truncate(a.Database, maxParamLen))
	ext("cs5Label", "scope")
	ext("cs5", truncate(a.Scope, maxParamLen))
	ext("cs6Label", "statement")
	ext("cs6", truncate(a.Statement, maxStatementLen))
	ext("cn1Label", "limit")
	ext("cn1", strconv.FormatInt(a.Limit, 10))
	if a.Shadow {
		ext("cn2Label", "shadow")
		ext("cn2", "1")
	}
	return b.String()
}

// cefHeaderEscape escapes a CEF header field: '\' and '|' get a backslash;
// line breaks, which the header cannot hold, become spaces.
func cefHeaderEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// cefExtEscape escapes a CEF extension value: '\' and '=' get a backslash,
// line breaks become \n and \r.
func cefExtEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\r\n", `\n`, "\n", `\n`, "\r", `\r`).Replace(s)
}

var buildVersion = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
})
