package notify

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// syslogMsg is a parsed RFC 5424 message.
type syslogMsg struct {
	pri                                       int
	timestamp, host, app, procID, msgID, sdID string
	params                                    map[string]string
	msg                                       string
}

var headerRE = regexp.MustCompile(`^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (.*)$`)

// parseRFC5424 parses one message with at most one SD element, undoing the
// PARAM-VALUE escapes.
func parseRFC5424(t *testing.T, raw string) syslogMsg {
	t.Helper()
	m := headerRE.FindStringSubmatch(raw)
	if m == nil {
		t.Fatalf("not RFC 5424: %q", raw)
	}
	pri, _ := strconv.Atoi(m[1])
	out := syslogMsg{pri: pri, timestamp: m[2], host: m[3], app: m[4], procID: m[5], msgID: m[6], params: map[string]string{}}
	rest := m[7]
	if strings.HasPrefix(rest, "-") {
		out.msg = strings.TrimPrefix(strings.TrimPrefix(rest, "-"), " ")
		return out
	}
	if !strings.HasPrefix(rest, "[") {
		t.Fatalf("no SD: %q", rest)
	}
	i := strings.IndexByte(rest, ' ')
	out.sdID = rest[1:i]
	rest = rest[i:]
	for {
		if strings.HasPrefix(rest, "]") {
			out.msg = strings.TrimPrefix(rest[1:], " ")
			return out
		}
		if !strings.HasPrefix(rest, " ") {
			t.Fatalf("bad SD at %q", rest)
		}
		eq := strings.Index(rest, `="`)
		if eq < 0 {
			t.Fatalf("bad SD param at %q", rest)
		}
		name := rest[1:eq]
		var val strings.Builder
		j := eq + 2
		for ; j < len(rest) && rest[j] != '"'; j++ {
			c := rest[j]
			if c == '\\' && j+1 < len(rest) && strings.ContainsRune(`"\]`, rune(rest[j+1])) {
				j++
				c = rest[j]
			} else if c == ']' {
				t.Fatalf("unescaped ] in param %s", name)
			}
			val.WriteByte(c)
		}
		if j == len(rest) {
			t.Fatalf("unterminated param %s", name)
		}
		out.params[name] = val.String()
		rest = rest[j+1:]
	}
}

func trickyAlert() Alert {
	a := testAlert("sys-1")
	a.Action = "would block"
	a.Shadow = true
	a.Employee = `al"ice]\x`
	a.Reason = "alice received 1,200 emails\nin one statement; the limit is 1,000"
	a.Statement = `SELECT "a]b" FROM t WHERE x = '\'`
	a.Severity = "critical"
	return a
}

func readDatagram(t *testing.T, pc net.PacketConn) string {
	t.Helper()
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := NewSyslog(SyslogConfig{Network: "udp", Addr: pc.LocalAddr().String(), Hostname: "db proxy1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := trickyAlert()
	if err := s.Deliver(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	m := parseRFC5424(t, readDatagram(t, pc))
	if m.pri != 16*8+2 {
		t.Errorf("PRI %d, want %d (local0.crit)", m.pri, 16*8+2)
	}
	if m.timestamp != "2026-03-01T12:00:00.123456Z" || m.host != "db_proxy1" || m.app != "pgwarden" || m.msgID != "would_block" {
		t.Errorf("header %+v", m)
	}
	if _, err := strconv.Atoi(m.procID); err != nil {
		t.Errorf("PROCID %q", m.procID)
	}
	if m.sdID != "pgwarden@32473" {
		t.Errorf("SD-ID %q", m.sdID)
	}
	want := map[string]string{
		"id": "sys-1", "action": "would block", "shadow": "true", "employee": a.Employee, "role": "app_ro",
		"rule": "email-bulk", "severity": "critical", "observed": "1200", "limit": "1000",
		"measure": "pii_values.email", "scope": "statement", "session": "s-42", "client": "10.1.2.3:51234",
		"application": "psql", "database": "crm", "audit_seqs": "17,18", "statement": a.Statement,
	}
	if fmt.Sprint(m.params) != fmt.Sprint(want) {
		t.Errorf("params\n%v\nwant\n%v", m.params, want)
	}
	if m.msg != "alice received 1,200 emails in one statement; the limit is 1,000" {
		t.Errorf("MSG %q", m.msg)
	}
}

func TestSyslogSeverityAndFacility(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := NewSyslog(SyslogConfig{Addr: pc.LocalAddr().String(), Facility: 13, AppName: "pgw"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for sev, code := range map[string]int{"critical": 2, "high": 3, "medium": 4, "low": 5, "": 4} {
		a := testAlert("x")
		a.Severity = sev
		if err := s.Deliver(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		m := parseRFC5424(t, readDatagram(t, pc))
		if m.pri != 13*8+code || m.app != "pgw" {
			t.Errorf("severity %q: PRI %d app %q", sev, m.pri, m.app)
		}
	}
}

// tcpReceiver accepts connections and parses octet-counted frames.
type tcpReceiver struct {
	ln    net.Listener
	msgs  chan string
	conns chan net.Conn
}

func newTCPReceiver(t *testing.T, ln net.Listener) *tcpReceiver {
	r := &tcpReceiver{ln: ln, msgs: make(chan string, 100), conns: make(chan net.Conn, 10)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns <- c
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					lenStr, err := br.ReadString(' ')
					if err != nil {
						return
					}
					n, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
					if err != nil {
						t.Errorf("bad frame length %q", lenStr)
						return
					}
					buf := make([]byte, n)
					if _, err := io.ReadFull(br, buf); err != nil {
						t.Errorf("short frame: %v", err)
						return
					}
					r.msgs <- string(buf)
				}
			}()
		}
	}()
	return r
}

func (r *tcpReceiver) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no syslog message")
		return ""
	}
}

func TestSyslogTCPOctetCountingAndReconnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rcv := newTCPReceiver(t, ln)
	s, err := NewSyslog(SyslogConfig{Network: "tcp", Addr: ln.Addr().String(), Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	a := trickyAlert()
	a.Reason = "line one\nline two with 7 bytes and a ] and \" too"
	for i := range 2 {
		a.ID = fmt.Sprintf("tcp-%d", i)
		if err := s.Deliver(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		m := parseRFC5424(t, rcv.next(t))
		if m.params["id"] != fmt.Sprintf("tcp-%d", i) || m.params["employee"] != a.Employee || m.msg != "line one line two with 7 bytes and a ] and \" too" {
			t.Errorf("message %d: %+v", i, m)
		}
	}

	// The receiver drops the connection: a delivery once the sink can see
	// it closed reconnects. (One written while the close is still on its
	// way is lost: syslog over TCP has no acknowledgement; the notifier's
	// outbox is what retries.)
	(<-rcv.conns).Close()
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		a.ID = fmt.Sprintf("after-close-%d", i)
		if err := s.Deliver(ctx, a); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-rcv.msgs:
			if id := parseRFC5424(t, m).params["id"]; !strings.HasPrefix(id, "after-close-") {
				t.Errorf("after reconnect: %q", id)
			}
			if len(rcv.conns) == 0 {
				t.Error("delivered without a new connection")
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no delivery after the receiver closed the connection")
		}
	}
}

func TestSyslogTCPDownThenUpThroughNotifier(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s, err := NewSyslog(SyslogConfig{Network: "tcp", Addr: addr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db := openDB(t, filepath.Join(t.TempDir(), "n.db"))
	defer db.Close()
	n := newTestNotifier(t, db, Config{Sinks: []Sink{s}})
	if err := n.Notify(testAlert("sys-down")); err != nil {
		t.Fatal(err)
	}
	run(t, n)
	waitFor(t, "failed attempts", func() bool { return n.Stats().Sinks["syslog"].Failed >= 2 })
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	defer ln.Close()
	rcv := newTCPReceiver(t, ln)
	flush(t, n, 5*time.Second)
	if m := parseRFC5424(t, rcv.next(t)); m.params["id"] != "sys-down" {
		t.Errorf("got %+v", m)
	}
}

func TestSyslogTLS(t *testing.T) {
	// Borrow httptest's certificate for 127.0.0.1 and a client config that
	// trusts it.
	hs := httptest.NewTLSServer(http.NotFoundHandler())
	defer hs.Close()
	roots := hs.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: hs.TLS.Certificates})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rcv := newTCPReceiver(t, ln)

	s, err := NewSyslog(SyslogConfig{Network: "tcp+tls", Addr: ln.Addr().String(), TLSConfig: &tls.Config{RootCAs: roots}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range []string{"tls-1", "tls-2"} {
		if err := s.Deliver(context.Background(), testAlert(id)); err != nil {
			t.Fatal(err)
		}
		if m := parseRFC5424(t, rcv.next(t)); m.params["id"] != id {
			t.Errorf("got %+v", m)
		}
	}

	// Without the test root the certificate does not verify.
	bad, err := NewSyslog(SyslogConfig{Network: "tcp+tls", Addr: ln.Addr().String(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Deliver(context.Background(), testAlert("x")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: err = %v", err)
	}
}

func TestSyslogCEF(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := NewSyslog(SyslogConfig{Addr: pc.LocalAddr().String(), Format: "cef", Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := testAlert("cef-1")
	a.Rule = `pii|bulk\export`
	a.Reason = "a=b | c\\d\nsecond line"
	a.Employee = "alice=admin"
	if err := s.Deliver(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	m := parseRFC5424(t, readDatagram(t, pc))
	if m.sdID != "" || len(m.params) != 0 || m.pri != 16*8+3 {
		t.Errorf("syslog wrapper %+v", m)
	}
	wantHeader := `CEF:0|pgwarden|pgwarden|` + buildVersion() + `|pii\|bulk\\export|a=b \| c\\d second line|8|`
	if !strings.HasPrefix(m.msg, wantHeader) {
		t.Fatalf("CEF header\n%s\nwant prefix\n%s", m.msg, wantHeader)
	}
	ext := parseCEFExtensions(t, strings.TrimPrefix(m.msg, wantHeader))
	want := map[string]string{
		"rt": strconv.FormatInt(a.Time.UnixMilli(), 10), "externalId": "cef-1", "act": "block",
		"suser": "alice=admin", "suid": "app_ro", "src": "10.1.2.3", "spt": "51234", "cnt": "1200",
		"msg": "a=b | c\\d\nsecond line", "requestClientApplication": "psql",
		"cs1Label": "rule", "cs1": a.Rule, "cs2Label": "measure", "cs2": "pii_values.email",
		"cs3Label": "session", "cs3": "s-42", "cs4Label": "database", "cs4": "crm",
		"cs5Label": "scope", "cs5": "statement", "cs6Label": "statement", "cs6": a.Statement,
		"cn1Label": "limit", "cn1": "1000",
	}
	if fmt.Sprint(ext) != fmt.Sprint(want) {
		t.Errorf("extensions\n%v\nwant\n%v", ext, want)
	}
}

func TestCEFEscaping(t *testing.T) {
	if got := cefHeaderEscape(`a|b\c` + "\nd"); got != `a\|b\\c d` {
		t.Errorf("header escape %q", got)
	}
	if got := cefExtEscape("a=b\\c|d\r\ne\nf"); got != `a\=b\\c|d\ne\nf` {
		t.Errorf("extension escape %q", got)
	}
}

// parseCEFExtensions splits "k=v k=v" where values may contain spaces and
// escaped '=' and '\', and undoes the escapes.
func parseCEFExtensions(t *testing.T, s string) map[string]string {
	t.Helper()
	keyRE := regexp.MustCompile(`(?:^| )([A-Za-z0-9]+)=`)
	// Find unescaped "key=" boundaries.
	var starts [][]int
	for _, loc := range keyRE.FindAllStringSubmatchIndex(s, -1) {
		eq := loc[1] - 1
		bs := 0
		for k := eq - 1; k >= 0 && s[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			starts = append(starts, loc)
		}
	}
	out := map[string]string{}
	for i, loc := range starts {
		end := len(s)
		if i+1 < len(starts) {
			end = starts[i+1][0]
		}
		raw := s[loc[1]:end]
		val := strings.NewReplacer(`\\`, `\`, `\=`, `=`, `\n`, "\n", `\r`, "\r").Replace(raw)
		out[s[loc[2]:loc[3]]] = val
	}
	return out
}

func TestNewSyslogValidates(t *testing.T) {
	for _, cfg := range []SyslogConfig{
		{Network: "sctp", Addr: "127.0.0.1:514"},
		{Addr: "nohostport"},
		{Addr: "127.0.0.1:514", Format: "json"},
		{Addr: "127.0.0.1:514", Facility: 24},
	} {
		if _, err := NewSyslog(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

func TestSDEscape(t *testing.T) {
	if got := sdEscape(`a"b\c]d`); got != `a\"b\\c\]d` {
		t.Errorf("sdEscape = %q", got)
	}
	if got := headerField("a b\tc", 3); got != "a_b" {
		t.Errorf("headerField = %q", got)
	}
	if got := headerField("", 3); got != "-" {
		t.Errorf("headerField empty = %q", got)
	}
}
