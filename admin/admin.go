// Package admin is pgwarden's HTTP control interface: off by default,
// loopback by default when on, every request but the health checks, the
// dashboard's files and signed hold links (HoldLink) authenticated: the
// admin secret, a named token derived from it (IssueToken) or a verified
// client certificate names the principal and its scope (read, act,
// admin). Every change is recorded with who made
// it, when and why, in the audit trail and in the answer. It serves
// JSON: liveness (/v1/health) and readiness (/v1/ready, which checks the
// dependencies serve hands it), sessions, employees, alerts, quarantine,
// holds, the policy, norms, metrics, and the virtual clock that
// simulations and replays drive.
package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/pprof"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/internal/clock"
	"github.com/pgwarden/pgwarden/internal/crash"
)

// Config configures the admin handler.
type Config struct {
	// Token is the admin secret: presented as is ("Authorization: Bearer
	// <secret>") it is the principal "admin" with scope admin; named tokens
	// are derived from it (IssueToken). Required, at least 16 bytes.
	Token []byte
	// Clock is the virtual clock /v1/clock moves; nil when pgwarden runs
	// on the wall clock.
	Clock *clock.Virtual
	// Now tells the time the proxy uses (the virtual clock's or the wall's).
	Now func() time.Time
	// Norm describes what the norm model learned of an employee; nil when
	// there is no model.
	Norm func(employee string) (any, bool)
	// Snapshot writes all learned state; Restore replaces it. Nil when
	// there is no model.
	Snapshot func(w io.Writer) error
	Restore  func(r io.Reader) error
	// Live sessions: the list, and ending one.
	Sessions    func() any
	KillSession func(id, reason string) bool
	// Quarantine: the list, and releasing an employee (false: was not
	// quarantined).
	Quarantine func() (any, error)
	Release    func(employee string) (bool, error)
	// Holds: the pending ones, and deciding one for by, reached through
	// via ("admin API", "slack"), which returns the held employee
	// (ErrNotFound: no such pending hold). HoldOf describes one pending
	// hold, for the page of a signed hold link (HoldLink); may be nil.
	Holds      func() (any, error)
	DecideHold func(id string, approve bool, by, via, reason string) (employee string, err error)
	HoldOf     func(id string) (HoldSummary, bool)
	// Alerts lists security's queue, newest first, the page f asks for,
	// and how many match in all; Ack acknowledges one (ErrNotFound:
	// unknown).
	Alerts func(f AlertFilter) (page any, total int)
	Ack    func(id, by, note string) error
	// Employees lists the employees pgwarden knows, with their recent
	// figures.
	Employees func() any
	// Timeline is an employee's PII values per hour over the last hours,
	// with their norm (for the dashboard's chart).
	Timeline func(employee string, hours int) any
	// Events searches the audit trail: the page f asks for (oldest first
	// within it, pages counted from the newest) and how many match.
	Events func(f EventFilter) (page any, total int, err error)
	// Policy describes the policy in force; Reload reads its file again.
	Policy func() any
	Reload func() error
	// Metrics serves Prometheus metrics at /metrics (bearer token
	// required, as for every endpoint but health); nil: none.
	Metrics http.Handler
	// Audit records each admin action that changes something, with "by",
	// "via" and "reason" in data (and "employee" when it concerns one);
	// may be nil.
	Audit func(action string, data map[string]any)
	// ClientCerts admits requests whose TLS client certificate the server
	// verified (mTLS, configured on the listener) without a token; the
	// certificate's email address or common name names the principal.
	ClientCerts bool
	// CertScopes maps a certificate's email address or common name (or
	// "*", any other) to its scope; a certificate it does not name gets
	// 403. Empty: every verified certificate has scope admin.
	CertScopes map[string]Scope
	// Pprof serves Go's profiles (net/http/pprof) at /debug/pprof/, token
	// required: where a busy proxy spends its CPU.
	Pprof bool
	// Ready are the dependencies GET /v1/ready checks, each bounded by
	// ReadyTimeout (default DefaultReadyTimeout).
	Ready        []ReadyCheck
	ReadyTimeout time.Duration
	// Logger; slog.Default() when nil.
	Logger *slog.Logger
}

// Handler serves the admin API.
type Handler struct {
	cfg       Config
	token     [sha256.Size]byte
	mux       *http.ServeMux
	readiness *readiness
}

// minTokenLen guards against trivially guessable tokens.
const minTokenLen = 16

// New validates cfg and returns the handler.
func New(cfg Config) (*Handler, error) {
	if len(cfg.Token) < minTokenLen {
		return nil, fmt.Errorf("admin: the token must be at least %d bytes", minTokenLen)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	h := &Handler{cfg: cfg, token: sha256.Sum256(cfg.Token), mux: http.NewServeMux(),
		readiness: &readiness{checks: cfg.Ready, timeout: cfg.ReadyTimeout, log: cfg.Logger, last: map[string]string{}}}
	h.mux.HandleFunc("GET /v1/health", h.health)
	h.mux.HandleFunc("GET /v1/ready", h.ready)
	// The dashboard page and its script and style are public; everything
	// it shows comes from the API with the token the user gives it.
	h.mux.HandleFunc("GET /ui/{$}", h.ui)
	h.mux.HandleFunc("GET /ui/{file}", h.uiFile)
	h.mux.Handle("GET /v1/employees/{name}/timeline", h.auth(ScopeRead, h.timeline))
	h.mux.Handle("GET /v1/audit", h.auth(ScopeRead, h.events))
	if cfg.Metrics != nil {
		h.mux.Handle("GET /metrics", h.auth(ScopeRead, cfg.Metrics.ServeHTTP))
	}
	h.mux.Handle("GET /v1/whoami", h.auth(ScopeRead, h.whoami))
	h.mux.Handle("GET /v1/clock", h.auth(ScopeRead, h.getClock))
	h.mux.Handle("POST /v1/clock", h.auth(ScopeAdmin, h.setClock))
	h.mux.Handle("GET /v1/employees", h.auth(ScopeRead, h.employees))
	h.mux.Handle("GET /v1/employees/{name}/norm", h.auth(ScopeRead, h.norm))
	h.mux.Handle("GET /v1/sessions", h.auth(ScopeRead, h.sessions))
	h.mux.Handle("DELETE /v1/sessions/{id}", h.auth(ScopeAct, h.killSession))
	h.mux.Handle("GET /v1/quarantine", h.auth(ScopeRead, h.quarantine))
	h.mux.Handle("DELETE /v1/quarantine/{employee}", h.auth(ScopeAct, h.release))
	h.mux.Handle("GET /v1/holds", h.auth(ScopeRead, h.holds))
	h.mux.Handle("POST /v1/holds/{id}/{decision}", h.auth(ScopeAct, h.decideHold))
	// A signed hold link (HoldLink) is its own authority: no token.
	h.mux.HandleFunc("GET /v1/holds/{id}/{decision}/link", h.holdLink)
	h.mux.HandleFunc("POST /v1/holds/{id}/{decision}/link", h.decideHoldLink)
	h.mux.Handle("GET /v1/alerts", h.auth(ScopeRead, h.alerts))
	h.mux.Handle("POST /v1/alerts/{id}/ack", h.auth(ScopeAct, h.ack))
	h.mux.Handle("GET /v1/policy", h.auth(ScopeRead, h.policy))
	h.mux.Handle("POST /v1/policy/reload", h.auth(ScopeAdmin, h.reload))
	h.mux.Handle("GET /v1/norms/snapshot", h.auth(ScopeRead, h.snapshot))
	h.mux.Handle("PUT /v1/norms/snapshot", h.auth(ScopeAdmin, h.restore))
	if cfg.Pprof {
		h.mux.Handle("GET /debug/pprof/{name...}", h.auth(ScopeAdmin, profiles))
	}
	return h, nil
}

// profiles serves Go's profiles: /debug/pprof/ lists them, profile is
// the CPU profile (?seconds=N), trace the execution trace.
func profiles(w http.ResponseWriter, r *http.Request) {
	switch r.PathValue("name") {
	case "profile":
		pprof.Profile(w, r)
	case "trace":
		pprof.Trace(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	default:
		pprof.Index(w, r)
	}
}

// ServeHTTP serves one request. A panic in a handler answers 500 and is
// counted and logged with its stack, not left to net/http, which would
// only drop the connection.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			crash.Recovered(h.cfg.Logger, "admin "+r.Method+" "+r.URL.Path, v)
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
	}()
	h.mux.ServeHTTP(w, r)
}

//go:embed ui
var uiFiles embed.FS

// uiCSP allows the dashboard its own files and API only: no inline
// script or style, no other origin.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (h *Handler) ui(w http.ResponseWriter, r *http.Request) {
	h.serveUI(w, "index.html")
}

func (h *Handler) uiFile(w http.ResponseWriter, r *http.Request) {
	h.serveUI(w, r.PathValue("file"))
}

var uiTypes = map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

func (h *Handler) serveUI(w http.ResponseWriter, name string) {
	b, err := uiFiles.ReadFile("ui/" + name)
	typ, ok := uiTypes[path.Ext(name)]
	if err != nil || !ok {
		writeError(w, http.StatusNotFound, "no such file")
		return
	}
	w.Header().Set("Content-Type", typ)
	w.Header().Set("Content-Security-Policy", uiCSP)
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

func (h *Handler) whoami(w http.ResponseWriter, r *http.Request) {
	p := PrincipalOf(r)
	writeJSON(w, http.StatusOK, map[string]any{"name": p.Name, "scope": p.Scope.String(), "via": p.Via})
}

func (h *Handler) employees(w http.ResponseWriter, _ *http.Request) {
	if h.cfg.Employees == nil {
		writeError(w, http.StatusNotFound, "not available")
		return
	}
	writeJSON(w, http.StatusOK, h.cfg.Employees())
}

func (h *Handler) timeline(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Timeline == nil {
		writeError(w, http.StatusNotFound, "not available")
		return
	}
	hours, _ := strconv.Atoi(r.URL.Query().Get("hours"))
	if hours <= 0 {
		hours = 48
	}
	writeJSON(w, http.StatusOK, h.cfg.Timeline(r.PathValue("name"), hours))
}

func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Events == nil {
		writeError(w, http.StatusNotFound, "no audit trail (serve --audit-dir)")
		return
	}
	f, err := parseEventFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ev, total, err := h.cfg.Events(f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(total))
	writeJSON(w, http.StatusOK, ev)
}

func (h *Handler) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

type clockState struct {
	Time    time.Time `json:"time"`
	Virtual bool      `json:"virtual"`
}

func (h *Handler) getClock(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, clockState{Time: h.cfg.Now(), Virtual: h.cfg.Clock != nil})
}

// setClock moves the virtual clock: {"time": "2026-01-05T09:00:00Z"} or
// {"advance": "10m"}.
func (h *Handler) setClock(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Clock == nil {
		writeError(w, http.StatusConflict, "pgwarden runs on the wall clock (start it with --clock virtual)")
		return
	}
	var req struct {
		Time    *time.Time `json:"time"`
		Advance string     `json:"advance"`
		Reason  string     `json:"reason"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	var err error
	switch {
	case req.Time != nil && req.Advance != "":
		writeError(w, http.StatusBadRequest, "give time or advance, not both")
		return
	case req.Time != nil:
		err = h.cfg.Clock.Set(*req.Time)
	case req.Advance != "":
		d, perr := time.ParseDuration(req.Advance)
		if perr != nil {
			writeError(w, http.StatusBadRequest, "advance: "+perr.Error())
			return
		}
		err = h.cfg.Clock.Advance(d)
	default:
		writeError(w, http.StatusBadRequest, "give time or advance")
		return
	}
	if errors.Is(err, clock.ErrBackwards) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	now := h.cfg.Clock.Now()
	h.done(w, r, "clock_set", map[string]any{"time": now, "virtual": true}, req.Reason, "")
}

func (h *Handler) norm(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Norm == nil {
		writeError(w, http.StatusNotFound, "no norm model")
		return
	}
	name := r.PathValue("name")
	n, ok := h.cfg.Norm(name)
	if !ok {
		writeError(w, http.StatusNotFound, "no norm of "+name+": the norm model has seen nothing of them")
		return
	}
	writeJSON(w, http.StatusOK, n)
}

func (h *Handler) snapshot(w http.ResponseWriter, _ *http.Request) {
	if h.cfg.Snapshot == nil {
		writeError(w, http.StatusNotFound, "no norm model")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err := h.cfg.Snapshot(w); err != nil {
		h.cfg.Logger.Error("admin_snapshot_failed", "error", err)
	}
}

// maxSnapshot bounds a restored snapshot.
const maxSnapshot = 1 << 30

func (h *Handler) restore(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Restore == nil {
		writeError(w, http.StatusNotFound, "no norm model")
		return
	}
	if err := h.cfg.Restore(io.LimitReader(r.Body, maxSnapshot)); err != nil {
		writeError(w, http.StatusBadRequest, "restore: "+err.Error())
		return
	}
	h.done(w, r, "norms_restored", map[string]any{"restored": true}, r.URL.Query().Get("reason"), "")
}

// ErrNotFound is what DecideHold returns for a hold that is not pending.
var ErrNotFound = errors.New("not found")

// maxReason bounds the reason given for an action.
const maxReason = 1000

// reasonOf reads why an action is taken: the reason query parameter, or
// a JSON body {"reason": "..."}; required says it may not be empty.
func reasonOf(r *http.Request, required bool) (string, error) {
	reason := r.URL.Query().Get("reason")
	if reason == "" && r.Body != nil {
		body, err := io.ReadAll(io.LimitReader(r.Body, 2*maxReason+64))
		if err != nil {
			return "", fmt.Errorf("body: %w", err)
		}
		if len(bytes.TrimSpace(body)) > 0 {
			var req struct {
				Reason string `json:"reason"`
			}
			if err := json.Unmarshal(body, &req); err != nil {
				return "", fmt.Errorf("body: want {\"reason\": \"...\"}: %w", err)
			}
			reason = req.Reason
		}
	}
	reason = strings.TrimSpace(reason)
	switch {
	case len(reason) > maxReason:
		return "", fmt.Errorf("the reason is longer than %d bytes", maxReason)
	case required && reason == "":
		return "", errors.New("a reason is required (?reason=... or a JSON body {\"reason\": \"...\"}): it goes to the audit trail")
	}
	return reason, nil
}

// done answers a change that was made: the answer says who made it, how
// they were identified, when and why, and so does the admin event in the
// audit trail (about employee, when set).
func (h *Handler) done(w http.ResponseWriter, r *http.Request, action string, answer map[string]any, reason, employee string) {
	if reason != "" {
		answer["reason"] = reason
	}
	h.record(PrincipalOf(r), action, answer, employee)
	writeJSON(w, http.StatusOK, answer)
}

// record adds to answer who made a change, how they were identified and
// when, and records it in the audit trail and the log.
func (h *Handler) record(p Principal, action string, answer map[string]any, employee string) {
	answer["by"], answer["via"], answer["at"] = p.Name, p.Via, h.cfg.Now().UTC()
	if h.cfg.Audit != nil {
		data := map[string]any{"by": p.Name, "via": p.Via, "scope": p.Scope.String()}
		for k, v := range answer {
			if k != "at" {
				data[k] = v
			}
		}
		if employee != "" {
			data["employee"] = employee
		}
		h.cfg.Audit(action, data)
	}
	h.cfg.Logger.Info("admin_action", "action", action, "by", p.Name, "via", p.Via)
}

func (h *Handler) sessions(w http.ResponseWriter, _ *http.Request) {
	if h.cfg.Sessions == nil {
		writeError(w, http.StatusNotFound, "not available")
		return
	}
	writeJSON(w, http.StatusOK, h.cfg.Sessions())
}

func (h *Handler) killSession(w http.ResponseWriter, r *http.Request) {
	if h.cfg.KillSession == nil {
		writeError(w, http.StatusNotFound, "not available")
		return
	}
	id := r.PathValue("id")
	reason, err := reasonOf(r, true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !h.cfg.KillSession(id, reason) {
		writeError(w, http.StatusNotFound, "no session "+id)
		return
	}
	h.done(w, r, "session_killed", map[string]any{"killed": id, "session_id": id}, reason, "")
}

func (h *Handler) quarantine(w http.ResponseWriter, _ *http.Request) {
	if h.cfg.Quarantine == nil {
		writeError(w, http.StatusNotFound, "no state directory: quarantine is off")
		return
	}
	list, err := h.cfg.Quarantine()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (h *Handler) release(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Release == nil {
		writeError(w, http.StatusNotFound, "no state directory: quarantine is off")
		return
	}
	who := r.PathValue("employee")
	reason, err := reasonOf(r, true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ok, err := h.cfg.Release(who)
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	case !ok:
		writeError(w, http.StatusNotFound, who+" is not quarantined")
	default:
		h.done(w, r, "quarantine_released", map[string]any{"released": who}, reason, who)
	}
}

func (h *Handler) holds(w http.ResponseWriter, _ *http.Request) {
	if h.cfg.Holds == nil {
		writeError(w, http.StatusNotFound, "no state directory: holds are off")
		return
	}
	list, err := h.cfg.Holds()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (h *Handler) decideHold(w http.ResponseWriter, r *http.Request) {
	if h.cfg.DecideHold == nil {
		writeError(w, http.StatusNotFound, "no state directory: holds are off")
		return
	}
	id, decision := r.PathValue("id"), r.PathValue("decision")
	if decision != "approve" && decision != "deny" {
		writeError(w, http.StatusNotFound, "want approve or deny")
		return
	}
	reason, err := reasonOf(r, true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	employee, err := h.cfg.DecideHold(id, decision == "approve", PrincipalOf(r).Name, "admin API", reason)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "no pending hold "+id)
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		action := map[string]string{"approve": "hold_approved", "deny": "hold_denied"}[decision]
		h.done(w, r, action, map[string]any{"hold": id, "hold_id": id, "decision": decision}, reason, employee)
	}
}

func (h *Handler) alerts(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Alerts == nil {
		writeError(w, http.StatusNotFound, "not available")
		return
	}
	f, err := parseAlertFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	page, total := h.cfg.Alerts(f)
	w.Header().Set("X-Total-Count", strconv.Itoa(total))
	writeJSON(w, http.StatusOK, page)
}

func (h *Handler) ack(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Ack == nil {
		writeError(w, http.StatusNotFound, "not available")
		return
	}
	id := r.PathValue("id")
	note, err := reasonOf(r, false)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	by := PrincipalOf(r).Name
	err = h.cfg.Ack(id, by, note)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "no alert "+id)
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		h.done(w, r, "alert_acknowledged", map[string]any{"acknowledged": id, "alert_id": id}, note, "")
	}
}

func (h *Handler) policy(w http.ResponseWriter, _ *http.Request) {
	if h.cfg.Policy == nil {
		writeError(w, http.StatusNotFound, "not available")
		return
	}
	writeJSON(w, http.StatusOK, h.cfg.Policy())
}

func (h *Handler) reload(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Reload == nil {
		writeError(w, http.StatusConflict, "the built-in policy is in force (no --policy file to reload)")
		return
	}
	reason, err := reasonOf(r, false)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := h.cfg.Reload(); err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	answer := map[string]any{"reloaded": true}
	if h.cfg.Policy != nil {
		if m, ok := h.cfg.Policy().(map[string]any); ok {
			maps.Copy(answer, m)
		}
	}
	h.done(w, r, "policy_reloaded", answer, reason, "")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
