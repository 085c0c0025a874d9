"use strict";
// pgwarden's dashboard. Everything it shows comes from the admin API with
// the token given in the URL fragment (never sent to the server) or asked
// for once and kept for this tab only. Served with a CSP that allows no
// inline script: every handler is attached here.

const params = new URLSearchParams(location.hash.slice(1));
let token = params.get("token") || sessionStorage.getItem("pgwarden-token");
if (!token) { token = prompt("pgwarden admin token"); }
if (token) { sessionStorage.setItem("pgwarden-token", token); }

const $ = id => document.getElementById(id);
const state = {alertOffset: 0, auditOffset: 0, trailSeqs: null, trailAlert: null, alerts: new Map()};

async function api(method, path, body) {
  const init = {method, headers: {"Authorization": "Bearer " + token}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const data = await r.json().catch(() => null);
  if (!r.ok) { throw new Error((data && data.error) || String(r.status)); }
  const total = r.headers.get("X-Total-Count");
  return {data, total: total === null ? null : Number(total)};
}

function esc(s) { return String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c])); }
function fail(e) { $("error").textContent = String(e && e.message || e); }
function clearError() { $("error").textContent = ""; }

// Times are shown in the browser's time zone, with the zone's name.
const zoneName = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
const zoneFmt = new Intl.DateTimeFormat(undefined, {timeZoneName: "short"});
function zoneAbbr(d) {
  const p = zoneFmt.formatToParts(d).find(x => x.type === "timeZoneName");
  return p ? p.value : "";
}
const pad = n => String(n).padStart(2, "0");
function fmt(t) {
  if (!t) { return ""; }
  const d = new Date(t);
  if (isNaN(d)) { return ""; }
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zoneAbbr(d)}`;
}
function timeCell(t) { return `<td class="time" data-utc="${esc(t)}">${esc(fmt(t))}</td>`; }

function fill(id, head, rows, render) {
  const t = $(id);
  if (!rows || rows.length === 0) { t.innerHTML = '<tr><td class="empty">none</td></tr>'; return; }
  t.innerHTML = "<tr>" + head.map(h => "<th>" + esc(h) + "</th>").join("") + "</tr>" + rows.map(render).join("");
}

// query turns a filter form into API parameters: empty fields are left
// out, datetime-local values (local time) become RFC 3339.
function query(form) {
  const q = new URLSearchParams();
  for (const el of form.elements) {
    if (!el.name) { continue; }
    if (el.type === "checkbox") { if (el.checked) { q.set(el.name, "1"); } continue; }
    if (!el.value) { continue; }
    q.set(el.name, el.type === "datetime-local" ? new Date(el.value).toISOString() : el.value.trim());
  }
  return q;
}

function pager(id, offset, limit, shown, total, what) {
  const el = $(id);
  if (total === null) { el.textContent = ""; return; }
  const from = total === 0 ? 0 : offset + 1;
  el.innerHTML = `<span class="range">${from}–${offset + shown} of ${total} ${esc(what)}</span>` +
    `<button type="button" data-page="${esc(id)}" data-step="-1"${offset === 0 ? " disabled" : ""}>newer</button>` +
    `<button type="button" data-page="${esc(id)}" data-step="1"${offset + shown >= total ? " disabled" : ""}>older</button>`;
}

async function loadAlerts() {
  const form = $("alert-filters");
  const q = query(form);
  const limit = Number(form.elements.limit.value);
  q.set("offset", String(state.alertOffset));
  const {data, total} = await api("GET", "/v1/alerts?" + q);
  state.alerts = new Map((data || []).map(a => [a.id, a]));
  fill("alerts", ["time", "employee", "action", "rule", "what", "acknowledged", ""], data, a =>
    `<tr class="alert" data-id="${esc(a.id)}">${timeCell(a.time)}<td><a href="#" data-emp="${esc(a.employee)}">${esc(a.employee)}</a></td>` +
    `<td class="action sev-${esc(a.severity)}">${esc(a.action)}</td><td class="rule">${esc(a.rule)}</td><td>${esc(a.reason)}</td>` +
    `<td>${a.acked_by ? esc(a.acked_by) + (a.ack_note ? ": " + esc(a.ack_note) : "") : ""}</td>` +
    `<td>${a.acked_by ? "" : `<button type="button" data-ack="${esc(a.id)}">acknowledge</button> `}` +
    `<button type="button" data-trail="${esc(a.id)}">trail</button></td></tr>`);
  pager("alerts-pager", state.alertOffset, limit, (data || []).length, total, "alerts");
}

async function loadHolds() {
  let list = [];
  try { list = (await api("GET", "/v1/holds")).data || []; } catch (e) { list = []; }
  fill("holds", ["employee", "rule", "why held", "employee's justification", "statement", "since", "decide by", ""], list, h =>
    `<tr class="hold" data-id="${esc(h.id)}"><td>${esc(h.employee)}</td><td>${esc(h.rule)}</td><td>${esc(h.reason)}</td>` +
    `<td class="justification">${h.justification ? esc(h.justification) : '<span class="empty">none given</span>'}</td>` +
    `<td class="statement">${esc(h.statement)}</td>${timeCell(h.since)}${timeCell(h.deadline)}` +
    `<td><button type="button" data-approve="${esc(h.id)}">approve</button> <button type="button" class="danger" data-deny="${esc(h.id)}">deny</button></td></tr>`);
}

const identifiedBy = {role: "database role", certificate: "client certificate", login: "pgwarden login", tag: "signed application tag", oidc: "identity provider"};

async function loadSessions() {
  const list = (await api("GET", "/v1/sessions")).data;
  fill("sessions", ["employee", "identified by", "database role", "application", "client", "since", ""], list, x =>
    `<tr class="session" data-id="${esc(x.id)}"><td class="employee">${esc(x.employee || x.user)}</td>` +
    `<td class="identified-by" title="${esc([x.issuer, x.subject, (x.groups || []).join(",")].filter(Boolean).join(" "))}">${esc(identifiedBy[x.identified_by] || x.identified_by || "database role")}</td>` +
    `<td class="role">${esc(x.user)}</td><td>${esc(x.application_name)}</td><td>${esc(x.client_addr)}</td>${timeCell(x.started_at)}` +
    `<td><button type="button" class="danger" data-kill="${esc(x.id)}" data-who="${esc(x.employee || x.user)}">kill</button></td></tr>`);
}

async function loadQuarantine() {
  let q = [];
  try { q = (await api("GET", "/v1/quarantine")).data || []; } catch (e) { q = []; }
  fill("quarantine", ["employee", "since", "rule", "why", ""], q, x =>
    `<tr class="quarantined" data-employee="${esc(x.employee)}"><td>${esc(x.employee)}</td>${timeCell(x.since)}<td>${esc(x.rule)}</td><td>${esc(x.reason)}</td>` +
    `<td><button type="button" data-release="${esc(x.employee)}">release</button></td></tr>`);
}

async function loadTrail() {
  const form = $("trail-filters");
  const limit = Number(form.elements.limit.value);
  let q;
  if (state.trailSeqs) {
    q = new URLSearchParams({seq: state.trailSeqs.join(",")});
  } else {
    q = query(form);
    q.set("offset", String(state.auditOffset));
  }
  let res;
  try { res = await api("GET", "/v1/audit?" + q); } catch (e) { fill("audit", [], []); throw e; }
  const ev = res.data || [];
  fill("audit", ["seq", "time", "type", "employee", "session", "data"], ev, e =>
    `<tr class="event${state.trailSeqs ? " linked" : ""}" data-seq="${e.seq}"><td>${e.seq}</td>${timeCell(e.time)}<td>${esc(e.type)}</td>` +
    `<td>${esc(e.employee)}</td><td>${esc(e.session_id)}</td><td><code>${esc(JSON.stringify(e.data))}</code></td></tr>`);
  if (state.trailSeqs) {
    const a = state.trailAlert;
    $("trail-caption").innerHTML = `of the alert ${esc(a.rule)} on ${esc(a.employee)} at ${esc(fmt(a.time))}: its ${ev.length} events ` +
      `<button type="button" id="trail-all">whole trail</button>`;
    $("audit-pager").textContent = "";
  } else {
    $("trail-caption").textContent = "";
    pager("audit-pager", state.auditOffset, limit, ev.length, res.total, "events");
  }
}

async function showAlertTrail(id) {
  const a = state.alerts.get(id);
  if (!a) { return; }
  state.trailAlert = a;
  state.trailSeqs = (a.audit_seqs || []).slice();
  if (state.trailSeqs.length === 0) { throw new Error("this alert names no audit event"); }
  await loadTrail();
  $("trail-view").scrollIntoView();
}

async function showEmployee(emp) {
  if (!emp) { return; }
  $("employee").value = emp;
  const tl = (await api("GET", "/v1/employees/" + encodeURIComponent(emp) + "/timeline?hours=48")).data;
  draw(tl.points, tl.norm);
  const total = tl.points.reduce((n, p) => n + p.pii_values, 0);
  $("normtext").textContent = tl.norm ?
    `${emp}: ${total} PII values in 48 hours; usual hourly maximum ${Math.round(tl.norm.median)}, alert threshold ${Math.round(tl.norm.high)}` :
    `${emp}: ${total} PII values in 48 hours; no norm learned yet`;
}

function draw(points, norm) {
  const c = $("chart"), g = c.getContext("2d");
  const W = c.width, H = c.height, L = 50, B = 24;
  g.clearRect(0, 0, W, H);
  const peak = Math.max(1, ...points.map(p => p.pii_values), norm ? norm.high : 0);
  const x = i => L + (W - L - 10) * i / Math.max(1, points.length - 1);
  const y = v => (H - B) - (H - B - 10) * v / peak;
  g.strokeStyle = "#ccc"; g.lineWidth = 1; g.beginPath(); g.moveTo(L, 5); g.lineTo(L, H - B); g.lineTo(W - 5, H - B); g.stroke();
  g.fillStyle = "#555"; g.font = "12px sans-serif";
  g.fillText(String(Math.round(peak)), 4, 14); g.fillText("0", 30, H - B);
  points.forEach((p, i) => { if (i % 12 === 0) { const d = new Date(p.hour); g.fillText(`${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}h`, x(i) - 20, H - 6); } });
  const line = (color, v) => { g.strokeStyle = color; g.lineWidth = 2; g.setLineDash([6, 4]); g.beginPath(); g.moveTo(L, y(v)); g.lineTo(W - 10, y(v)); g.stroke(); g.setLineDash([]); };
  if (norm) { line("#ff7f0e", norm.median); line("#d62728", norm.high); }
  g.strokeStyle = "#1f77b4"; g.fillStyle = "rgba(31,119,180,0.25)"; g.lineWidth = 3;
  g.beginPath(); points.forEach((p, i) => i ? g.lineTo(x(i), y(p.pii_values)) : g.moveTo(x(i), y(p.pii_values))); g.stroke();
  g.lineTo(x(points.length - 1), H - B); g.lineTo(x(0), H - B); g.closePath(); g.fill();
}

// ask shows the confirmation dialog and resolves to the reason given, or
// null when cancelled; a required reason must not be blank.
function ask({title, text, label, required}) {
  const dlg = $("confirm"), reason = $("confirm-reason"), err = $("confirm-error");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-label").textContent = label || (required ? "Reason (required, recorded in the audit trail)" : "Note (optional)");
  reason.value = ""; err.textContent = "";
  reason.required = !!required;
  return new Promise(resolve => {
    const done = v => {
      $("confirm-form").removeEventListener("submit", onSubmit);
      $("confirm-cancel").removeEventListener("click", onCancel);
      dlg.removeEventListener("cancel", onCancel);
      dlg.close();
      resolve(v);
    };
    const onSubmit = e => {
      e.preventDefault();
      const v = reason.value.trim();
      if (required && !v) { err.textContent = "Say why: the reason is recorded with your name."; reason.focus(); return; }
      done(v);
    };
    const onCancel = e => { e.preventDefault(); done(null); };
    $("confirm-form").addEventListener("submit", onSubmit);
    $("confirm-cancel").addEventListener("click", onCancel);
    dlg.addEventListener("cancel", onCancel);
    dlg.showModal();
    reason.focus();
  });
}

async function act(b) {
  const d = b.dataset;
  if (d.ack) {
    const a = state.alerts.get(d.ack) || {};
    const note = await ask({title: "Acknowledge this alert?", text: `${a.rule || ""} on ${a.employee || ""}: ${a.reason || ""}`});
    if (note === null) { return; }
    await api("POST", "/v1/alerts/" + encodeURIComponent(d.ack) + "/ack", {reason: note});
    await Promise.all([loadAlerts(), loadTrail()]);
  } else if (d.kill) {
    const reason = await ask({title: `End ${d.who}'s session?`, text: "The client is disconnected and told the reason.", required: true});
    if (reason === null) { return; }
    await api("DELETE", "/v1/sessions/" + encodeURIComponent(d.kill), {reason});
    await Promise.all([loadSessions(), loadTrail()]);
  } else if (d.release) {
    const reason = await ask({title: `Release ${d.release}?`, text: `${d.release} will be able to connect again.`, required: true});
    if (reason === null) { return; }
    await api("DELETE", "/v1/quarantine/" + encodeURIComponent(d.release), {reason});
    await Promise.all([loadQuarantine(), loadTrail()]);
  } else if (d.approve || d.deny) {
    const id = d.approve || d.deny, approve = !!d.approve;
    const row = b.closest("tr");
    const who = row ? row.cells[0].textContent : "";
    const reason = await ask({title: approve ? `Approve ${who}'s held result?` : `Deny ${who}'s held result?`,
      text: approve ? "The rows go to the client." : "The statement is refused with SQLSTATE 42501.", required: true});
    if (reason === null) { return; }
    await api("POST", "/v1/holds/" + encodeURIComponent(id) + "/" + (approve ? "approve" : "deny"), {reason});
    await Promise.all([loadHolds(), loadTrail()]);
  } else if (d.page) {
    const step = Number(d.step);
    if (d.page === "alerts-pager") {
      state.alertOffset = Math.max(0, state.alertOffset + step * Number($("alert-filters").elements.limit.value));
      await loadAlerts();
    } else {
      state.auditOffset = Math.max(0, state.auditOffset + step * Number($("trail-filters").elements.limit.value));
      await loadTrail();
    }
  } else if (d.trail) {
    await showAlertTrail(d.trail);
  } else if (d.emp) {
    await showEmployee(d.emp);
  } else if (b.id === "show") {
    await showEmployee($("employee").value);
  } else if (b.id === "trail-all") {
    state.trailSeqs = null; state.auditOffset = 0;
    await loadTrail();
  }
}

document.addEventListener("click", async ev => {
  const b = ev.target.closest("button, a");
  if (!b || b.closest("dialog") || b.type === "submit") { return; }
  if (b.tagName === "A") { ev.preventDefault(); }
  try { clearError(); await act(b); } catch (e) { fail(e); }
});

$("alert-filters").addEventListener("submit", async ev => {
  ev.preventDefault();
  state.alertOffset = 0;
  try { clearError(); await loadAlerts(); } catch (e) { fail(e); }
});
$("trail-filters").addEventListener("submit", async ev => {
  ev.preventDefault();
  state.trailSeqs = null; state.auditOffset = 0;
  try { clearError(); await loadTrail(); } catch (e) { fail(e); }
});

async function refresh() {
  try {
    await Promise.all([loadAlerts(), loadHolds(), loadSessions(), loadQuarantine()]);
    $("status").textContent = "updated " + fmt(new Date());
  } catch (e) { fail(e); }
}

(async () => {
  $("zone").textContent = `times in ${zoneName} (${zoneAbbr(new Date())})`;
  try {
    const me = (await api("GET", "/v1/whoami")).data;
    $("whoami").textContent = `signed in as ${me.name} (scope ${me.scope}, by ${me.via})`;
  } catch (e) { fail(e); }
  await refresh();
  try { await loadTrail(); } catch (e) { /* no audit trail configured */ }
  const emp = params.get("employee");
  try { if (emp) { await showEmployee(emp); } } catch (e) { fail(e); }
  document.body.dataset.ready = "1";
  setInterval(refresh, 10000);
})();
