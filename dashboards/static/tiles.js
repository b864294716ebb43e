// The headline tiles (/api/metrics/headlines) and the currency picker they fill.
"use strict";

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

// 60000 -> "60 s", 1500 -> "1.5 s" (tenths, from integer milliseconds).
function seconds(ms) {
  const tenths = Math.round(ms / 100);
  return tenths % 10 ? `${Math.floor(tenths / 10)}.${tenths % 10} s` : `${tenths / 10} s`;
}

function latencyLines(latency) {
  if (!latency.length) return [el("div", { class: "empty" }, EMPTY)];
  return latency.map((l) => el("div", { class: "figure", dataset: { provider: l.provider } },
    el("strong", {}, l.provider), ` p50 ${seconds(l.p50_ms)} · p95 ${seconds(l.p95_ms)}`,
    el("span", { class: "count" }, ` (${l.payments} payment${l.payments === 1 ? "" : "s"})`)));
}

function drawHeadlines(h) {
  Object.assign(state.exponents, h.exponents);
  const s = h.success;
  const w = h.sweep;
  const of = (c) => (c ? " · " + c : "");
  const stuck = `${h.stuck_payments} stuck (no change for ${h.stuck_after_minutes} min)`;
  clear($("headlines")).append(
    tile("tile-today", `Revenue today (${h.today}, UTC)`, ...revenueLines(h.revenue, "today")),
    tile("tile-month", `Revenue this month (${h.month})`, ...revenueLines(h.revenue, "month")),
    tile("tile-success", `Success rate${of(s.currency)}`,
      el("strong", {}, F.percent(s.succeeded, s.settled)),
      el("div", { class: "count" }, s.settled ? `${s.succeeded} of ${s.settled} settled payments` : EMPTY)),
    tile("tile-latency", `Provider latency, request to settled${of(s.currency)}`, ...latencyLines(h.latency)),
    tile("tile-sweep", `Settled by the sweep${of(s.currency)}`,
      el("strong", {}, F.percent(w.by_sweep, w.settled)),
      el("div", { class: "count" }, w.settled ? `${w.by_sweep} of ${w.settled} settled payments` : EMPTY)),
    tile("tile-open", "Open payments", el("strong", {}, String(h.open_payments)), el("div", { class: "count" }, stuck)),
    tile("tile-late", "Late payments", el("strong", {}, String(h.late_payments)),
      el("div", { class: "count" }, "money after the payment had ended")),
    tile("tile-dead", "Dead letters", el("strong", {}, h.dead_letters === null ? "n/a" : String(h.dead_letters)),
      el("div", { class: "count" }, "not yet re-driven")),
    tile("tile-lag", "Consumer lag", ...lagLines(h.consumer_lag)));
}

// Records the consumers (stream workers, sinks) have still to read, as last measured.
function lagLines(lag) {
  if (!lag || lag.records === null) {
    return [el("strong", {}, "n/a"), el("div", { class: "count" }, lag && lag.error ? lag.error : "not measured yet")];
  }
  const when = lag.measured_at.slice(11, 19);
  return [el("strong", {}, `${lag.records} record${lag.records === 1 ? "" : "s"}`),
    el("div", { class: "count" }, `behind, measured ${when} UTC${lag.error ? " (last try failed)" : ""}`)];
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
  if ($("currency").value) {  // the rates and latencies of the chosen currency
    const one = await fetch(`/api/metrics/headlines?${params()}`);
    if (one.ok) Object.assign(h, (({ success, latency, sweep }) => ({ success, latency, sweep }))(await one.json()));
  }
  drawHeadlines(h);
}
