// Shared by the views: palette, number format, API calls, and the link's settings and history. Every
// setting lives in the query string so that a view can be shared; imports nothing, so any view can import it.

// Okabe & Ito's colour-blind-safe palette; each method also has its own line style and marker, so
// that no reading depends on hue. TEXT holds darker shades of the same hues for text (>= 4.5:1 on white).
export const COLORS = { none: "#D55E00", norm: "#0072B2", value: "#009E73" };
export const TEXT_COLORS = { none: "#A84300", norm: "#005A8C", value: "#00704F" };
export const DASHES = { none: [], norm: [10, 5], value: [2.5, 3.5] };
export const LABELS = { none: "no clipping", norm: "norm clipping", value: "value clipping" };
// The Plotly toolbar, reduced to what helps reading a run: zoom, pan, reset and save as PNG.
export const PLOT_CONFIG = {
  displaylogo: false, responsive: true, showSendToCloud: false, showEditInChartStudio: false,
  modeBarButtons: [["zoom2d", "pan2d", "resetScale2d", "toImage"]],
};

export const fmt = (x, digits = 3) => {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  if (!Number.isFinite(x)) return x > 0 ? "∞" : "−∞";
  if (x === 0) return "0";
  const a = Math.abs(x);
  return a >= 1e4 || a < 1e-3 ? x.toExponential(digits - 1) : String(Number(x.toPrecision(digits)));
};

export async function api(path, params = {}) {
  const query = new URLSearchParams(params).toString();
  const response = await fetch(query ? `${path}?${query}` : path, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// ---- settings, history and links -------------------------------------------------------------
// Each view registers the keys it owns with a parser (text -> value, or throws a message) and an
// apply function; the URL is the single source of truth when the page loads or Back is pressed.
const owners = [];
let settleTimer = null;

export function registerSettings(view) {
  owners.push(view);
}

function showLinkProblems(problems) {
  const box = document.getElementById("link-error");
  box.hidden = problems.length === 0;
  box.textContent = problems.length === 0 ? ""
    : `This link had settings that cannot be used, so their defaults were taken instead: ${problems.join("; ")}.`;
}

// Read the URL into every view; bad fields fall back to their defaults, all named in one message.
export function applyUrl() {
  const params = new URLSearchParams(window.location.search);
  const problems = [];
  for (const view of owners) {
    const values = {};
    for (const [key, parse] of Object.entries(view.keys)) {
      const text = params.get(key);
      if (text === null) continue;
      try {
        values[key] = parse(text, values);
      } catch (err) {
        problems.push(`${key}=${JSON.stringify(text)} (${err.message})`);
      }
    }
    view.apply(values);
  }
  showLinkProblems(problems);
  return problems;
}

export function currentQuery() {
  const params = new URLSearchParams();
  for (const view of owners) {
    for (const [key, value] of Object.entries(view.values())) {
      if (value !== null && value !== undefined) params.set(key, String(value));
    }
  }
  return params.toString();
}

// Called on every change; the history entry is pushed once the change has settled (no new change
// for 400 ms), so a slider drag makes one entry and Back undoes the whole drag.
export function settingsChanged() {
  clearTimeout(settleTimer);
  settleTimer = setTimeout(() => {
    const query = currentQuery();
    if (`?${query}` !== window.location.search) {
      window.history.pushState(null, "", `${window.location.pathname}?${query}${window.location.hash}`);
    }
  }, 400);
}

export function number(lo, hi, { integer = false, openLo = false } = {}) {
  return (text) => {
    const value = Number(text); // unlike parseFloat, refuses "1abc"
    const ok = text.trim() !== "" && Number.isFinite(value) && (!integer || Number.isInteger(value))
      && (openLo ? value > lo : value >= lo) && value <= hi;
    if (!ok) throw new Error(`must be ${integer ? "a whole number" : "a number"} in ${openLo ? "(" : "["}${lo}, ${hi}]`);
    return value;
  };
}

// Start-up: read the link into every view, then follow Back and Forward.
export function startHistory() {
  const problems = applyUrl();
  if (problems.length) {
    // Keep the user's place in history but show the link as it is now understood.
    window.history.replaceState(null, "", `${window.location.pathname}?${currentQuery()}${window.location.hash}`);
  }
  window.addEventListener("popstate", () => { clearTimeout(settleTimer); applyUrl(); });
}
