// The payment explorer (support and admin): find a payment by any id, show its history, and
// the drill-down from a chart's bar or point to the payments behind it.
"use strict";

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

// Search /api/explorer/search with `query` (URLSearchParams) and list what it finds.
async function explorerList(query) {
  const out = clear($("explorer-results"));
  clear($("explorer-detail"));
  const resp = await fetch(`/api/explorer/search?${query}`);
  if (!resp.ok) { out.append(el("p", { class: "error" }, await apiError(resp))); return; }
  const { results, exponents } = await resp.json();
  Object.assign(state.exponents, exponents || {});
  out.dataset.count = String(results.length);
  if (!results.length) { out.append(el("p", {}, "No payment found.")); return; }
  const rows = results.map((r) => {
    const link = el("a", { href: "#", class: "ref" }, r.reference);
    link.addEventListener("click", (e) => { e.preventDefault(); explorerShow(r.reference); });
    return [link, r.status, r.provider, money(r.amount_minor, r.currency), r.booking_id, r.provider_reference, r.created_at];
  });
  out.append(...section("Payments", ["reference", "status", "provider", "amount", "booking", "provider ref", "created"], rows));
  if (results.length === 1 && query.has("q")) explorerShow(results[0].reference);
}

async function explorerFind(ev) {
  ev.preventDefault();
  $("explorer-drill").textContent = "";
  await explorerList(new URLSearchParams({ q: $("q").value }));
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

// ------------------------------------------------------------------ drill-down

const canExplore = () => state.user && ["support", "admin"].includes(state.user.role);

// What a clicked point of `result` stands for, as an explorer filter, or null if nothing:
// a day of the daily revenue (payments that succeeded that day, in that currency), or a
// provider and status of the status chart (payments that reached it in the range).
function drillFilter(result, row, column) {
  const at = (name) => row[result.columns.indexOf(name)];
  if (result.name === "daily_revenue" && result.bucket === "day") {
    const day = String(at("day"));
    const next = new Date(`${day}T00:00:00Z`);
    next.setUTCDate(next.getUTCDate() + 1);
    return { label: `succeeded on ${day} · ${at("currency")}`, query: new URLSearchParams({
      reached: "succeeded", since: `${day}T00:00:00Z`, until: next.toISOString(), currency: at("currency") }) };
  }
  if (result.name === "success_rates") {
    const p = params(false);
    return { label: `${column} · ${at("provider")} · ${$("since").value} to ${$("until").value} UTC`,
      query: new URLSearchParams({ reached: column, provider: at("provider"), since: p.get("since"), until: p.get("until") }) };
  }
  return null;
}

async function drillDown(result, row, column) {
  const filter = drillFilter(result, row, column);
  if (!filter) return;
  const notice = $("notice");
  if (!canExplore()) {
    notice.textContent = `Drill-down to the payments behind a figure needs the support role (you are ${state.user ? state.user.role : "signed out"}).`;
    notice.hidden = false;
    return;
  }
  notice.hidden = true;
  selectTab("explorer");
  $("explorer-drill").textContent = `Payments that reached ${filter.label}`;
  await explorerList(filter.query);
  document.body.dataset.drilled = "1";
}
