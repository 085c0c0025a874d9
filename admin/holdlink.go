package admin

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// HoldLinkBy is the principal of a decision made through a signed hold
// link by the person who gave name on the link's page: the link is the
// authority (scope act), the name is the approver's word, which pgwarden
// cannot check, and says so.
func HoldLinkBy(name string) string { return name + " (via slack link)" }

// maxApproverName bounds the name an approver gives on a hold link's page.
const maxApproverName = 100

// holdLinkVia is how a decision made through a hold link reached
// pgwarden, in the hold and the audit trail.
const holdLinkVia = "slack"

var (
	errLinkAltered = errors.New("admin: the link's signature does not match it")
	errLinkExpired = errors.New("admin: the link has expired")
)

// holdLinkKey derives the key that signs hold links from the admin
// secret, so that a link's signature is never a token's.
func holdLinkKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("pgwarden hold link v1"))
	return m.Sum(nil)
}

func holdLinkMAC(secret []byte, id, decision string, exp int64) []byte {
	m := hmac.New(sha256.New, holdLinkKey(secret))
	fmt.Fprintf(m, "%s\n%s\n%d", id, decision, exp)
	return m.Sum(nil)
}

// HoldLink returns the signed link that approves (decision "approve") or
// denies ("deny") hold id through the admin API at base (its public URL)
// until exp, the hold's deadline; the link opens a page that asks the
// reason. The signature is HMAC-SHA256 with a key derived from the admin
// secret.
func HoldLink(base string, secret []byte, id, decision string, exp time.Time) (string, error) {
	if decision != "approve" && decision != "deny" {
		return "", fmt.Errorf("admin: hold link: decision %q: want approve or deny", decision)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("admin: hold link: the admin API's public URL %q: want http(s)://host[:port][/path]", base)
	}
	e := exp.Unix()
	u = u.JoinPath("v1", "holds", id, decision, "link")
	u.RawQuery = url.Values{"exp": {strconv.FormatInt(e, 10)},
		"sig": {base64.RawURLEncoding.EncodeToString(holdLinkMAC(secret, id, decision, e))}}.Encode()
	return u.String(), nil
}

// checkHoldLink verifies a hold link's signature (constant-time) before
// its expiry.
func checkHoldLink(secret []byte, id, decision, exp, sig string, now time.Time) error {
	e, err := strconv.ParseInt(exp, 10, 64)
	got, serr := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || serr != nil || !hmac.Equal(got, holdLinkMAC(secret, id, decision, e)) {
		return errLinkAltered
	}
	if !now.Before(time.Unix(e, 0)) {
		return errLinkExpired
	}
	return nil
}

// HoldSummary is what the page of a hold link shows of the hold.
type HoldSummary struct {
	Employee, Rule, Reason, Statement, Justification string
	Deadline                                         time.Time
}

// holdLinkCSP is the dashboard's policy, but for the page's one form,
// which posts to the admin API itself.
const holdLinkCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

var holdLinkPage = template.Must(template.New("hold").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="referrer" content="no-referrer"><title>pgwarden: {{.Title}}</title></head>
<body><h1>pgwarden: {{.Title}}</h1>
{{if .Message}}<p id="message">{{.Message}}</p>{{end}}
{{with .Hold}}<dl>
<dt>Employee</dt><dd>{{.Employee}}</dd>
<dt>Rule</dt><dd>{{.Rule}}</dd>
<dt>Why held</dt><dd>{{.Reason}}</dd>
{{if .Justification}}<dt>The employee's reason</dt><dd>{{.Justification}}</dd>{{end}}
{{if .Statement}}<dt>Statement</dt><dd><code>{{.Statement}}</code></dd>{{end}}
<dt>Held until</dt><dd>{{.Deadline.UTC.Format "2006-01-02 15:04:05 MST"}}</dd>
</dl>{{end}}
{{if .Form}}<form method="post" action="link">
<input type="hidden" name="exp" value="{{.Exp}}"><input type="hidden" name="sig" value="{{.Sig}}">
<p><label for="name">Your name (recorded as the approver)</label><br>
<input id="name" name="name" size="40" maxlength="100" autocomplete="name" value="{{.Name}}" required></p>
<p><label for="reason">Why do you {{.Decision}} it? (recorded in the audit trail)</label><br>
<textarea id="reason" name="reason" rows="3" cols="60" maxlength="1000" required></textarea></p>
<p><button type="submit">{{.Decision}} hold {{.ID}}</button></p>
</form>{{end}}
</body></html>
`))

type holdLinkView struct {
	Title, Message, ID, Decision, Exp, Sig, Name string
	Hold                                         *HoldSummary
	Form                                         bool
}

func writeHoldPage(w http.ResponseWriter, code int, v holdLinkView) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", holdLinkCSP)
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	holdLinkPage.Execute(w, v)
}

// holdLinkCheck answers the requests of a link that is not valid (403,
// nothing decided) or cannot be (holds off) and reports whether the
// request may go on.
func (h *Handler) holdLinkCheck(w http.ResponseWriter, r *http.Request, id, decision, exp, sig string) bool {
	if decision != "approve" && decision != "deny" {
		writeHoldPage(w, http.StatusNotFound, holdLinkView{Title: "no such link"})
		return false
	}
	if err := checkHoldLink(h.cfg.Token, id, decision, exp, sig, h.cfg.Now()); err != nil {
		msg := "This link is not valid: it was altered. Nothing was decided."
		if errors.Is(err, errLinkExpired) {
			msg = "This link has expired, as has the hold: nothing was decided."
		}
		h.cfg.Logger.Warn("admin_hold_link_refused", "method", r.Method, "hold_id", id, "remote", r.RemoteAddr, "why", err.Error())
		writeHoldPage(w, http.StatusForbidden, holdLinkView{Title: "link refused", Message: msg})
		return false
	}
	if h.cfg.DecideHold == nil {
		writeHoldPage(w, http.StatusNotFound, holdLinkView{Title: "holds are off", Message: "pgwarden has no state directory: holds are off."})
		return false
	}
	return true
}

// holdLink answers GET /v1/holds/{id}/{decision}/link?exp=...&sig=...: a
// page showing the hold and a form that asks why.
func (h *Handler) holdLink(w http.ResponseWriter, r *http.Request) {
	id, decision, q := r.PathValue("id"), r.PathValue("decision"), r.URL.Query()
	if !h.holdLinkCheck(w, r, id, decision, q.Get("exp"), q.Get("sig")) {
		return
	}
	v := holdLinkView{Title: decision + " hold " + id, ID: id, Decision: decision, Exp: q.Get("exp"), Sig: q.Get("sig"), Form: true}
	if h.cfg.HoldOf != nil {
		s, ok := h.cfg.HoldOf(id)
		if !ok {
			writeHoldPage(w, http.StatusConflict, holdLinkView{Title: "hold " + id,
				Message: "Hold " + id + " is no longer pending: it was already approved or denied, or it timed out. Nothing was decided."})
			return
		}
		v.Hold = &s
	}
	writeHoldPage(w, http.StatusOK, v)
}

// decideHoldLink answers the link page's form, POST
// /v1/holds/{id}/{decision}/link with exp, sig, name and reason: it decides
// the hold for HoldLinkBy(name), via "slack".
func (h *Handler) decideHoldLink(w http.ResponseWriter, r *http.Request) {
	id, decision := r.PathValue("id"), r.PathValue("decision")
	r.Body = http.MaxBytesReader(w, r.Body, 4*maxReason)
	if err := r.ParseForm(); err != nil {
		writeHoldPage(w, http.StatusBadRequest, holdLinkView{Title: "bad request", Message: "The form could not be read."})
		return
	}
	exp, sig := r.PostForm.Get("exp"), r.PostForm.Get("sig")
	if !h.holdLinkCheck(w, r, id, decision, exp, sig) {
		return
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	name := strings.TrimSpace(r.PostForm.Get("name"))
	if !validApproverName(name) || reason == "" || len(reason) > maxReason {
		if len(name) > maxApproverName {
			name = ""
		}
		writeHoldPage(w, http.StatusBadRequest, holdLinkView{Title: decision + " hold " + id, ID: id, Decision: decision, Exp: exp, Sig: sig, Name: name, Form: true,
			Message: fmt.Sprintf("Your name (1 to %d bytes, printable) and a reason of 1 to %d bytes are required: both go to the audit trail.", maxApproverName, maxReason)})
		return
	}
	p := Principal{Name: HoldLinkBy(name), Scope: ScopeAct, Via: holdLinkVia}
	employee, err := h.cfg.DecideHold(id, decision == "approve", p.Name, holdLinkVia, reason)
	switch {
	case errors.Is(err, ErrNotFound):
		writeHoldPage(w, http.StatusConflict, holdLinkView{Title: "hold " + id,
			Message: "Hold " + id + " is no longer pending: it was already approved or denied, or it timed out. Nothing was decided."})
	case err != nil:
		h.cfg.Logger.Error("admin_hold_link_failed", "hold_id", id, "error", err)
		writeHoldPage(w, http.StatusInternalServerError, holdLinkView{Title: "hold " + id, Message: "The decision could not be recorded: " + err.Error()})
	default:
		action := map[string]string{"approve": "hold_approved", "deny": "hold_denied"}[decision]
		h.record(p, action, map[string]any{"hold": id, "hold_id": id, "decision": decision, "reason": reason}, employee)
		past := map[string]string{"approve": "approved", "deny": "denied"}[decision]
		writeHoldPage(w, http.StatusOK, holdLinkView{Title: "hold " + id + " " + past,
			Message: fmt.Sprintf("Hold %s is %s by %s, for this reason: %s", id, past, p.Name, reason)})
	}
}

// validApproverName reports whether name, as given on a hold link's page,
// can name the approver: 1 to maxApproverName bytes of printable UTF-8.
func validApproverName(name string) bool {
	if name == "" || len(name) > maxApproverName || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
