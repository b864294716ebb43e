// TrailPay dashboard page: sign in once (token -> HttpOnly session cookie), then fetch
// /api/metrics/<name> and draw each with plotly.js. Every value reaches the page through
// textContent or a text node (el() in dom.js); nothing from the API is ever parsed as HTML.
// Loaded after dom.js, tiles.js (headline tiles) and explorer.js (explorer, drill-down).
"use strict";

function isoLocal(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

const isMoney = (column) => column.endsWith("_minor");
const label = (column) => column.replace(/_minor$/, "").replace(/_/g, " ");

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
      if (!groups.has(key)) groups.set(key, { x: [], y: [], text: [], rows: [], column: y });
      const g = groups.get(key);
      g.rows.push(result.rows.indexOf(r));
      const currency = ci >= 0 ? r[ci] : null;
      g.x.push(F.plotlyText(r[xi]));
      g.y.push(isMoney(y) && currency ? F.majorNumber(r[yi], state.exponents[currency]) : r[yi]);
      g.text.push(F.plotlyText(isMoney(y) && currency ? money(r[yi], currency) : r[yi]));
    }
    for (const [name, g] of groups) {
      out.push({ type, mode: type === "scatter" ? "lines+markers" : undefined, name: F.plotlyText(name),
        x: g.x, y: g.y, text: g.text, customdata: g.rows, meta: g.column, hovertemplate: "%{x}: %{text}<extra>%{fullData.name}</extra>",
        textposition: "none" });
    }
  }
  return out;
}

async function drawMetric(meta, card) {
  const body = card.querySelector(".body");
  const query = params();
  if (meta.buckets) query.set("bucket", $("bucket").value);
  const url = `/api/metrics/${encodeURIComponent(meta.name)}?${query}`;
  card.querySelector(".csv").href = `${url}&format=csv`;
  try {
    const resp = await fetch(url);
    if (!resp.ok) throw new Error(await apiError(resp));
    const result = await resp.json();
    Object.assign(state.exponents, result.exponents || {});
    card.dataset.rows = String(result.rows.length);
    card.querySelector("h2 span").textContent = result.title;
    if (result.rows.length === 0) { clear(body).append(el("div", { class: "empty" }, EMPTY)); return; }
    if (result.chart === "table" || !result.x) { clear(body).append(table(result)); return; }
    const plot = el("div", { class: "plot" });
    clear(body).append(plot);
    const layout = { margin: { t: 10, r: 10, b: 60, l: 70 }, barmode: "group", legend: { orientation: "h" },
      xaxis: { type: "category", automargin: true }, yaxis: { automargin: true, rangemode: "tozero" } };
    const currency = $("currency").value;
    if (result.money && result.y.some(isMoney)) layout.yaxis.title = { text: F.plotlyText(currency || "") };
    await Plotly.newPlot(plot, traces(result), layout, { displaylogo: false, displayModeBar: false, responsive: true });
    if (drillFilter(result, result.rows[0], result.y[0])) {
      card.classList.add("drillable");
      plot.on("plotly_click", (ev) => {
        const point = ev.points[0];
        drillDown(result, result.rows[point.customdata], point.data.meta);
      });
    }
    card.dataset.drawn = "1";
  } catch (err) {
    clear(body).append(el("div", { class: "error" }, err.message));
    card.dataset.error = err.message;
  }
}

async function refresh() {
  const container = clear($("charts"));
  $("notice").hidden = true;
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
  for (const key of ["since", "until", "bucket"]) if (url.searchParams.get(key)) $(key).value = url.searchParams.get(key);
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => selectTab(b.dataset.tab)));
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  $("currency").addEventListener("change", refresh);
  $("bucket").addEventListener("change", refresh);
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
