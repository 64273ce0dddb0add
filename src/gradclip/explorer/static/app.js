// Entry point: shared helpers (API calls, URL settings, redraw bookkeeping) and the start-up of each view.
import { initCliff } from "./cliff.js";
import { initRuns } from "./runs.js";
import { initVector } from "./vector.js";

// Every setting lives in the page's query string, so that a view can be shared by copying the URL.
export const settings = new URLSearchParams(window.location.search);

export function saveSettings(values) {
  for (const [key, value] of Object.entries(values)) {
    if (value === null || value === undefined) settings.delete(key);
    else settings.set(key, String(value));
  }
  window.history.replaceState(null, "", `${window.location.pathname}?${settings}${window.location.hash}`);
}

export function numberSetting(key, fallback) {
  const value = Number.parseFloat(settings.get(key));
  return Number.isFinite(value) ? value : fallback;
}

export async function api(path, params = {}) {
  const response = await fetch(`${path}?${new URLSearchParams(params)}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// Only the newest request's answer is drawn: when input arrives faster than the server answers,
// older answers would redraw a stale state, and queued requests would lag the slider.
export function latest(fetcher, draw, onError) {
  let running = false;
  let pending = null;
  async function go(args) {
    if (running) { pending = args; return; }
    running = true;
    try {
      draw(await fetcher(args));
      onError("");
    } catch (err) {
      onError(String(err.message || err));
    } finally {
      running = false;
      if (pending !== null) { const next = pending; pending = null; go(next); }
    }
  }
  return go;
}

// Tests and the benchmark wait on this counter: it moves once a redraw has reached the screen.
export function markRedraw(view) {
  const body = document.body;
  body.dataset.redraws = String(Number(body.dataset.redraws) + 1);
  body.dataset[`${view}Redraws`] = String(Number(body.dataset[`${view}Redraws`] || 0) + 1);
  window.lastRedraw = { view, time: performance.now() };
}

export const fmt = (x, digits = 3) => {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  if (x === 0) return "0";
  const a = Math.abs(x);
  return a >= 1e4 || a < 1e-3 ? x.toExponential(digits - 1) : x.toPrecision(digits);
};

export const COLORS = { none: "#d62728", norm: "#1f5fbf", value: "#e07b00" };
export const LABELS = { none: "no clipping", norm: "norm clipping", value: "value clipping" };
export const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

async function main() {
  const info = await api("/api/surfaces");
  initCliff(info);
  initVector();
  initRuns();
}

main().catch((err) => {
  document.getElementById("cliff-error").textContent = `cannot start: ${err.message || err}`;
});
