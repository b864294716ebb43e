// Formatting for the dashboard: money from integer minor units and the currency's ISO-4217
// exponent with string arithmetic only (no division, so no float rounding), and text for
// plotly labels (plotly reads a little HTML in labels: data is escaped before it gets there).
"use strict";

const TrailPayFormat = (() => {
  const INTEGER = /^-?\d+$/;

  function groupThousands(digits) {
    return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  // "-123456", 2 -> { sign: "-", whole: "1234", frac: "56" }; null if not an integer.
  function split(minor, exp) {
    let digits = String(minor);
    if (!INTEGER.test(digits)) return null;
    const sign = digits.startsWith("-") ? "-" : "";
    digits = digits.replace(/^-/, "").padStart(exp + 1, "0");
    return { sign, whole: digits.slice(0, digits.length - exp), frac: digits.slice(digits.length - exp) };
  }

  // 130000, "KES", 2 -> "KES 1,300.00"; an unknown exponent keeps minor units, said so.
  function money(minor, currency, exp) {
    if (minor === null || minor === undefined) return "";
    if (exp === undefined || exp === null) return `${currency} ${minor} (minor units)`;
    const parts = split(minor, exp);
    if (parts === null) return String(minor);
    const frac = exp > 0 ? `.${parts.frac}` : "";
    return `${currency} ${parts.sign}${groupThousands(parts.whole)}${frac}`;
  }

  // The exact decimal string of a major amount, for a chart axis ("1300.00" -> 1300).
  function majorNumber(minor, exp) {
    const parts = split(minor, exp || 0);
    if (parts === null) return null;
    return Number(`${parts.sign}${parts.whole}${exp ? "." + parts.frac : ""}`);
  }

  // For plotly labels only: plotly turns &lt; back into "<" as plain text.
  function plotlyText(value) {
    return String(value === null || value === undefined ? "" : value)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  // 4, 6 -> "66.7 %" with integers (tenths of a percent, rounded half up).
  function percent(part, whole) {
    if (!whole) return "–";
    const tenths = Math.floor((part * 1000 + Math.floor(whole / 2)) / whole);
    return `${Math.floor(tenths / 10)}.${tenths % 10} %`;
  }

  return { money, majorNumber, plotlyText, percent, groupThousands };
})();
