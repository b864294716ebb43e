// TrailPay dashboard page: fetches /api/metrics/<name> and draws each with plotly.js.
"use strict";

const state = { tab: "revenue", metrics: [], timer: null };
const $ = (id) => document.getElementById(id);

function isoLocal(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

function params() {
  const p = new URLSearchParams();
  if ($("since").value) p.set("since", $("since").value + ":00Z");
  if ($("until").value) p.set("until", $("until").value + ":00Z");
  if ($("currency").value) p.set("currency", $("currency").value);
  return p;
}

function fmtMinor(v) { return (typeof v === "number") ? (v / 100).toLocaleString() : v; }

function table(result) {
  const head = "<tr>" + result.columns.map((c) => `<th>${c}</th>`).join("") + "</tr>";
  const rows = result.rows.map((r) => "<tr>" + r.map((v) => `<td>${v === null ? "" : v}</td>`).join("") + "</tr>").join("");
  return `<table>${head}${rows}</table>`;
}

function traces(result) {
  const col = (name) => result.columns.indexOf(name);
  const xi = col(result.x);
  if (result.chart === "pie") {
    const yi = col(result.y[0]);
    const sums = {};
    result.rows.forEach((r) => { sums[r[xi]] = (sums[r[xi]] || 0) + r[yi]; });
    return [{ type: "pie", labels: Object.keys(sums), values: Object.values(sums) }];
  }
  const type = result.chart === "line" ? "scatter" : "bar";
  const si = result.series ? col(result.series) : -1;
  const out = [];
  for (const y of result.y) {
    const yi = col(y);
    const groups = {};
    result.rows.forEach((r) => {
      const key = si >= 0 ? `${y} ${r[si]}` : y;
      (groups[key] = groups[key] || { x: [], y: [] });
      groups[key].x.push(r[xi]); groups[key].y.push(r[yi]);
    });
    for (const [name, g] of Object.entries(groups)) {
      out.push({ type, mode: type === "scatter" ? "lines+markers" : undefined, name, x: g.x, y: g.y });
    }
  }
  return out;
}

async function drawMetric(meta, card) {
  const body = card.querySelector(".body");
  const url = `/api/metrics/${meta.name}?${params()}`;
  card.querySelector(".csv").href = `${url}&format=csv`;
  try {
    const resp = await fetch(url);
    if (!resp.ok) throw new Error(`${resp.status} ${await resp.text()}`);
    const result = await resp.json();
    card.dataset.rows = String(result.rows.length);
    if (result.rows.length === 0) { body.innerHTML = '<div class="empty">no data in this range</div>'; return; }
    if (result.chart === "table" || !result.x) { body.innerHTML = table(result); return; }
    body.innerHTML = '<div class="plot"></div>';
    const layout = { margin: { t: 10, r: 10, b: 40, l: 50 }, barmode: "group", legend: { orientation: "h" } };
    if (result.money) layout.yaxis = { title: "minor units" };
    await Plotly.newPlot(body.querySelector(".plot"), traces(result), layout, { displaylogo: false, responsive: true });
    card.dataset.drawn = "1";
  } catch (err) {
    body.innerHTML = `<div class="error">${err.message}</div>`;
    card.dataset.error = err.message;
  }
}

async function refresh() {
  const container = $("charts");
  container.innerHTML = "";
  const shown = state.metrics.filter((m) => m.group === state.tab);
  await Promise.all(shown.map((meta) => {
    const card = document.createElement("div");
    card.className = "card";
    card.id = `metric-${meta.name}`;
    card.innerHTML = `<h2><span>${meta.title}</span><a class="csv" download>CSV</a></h2><div class="body">loading…</div>`;
    container.appendChild(card);
    return drawMetric(meta, card);
  }));
  document.body.dataset.loaded = state.tab;
}

function selectTab(tab) {
  state.tab = tab;
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  $("explorer").hidden = tab !== "explorer";
  $("charts").hidden = tab === "explorer";
  $("filters").hidden = tab === "explorer";
  if (tab !== "explorer") refresh();
}

async function explorerFind(ev) {
  ev.preventDefault();
  const headers = { Authorization: `Token ${$("token").value}` };
  const out = $("explorer-results");
  $("explorer-detail").innerHTML = "";
  const resp = await fetch(`/api/explorer/search?q=${encodeURIComponent($("q").value)}`, { headers });
  if (!resp.ok) { out.innerHTML = `<p class="error">${resp.status}: ${await resp.text()}</p>`; return; }
  const { results } = await resp.json();
  if (!results.length) { out.innerHTML = "<p>No payment found.</p>"; return; }
  out.innerHTML = table({ columns: ["reference", "status", "provider", "amount_minor", "currency", "booking_id", "provider_reference", "created_at"],
    rows: results.map((r) => [`<a href="#" data-ref="${r.reference}">${r.reference}</a>`, r.status, r.provider, r.amount_minor, r.currency, r.booking_id, r.provider_reference, r.created_at]) });
  out.querySelectorAll("a[data-ref]").forEach((a) => a.addEventListener("click", (e) => { e.preventDefault(); explorerShow(a.dataset.ref, headers); }));
  if (results.length === 1) explorerShow(results[0].reference, headers);
}

async function explorerShow(reference, headers) {
  const resp = await fetch(`/api/explorer/payments/${encodeURIComponent(reference)}`, { headers });
  const out = $("explorer-detail");
  if (!resp.ok) { out.innerHTML = `<p class="error">${resp.status}</p>`; return; }
  const h = await resp.json();
  const p = h.payment;
  const section = (title, cols, rows) => `<h3>${title}</h3>` + (rows.length ? table({ columns: cols, rows }) : "<p>none</p>");
  out.innerHTML = `<h2 id="explorer-payment">${p.reference}: ${p.status}</h2>` +
    `<p>${p.provider} · ${p.amount_minor} ${p.currency} minor units · booking ${p.booking_id || "-"} · provider ref ${p.provider_reference || "-"} · ${p.provider_code || ""} ${p.provider_message || ""}</p>` +
    section("Transitions", ["version", "from", "to", "cause", "at", "provider code", "provider text"],
      h.transitions.map((t) => [t.version, t.from || "", t.to, t.cause, t.at, t.provider_code || "", t.provider_message || ""])) +
    section("Callbacks and webhooks", ["received", "provider", "type", "verified", "code", "text", "error"],
      h.callbacks.map((c) => [c.received_at, c.provider, c.event_type || "", c.verified === false ? '<span class="bad">no</span>' : (c.verified ? '<span class="ok">yes</span>' : "n/a"), c.provider_code || "", c.provider_message || "", c.verification_error || ""])) +
    section("Refunds", ["refund", "amount", "reason", "status", "requested"],
      h.refunds.map((r) => [r.refund_id, `${r.amount_minor} ${r.currency}`, r.reason, r.status, r.requested_at])) +
    section("Dead letters", ["topic", "offset", "error", "message", "at", "re-driven"],
      h.dead_letters.map((d) => [d.source_topic, `${d.partition}/${d.offset}`, d.error_type, d.error_message, d.failed_at, d.redrive_count]));
}

async function init() {
  const now = new Date();
  $("until").value = isoLocal(new Date(now.getTime() + 60000));
  $("since").value = isoLocal(new Date(now.getTime() - 30 * 86400000));
  const url = new URL(window.location.href);
  for (const key of ["since", "until", "currency"]) if (url.searchParams.get(key)) {
    if (key === "currency") { const o = document.createElement("option"); o.value = o.textContent = url.searchParams.get(key); $("currency").appendChild(o); }
    $(key).value = url.searchParams.get(key);
  }
  for (const c of ["KES", "UGX", "TZS", "USD", "EUR", "GBP"]) {
    if (![...$("currency").options].some((o) => o.value === c)) { const o = document.createElement("option"); o.value = o.textContent = c; $("currency").appendChild(o); }
  }
  state.metrics = await (await fetch("/api/metrics")).json();
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => selectTab(b.dataset.tab)));
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  $("currency").addEventListener("change", refresh);
  $("auto").addEventListener("change", () => {
    clearInterval(state.timer);
    if ($("auto").checked) state.timer = setInterval(refresh, 30000);
  });
  $("explorer-form").addEventListener("submit", explorerFind);
  selectTab(url.searchParams.get("tab") || "revenue");
}

init();
