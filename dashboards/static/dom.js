// Shared by the dashboard's scripts (loaded first): page state, building DOM nodes from
// text only, and money from minor units. Nothing here parses a string as HTML.
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

// The filter form's range (and currency) as query parameters.
function params(withCurrency = true) {
  const p = new URLSearchParams();
  if ($("since").value) p.set("since", $("since").value + ":00Z");
  if ($("until").value) p.set("until", $("until").value + ":00Z");
  if (withCurrency && $("currency").value) p.set("currency", $("currency").value);
  return p;
}

function money(minor, currency) { return F.money(minor, currency, state.exponents[currency]); }
