// The runs view: the monitor's runs under the runs directory. Loss and gradient norm by step for one run,
// or two overlaid (the demo's two runs, say); clip rate, warnings and threshold advice for each. A run
// that is still being written (no summary yet) is read again every few seconds.
import { COLORS, PLOT_CONFIG, api, fmt, registerSettings, settingsChanged } from "./common.js";

const $ = (id) => document.getElementById(id);
const escape = (text) => String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
const REFRESH_MS = 2000;
// Two palette colours that stay apart under colour-vision deficiencies, one line solid and one dashed.
// A run without clipping (no threshold recorded) beside one with it takes the cliff view's styles:
// vermillion solid for no clipping, blue dashed for clipping; otherwise the first run is blue solid,
// the second vermillion dashed.
const clips = (run) => run.timeline["gradclip/threshold"].some((c) => c !== null && Number.isFinite(c));

function runStyles(runs) {
  const kinds = runs.map(clips);
  if (runs.length === 1) return [{ color: kinds[0] ? COLORS.norm : COLORS.none, dash: "solid" }];
  if (kinds[0] !== kinds[1]) return kinds.map((c) => (c ? { color: COLORS.norm, dash: "dash" } : { color: COLORS.none, dash: "solid" }));
  return [{ color: COLORS.norm, dash: "solid" }, { color: COLORS.none, dash: "dash" }];
}
const state = { list: [], run: null, compare: null, data: {}, timer: null, generation: 0 };

function traces(run, k, st) {
  const t = run.timeline; // the series are named as the run log's fields (gradclip.sinks.TAGS)
  const name = (what) => `${run.id}: ${what}`;
  const norm = run.bucket > 1 ? `largest norm per ${run.bucket} steps` : "gradient norm";
  return [
    { type: "scatter", mode: "lines", name: run.id, x: t.step, y: t["gradclip/loss"], xaxis: "x", yaxis: "y",
      line: { color: st.color, dash: st.dash, width: 2 }, legendgroup: run.id },
    { type: "scatter", mode: "lines", name: name(norm), x: t.step, y: t["gradclip/pre_clip_norm"], xaxis: "x", yaxis: "y2",
      line: { color: st.color, dash: st.dash, width: 2 }, legendgroup: run.id, showlegend: false },
    { type: "scatter", mode: "lines", name: name("threshold"), x: t.step, y: t["gradclip/threshold"], xaxis: "x", yaxis: "y2",
      line: { color: "#555", dash: k ? "dot" : "dashdot", width: 1.5 }, legendgroup: run.id, showlegend: false },
  ];
}

function details(run) {
  const advice = run.advice ? escape(run.advice.text) : "not enough steps after warm-up yet";
  const caveat = run.diverged
    ? `<p class="warning"><b>Unreliable advice:</b> this run diverged (${escape(run.diverged)}). Its norms describe the`
      + " blow-up rather than healthy training, so a threshold taken from them is not to be trusted: take the advice"
      + " from a run that trained normally (with clipping, or a lower learning rate).</p>"
    : "";
  const warnings = run.warnings.map((w) => `<li>step ${escape(w.step)} · ${escape(w.kind)}: ${escape(w.message)}</li>`);
  const live = run.finished ? "" : " <span class=\"live\">still being written: refreshed every 2 s</span>";
  const lastLoss = run.timeline["gradclip/loss"].filter((x) => x !== null).at(-1);
  return `<h3>${escape(run.id)} <small>(${escape(run.name)})</small></h3>`
    + `<p><b>${run.steps}</b> steps${run.truncated ? " (last line unfinished)" : ""};${live} clipped on`
    + ` <b class="clip-rate">${fmt(100 * run.clip_rate)}%</b> of them; last loss ${fmt(lastLoss)}.</p>${caveat}`
    + `<p class="advice">Advice${run.diverged ? " (unreliable)" : ""}: ${advice}</p>`
    + `<details><summary>${run.warning_count} warning(s)</summary><ul>${warnings.join("")}</ul></details>`;
}

function summary(runs) {
  return runs.map((r) => {
    const loss = r.timeline["gradclip/loss"].filter((x) => x !== null);
    const norms = r.timeline["gradclip/pre_clip_norm"].filter((x) => x !== null);
    return `${r.id}: ${r.steps} steps, loss from ${fmt(loss[0])} to ${fmt(loss.at(-1))}, gradient norm up to`
      + ` ${fmt(Math.max(...norms))}, clipped on ${fmt(100 * r.clip_rate)}% of steps${r.diverged ? ", diverged" : ""}.`;
  }).join(" ");
}

async function draw() {
  const runs = [state.run, state.compare].filter((id) => id && state.data[id]).map((id) => state.data[id]);
  if (!runs.length) {
    Plotly.purge("run-plot");
    $("run-details").innerHTML = "";
    $("run-summary").textContent = "";
  } else {
    await drawRuns(runs);
  }
  document.body.dataset.runsRedraws = String(Number(document.body.dataset.runsRedraws || 0) + 1);
}

async function drawRuns(runs) {
  const layout = {
    margin: { l: 64, r: 12, t: 10, b: 44 }, height: 460,
    xaxis: { title: { text: "step" }, anchor: "y2" },
    yaxis: { type: "log", title: { text: "loss" }, exponentformat: "power", domain: [0.56, 1] },
    yaxis2: { type: "log", title: { text: "gradient norm" }, exponentformat: "power", domain: [0, 0.44] },
    legend: { orientation: "h", x: 0, y: -0.14, yanchor: "top" },
  };
  const styles = runStyles(runs);
  await Plotly.react("run-plot", runs.flatMap((r, k) => traces(r, k, styles[k])), layout, PLOT_CONFIG);
  $("run-details").innerHTML = runs.map((r, k) => {
    const border = `border-top: 3px ${styles[k].dash === "dash" ? "dashed" : "solid"} ${styles[k].color}`;
    return `<div class="run-card" data-order="${k}" style="${border}">${details(r)}</div>`;
  }).join("");
  $("run-summary").textContent = summary(runs);
}

// Load the chosen runs; an unreadable one clears the view and says why (never shows a stale run).
async function load() {
  const generation = ++state.generation;
  clearTimeout(state.timer);
  const wanted = [state.run, state.compare].filter(Boolean);
  const errors = [];
  for (const id of wanted) {
    try {
      state.data[id] = await api("/api/run", { run: id });
    } catch (err) {
      delete state.data[id];
      errors.push(`Cannot show run ${id}: ${err.message || err}`);
    }
  }
  if (generation !== state.generation) return;
  $("runs-error").textContent = errors.join(" ");
  $("runs-error").hidden = errors.length === 0;
  await draw();
  if (wanted.some((id) => state.data[id] && !state.data[id].finished)) state.timer = setTimeout(load, REFRESH_MS);
}

function showList() {
  for (const button of document.querySelectorAll("#run-list button[data-id]")) {
    const id = button.dataset.id;
    button.setAttribute("aria-pressed", String(id === state.run));
    button.classList.toggle("selected", id === state.run);
    button.classList.toggle("compared", id === state.compare);
  }
  const options = ['<option value="">(none)</option>']
    .concat(state.list.map((r) => `<option value="${escape(r.id)}">${escape(r.id)}</option>`));
  $("compare").innerHTML = options.join("");
  $("compare").value = state.compare ?? "";
}

function set(values, { push = true } = {}) {
  Object.assign(state, values);
  if (state.compare === state.run) state.compare = null;
  showList();
  load();
  if (push) settingsChanged();
}

function runId(text) {
  if (!text || text.length > 300) throw new Error("must be a run id from the list");
  return text;
}

export async function initRuns() {
  registerSettings({
    keys: { run: runId, compare: runId },
    apply: (values) => set({ run: values.run ?? null, compare: values.compare ?? null }, { push: false }),
    values: () => ({ run: state.run, compare: state.compare }),
  });
  $("compare").addEventListener("change", () => set({ compare: $("compare").value || null }));
  try {
    const list = await api("/api/runs");
    state.list = list.runs;
    $("runs-dir").textContent = list.runs_dir;
    $("run-list").innerHTML = list.runs.length
      ? list.runs.map((r) => `<li><button type="button" data-id="${escape(r.id)}">${escape(r.id)}`
        + ` <small>${fmt(r.bytes / 1024)} KiB · ${new Date(r.modified * 1000).toLocaleString()}</small></button></li>`).join("")
      : "<li>No runs found: a run directory holds grads.jsonl (<code>gradclip demo</code> writes two).</li>";
    for (const button of document.querySelectorAll("#run-list button[data-id]")) {
      button.addEventListener("click", () => set({ run: button.dataset.id }));
    }
    showList();
  } catch (err) {
    $("runs-error").hidden = false;
    $("runs-error").textContent = String(err.message || err);
  }
}
