// Package admin is pgwarden's HTTP control interface: off by default,
// loopback by default when on, every request but the health check
// authenticated with a bearer token compared in constant time. It serves
// JSON: liveness (/v1/health) and readiness (/v1/ready, which checks the
// dependencies serve hands it), sessions, employees, alerts, quarantine,
// holds, the policy, norms, metrics, and the virtual clock that
// simulations and replays drive.
package admin

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/internal/clock"
	"github.com/pgwarden/pgwarden/internal/crash"
)

// Config configures the admin handler.
type Config struct {
	// Token authenticates requests ("Authorization: Bearer <token>");
	// required, at least 16 bytes.
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
	// Holds: the pending ones, and deciding one (ErrNotFound: no such
	// pending hold).
	Holds      func() (any, error)
	DecideHold func(id string, approve bool, by string) error
	// Alerts lists security's queue (employee, unacknowledged only, at
	// most limit); Ack acknowledges one (ErrNotFound: unknown).
	Alerts func(employee string, unacked bool, limit int) any
	Ack    func(id, by string) error
	// Employees lists the employees pgwarden knows, with their recent
	// figures.
	Employees func() any
	// Timeline is an employee's PII values per hour over the last hours,
	// with their norm (for the dashboard's chart).
	Timeline func(employee string, hours int) any
	// Events searches the audit trail: newest last, of employee and type
	// when set, at most limit.
	Events func(employee, typ string, limit int) (any, error)
	// Policy describes the policy in force; Reload reads its file again.
	Policy func() any
	Reload func() error
	// Metrics serves Prometheus metrics at /metrics (bearer token
	// required, as for every endpoint but health); nil: none.
	Metrics http.Handler
	// Audit records each admin action that changes something; may be nil.
	Audit func(action string, data map[string]any)
	// ClientCerts admits requests whose TLS client certificate the server
	// verified (mTLS, configured on the listener) without a token.
	ClientCerts bool
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
	// The dashboard page itself is public; everything it shows comes from
	// the API with the token the user gives it.
	h.mux.HandleFunc("GET /ui/{$}", h.ui)
	h.mux.Handle("GET /v1/employees/{name}/timeline", h.auth(h.timeline))
	h.mux.Handle("GET /v1/audit", h.auth(h.events))
	if cfg.Metrics != nil {
		h.mux.Handle("GET /metrics", h.auth(cfg.Metrics.ServeHTTP))
	}
	h.mux.Handle("GET /v1/clock", h.auth(h.getClock))
	h.mux.Handle("POST /v1/clock", h.auth(h.setClock))
	h.mux.Handle("GET /v1/employees", h.auth(h.employees))
	h.mux.Handle("GET /v1/employees/{name}/norm", h.auth(h.norm))
	h.mux.Handle("GET /v1/sessions", h.auth(h.sessions))
	h.mux.Handle("DELETE /v1/sessions/{id}", h.auth(h.killSession))
	h.mux.Handle("GET /v1/quarantine", h.auth(h.quarantine))
	h.mux.Handle("DELETE /v1/quarantine/{employee}", h.auth(h.release))
	h.mux.Handle("GET /v1/holds", h.auth(h.holds))
	h.mux.Handle("POST /v1/holds/{id}/{decision}", h.auth(h.decideHold))
	h.mux.Handle("GET /v1/alerts", h.auth(h.alerts))
	h.mux.Handle("POST /v1/alerts/{id}/ack", h.auth(h.ack))
	h.mux.Handle("GET /v1/policy", h.auth(h.policy))
	h.mux.Handle("POST /v1/policy/reload", h.auth(h.reload))
	h.mux.Handle("GET /v1/norms/snapshot", h.auth(h.snapshot))
	h.mux.Handle("PUT /v1/norms/snapshot", h.auth(h.restore))
	if cfg.Pprof {
		h.mux.Handle("GET /debug/pprof/{name...}", h.auth(profiles))
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

// auth admits requests carrying the token, or a token derived from it
// that has not expired (IssueToken). Comparisons are constant-time: the
// static token through hashes of equal length, derived ones through
// hmac.Equal.
func (h *Handler) auth(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.cfg.ClientCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			next(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		why := "missing or wrong bearer token"
		if ok {
			switch err := h.check(got); {
			case err == nil:
				next(w, r)
				return
			case errors.Is(err, errExpired):
				why = "the bearer token has expired"
			}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="pgwarden"`)
		writeError(w, http.StatusUnauthorized, why)
		h.cfg.Logger.Warn("admin_unauthorized", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "why", why)
	})
}

var errExpired = errors.New("admin: token expired")

// tokenPrefix marks a derived token: pgw1.<unix expiry>.<hex HMAC>.
const tokenPrefix = "pgw1."

// check verifies a presented token.
func (h *Handler) check(tok string) error {
	if rest, ok := strings.CutPrefix(tok, tokenPrefix); ok {
		exp, mac, ok := strings.Cut(rest, ".")
		want := tokenMAC(h.cfg.Token, exp)
		got, err := hex.DecodeString(mac)
		if !ok || err != nil || !hmac.Equal(got, want) {
			return errors.New("admin: bad token")
		}
		unix, err := strconv.ParseInt(exp, 10, 64)
		if err != nil {
			return errors.New("admin: bad token")
		}
		if !time.Now().Before(time.Unix(unix, 0)) {
			return errExpired
		}
		return nil
	}
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], h.token[:]) != 1 {
		return errors.New("admin: bad token")
	}
	return nil
}

func tokenMAC(secret []byte, exp string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tokenPrefix + exp))
	return m.Sum(nil)
}

// IssueToken derives from the admin secret a token valid until expires,
// for a person or a tool that should not hold the secret itself.
func IssueToken(secret []byte, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return tokenPrefix + exp + "." + hex.EncodeToString(tokenMAC(secret, exp))
}

//go:embed ui/index.html
var dashboard []byte

func (h *Handler) ui(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Write(dashboard)
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
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	ev, err := h.cfg.Events(q.Get("employee"), q.Get("type"), limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
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
	if h.cfg.Audit != nil {
		h.cfg.Audit("clock_set", map[string]any{"time": now})
	}
	writeJSON(w, http.StatusOK, clockState{Time: now, Virtual: true})
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
	if h.cfg.Audit != nil {
		h.cfg.Audit("norms_restored", map[string]any{})
	}
	writeJSON(w, http.StatusOK, map[string]any{"restored": true})
}

// ErrNotFound is what DecideHold returns for a hold that is not pending.
var ErrNotFound = errors.New("not found")

func (h *Handler) audit(action string, data map[string]any) {
	if h.cfg.Audit != nil {
		h.cfg.Audit(action, data)
	}
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
	id, reason := r.PathValue("id"), r.URL.Query().Get("reason")
	if !h.cfg.KillSession(id, reason) {
		writeError(w, http.StatusNotFound, "no session "+id)
		return
	}
	h.audit("session_killed", map[string]any{"session_id": id, "reason": reason})
	writeJSON(w, http.StatusOK, map[string]any{"killed": id})
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
	ok, err := h.cfg.Release(who)
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	case !ok:
		writeError(w, http.StatusNotFound, who+" is not quarantined")
	default:
		h.audit("quarantine_released", map[string]any{"employee": who})
		writeJSON(w, http.StatusOK, map[string]any{"released": who})
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
	err := h.cfg.DecideHold(id, decision == "approve", "admin-api")
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "no pending hold "+id)
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		h.audit("hold_"+decision+"d", map[string]any{"hold_id": id})
		writeJSON(w, http.StatusOK, map[string]any{"hold": id, "decision": decision})
	}
}

func (h *Handler) alerts(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Alerts == nil {
		writeError(w, http.StatusNotFound, "not available")
		return
	}
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	writeJSON(w, http.StatusOK, h.cfg.Alerts(q.Get("employee"), q.Get("unacked") == "1" || q.Get("unacked") == "true", limit))
}

func (h *Handler) ack(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Ack == nil {
		writeError(w, http.StatusNotFound, "not available")
		return
	}
	id := r.PathValue("id")
	by := r.URL.Query().Get("by")
	if by == "" {
		by = "admin-api"
	}
	err := h.cfg.Ack(id, by)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "no alert "+id)
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		h.audit("alert_acknowledged", map[string]any{"alert_id": id, "by": by})
		writeJSON(w, http.StatusOK, map[string]any{"acknowledged": id})
	}
}

func (h *Handler) policy(w http.ResponseWriter, _ *http.Request) {
	if h.cfg.Policy == nil {
		writeError(w, http.StatusNotFound, "not available")
		return
	}
	writeJSON(w, http.StatusOK, h.cfg.Policy())
}

func (h *Handler) reload(w http.ResponseWriter, _ *http.Request) {
	if h.cfg.Reload == nil {
		writeError(w, http.StatusConflict, "the built-in policy is in force (no --policy file to reload)")
		return
	}
	if err := h.cfg.Reload(); err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	h.audit("policy_reloaded", map[string]any{})
	writeJSON(w, http.StatusOK, h.cfg.Policy())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
