package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/audit/notify"
	"github.com/pgwarden/pgwarden/internal/clock"
	"github.com/pgwarden/pgwarden/state/holds"
)

const linkSecret = "0123456789abcdef-token"

// TestHoldLinkSignature: a link is valid as issued until its expiry, and
// not once anything in it changes.
func TestHoldLinkSignature(t *testing.T) {
	now := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	exp := now.Add(10 * time.Minute)
	link, err := HoldLink("https://pgwarden.example.com/admin/", []byte(linkSecret), "s1-4-7", "approve", exp)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(link)
	if u.Path != "/admin/v1/holds/s1-4-7/approve/link" || u.Query().Get("exp") != "1767604200" {
		t.Fatalf("link %s", link)
	}
	sig := u.Query().Get("sig")
	other, _ := HoldLink("https://pgwarden.example.com", []byte(linkSecret+"-other"), "s1-4-7", "approve", exp)
	otherSig, _ := url.Parse(other)
	for _, c := range []struct {
		name                   string
		id, decision, exp, sig string
		at                     time.Time
		want                   error
	}{
		{"as issued", "s1-4-7", "approve", "1767604200", sig, now, nil},
		{"a second before it expires", "s1-4-7", "approve", "1767604200", sig, exp.Add(-time.Second), nil},
		{"another hold", "s1-4-8", "approve", "1767604200", sig, now, errLinkAltered},
		{"deny instead of approve", "s1-4-7", "deny", "1767604200", sig, now, errLinkAltered},
		{"a later expiry", "s1-4-7", "approve", "1767607800", sig, now, errLinkAltered},
		{"a changed signature", "s1-4-7", "approve", "1767604200", "A" + sig[1:], now, errLinkAltered},
		{"no signature", "s1-4-7", "approve", "1767604200", "", now, errLinkAltered},
		{"not a number", "s1-4-7", "approve", "soon", sig, now, errLinkAltered},
		{"signed with another secret", "s1-4-7", "approve", "1767604200", otherSig.Query().Get("sig"), now, errLinkAltered},
		{"at its expiry", "s1-4-7", "approve", "1767604200", sig, exp, errLinkExpired},
		{"after it", "s1-4-7", "approve", "1767604200", sig, exp.Add(time.Hour), errLinkExpired},
	} {
		if err := checkHoldLink([]byte(linkSecret), c.id, c.decision, c.exp, c.sig, c.at); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := HoldLink("pgwarden.example.com", []byte(linkSecret), "s1", "approve", exp); err == nil {
		t.Error("a base without scheme accepted")
	}
	if _, err := HoldLink("https://x", []byte(linkSecret), "s1", "maybe", exp); err == nil {
		t.Error("decision maybe accepted")
	}
}

// slackReceiver is a Slack incoming webhook: it keeps the messages.
type slackReceiver struct {
	mu   sync.Mutex
	msgs []string
}

func (s *slackReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.msgs = append(s.msgs, string(b))
	s.mu.Unlock()
	io.WriteString(w, "ok")
}

// TestHoldLinkFromSlack: the Slack message of a held statement carries
// an approve and a deny link; following one shows the hold and asks the
// approver's name and why, and the answer decides the hold for "NAME (via
// slack link)" via slack, with the reason, in the hold and the audit
// trail. A form without a name or a reason decides nothing. An altered or expired link,
// or one for a hold already decided, decides nothing.
func TestHoldLinkFromSlack(t *testing.T) {
	reg, err := holds.Open(filepath.Join(t.TempDir(), "holds"))
	if err != nil {
		t.Fatal(err)
	}
	vc := clock.NewVirtual(time.Now().UTC().Truncate(time.Second))
	var (
		amu     sync.Mutex
		audited []map[string]any
	)
	cfg := Config{Token: []byte(linkSecret), Now: vc.Now,
		Holds: func() (any, error) { return reg.List() },
		DecideHold: func(id string, approve bool, by, via, reason string) (string, error) {
			h, err := reg.DecideWith(id, holds.Decision{Approve: approve, By: by, Via: via, Reason: reason})
			if errors.Is(err, holds.ErrNotFound) {
				return "", ErrNotFound
			}
			return h.Employee, err
		},
		HoldOf: func(id string) (HoldSummary, bool) {
			l, _ := reg.List()
			for _, h := range l {
				if h.ID == id {
					return HoldSummary{Employee: h.Employee, Rule: h.Rule, Reason: h.Reason, Justification: h.Justification, Deadline: h.Deadline}, true
				}
			}
			return HoldSummary{}, false
		},
		Audit: func(action string, data map[string]any) {
			amu.Lock()
			defer amu.Unlock()
			data["action"] = action
			audited = append(audited, data)
		}}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(h)
	defer api.Close()
	recv := &slackReceiver{}
	slackSrv := httptest.NewServer(recv)
	defer slackSrv.Close()
	sink, err := notify.NewSlack(notify.SlackConfig{URL: slackSrv.URL + "/services/T/B/X",
		HoldLinks: func(id string, deadline time.Time) (string, string, error) {
			a, err := HoldLink(api.URL, []byte(linkSecret), id, "approve", deadline)
			if err != nil {
				return "", "", err
			}
			d, err := HoldLink(api.URL, []byte(linkSecret), id, "deny", deadline)
			return a, d, err
		}})
	if err != nil {
		t.Fatal(err)
	}

	// hold holds a statement until it is decided, and announces it.
	type result struct {
		h   holds.Hold
		err error
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	hold := func(id string) (approve, deny string, done <-chan result) {
		t.Helper()
		deadline := vc.Now().Add(10 * time.Minute)
		ch := make(chan result, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t.Cleanup(cancel)
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := reg.Request(ctx, holds.Hold{ID: id, Employee: "alice", Rule: "hold-bulk", Reason: "alice received 30 emails",
				Justification: "ticket 4711", Since: vc.Now(), Deadline: deadline})
			ch <- result{d, err}
		}()
		for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
			if l, _ := reg.List(); len(l) > 0 && l[len(l)-1].ID == id {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("hold %s not pending", id)
			}
		}
		if err := sink.Deliver(context.Background(), notify.Alert{ID: "a-" + id, Time: vc.Now(), Action: "hold", Employee: "alice",
			Rule: "hold-bulk", Reason: "alice received 30 emails", HoldID: id, HoldDeadline: deadline}); err != nil {
			t.Fatal(err)
		}
		recv.mu.Lock()
		last := recv.msgs[len(recv.msgs)-1]
		recv.mu.Unlock()
		var msg struct {
			Blocks []struct {
				Text *struct{ Text string } `json:"text"`
			} `json:"blocks"`
		}
		if err := json.Unmarshal([]byte(last), &msg); err != nil {
			t.Fatal(err)
		}
		links := regexp.MustCompile(`<([^|>]+)\|(Approve|Deny)>`)
		for _, b := range msg.Blocks {
			if b.Text == nil {
				continue
			}
			for _, m := range links.FindAllStringSubmatch(b.Text.Text, -1) {
				u := strings.ReplaceAll(m[1], "&amp;", "&")
				if m[2] == "Approve" {
					approve = u
				} else {
					deny = u
				}
			}
		}
		if !strings.HasPrefix(approve, api.URL+"/v1/holds/"+id+"/approve/link?") || !strings.HasPrefix(deny, api.URL+"/v1/holds/"+id+"/deny/link?") {
			t.Fatalf("the message's links: approve %q, deny %q in %s", approve, deny, last)
		}
		return approve, deny, ch
	}
	get := func(link string) (int, string, http.Header) {
		t.Helper()
		resp, err := http.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	// submit posts the page's form as a browser would: to "link", with
	// the link's exp and sig.
	submit := func(link string, form url.Values, reason string) (int, string) {
		t.Helper()
		u, _ := url.Parse(link)
		f := url.Values{"exp": {u.Query().Get("exp")}, "sig": {u.Query().Get("sig")}, "name": {"Carol Ortiz"}, "reason": {reason}}
		for k, v := range form {
			f[k] = v
		}
		u.RawQuery = ""
		resp, err := http.PostForm(u.String(), f)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	pending := func(id string) bool {
		_, ok := cfg.HoldOf(id)
		return ok
	}

	approve, deny, done := hold("s1-4-1")
	code, page, hdr := get(approve)
	if code != 200 || !strings.Contains(page, `<form method="post" action="link">`) || !strings.Contains(page, "alice") ||
		!strings.Contains(page, `name="name"`) ||
		!strings.Contains(page, "ticket 4711") || strings.Contains(page, "<script") {
		t.Fatalf("approve page: %d %s", code, page)
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
		!strings.Contains(csp, "form-action 'self'") {
		t.Errorf("CSP %q", csp)
	}
	// Altered: the deny link's signature on approve, another hold, a
	// later expiry. Each is refused and decides nothing.
	du, _ := url.Parse(deny)
	for name, f := range map[string]url.Values{
		"deny's signature": {"sig": {du.Query().Get("sig")}},
		"a later expiry":   {"exp": {"99999999999"}},
	} {
		if code, page := submit(approve, f, "looks fine"); code != 403 || !strings.Contains(page, "altered") {
			t.Errorf("%s: %d %s", name, code, page)
		}
	}
	if code, _, _ := get(strings.Replace(approve, "s1-4-1", "s1-4-2", 1)); code != 403 {
		t.Errorf("another hold's link: %d", code)
	}
	if code, _ := submit(approve, nil, "  "); code != 400 {
		t.Errorf("no reason: %d", code)
	}
	for name, n := range map[string]string{"no name": " ", "a name with a newline": "Carol\nOrtiz", "a name too long": strings.Repeat("c", 101)} {
		if code, page := submit(approve, url.Values{"name": {n}}, "looks fine"); code != 400 || !strings.Contains(page, "Your name") {
			t.Errorf("%s: %d %s", name, code, page)
		}
	}
	if !pending("s1-4-1") {
		t.Fatal("the hold was decided by a refused request")
	}
	code, page = submit(approve, nil, "ticket 4711 checked with legal")
	const by = "Carol Ortiz (via slack link)"
	if code != 200 || !strings.Contains(page, "approved by "+by) {
		t.Fatalf("approve: %d %s", code, page)
	}
	r := <-done
	if r.err != nil || r.h.Status != holds.Approved || r.h.DecidedBy != by || r.h.DecidedVia != "slack" ||
		r.h.DecisionReason != "ticket 4711 checked with legal" {
		t.Errorf("the hold as decided: %+v %v", r.h, r.err)
	}
	amu.Lock()
	if len(audited) != 1 || audited[0]["action"] != "hold_approved" || audited[0]["by"] != by || audited[0]["via"] != "slack" ||
		audited[0]["reason"] != "ticket 4711 checked with legal" || audited[0]["employee"] != "alice" || audited[0]["hold_id"] != "s1-4-1" ||
		audited[0]["scope"] != "act" {
		t.Errorf("audited %v", audited)
	}
	amu.Unlock()
	// The hold is over: both links say so and decide nothing more.
	for _, link := range []string{approve, deny} {
		if code, page, _ := get(link); code != 409 || !strings.Contains(page, "no longer pending") {
			t.Errorf("a decided hold's page: %d %s", code, page)
		}
		if code, page := submit(link, nil, "again"); code != 409 || !strings.Contains(page, "no longer pending") {
			t.Errorf("a decided hold's form: %d %s", code, page)
		}
	}

	// Denied through its link.
	_, deny, done = hold("s1-5-2")
	if code, page := submit(deny, nil, "no ticket"); code != 200 || !strings.Contains(page, "denied") {
		t.Fatalf("deny: %d %s", code, page)
	}
	if r := <-done; r.err != nil || r.h.Status != holds.Denied || r.h.DecidedBy != by || r.h.DecisionReason != "no ticket" {
		t.Errorf("the hold as denied: %+v %v", r.h, r.err)
	}

	// Expired: past the hold's deadline the links decide nothing.
	approve, _, _ = hold("s1-6-3")
	if err := vc.Advance(11 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if code, page, _ := get(approve); code != 403 || !strings.Contains(page, "expired") {
		t.Errorf("expired page: %d %s", code, page)
	}
	if code, _ := submit(approve, nil, "late"); code != 403 || !pending("s1-6-3") {
		t.Errorf("expired form: %d, pending %v", code, pending("s1-6-3"))
	}
	amu.Lock()
	if len(audited) != 2 {
		t.Errorf("audited %d actions, want 2 (the approval and the denial)", len(audited))
	}
	amu.Unlock()
}
