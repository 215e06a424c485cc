// heliosd dashboard. Plain JS, no build step, nothing loaded from elsewhere.
// Every value from the daemon goes into the page as text (textContent), never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const EVENT_TYPES = ["order", "fill", "mode", "halt", "resume", "emergency_stop", "engine",
  "notification", "stale_prices", "venue_read_only", "reconcile", "connection", "dropped",
  "overflow", "http", "message"];
const SLOW_REFRESH_MS = 10000;  // health and prices age without events; nothing faster
let riskLimits = {};
let lastMode = null;

// This daemon's CSRF cookie: its name carries the daemon's instance (the page's meta tag),
// because another heliosd's dashboard on the same host sets cookies the browser sends here.
function csrfToken() {
  const meta = document.querySelector('meta[name="heliosd-instance"]');
  const name = "heliosd_csrf_" + (meta ? meta.content : "");
  for (const part of document.cookie.split(";")) {
    const at = part.indexOf("=");
    if (at > 0 && part.slice(0, at).trim() === name) {
      return decodeURIComponent(part.slice(at + 1).trim());
    }
  }
  return "";
}

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") {
    opts.headers["X-CSRF-Token"] = csrfToken();
    if (method === "POST") {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body || {});
    }
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (err) {
    return { status: 0, body: { error: "unreachable", message: String(err) } };
  }
  let data = null;
  try { data = await resp.json(); } catch (err) { data = null; }
  return { status: resp.status, body: data };
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function text(value) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function isNumeric(v) { return typeof v === "string" && /^-?[0-9]+(\.[0-9]+)?$/.test(v); }

function table(rows, columns) {
  if (!rows || rows.length === 0) return el("p", { class: "muted" }, "(none)");
  const cols = columns || [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return el("table", {},
    el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", {}, c)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {},
      ...cols.map((c) => el("td", isNumeric(r[c]) ? { class: "num" } : {}, text(r[c])))))));
}

function put(id, node) {
  const box = document.getElementById(id);
  box.replaceChildren(node);
}

function setText(id, value) { document.getElementById(id).textContent = text(value); }

// ------------------------------------------------------------------ header

async function loadMode() {
  const { status, body } = await api("GET", "/api/trading/mode");
  if (status !== 200 || !body) return;
  lastMode = body;
  const banner = document.getElementById("banner");
  const live = body.mode === "LIVE";
  banner.classList.toggle("live", live);
  banner.classList.toggle("paper", !live);
  banner.classList.toggle("sim", Boolean(body.live_is_simulator));
  setText("mode", body.mode);
  document.getElementById("simulator").classList.toggle("hidden", !(live && body.live_is_simulator));
  const state = document.getElementById("state");
  state.textContent = text(body.trading_state);
  state.className = "state " + (body.trading_state || "");
  setText("state-reason", body.state_reason || "");
  setText("epoch", body.epoch);
  document.title = `heliosd ${body.mode} ${body.trading_state}`;
}

async function loadHealth() {
  const { status, body } = await api("GET", "/api/health");
  if (!body) { setText("health", "unreachable"); return; }
  const h = document.getElementById("health");
  h.textContent = body.status || (status === 200 ? "ok" : "degraded");
  h.className = status === 200 ? "ok" : "bad";
  setText("version", body.version);
  setText("venue", body.venue_status === undefined ? "-" : (body.venue_status || "paper"));
  const rows = Object.entries(body.streams || {}).map(([name, s]) =>
    Object.assign({ stream: name }, typeof s === "object" && s !== null ? s : { value: s }));
  const extra = el("p", { class: "muted" },
    `clock skew ${text(body.clock_skew_ms)} ms, cancel on disconnect ${text(body.cancel_on_disconnect)},` +
    ` fill gaps closed ${text(body.fill_gaps_closed)}, store ${text(body.store)}`);
  const stale = body.stale_prices || [];
  const fresh = stale.length
    ? el("p", { class: "bad" }, "stale prices: " + stale.join(", "))
    : el("p", { class: "ok" }, "prices fresh");
  put("streams", el("div", {}, table(rows), fresh, extra));
}

// ------------------------------------------------------------------ tables

async function loadPositions() {
  const { status, body } = await api("GET", "/api/positions");
  if (status !== 200 || !body) return;
  const box = el("div", {});
  for (const acct of ["live", "paper"]) {
    box.append(el("h3", {}, acct.toUpperCase() + (body.mode === acct.toUpperCase() ? " (current)" : "")));
    // Each row says "external: yes" for a holding heliosd did not trade itself.
    box.append(table(body[acct] || []));
  }
  put("positions", box);
}

function useBar(use, limit) {
  const u = Number(use), l = Number(limit);
  const frac = l > 0 && Number.isFinite(u) ? Math.min(1, Math.abs(u) / l) : 0;
  const bar = el("span", { class: "bar" + (frac >= 1 ? " full" : frac >= 0.8 ? " high" : "") });
  bar.style.width = `${Math.round(frac * 90)}px`;
  return el("span", {}, el("span", { class: "barbox" }, bar), `${text(use)} / ${text(limit)}`);
}

async function loadRisk() {
  const { status, body } = await api("GET", "/api/risk");
  if (status !== 200 || !body) return;
  riskLimits = body.limits || {};
  const rows = Object.entries(riskLimits).map(([name, v]) => {
    const isObj = typeof v === "object" && v !== null;
    return el("tr", {}, el("td", {}, name),
      el("td", {}, isObj && "limit" in v ? useBar(v.use, v.limit) : text(v)));
  });
  const t = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "limit"), el("th", {}, "use / limit"))),
    el("tbody", {}, ...rows));
  put("risk", el("div", {}, el("p", {}, `equity ${text(body.equity)} ${text(body.reference_currency)},` +
    ` pending buys ${text(body.pending_buy_value)}, flows today ${text(body.flows_today)}`), t,
    (body.stale || []).length ? el("p", { class: "bad" }, "stale prices: " + body.stale.join(", ")) : null));
  const marks = Object.entries(body.pairs || {}).map(([pair, p]) =>
    ({ pair, bid: p.bid, ask: p.ask, mark: p.mark, stale: (body.stale || []).includes(p.base) }));
  if (marks.length) document.getElementById("risk").append(el("h3", {}, "prices"), table(marks));
  const b = body.breakers;
  const brows = Array.isArray(b) ? b : Object.entries(b || {}).map(([name, v]) =>
    Object.assign({ breaker: name }, typeof v === "object" && v !== null ? v : { state: v }));
  put("breakers", table(brows));
}

async function loadOrders() {
  // GET /api/fills reads the database only: per-order fills (GET /api/orders/{id}/fills)
  // would ask VALR's trade history once per LIVE order on every refresh.
  const [open, recent] = await Promise.all([api("GET", "/api/orders?state=open&limit=100"),
    api("GET", "/api/fills?limit=30")]);
  const cols = ["id", "mode", "pair", "side", "type", "quantity", "price", "state", "filled_quantity", "source", "actor", "created_at"];
  if (open.status === 200 && open.body) {
    const t = table(open.body.orders, cols);
    // One cancel button per open order: DELETE /api/orders/{id} after a confirm.
    open.body.orders.forEach((o, i) => {
      const row = t.querySelectorAll("tbody tr")[i];
      const button = el("button", { "data-cancel": String(o.id) }, "Cancel");
      button.addEventListener("click", () => ask(`Cancel order #${o.id} (${o.mode} ${o.side} ${o.quantity} ${o.pair})?`,
        null, "", () => act("DELETE", `/api/orders/${o.id}`)));
      row.append(el("td", {}, button));
    });
    put("open-orders", t);
  }
  if (recent.status !== 200 || !recent.body) return;
  put("fills", table(recent.body.fills.map((f) => Object.assign({}, f, { order: f.order_id === null ? "external" : f.order_id })),
    ["traded_at", "order", "mode", "pair", "side", "quantity", "price", "fee", "fee_currency", "trade_id"]));
}

async function loadEngine() {
  const { status, body } = await api("GET", "/api/autonomous-engine/status");
  if (status === 200 && body) put("engine", table([{ running: body.running, strategy: body.strategy,
    started_at: body.started_at, interval_s: body.interval_s, pairs: (body.pairs || []).join(" ") }]));
}

async function loadHistory() {
  const [h, a] = await Promise.all([api("GET", "/api/trading/mode/history?limit=10"),
    api("GET", "/api/audit?limit=25")]);
  if (h.status === 200 && h.body) put("history", table(h.body.history, ["changed_at", "old_mode", "new_mode", "changed_by", "reason"]));
  if (a.status === 200 && a.body) put("audit", table(a.body.audit));
}

// ------------------------------------------------------------------ equity chart

function drawdownPct() {
  const dd = riskLimits.max_drawdown_pct;
  const v = typeof dd === "object" && dd !== null ? dd.limit : dd;
  return Number.isFinite(Number(v)) ? Number(v) : null;
}

function chart(points) {
  const W = 800, H = 220, L = 70, R = 10, T = 10, B = 24;
  const xs = points.map((p) => Date.parse(p.at));
  const dd = drawdownPct();
  const stops = dd === null ? [] : points.map((p) => Number(p.peak) * (1 - dd / 100));
  const ys = points.flatMap((p) => [Number(p.equity), Number(p.peak)]).concat(stops);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("preserveAspectRatio", "none");
  const line = (values, cls) => {
    const path = document.createElementNS(SVG, "polyline");
    path.setAttribute("points", values.map((v, i) => `${sx(xs[i]).toFixed(1)},${sy(v).toFixed(1)}`).join(" "));
    path.setAttribute("class", cls);
    svg.append(path);
  };
  const label = (x, y, s) => {
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.textContent = s;
    svg.append(t);
  };
  line(points.map((p) => Number(p.peak)), "peak");
  if (stops.length) line(stops, "stop");
  line(points.map((p) => Number(p.equity)), "equity");
  label(2, T + 10, y1.toFixed(2));
  label(2, H - B, y0.toFixed(2));
  label(L, H - 6, new Date(x0).toISOString().slice(0, 16).replace("T", " "));
  label(W - R - 110, H - 6, new Date(x1).toISOString().slice(0, 16).replace("T", " "));
  return svg;
}

// Both modes' curves are fetched side by side, and alongside GET /api/risk (the drawdown
// line needs its limit): a first load waits for the slowest request, not for a chain.
function fetchEquity() {
  return Promise.all(["LIVE", "PAPER"].map((mode) => api("GET", `/api/equity?mode=${mode}`)));
}

function drawEquity(answers) {
  const box = el("div", {});
  ["LIVE", "PAPER"].forEach((mode, i) => {
    const { status, body } = answers[i];
    box.append(el("h3", {}, mode));
    if (status !== 200 || !body || !Array.isArray(body.points) || body.points.length === 0) {
      box.append(el("p", { class: "muted" }, "no equity history yet"));
      return;
    }
    const dd = drawdownPct();
    box.append(chart(body.points), el("div", { class: "legend" },
      el("span", { class: "l-equity" }, "— equity"), el("span", { class: "l-peak" }, "- - peak"),
      dd === null ? null : el("span", { class: "l-stop" }, `- - drawdown stop (${dd}% below peak)`)));
  });
  put("equity", box);
}

// ------------------------------------------------------------------ actions

function showResult(status, body) {
  const p = document.getElementById("action-result");
  p.className = "result " + (status >= 200 && status < 300 ? "ok" : "bad");
  p.textContent = `${status} ${JSON.stringify(body, null, 1)}`;
}

let pending = null;

function ask(textLine, details, typedWord, onYes) {
  pending = onYes;
  setText("confirm-text", textLine);
  document.getElementById("confirm-details").textContent = details ? JSON.stringify(details, null, 1) : "";
  document.getElementById("confirm-typed-label").classList.toggle("hidden", !typedWord);
  document.getElementById("confirm-word").textContent = typedWord || "";
  document.getElementById("confirm-typed").value = "";
  document.getElementById("confirm").dataset.word = typedWord || "";
  document.getElementById("confirm").classList.remove("hidden");
}

function closeAsk() { pending = null; document.getElementById("confirm").classList.add("hidden"); }

function reason(fallback) { return document.getElementById("confirm-reason").value.trim() || fallback; }

async function act(method, path, body) {
  const r = await api(method, path, body);
  showResult(r.status, r.body);
  refreshAll();
  return r;
}

function wire() {
  const on = (id, fn) => document.getElementById(id).addEventListener("click", fn);
  on("confirm-no", closeAsk);
  on("confirm-yes", async () => {
    const word = document.getElementById("confirm").dataset.word;
    if (word && document.getElementById("confirm-typed").value.trim() !== word) {
      showResult(0, { error: "not_confirmed", message: `type ${word} exactly to confirm` });
      return;
    }
    const fn = pending;
    closeAsk();
    if (fn) await fn();
  });
  on("btn-stop", () => ask("EMERGENCY STOP: halt, cancel all orders, switch to PAPER and latch?", null, "",
    () => act("POST", "/api/trading/emergency-stop", { reason: reason("dashboard emergency stop") })));
  on("btn-resume", () => ask("Resume trading (clear every latched breaker)?", null, "",
    () => act("POST", "/api/trading/resume", { reason: reason("dashboard resume") })));
  on("btn-engine-start", () => ask("Start the autonomous engine?", null, "",
    () => act("POST", "/api/autonomous-engine/start", {})));
  on("btn-engine-stop", () => ask("Stop the autonomous engine?", null, "",
    () => act("POST", "/api/autonomous-engine/stop", {})));
  on("btn-paper", () => ask("Switch to PAPER?", null, "",
    () => act("POST", "/api/trading/mode", { mode: "PAPER", reason: reason("dashboard switch to PAPER") })));
  on("btn-live", async () => {
    // Step one runs the gates and returns a token; the operator types LIVE to send step two.
    const why = document.getElementById("confirm-reason").value.trim() || "dashboard switch to LIVE";
    const first = await api("POST", "/api/trading/mode", { mode: "LIVE", reason: why });
    showResult(first.status, first.body);
    if (first.status !== 409 || first.body?.error !== "confirmation_required") return;
    const d = first.body.details || {};
    const target = lastMode && lastMode.live_is_simulator ? "the simulator (not real money)" : "LIVE trading with REAL MONEY";
    ask(`Switch to ${target}? Expires in ${d.expires_in} s.`, d.gates || d, "LIVE",
      () => act("POST", "/api/trading/mode", { mode: "LIVE", reason: why, confirm_token: d.confirm_token }));
  });
  on("btn-close", async () => {
    const mode = document.getElementById("close-mode").value;
    const pair = document.getElementById("close-pair").value.trim().toUpperCase();
    const why = document.getElementById("confirm-reason").value.trim() || "dashboard close positions";
    const req = pair ? { mode, pair, reason: why } : { mode, all: true, reason: why };
    const first = await api("POST", "/api/positions/close", req);
    showResult(first.status, first.body);
    if (first.status !== 409 || first.body?.error !== "confirmation_required") { refreshAll(); return; }
    const d = first.body.details || {};
    ask(`Sell at market on the ${mode} account (type ${mode} to confirm)? Expires in ${d.expires_in} s.`,
      d.orders, mode, () => act("POST", "/api/positions/close", Object.assign({}, req, { confirm_token: d.confirm_token })));
  });
}

// ------------------------------------------------------------------ live updates

let refreshTimer = null;
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refreshAll(); }, 700);
}

function refreshAll() {
  const equity = fetchEquity();
  return Promise.all([loadMode(), loadHealth(), loadPositions(),
    loadRisk().then(() => equity).then(drawEquity), loadOrders(), loadEngine(), loadHistory()]);
}

let source = null;
function listen() {
  if (source) return;
  const es = source = new EventSource("/api/events");
  const list = document.getElementById("events");
  es.onopen = () => { setText("stream", "live"); document.getElementById("stream").className = "ok"; };
  es.onerror = () => { setText("stream", "reconnecting"); document.getElementById("stream").className = "bad"; };
  const handle = (ev) => {
    const item = el("li", { "data-type": ev.type }, `${new Date().toISOString().slice(11, 19)} ${ev.type} ${ev.data}`);
    list.prepend(item);
    while (list.children.length > 200) list.lastChild.remove();
    refreshSoon();
  };
  for (const t of EVENT_TYPES) es.addEventListener(t, handle);
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  // The moment every section has drawn its first answer: bench/dashboard.py reads this mark
  // (with the navigation timing) to time a first load as the operator sees it.
  refreshAll().finally(() => performance.mark("heliosd:first-data"));
  listen();
  setInterval(() => { loadHealth(); loadMode(); }, SLOW_REFRESH_MS);
});

// Leaving the page closes its event stream: a page kept in the back/forward cache would
// otherwise hold its connection open, and a browser allows six per host, so a few visits
// left the dashboard unable to load at all. Coming back reopens it and redraws.
window.addEventListener("pagehide", () => {
  if (source) { source.close(); source = null; }
});
window.addEventListener("pageshow", (ev) => {
  if (ev.persisted) { listen(); refreshAll(); }
});
