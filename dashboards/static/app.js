// TrailPay dashboard page: sign in once (token -> HttpOnly session cookie), then fetch
// /api/metrics/<name> and draw each with plotly.js. Every value reaches the page through
// textContent or a text node (el() below); nothing from the API is ever parsed as HTML.
"use strict";

const F = TrailPayFormat;
const state = { tab: "revenue", metrics: [], timer: null, exponents: {}, user: null, currencies: [] };
const $ = (id) => document.getElementById(id);
const EMPTY = "no payments in this range";

// el("td", { class: "x" }, "text", childNode): children are text nodes or elements.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function clear(node) { node.replaceChildren(); return node; }

async function apiError(resp) {
  try { const body = await resp.json(); return `${resp.status}: ${body.detail || JSON.stringify(body)}`; }
  catch (_err) { return `${resp.status}`; }
}

function isoLocal(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

function params(withCurrency = true) {
  const p = new URLSearchParams();
  if ($("since").value) p.set("since", $("since").value + ":00Z");
  if ($("until").value) p.set("until", $("until").value + ":00Z");
  if (withCurrency && $("currency").value) p.set("currency", $("currency").value);
  return p;
}

const isMoney = (column) => column.endsWith("_minor");
const label = (column) => column.replace(/_minor$/, "").replace(/_/g, " ");

function money(minor, currency) { return F.money(minor, currency, state.exponents[currency]); }

// ------------------------------------------------------------------ headline tiles

function tile(id, title, ...lines) {
  return el("div", { class: "tile", id }, el("h3", {}, title), ...lines);
}

function revenueLines(revenue, which) {
  const rows = revenue.filter((r) => which === "month" || r.today_payments > 0);
  if (!rows.length) return [el("div", { class: "empty" }, "no revenue yet")];
  return rows.map((r) => el("div", { class: "figure", dataset: { currency: r.currency } },
    el("strong", {}, money(r[`${which}_minor`], r.currency)),
    el("span", { class: "count" }, ` ${r[`${which}_payments`]} payments`)));
}

function drawHeadlines(h) {
  Object.assign(state.exponents, h.exponents);
  const s = h.success;
  const stuck = `${h.stuck_payments} stuck (no change for ${h.stuck_after_minutes} min)`;
  clear($("headlines")).append(
    tile("tile-today", `Revenue today (${h.today}, UTC)`, ...revenueLines(h.revenue, "today")),
    tile("tile-month", `Revenue this month (${h.month})`, ...revenueLines(h.revenue, "month")),
    tile("tile-success", `Success rate${s.currency ? " · " + s.currency : ""}`,
      el("strong", {}, F.percent(s.succeeded, s.settled)),
      el("div", { class: "count" }, s.settled ? `${s.succeeded} of ${s.settled} settled payments` : EMPTY)),
    tile("tile-open", "Open payments", el("strong", {}, String(h.open_payments)), el("div", { class: "count" }, stuck)),
    tile("tile-late", "Late payments", el("strong", {}, String(h.late_payments)),
      el("div", { class: "count" }, "money after the payment had ended")),
    tile("tile-dead", "Dead letters", el("strong", {}, h.dead_letters === null ? "n/a" : String(h.dead_letters)),
      el("div", { class: "count" }, "not yet re-driven")));
}

// Fill the currency picker: busiest currency of the range first, the chosen one kept.
function fillCurrencies(currencies) {
  const select = $("currency");
  const wanted = select.value || new URL(window.location.href).searchParams.get("currency");
  const codes = currencies.map((c) => c.currency);
  if (wanted && !codes.includes(wanted)) codes.push(wanted);
  clear(select);
  if (!codes.length) select.append(el("option", { value: "" }, "none in range"));
  for (const code of codes) {
    const count = currencies.find((c) => c.currency === code);
    select.append(el("option", { value: code }, count ? `${code} (${count.payments})` : code));
  }
  select.value = wanted && codes.includes(wanted) ? wanted : (codes[0] || "");
}

async function loadHeadlines() {
  const resp = await fetch(`/api/metrics/headlines?${params(false)}`);
  if (!resp.ok) throw new Error(await apiError(resp));
  const h = await resp.json();
  fillCurrencies(h.currencies);
  if ($("currency").value) {  // the success rate of the chosen currency
    const one = await fetch(`/api/metrics/headlines?${params()}`);
    if (one.ok) h.success = (await one.json()).success;
  }
  drawHeadlines(h);
}

// ------------------------------------------------------------------ charts and tables

function cellText(result, row, column, value) {
  if (value === null || value === undefined) return "";
  const ci = result.columns.indexOf("currency");
  if (isMoney(column) && ci >= 0) return money(value, row[ci]);
  return String(value);
}

function table(result) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...result.columns.map((c) => el("th", {}, label(c))))),
    el("tbody", {}, ...result.rows.map((row) => el("tr", {},
      ...row.map((v, i) => el("td", {}, cellText(result, row, result.columns[i], v)))))));
}

function traces(result) {
  const col = (name) => result.columns.indexOf(name);
  const xi = col(result.x);
  const ci = col("currency");
  if (result.chart === "pie") {
    const yi = col(result.y[0]);
    const sums = new Map();
    result.rows.forEach((r) => sums.set(r[xi], (sums.get(r[xi]) || 0) + r[yi]));
    return [{ type: "pie", labels: [...sums.keys()].map(F.plotlyText), values: [...sums.values()] }];
  }
  const type = result.chart === "line" ? "scatter" : "bar";
  const si = result.series ? col(result.series) : -1;
  const out = [];
  for (const y of result.y) {
    const yi = col(y);
    const groups = new Map();
    for (const r of result.rows) {
      const key = si >= 0 ? `${label(y)} · ${r[si]}` : label(y);
      if (!groups.has(key)) groups.set(key, { x: [], y: [], text: [] });
      const g = groups.get(key);
      const currency = ci >= 0 ? r[ci] : null;
      g.x.push(F.plotlyText(r[xi]));
      g.y.push(isMoney(y) && currency ? F.majorNumber(r[yi], state.exponents[currency]) : r[yi]);
      g.text.push(F.plotlyText(isMoney(y) && currency ? money(r[yi], currency) : r[yi]));
    }
    for (const [name, g] of groups) {
      out.push({ type, mode: type === "scatter" ? "lines+markers" : undefined, name: F.plotlyText(name),
        x: g.x, y: g.y, text: g.text, hovertemplate: "%{x}: %{text}<extra>%{fullData.name}</extra>",
        textposition: "none" });
    }
  }
  return out;
}

async function drawMetric(meta, card) {
  const body = card.querySelector(".body");
  const url = `/api/metrics/${encodeURIComponent(meta.name)}?${params()}`;
  card.querySelector(".csv").href = `${url}&format=csv`;
  try {
    const resp = await fetch(url);
    if (!resp.ok) throw new Error(await apiError(resp));
    const result = await resp.json();
    Object.assign(state.exponents, result.exponents || {});
    card.dataset.rows = String(result.rows.length);
    if (result.rows.length === 0) { clear(body).append(el("div", { class: "empty" }, EMPTY)); return; }
    if (result.chart === "table" || !result.x) { clear(body).append(table(result)); return; }
    const plot = el("div", { class: "plot" });
    clear(body).append(plot);
    const layout = { margin: { t: 10, r: 10, b: 60, l: 70 }, barmode: "group", legend: { orientation: "h" },
      xaxis: { type: "category", automargin: true }, yaxis: { automargin: true } };
    const currency = $("currency").value;
    if (result.money && result.y.some(isMoney)) layout.yaxis.title = { text: F.plotlyText(currency || "") };
    await Plotly.newPlot(plot, traces(result), layout, { displaylogo: false, displayModeBar: false, responsive: true });
    card.dataset.drawn = "1";
  } catch (err) {
    clear(body).append(el("div", { class: "error" }, err.message));
    card.dataset.error = err.message;
  }
}

async function refresh() {
  const container = clear($("charts"));
  try { await loadHeadlines(); } catch (err) {
    clear($("headlines")).append(el("div", { class: "error", id: "headlines-error" }, err.message));
  }
  const shown = state.metrics.filter((m) => m.group === state.tab);
  await Promise.all(shown.map((meta) => {
    const card = el("div", { class: "card", id: `metric-${meta.name}` },
      el("h2", {}, el("span", {}, meta.title), el("a", { class: "csv", download: "" }, "CSV")),
      el("div", { class: "body" }, "loading…"));
    container.append(card);
    return drawMetric(meta, card);
  }));
  document.body.dataset.loaded = state.tab;
}

function selectTab(tab) {
  if (tab === "explorer" && $("explorer-tab").hidden) tab = "revenue";
  state.tab = tab;
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  $("explorer").hidden = tab !== "explorer";
  $("charts").hidden = tab === "explorer";
  $("headlines").hidden = tab === "explorer";
  $("filters").hidden = tab === "explorer";
  if (tab !== "explorer") refresh();
  else document.body.dataset.loaded = tab;
}

// ------------------------------------------------------------------ payment explorer

// Provider text that was not verified (a rejected or unauthenticated callback) is labelled so.
function providerText(text, verified) {
  if (!text) return "";
  if (verified === true) return text;
  return el("span", { class: "unverified" }, el("em", {}, "unverified: "), text);
}

function section(title, columns, rows) {
  const t = !rows.length ? el("p", {}, "none") : el("table", {},
    el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((v) => el("td", {}, v === null || v === undefined ? "" : v))))));
  return [el("h3", {}, title), t];
}

async function explorerFind(ev) {
  ev.preventDefault();
  const out = clear($("explorer-results"));
  clear($("explorer-detail"));
  const resp = await fetch(`/api/explorer/search?q=${encodeURIComponent($("q").value)}`);
  if (!resp.ok) { out.append(el("p", { class: "error" }, await apiError(resp))); return; }
  const { results, exponents } = await resp.json();
  Object.assign(state.exponents, exponents || {});
  if (!results.length) { out.append(el("p", {}, "No payment found.")); return; }
  const rows = results.map((r) => {
    const link = el("a", { href: "#" }, r.reference);
    link.addEventListener("click", (e) => { e.preventDefault(); explorerShow(r.reference); });
    return [link, r.status, r.provider, money(r.amount_minor, r.currency), r.booking_id, r.provider_reference, r.created_at];
  });
  out.append(...section("Payments", ["reference", "status", "provider", "amount", "booking", "provider ref", "created"], rows));
  if (results.length === 1) explorerShow(results[0].reference);
}

async function explorerShow(reference) {
  const resp = await fetch(`/api/explorer/payments/${encodeURIComponent(reference)}`);
  const out = clear($("explorer-detail"));
  if (!resp.ok) { out.append(el("p", { class: "error" }, await apiError(resp))); return; }
  const h = await resp.json();
  Object.assign(state.exponents, h.exponents || {});
  const p = h.payment;
  const verdict = (v) => v === false ? el("span", { class: "bad" }, "no (rejected)") : (v ? el("span", { class: "ok" }, "yes") : "n/a");
  out.append(
    el("h2", { id: "explorer-payment" }, `${p.reference}: ${p.status}`),
    el("p", {}, `${p.provider} · ${money(p.amount_minor, p.currency)} · booking ${p.booking_id || "-"} · provider ref ${p.provider_reference || "-"} · ${p.provider_code || ""} ${p.provider_message || ""}`),
    ...section("Transitions", ["version", "from", "to", "cause", "at", "provider code", "provider text"],
      h.transitions.map((t) => [t.version, t.from || "", t.to, t.cause, t.at, t.provider_code || "", t.provider_message || ""])),
    ...section("Callbacks and webhooks", ["received", "provider", "type", "verified", "code", "text", "error"],
      h.callbacks.map((c) => [c.received_at, c.provider, c.event_type || "", verdict(c.verified), c.provider_code || "",
        providerText(c.provider_message, c.verified), c.verification_error || ""])),
    ...section("Refunds", ["refund", "amount", "reason", "status", "requested"],
      h.refunds.map((r) => [r.refund_id, money(r.amount_minor, r.currency), r.reason, r.status, r.requested_at])),
    ...section("Dead letters", ["topic", "offset", "error", "message", "at", "re-driven"],
      h.dead_letters.map((d) => [d.source_topic, `${d.partition}/${d.offset}`, d.error_type, d.error_message, d.failed_at, d.redrive_count])));
}

// ------------------------------------------------------------------ sign-in

function showSignedIn(user) {
  state.user = user;
  $("signin").hidden = true;
  $("who").hidden = false;
  $("who-email").textContent = user.email;
  $("who-role").textContent = user.role;
  $("tabs").hidden = false;
  $("explorer-tab").hidden = !["support", "admin"].includes(user.role);
}

async function signIn(ev) {
  ev.preventDefault();
  const input = $("signin-token");
  const token = input.value;
  input.value = "";  // the token lives only in this function's frame, for one request
  $("signin-error").textContent = "";
  const resp = await fetch("/api/session", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }) });
  if (!resp.ok) { $("signin-error").textContent = `Sign-in refused: ${await apiError(resp)}`; return; }
  await start(await resp.json());
}

async function signOut() {
  await fetch("/api/session", { method: "DELETE" });
  clearInterval(state.timer);
  window.location.assign("/");
}

async function start(user) {
  showSignedIn(user);
  const resp = await fetch("/api/metrics");
  if (!resp.ok) { $("signin-error").textContent = await apiError(resp); return; }
  state.metrics = await resp.json();
  selectTab(new URL(window.location.href).searchParams.get("tab") || "revenue");
}

async function init() {
  const now = new Date();
  $("until").value = isoLocal(new Date(now.getTime() + 60000));
  $("since").value = isoLocal(new Date(now.getTime() - 30 * 86400000));
  const url = new URL(window.location.href);
  for (const key of ["since", "until"]) if (url.searchParams.get(key)) $(key).value = url.searchParams.get(key);
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => selectTab(b.dataset.tab)));
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  $("currency").addEventListener("change", refresh);
  $("auto").addEventListener("change", () => {
    clearInterval(state.timer);
    if ($("auto").checked) state.timer = setInterval(refresh, 30000);
  });
  $("explorer-form").addEventListener("submit", explorerFind);
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  const resp = await fetch("/api/session");
  const who = resp.ok ? await resp.json() : { signed_in: false };
  if (who.signed_in) await start(who);
  else document.body.dataset.signin = "1";
}

init();
