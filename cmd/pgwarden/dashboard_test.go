package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/admin"
	"github.com/pgwarden/pgwarden/state/holds"
	"github.com/pgwarden/pgwarden/state/quarantine"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

// browser returns Debian's chromium, or skips the test; CI sets
// PGWARDEN_REQUIRE_BROWSER so that a missing browser fails it there.
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PGWARDEN_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium installed (apt-get install chromium)")
	}
	t.Skip("no chromium installed")
	return ""
}

// dashboardAlert is what the test reads of GET /v1/alerts.
type dashboardAlert struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Rule      string    `json:"rule"`
	AuditSeqs []uint64  `json:"audit_seqs"`
	AckedBy   string    `json:"acked_by"`
	AckNote   string    `json:"ack_note"`
}

// TestDashboardInBrowser drives the dashboard in headless Chromium, as a
// security analyst with a named token of scope act, after a known
// workload: the sessions table names the employee and how they were
// identified; alerts are filtered and paged; an old alert's trail holds
// its own audit events; kill, release, approve and deny ask for
// confirmation and a reason, and the audit trail names the analyst; times
// are local with the zone shown. A screenshot of each view is saved in
// the test's temp dir (PGWARDEN_KEEP_SCREENSHOTS=DIR keeps them there).
func TestDashboardInBrowser(t *testing.T) {
	chromium := browser(t)
	c := pgtest.Shared(t)
	dir := t.TempDir()
	shots := dir
	if p := os.Getenv("PGWARDEN_KEEP_SCREENSHOTS"); p != "" {
		shots = p
	}
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(`version: 1
norms:
  learning_days: 1
rules:
  - {name: big-read, when: {pii_values: 40}, action: alert}
  - {name: many-rows, when: {rows: 100}, action: alert}
`), 0o600)
	state := filepath.Join(dir, "state")
	users := filepath.Join(dir, "users.json")
	if code, _, errOut := runWithStdin(t, "erin-pw-7\n", nil, "users", "add", "erin", "--role", pgtest.ScramUser, "--users-file", users); code != 0 {
		t.Fatalf("users add: %d %s", code, errOut)
	}
	listen, adminAddr := freeAddr(t), freeAddr(t)
	const secret = "test-admin-token-0123456789"
	cmd, stderr := startBinary(t, []string{"PGWARDEN_ADMIN_TOKEN=" + secret, "PGWARDEN_AUDIT_KEY=" + strings.Repeat("ef", 32),
		"PGWARDEN_ROLE_PASSWORD_PGW_SCRAM=" + pgtest.Password},
		"serve", "--listen", listen, "--upstream", "postgres://"+c.Addr(), "--policy", pol, "--admin-listen", adminAddr,
		"--clock", "virtual", "--clock-start", "2026-03-02T08:00:00Z", "--state-dir", state,
		"--audit-dir", filepath.Join(dir, "audit"), "--login", "--users-file", users, "--login-relay", "*/"+pgtest.TrustUser)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	api := func(method, path string, out any) http.Header {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
		}
		return resp.Header
	}
	advance := func(d string) {
		req, _ := http.NewRequest("POST", "http://"+adminAddr+"/v1/clock", strings.NewReader(`{"advance":"`+d+`"}`))
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	conn := connectThrough(t, ctx, c, listen, stderr)
	defer conn.Close(ctx)
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	// Two days of work, a few lookups an hour; a big read; more than 50
	// statements after it (so that its events are not among the
	// employee's last 50); five more big reads and a wide one.
	for h := 0; h < 36; h++ {
		for k := 0; k < 1+h%3; k++ {
			exec(fmt.Sprintf("SELECT 'd%d_%d@example.com'", h, k))
		}
		advance("1h")
	}
	exec("SELECT 'big' || i || '@example.com' FROM generate_series(1, 60) i")
	for i := range 60 {
		exec(fmt.Sprintf("SELECT %d", i))
	}
	advance("10m")
	for i := range 5 {
		exec(fmt.Sprintf("SELECT 'more%d_' || i || '@example.com' FROM generate_series(1, 50) i", i))
		advance("1m")
	}
	exec("SELECT i FROM generate_series(1, 150) i")
	advance("5m")
	var alerts []dashboardAlert
	api("GET", "/v1/alerts?limit=100", &alerts)
	rules := map[string]int{}
	for _, a := range alerts {
		rules[a.Rule]++
	}
	if rules["big-read"] != 6 || rules["many-rows"] != 1 || len(alerts) < 8 || len(alerts) > 25 {
		t.Fatalf("%d alerts after the workload, want 6 big-read, 1 many-rows and a few norm alerts: %+v", len(alerts), alerts)
	}
	total := len(alerts)
	oldest := alerts[len(alerts)-1]
	if oldest.Rule != "big-read" || len(oldest.AuditSeqs) == 0 {
		t.Fatalf("the oldest alert: %+v", oldest)
	}
	var last50 []struct{ Seq uint64 }
	api("GET", "/v1/audit?employee="+pgtest.TrustUser+"&limit=50", &last50)
	if len(last50) == 0 || last50[0].Seq <= slices.Max(oldest.AuditSeqs) {
		t.Fatalf("the oldest alert's events (%v) are among the employee's last 50 (from %v)", oldest.AuditSeqs, last50)
	}

	// erin logs in to pgwarden itself and works as the role pgw_scram.
	erin, err := pgx.Connect(ctx, fmt.Sprintf("postgres://erin:erin-pw-7@%s/%s?sslmode=disable", listen, c.Database))
	if err != nil {
		t.Fatalf("erin: %v", err)
	}
	defer erin.Close(ctx)
	q, err := quarantine.Open(filepath.Join(state, "quarantine.json"))
	if err != nil {
		t.Fatal(err)
	}
	q.Add(quarantine.Entry{Employee: "mallory", Since: time.Now(), Rule: "dump", Reason: "2000 emails"})
	reg, err := holds.Open(filepath.Join(state, "holds"))
	if err != nil {
		t.Fatal(err)
	}
	outcome := map[string]chan bool{"h-approve": make(chan bool, 1), "h-deny": make(chan bool, 1)}
	for id, ch := range outcome {
		go func() {
			h, _ := reg.Request(ctx, holds.Hold{ID: id, Employee: "erin", Rule: "big-export", Reason: "5000 emails",
				Statement: "SELECT email FROM customers", Since: time.Now(), Deadline: time.Now().Add(time.Hour)})
			ch <- h.Status == holds.Approved
		}()
	}

	analyst, err := admin.IssueToken([]byte(secret), admin.Claims{Name: "dana", Scope: admin.ScopeAct, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	d := startDevtools(t, ctx, chromium, dir, 1400, 1000, "America/New_York")
	d.call("Page.navigate", map[string]any{"url": fmt.Sprintf("http://%s/ui/#token=%s&employee=%s", adminAddr, analyst, pgtest.TrustUser)})
	d.waitFor("the first load", `document.body.dataset.ready === "1" && document.querySelectorAll("tr.hold").length === 2 && document.querySelectorAll("tr.session").length === 2`)
	if got := d.text("#whoami"); len(got) != 1 || !strings.Contains(got[0], "dana") {
		t.Errorf("header names %q, want dana", got)
	}
	shot := func(name, selector string) { d.screenshot(selector, filepath.Join(shots, "dashboard-"+name+".png")) }
	shot("page", "")

	// Sessions: the employee, not the role, and how they were identified.
	employees, how, roles := d.text("tr.session td.employee"), d.text("tr.session td.identified-by"), d.text("tr.session td.role")
	if i := slices.Index(employees, "erin"); i < 0 || how[i] != "pgwarden login" || roles[i] != pgtest.ScramUser {
		t.Errorf("sessions table: employees %q, identified by %q, roles %q; want erin by pgwarden login as %s", employees, how, roles, pgtest.ScramUser)
	}
	if slices.Contains(employees, pgtest.ScramUser) {
		t.Errorf("the sessions table names the role %s as an employee", pgtest.ScramUser)
	}
	shot("sessions", "#sessions-view")

	// Times: local, with the zone.
	ny, _ := time.LoadLocation("America/New_York")
	if zone := d.text("#zone"); len(zone) != 1 || !strings.Contains(zone[0], "America/New_York") {
		t.Errorf("zone shown: %q", zone)
	}
	wantTime := alerts[0].Time.In(ny).Format("2006-01-02 15:04:05")
	if times := d.text("tr.alert td.time"); len(times) == 0 || !strings.HasPrefix(times[0], wantTime) ||
		!(strings.HasSuffix(times[0], "EST") || strings.HasSuffix(times[0], "GMT-5")) {
		t.Errorf("the newest alert's time reads %q, want %s EST", times, wantTime)
	}

	// Alerts: filters and paging.
	submit := func(form string, fields map[string]string) {
		t.Helper()
		var js strings.Builder
		for k, v := range fields {
			fmt.Fprintf(&js, "document.querySelector('#%s [name=%s]').value = %q;", form, k, v)
		}
		fmt.Fprintf(&js, "document.getElementById(%q).requestSubmit()", form)
		d.eval(js.String())
	}
	submit("alert-filters", map[string]string{"limit": "5"})
	d.waitFor("a page of 5 alerts", fmt.Sprintf(`document.querySelectorAll("tr.alert").length === 5 && document.querySelector("#alerts-pager .range").textContent.startsWith("1–5 of %d")`, total))
	shot("alerts", "#alerts-view")
	d.eval(`document.querySelector('#alerts-pager [data-step="1"]').click()`)
	d.waitFor("the second page", fmt.Sprintf(`document.querySelector("#alerts-pager .range").textContent.startsWith("6–%d of %d")`, min(10, total), total))
	if got := d.text("tr.alert"); len(got) != min(5, total-5) || !strings.Contains(got[0], alerts[5].Rule) {
		t.Errorf("the second page: %q, want from the 6th alert %s", got, alerts[5].Rule)
	}
	submit("alert-filters", map[string]string{"rule": "many-rows"})
	d.waitFor("the many-rows alert alone", `document.querySelectorAll("tr.alert").length === 1 && document.querySelector("tr.alert td.rule").textContent === "many-rows"`)
	submit("alert-filters", map[string]string{"rule": "", "employee": "erin"})
	d.waitFor("no alert of erin", `document.querySelectorAll("tr.alert").length === 0 && document.querySelector("#alerts td.empty")`)
	submit("alert-filters", map[string]string{"employee": pgtest.TrustUser, "action": "alert",
		"since": alerts[1].Time.In(ny).Format("2006-01-02T15:04:05"), "until": alerts[0].Time.Add(time.Second).In(ny).Format("2006-01-02T15:04:05")})
	d.waitFor("the two newest alerts in a time range", `document.querySelectorAll("tr.alert").length === 2 && document.querySelector("#alerts-pager .range").textContent.startsWith("1–2 of 2")`)
	submit("alert-filters", map[string]string{"employee": "", "action": "", "since": "", "until": "", "limit": "25"})
	d.waitFor("every alert", fmt.Sprintf(`document.querySelectorAll("tr.alert").length === %d`, total))

	// An old alert's trail is its own audit events.
	d.eval(fmt.Sprintf(`document.querySelector('[data-trail=%q]').click()`, oldest.ID))
	d.waitFor("the oldest alert's trail", `document.querySelectorAll("tr.event").length > 0 && document.getElementById("trail-caption").textContent.includes("big-read")`)
	var shown []uint64
	for _, s := range d.text("tr.event td:first-child") {
		var n uint64
		fmt.Sscan(s, &n)
		shown = append(shown, n)
	}
	want := slices.Clone(oldest.AuditSeqs)
	slices.Sort(want)
	slices.Sort(shown)
	if !slices.Equal(shown, want) {
		t.Errorf("the alert's trail shows events %v, want its audit_seqs %v", shown, want)
	}
	shot("alert-trail", "#trail-view")

	// Acknowledge, with a note.
	confirm := func(reason string) {
		t.Helper()
		d.waitFor("the confirmation dialog", `document.getElementById("confirm").open`)
		d.eval(fmt.Sprintf(`document.getElementById("confirm-reason").value = %q; document.getElementById("confirm-ok").click()`, reason))
	}
	d.eval(fmt.Sprintf(`document.querySelector('[data-ack=%q]').click()`, alerts[0].ID))
	confirm("looked at it with the team lead")
	d.waitFor("the acknowledged alert leaving the queue", fmt.Sprintf(`document.querySelectorAll("tr.alert").length === %d`, total-1))

	// Kill: a confirmation that insists on a reason.
	d.eval(`document.querySelector('[data-kill][data-who="erin"]').click()`)
	d.waitFor("the kill dialog", `document.getElementById("confirm").open`)
	d.eval(`document.getElementById("confirm-ok").click()`)
	d.waitFor("the dialog refusing a blank reason", `document.getElementById("confirm").open && document.getElementById("confirm-error").textContent !== ""`)
	shot("confirm-kill", "#confirm")
	confirm("credential reported stolen")
	d.waitFor("erin's session gone", `document.querySelectorAll("tr.session").length === 1`)
	if _, err := erin.Exec(ctx, "SELECT 1"); err == nil || !strings.Contains(err.Error(), "credential reported stolen") {
		t.Errorf("erin's killed session: %v", err)
	}

	// Release: cancelled once, then confirmed.
	shot("quarantine", "#quarantine-view")
	d.eval(`document.querySelector('[data-release="mallory"]').click()`)
	d.waitFor("the release dialog", `document.getElementById("confirm").open`)
	d.eval(`document.getElementById("confirm-cancel").click()`)
	d.waitFor("the dialog closed", `!document.getElementById("confirm").open`)
	if _, ok := q.Get("mallory"); !ok {
		t.Fatal("a cancelled release released mallory")
	}
	d.eval(`document.querySelector('[data-release="mallory"]').click()`)
	confirm("cleared by HR")
	d.waitFor("mallory released", `document.querySelectorAll("tr.quarantined").length === 0`)

	// Holds: approve one, deny the other.
	shot("holds", "#holds-view")
	d.eval(`document.querySelector('[data-approve="h-approve"]').click()`)
	confirm("ticket DATA-311")
	d.eval(`document.querySelector('[data-deny="h-deny"]').click()`)
	confirm("no ticket")
	for id, want := range map[string]bool{"h-approve": true, "h-deny": false} {
		select {
		case got := <-outcome[id]:
			if got != want {
				t.Errorf("hold %s: approved %v, want %v", id, got, want)
			}
		case <-ctx.Done():
			t.Fatalf("hold %s never decided", id)
		}
	}
	d.waitFor("no hold left", `document.querySelectorAll("tr.hold").length === 0`)

	// The trail: filtered to the analyst's actions, each named and
	// explained; then paged.
	for action, reason := range map[string]string{"alert_acknowledged": "looked at it with the team lead", "session_killed": "credential reported stolen",
		"quarantine_released": "cleared by HR", "hold_approved": "ticket DATA-311", "hold_denied": "no ticket"} {
		submit("trail-filters", map[string]string{"type": "admin", "action": action})
		d.waitFor("the "+action+" event", fmt.Sprintf(`document.querySelectorAll("tr.event").length === 1 && document.querySelector("tr.event").textContent.includes(%q)`, `"action":"`+action+`"`))
		if ev := d.text("tr.event"); len(ev) != 1 || !strings.Contains(ev[0], `"by":"dana"`) || !strings.Contains(ev[0], `"reason":"`+reason+`"`) {
			t.Errorf("the %s event does not name dana and %q: %q", action, reason, ev)
		}
	}
	submit("trail-filters", map[string]string{"type": "statement", "action": "", "limit": "10"})
	d.waitFor("a page of statements", `document.querySelectorAll("tr.event").length === 10 && document.querySelector("#audit-pager .range").textContent.startsWith("1–10 of ")`)
	first := d.text("tr.event td:first-child")
	d.eval(`document.querySelector('#audit-pager [data-step="1"]').click()`)
	d.waitFor("the older page", `document.querySelector("#audit-pager .range").textContent.startsWith("11–20 of ")`)
	if older := d.text("tr.event td:first-child"); len(older) != 10 || older[0] == first[0] {
		t.Errorf("the older page of the trail: %q after %q", older, first)
	}
	shot("trail", "#trail-view")

	// The chart, drawn with data: the series (#1f77b4) climbs.
	chart := filepath.Join(shots, "dashboard-timeline.png")
	d.waitFor("the chart's caption", fmt.Sprintf(`document.getElementById("normtext").textContent.startsWith(%q)`, pgtest.TrustUser+": "))
	d.screenshot("#timeline-view", chart)
	b, err := os.ReadFile(chart)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r>>8, 31) && near(g>>8, 119) && near(bl>>8, 180) {
				rows++
				break
			}
		}
	}
	if rows < 60 {
		t.Errorf("the chart's series spans %d pixel rows in the screenshot; want it drawn with data", rows)
	}
	if e := d.text("#error"); len(e) != 1 || e[0] != "" {
		t.Errorf("the dashboard shows an error: %q", e)
	}
}

func near(v uint32, want int) bool {
	d := int(v) - want
	return d > -12 && d < 12
}
