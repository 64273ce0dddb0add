// Views 1 and 3: the loss surface with three trajectories (animated), and their loss / gradient-norm curves.
import { COLORS, LABELS, PLOT_CONFIG, api, fmt, latest, markRedraw, numberSetting, saveSettings, settings } from "./app.js";

const $ = (id) => document.getElementById(id);
const METHODS = ["none", "norm", "value"];
const state = { info: null, land: null, data: null, frame: 0, playing: false, surfaceDrawn: null };
// Exact values: a slider snaps to its 0.01 grid, but a value from the URL must be used as given.
const exact = { lr: 0.1, threshold: 1, steps: 100 };

// Sliders move in log10 units: learning rates and thresholds matter by factors, not by differences.
const logSliders = {
  lr: (x) => Number((10 ** x).toPrecision(3)),
  threshold: (x) => Number((10 ** x).toPrecision(3)),
  steps: (x) => Math.max(1, Math.round(10 ** x)),
};

function current() {
  return {
    surface: $("surface").value,
    u: Number($("u").value),
    v: Number($("v").value),
    lr: exact.lr,
    threshold: exact.threshold,
    steps: exact.steps,
  };
}

function setControls(values) {
  state.land = state.info.surfaces.find((s) => s.name === values.surface) || state.info.surfaces[0];
  $("surface").value = state.land.name;
  $("u-name").textContent = state.land.axes[0];
  $("v-name").textContent = state.land.axes[1];
  $("u").value = values.u;
  $("v").value = values.v;
  Object.assign(exact, { lr: values.lr, threshold: values.threshold, steps: Math.round(values.steps) });
  $("lr").value = Math.log10(values.lr);
  $("threshold").value = Math.log10(values.threshold);
  $("steps").value = Math.log10(values.steps);
  showLabels();
}

function showLabels() {
  const c = current();
  $("lr-out").textContent = c.lr;
  $("threshold-out").textContent = c.threshold;
  $("steps-out").textContent = c.steps;
}

function defaults(land) {
  return { surface: land.name, ...land.defaults };
}

function fromUrl() {
  const land = state.info.surfaces.find((s) => s.name === settings.get("surface")) || state.info.surfaces[0];
  const d = defaults(land);
  for (const key of ["u", "v", "lr", "threshold", "steps"]) d[key] = numberSetting(key, d[key]);
  return d;
}

function clipBound(method, c) {
  if (method === "none") return "none";
  return method === "norm" ? fmt(c.lr * c.threshold) : fmt(c.lr * c.threshold * Math.SQRT2);
}

function where(run, land) {
  const n = run.u.length - 1;
  const [[u0, u1], [v0, v1]] = land.bounds;
  if (run.diverged) return `diverged at step ${n}`;
  const out = run.u.findIndex((u, i) => u < u0 || u > u1 || run.v[i] < v0 || run.v[i] > v1);
  const end = `(${fmt(run.u[n])}, ${fmt(run.v[n])})`;
  return out >= 0 ? `left the map at step ${out}; ended at ${end}` : `ended at ${end}`;
}

function drawStats() {
  const c = state.data.settings;
  const rows = METHODS.map((m) => {
    const r = state.data.runs[m];
    return `<tr id="stat-${m}" class="${m}"><td>${LABELS[m]}</td><td class="final-loss">${fmt(r.loss[r.loss.length - 1])}</td>`
      + `<td class="max-step">${fmt(r.max_step)}</td><td>${clipBound(m, c)}</td>`
      + `<td class="clips">${r.clip_count}</td><td>${where(r, state.land)}</td></tr>`;
  });
  document.querySelector("#stats tbody").innerHTML = rows.join("");
}

// One drawing per surface: a promise, so that the start-up draw and the first redraw share it.
function drawSurface() {
  if (state.surfaceDrawn?.name !== state.land.name) {
    state.surfaceDrawn = { name: state.land.name, done: drawSurfaceNow(state.land) };
  }
  return state.surfaceDrawn.done;
}

async function drawSurfaceNow(land) {
  const s = await api("/api/surface", { surface: land.name, grid: 161 });
  const z = land.log_color ? s.loss.map((row) => row.map((x) => Math.log10(x + 1e-3))) : s.loss;
  const [[u0, u1], [v0, v1]] = land.bounds;
  const traces = [{
    type: "heatmap", x: s.u, y: s.v, z, colorscale: "Viridis", hoverinfo: "x+y+z",
    colorbar: { title: { text: land.log_color ? "log10 loss" : "loss" }, len: 0.8 },
  }];
  for (const m of METHODS) {
    traces.push({ type: "scatter", mode: "lines+markers", name: LABELS[m], x: [], y: [],
      // Value clipping dashed and thinner, so that norm clipping shows where the two paths coincide.
      line: { color: COLORS[m], width: m === "value" ? 2 : 3, dash: m === "value" ? "dot" : "solid" },
      marker: { size: 3, color: COLORS[m] } });
  }
  traces.push({ type: "scatter", mode: "markers", name: "start", x: [], y: [], showlegend: false,
    marker: { size: 11, color: "#fff", line: { color: "#000", width: 2 } } });
  const layout = {
    title: { text: land.title, font: { size: 14 } }, margin: { l: 55, r: 10, t: 40, b: 45 },
    xaxis: { title: { text: land.axes[0] }, range: [u0, u1], fixedrange: true },
    yaxis: { title: { text: land.axes[1] }, range: [v0, v1], fixedrange: true },
    legend: { orientation: "h", y: -0.12 }, dragmode: false, hovermode: "closest",
  };
  await Plotly.react("cliff-plot", traces, layout, PLOT_CONFIG);
}

function maxFrame() {
  return Math.max(...METHODS.map((m) => state.data.runs[m].u.length - 1));
}

async function drawFrame({ curves = true } = {}) {
  const k = state.frame;
  $("frame").value = k;
  $("frame-out").textContent = `${k} / ${maxFrame()}`;
  const xs = METHODS.map((m) => state.data.runs[m].u.slice(0, k + 1));
  const ys = METHODS.map((m) => state.data.runs[m].v.slice(0, k + 1));
  const c = state.data.settings;
  const work = [Plotly.restyle("cliff-plot", { x: [...xs, [c.u]], y: [...ys, [c.v]] }, [1, 2, 3, 4])];
  if (curves) {
    work.push(Plotly.relayout("loss-plot", { "shapes[0].x0": k, "shapes[0].x1": k }));
    work.push(Plotly.relayout("norm-plot", { "shapes[1].x0": k, "shapes[1].x1": k }));
  }
  await Promise.all(work);
}

async function drawCurves() {
  const c = state.data.settings;
  const lossTraces = METHODS.map((m) => {
    const r = state.data.runs[m];
    return { type: "scatter", mode: "lines", name: LABELS[m], x: r.loss.map((_, i) => i), y: r.loss,
      line: { color: COLORS[m] } };
  });
  const normTraces = [];
  for (const m of METHODS) {
    const r = state.data.runs[m];
    normTraces.push({ type: "scatter", mode: "lines", name: LABELS[m], x: r.grad_norm.map((_, i) => i),
      y: r.grad_norm, line: { color: COLORS[m] } });
  }
  for (const m of ["norm", "value"]) {
    const r = state.data.runs[m];
    const steps = r.clipped.flatMap((on, i) => (on ? [i] : []));
    normTraces.push({ type: "scatter", mode: "markers", name: `${LABELS[m]}: clipped`, x: steps,
      y: steps.map((i) => r.grad_norm[i]), marker: { symbol: "x", size: 7, color: COLORS[m] } });
  }
  const frameLine = { type: "line", xref: "x", yref: "paper", x0: state.frame, x1: state.frame, y0: 0, y1: 1,
    line: { color: "#999", width: 1 } };
  const base = { margin: { l: 60, r: 10, t: 35, b: 30 }, legend: { orientation: "h", y: -0.15, yanchor: "top" },
    showlegend: true };
  const lossLayout = { ...base, title: { text: "loss, by step", font: { size: 14 } }, xaxis: {},
    yaxis: { type: "log", exponentformat: "power" }, shapes: [frameLine] };
  const normLayout = { ...base, title: { text: "gradient norm before clipping, by step", font: { size: 14 } },
    xaxis: {}, yaxis: { type: "log", exponentformat: "power" },
    shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: c.threshold, y1: c.threshold,
      line: { color: "#555", dash: "dash", width: 1 } }, { ...frameLine }] };
  await Promise.all([
    Plotly.react("loss-plot", lossTraces, lossLayout, PLOT_CONFIG),
    Plotly.react("norm-plot", normTraces, normLayout, PLOT_CONFIG),
  ]);
}

async function redraw(data) {
  state.data = data;
  state.frame = maxFrame();
  $("frame").max = maxFrame();
  await drawSurface();
  drawStats();
  // The curves are drawn with the frame line already at the last frame: no second pass over them.
  await Promise.all([drawCurves(), drawFrame({ curves: false })]);
  markRedraw("cliff");
}

const request = latest((c) => api("/api/simulate", c), redraw, (msg) => { $("cliff-error").textContent = msg; });

function changed() {
  showLabels();
  const c = current();
  state.playing = false;
  $("play").textContent = "play";
  saveSettings(c);
  request(c);
}

function play() {
  if (!state.data) return;
  state.playing = !state.playing;
  $("play").textContent = state.playing ? "pause" : "play";
  if (state.playing && state.frame >= maxFrame()) state.frame = 0;
  // About four seconds for the whole run whatever its length: a stride of frames per tick.
  const stride = Math.max(1, Math.ceil(maxFrame() / 240));
  const tick = async () => {
    if (!state.playing) return;
    state.frame = Math.min(maxFrame(), state.frame + stride);
    await drawFrame();
    if (state.frame >= maxFrame()) { state.playing = false; $("play").textContent = "play"; return; }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

function onClick(event) {
  const p = event.points && event.points[0];
  if (!p) return;
  $("u").value = Number(p.x.toPrecision(4));
  $("v").value = Number(p.y.toPrecision(4));
  changed();
}

function chooseSurface(name, overrides = {}) {
  const land = state.info.surfaces.find((s) => s.name === name);
  setControls({ ...defaults(land), ...overrides });
  changed();
}

export function initCliff(info) {
  state.info = info;
  $("surface").innerHTML = info.surfaces.map((s) => `<option value="${s.name}">${s.name}</option>`).join("");
  setControls(fromUrl());
  for (const id of ["lr", "threshold", "steps"]) {
    $(id).addEventListener("input", () => { exact[id] = logSliders[id](Number($(id).value)); changed(); });
  }
  for (const id of ["u", "v"]) $(id).addEventListener("change", changed);
  $("surface").addEventListener("change", () => chooseSurface($("surface").value));
  $("play").addEventListener("click", play);
  $("step").addEventListener("click", () => {
    if (!state.data) return;
    state.playing = false;
    $("play").textContent = "play";
    state.frame = state.frame >= maxFrame() ? 0 : state.frame + 1;
    drawFrame();
  });
  $("frame").addEventListener("input", () => { state.frame = Number($("frame").value); drawFrame(); });
  $("show-vanishing").addEventListener("click", () => {
    chooseSurface("cliff", { u: 3, v: -6.5 });
    $("cliff").scrollIntoView();
  });
  $("show-high-lr").addEventListener("click", () => {
    chooseSurface("bowl", { lr: 0.6, threshold: 1, steps: 100 });
    $("cliff").scrollIntoView();
  });
  drawSurface().then(() => $("cliff-plot").on("plotly_click", onClick));
  request(current());
}
