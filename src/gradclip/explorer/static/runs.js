// View 4: the monitor's runs under the runs directory: norm timeline, threshold, clip rate, warnings, advice.
import { PLOT_CONFIG, api, fmt, latest, markRedraw, saveSettings, settings } from "./app.js";

const $ = (id) => document.getElementById(id);
const escape = (text) => String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

async function draw(run) {
  const t = run.timeline;
  const clippedSteps = t.step.filter((_, i) => t.clipped[i] > 0);
  const traces = [
    { type: "scatter", mode: "lines", name: run.bucket > 1 ? `largest norm per ${run.bucket} steps` : "gradient norm",
      x: t.step, y: t.total_norm, line: { color: "#1f5fbf" } },
    { type: "scatter", mode: "lines", name: "threshold", x: t.step, y: t.threshold,
      line: { color: "#555", dash: "dash" } },
    { type: "scatter", mode: "markers", name: "clipped", x: clippedSteps,
      y: t.total_norm.filter((_, i) => t.clipped[i] > 0), marker: { symbol: "x", size: 6, color: "#d62728" } },
  ];
  const layout = { margin: { l: 60, r: 10, t: 35, b: 40 }, title: { text: escape(run.name), font: { size: 14 } },
    xaxis: { title: { text: "step" } }, yaxis: { type: "log", title: { text: "norm" }, exponentformat: "power" },
    legend: { orientation: "h", y: -0.2 } };
  await Plotly.react("run-plot", traces, layout, PLOT_CONFIG);
  const warnings = run.warnings.map((w) => `<li>step ${escape(w.step)} · ${escape(w.kind)}: ${escape(w.message)}</li>`);
  $("run-details").innerHTML = `<p><b>${run.steps}</b> steps${run.truncated ? " (last line unfinished: still running, or crashed)" : ""};`
    + ` clipped on <b id="clip-rate">${fmt(100 * run.clip_rate)}%</b> of them.</p>`
    + `<p>Advice: ${run.advice ? escape(run.advice.text) : "not enough steps after warm-up yet"}</p>`
    + `<p>${run.warning_count} warning(s)</p><ul>${warnings.join("")}</ul>`;
  markRedraw("runs");
}

const request = latest((id) => api("/api/run", { run: id }), draw, (msg) => { $("runs-error").textContent = msg; });

function select(id) {
  for (const row of document.querySelectorAll("#run-list tbody tr")) row.classList.toggle("selected", row.dataset.id === id);
  saveSettings({ run: id });
  request(id);
}

export async function initRuns() {
  try {
    const list = await api("/api/runs");
    $("runs-dir").textContent = list.runs_dir;
    const rows = list.runs.map((r) => `<tr data-id="${escape(r.id)}"><td>${escape(r.id)}</td>`
      + `<td>${fmt(r.bytes / 1024)} KiB</td><td>${new Date(r.modified * 1000).toLocaleString()}</td></tr>`);
    document.querySelector("#run-list tbody").innerHTML = rows.length ? rows.join("")
      : "<tr><td colspan=3>no runs found (a run directory holds grads.jsonl)</td></tr>";
    for (const row of document.querySelectorAll("#run-list tbody tr[data-id]")) {
      row.addEventListener("click", () => select(row.dataset.id));
    }
    const wanted = settings.get("run");
    if (wanted !== null) select(wanted);
  } catch (err) {
    $("runs-error").textContent = String(err.message || err);
  }
}
