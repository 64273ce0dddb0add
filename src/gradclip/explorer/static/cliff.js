// The cliff view: the loss surface (heatmap or contours, with the catapult region hatched), the three
// runs simulated in the page (landscapes.js) with a marker each, a narrating caption, and the loss and
// gradient-norm curves. Every input redraws in the next animation frame: no server round trip.
import { COLORS, DASHES, LABELS, TEXT_COLORS, fmt, number, registerSettings, settingsChanged } from "./common.js";
import { contourSegments, viridis } from "./contours.js";
import { SHAPES, WIDTHS, drawCurve, drawStats } from "./curves.js";
import { METHODS, simulateAll, surfaceGrid } from "./landscapes.js";
import { axes, drawAxes, drawBase, fitCanvas, marker, onCanvasResize, polyline, sameUntil } from "./plot.js";
import { caption, inside, lossSummary, mapSummary, normSummary } from "./story.js";

const $ = (id) => document.getElementById(id);
const GRID = 161, REGION = [48, 42], REGION_STEPS = 500, PLAY_MS = 4000;
const state = {
  info: null, land: null, s: null, runs: null, frame: 0, view: "heatmap", playing: false,
  base: null, region: null, regionId: 0, grids: {}, pending: false, worker: null,
};

const limits = () => state.info.limits;
const defaults = (land) => ({ surface: land.name, ...land.defaults });
const jumpOf = (land) => Math.min(land.bounds[0][1] - land.bounds[0][0], land.bounds[1][1] - land.bounds[1][0]) / 4;
const maxFrame = () => Math.max(...METHODS.map((m) => state.runs[m].u.length - 1));
const findLand = (name) => state.info.surfaces.find((s) => s.name === name);

// ---- drawing -----------------------------------------------------------------------------------
function grid(land) {
  if (!state.grids[land.name]) {
    const g = surfaceGrid(land.name, land.bounds, GRID);
    const z = land.log_color ? g.loss.map((x) => Math.log10(x + 1e-3)) : g.loss;
    let lo = Infinity, hi = -Infinity;
    for (const x of z) if (Number.isFinite(x)) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
    state.grids[land.name] = { ...g, z, lo, hi };
  }
  return state.grids[land.name];
}

function surfaceAxes(w, h) {
  const box = { left: 50, top: 8, width: w - 62, height: h - 46 };
  const [[u0, u1], [v0, v1]] = state.land.bounds;
  return axes({ box, x: [u0, u1], y: [v0, v1] });
}

// Heatmap (or white) with level lines, rendered once per surface, view and size.
function mapImage(ax, w, h) {
  const key = `${state.land.name}/${state.view}/${w}x${h}/${window.devicePixelRatio}`;
  if (state.base?.key === key) return state.base.canvas;
  const g = grid(state.land);
  const canvas = document.createElement("canvas");
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  const { box } = ax;
  if (state.view === "heatmap") {
    const img = new ImageData(GRID, GRID);
    for (let i = 0; i < GRID; i++) for (let j = 0; j < GRID; j++) {
      const [r, gg, b] = viridis((g.z[i * GRID + j] - g.lo) / (g.hi - g.lo));
      const o = ((GRID - 1 - i) * GRID + j) * 4; // image rows run downwards, v upwards
      img.data.set([r, gg, b, 255], o);
    }
    const tile = document.createElement("canvas");
    tile.width = tile.height = GRID;
    tile.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(tile, box.left, box.top, box.width, box.height);
  } else {
    ctx.fillStyle = "#fff";
    ctx.fillRect(box.left, box.top, box.width, box.height);
  }
  const levels = 14;
  ctx.strokeStyle = state.view === "heatmap" ? "rgba(255,255,255,0.45)" : "#555";
  ctx.lineWidth = state.view === "heatmap" ? 0.8 : 1;
  ctx.beginPath();
  const sx = box.width / (GRID - 1), sy = box.height / (GRID - 1);
  for (let l = 1; l < levels; l++) {
    for (const [x0, y0, x1, y1] of contourSegments(g.z, GRID, g.lo + ((g.hi - g.lo) * l) / levels)) {
      ctx.moveTo(box.left + x0 * sx, box.top + box.height - y0 * sy);
      ctx.lineTo(box.left + x1 * sx, box.top + box.height - y1 * sy);
    }
  }
  ctx.stroke();
  state.base = { key, canvas };
  return canvas;
}

let hatch = null;
function regionLayer(ctx, ax, r) {
  if (!r) return;
  if (!hatch) {
    const tile = document.createElement("canvas");
    tile.width = tile.height = 8;
    const t = tile.getContext("2d");
    t.strokeStyle = "rgba(0,0,0,0.4)"; t.lineWidth = 1;
    t.beginPath(); t.moveTo(0, 8); t.lineTo(8, 0); t.stroke();
    hatch = ctx.createPattern(tile, "repeat");
  }
  const [nu, nv] = [r.nu, r.nv];
  const cw = ax.box.width / nu, ch = ax.box.height / nv;
  const cells = new Path2D();
  const edges = new Path2D();
  for (let i = 0; i < nv; i++) for (let j = 0; j < nu; j++) {
    if (!r.mask[i * nu + j]) continue;
    const x = ax.box.left + j * cw, y = ax.box.top + ax.box.height - (i + 1) * ch;
    cells.rect(x, y, cw + 0.5, ch + 0.5);
    const off = (ii, jj) => ii < 0 || jj < 0 || ii >= nv || jj >= nu || !r.mask[ii * nu + jj];
    if (off(i - 1, j)) { edges.moveTo(x, y + ch); edges.lineTo(x + cw, y + ch); }
    if (off(i + 1, j)) { edges.moveTo(x, y); edges.lineTo(x + cw, y); }
    if (off(i, j - 1)) { edges.moveTo(x, y); edges.lineTo(x, y + ch); }
    if (off(i, j + 1)) { edges.moveTo(x + cw, y); edges.lineTo(x + cw, y + ch); }
  }
  ctx.save();
  ctx.fillStyle = "rgba(255,255,255,0.12)";
  ctx.fill(cells);
  ctx.fillStyle = hatch;
  ctx.fill(cells);
  ctx.strokeStyle = "rgba(0,0,0,0.55)"; ctx.lineWidth = 1; ctx.stroke(edges);
  ctx.restore();
}

// The map: its static part (surface, catapult region, axes) is rendered only when one of them changes
// and copied in; the paths, the markers and the start are drawn over it on every input.
function drawSurface() {
  const { ctx, w, h } = fitCanvas($("surface-canvas"), { clear: false });
  const ax = surfaceAxes(w, h);
  state.ax = ax;
  window.cliffAxes = ax; // the browser tests map data to pixels with it
  const region = state.region?.key === regionKey() ? state.region : null;
  const regionId = region ? `${region.key}/${region.nu}x${region.nv}` : "no region";
  drawBase($("surface-canvas"), `${state.land.name}/${state.view}/${regionId}`, (base, bw, bh) => {
    const bax = surfaceAxes(bw, bh);
    base.drawImage(mapImage(bax, bw, bh), 0, 0, bw, bh);
    regionLayer(base, bax, region);
    drawAxes(base, bax, { xlabel: state.land.axes[0], ylabel: state.land.axes[1] });
  });
  ctx.save();
  ctx.beginPath(); ctx.rect(ax.box.left, ax.box.top, ax.box.width, ax.box.height); ctx.clip();
  const k = state.frame;
  drawPaths(ctx, ax, state.runs, k);
  ctx.restore();
  for (const m of ["none", "value", "norm"]) drawMarker(ctx, ax, m, k);
  // The start: a ring drawn last, so the markers sitting on it at step 0 do not hide it.
  ctx.save();
  ctx.beginPath(); ctx.arc(ax.px(state.s.u), ax.py(state.s.v), 11, 0, 2 * Math.PI);
  ctx.strokeStyle = "#fff"; ctx.lineWidth = 5; ctx.stroke();
  ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.stroke();
  ctx.restore();
}

// The three paths up to step k, each with its white halo, in METHODS order. Where a run goes through
// the same points as one drawn after it (all three do until the first clip) the later halo covers it,
// so it is drawn from one point before they part (`cover` false: every path whole, for the tests).
export function drawPaths(ctx, ax, runs, k, { cover = true } = {}) {
  METHODS.forEach((m, i) => {
    const r = runs[m];
    let hidden = 0;
    for (const later of cover ? METHODS.slice(i + 1) : []) {
      hidden = Math.max(hidden, Math.min(sameUntil(r.u, runs[later].u), sameUntil(r.v, runs[later].v)));
    }
    const n = Math.min(k + 1, r.u.length);
    polyline(ctx, ax, r.u, r.v, n, { color: COLORS[m], dash: DASHES[m], width: WIDTHS[m], from: Math.max(0, Math.min(hidden, n) - 1) });
  });
}

// The current point of a run; a run off the map is shown at the edge with an arrow and where it is.
function drawMarker(ctx, ax, m, k) {
  const r = state.runs[m];
  const i = Math.min(k, r.u.length - 1);
  const { box } = ax;
  let x = ax.px(r.u[i]), y = ax.py(r.v[i]);
  if (inside(state.land, r.u[i], r.v[i])) { marker(ctx, x, y, SHAPES[m], COLORS[m]); return; }
  x = Math.min(box.left + box.width - 8, Math.max(box.left + 8, x));
  y = Math.min(box.top + box.height - 8, Math.max(box.top + 8, y));
  marker(ctx, x, y, SHAPES[m], COLORS[m]);
  ctx.save();
  ctx.font = "bold 12px system-ui, sans-serif";
  const text = `${LABELS[m]}: thrown to (${fmt(r.u[i])}, ${fmt(r.v[i])})`;
  ctx.textBaseline = y < box.top + box.height / 2 ? "top" : "bottom";
  ctx.textAlign = "left";
  // Keep the whole label inside the map, whatever the width of the screen.
  const width = ctx.measureText(text).width;
  const tx = Math.max(box.left + 4, Math.min(x + 12, box.left + box.width - width - 4));
  const ty = y + (ctx.textBaseline === "top" ? 10 : -10);
  ctx.lineWidth = 4; ctx.strokeStyle = "#fff"; ctx.strokeText(text, tx, ty);
  ctx.fillStyle = TEXT_COLORS[m]; ctx.fillText(text, tx, ty);
  ctx.restore();
}

// Writes only what changed: every write to the page costs a style and layout pass in the frame.
const setText = (id, text) => { const el = $(id); if (el.textContent !== text) el.textContent = text; };
const setAttr = (id, name, value) => { const el = $(id); if (el.getAttribute(name) !== value) el.setAttribute(name, value); };
const setNumber = (id, value) => { const el = $(id); if (el.value !== String(value)) el.value = value; };

function drawText() {
  const jump = jumpOf(state.land);
  const share = state.region?.key === regionKey() ? state.region.share : null;
  setText("caption", caption(state.runs, state.frame, state.s, state.land, jump));
  setText("surface-summary", mapSummary(state.runs, state.frame, state.land, share));
  setText("loss-summary", lossSummary(state.runs, jump, state.land));
  setText("norm-summary", normSummary(state.runs, state.s));
  setNumber("frame", state.frame);
  setAttr("frame", "aria-valuetext", `step ${state.frame} of ${maxFrame()}`);
  setText("frame-out", `${state.frame} / ${maxFrame()}`);
}

function drawAll({ full = true } = {}) {
  drawSurface();
  const at = { steps: state.s.steps, frame: state.frame };
  drawCurve($("loss-canvas"), state.runs, "loss", { ...at, ylabel: "loss" });
  drawCurve($("norm-canvas"), state.runs, "gradNorm", { ...at, hline: state.s.threshold, ylabel: "‖g‖" });
  if (full) drawStats(document.querySelector("#stats tbody"), state.runs, state.s, state.land);
  drawText();
  markRedraw();
}

// Tests and the benchmark wait on this counter. Its time is taken once the drawing has been painted:
// the next animation frame comes after the paint of the frame that holds the drawing, and a message
// posted from it runs after that frame's own rendering steps.
function markRedraw() {
  const frame = state.frame;
  requestAnimationFrame(() => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      document.body.dataset.cliffRedraws = String(Number(document.body.dataset.cliffRedraws || 0) + 1);
      window.lastRedraw = { view: "cliff", time: performance.now(), frame };
    };
    ch.port2.postMessage(0);
  });
}

// ---- simulation and the catapult region -------------------------------------------------------
function regionKey() {
  const s = state.s;
  return `${s.surface}/${s.lr}/${Math.min(s.steps, REGION_STEPS)}`;
}

// The region is computed by a worker once the input has settled (during a drag it would be out of date
// at once), coarse first and then refined along its edges. A worker still busy with a setting that is no
// longer the page's is stopped at once, so that it does not compete with the drag for the CPU.
function requestRegion() {
  const key = regionKey();
  if ((state.region?.key === key && state.region.final) || state.regionWanted === key) return;
  state.regionWanted = key;
  clearTimeout(state.regionTimer);
  if (state.worker && state.regionBusy) { state.worker.terminate(); state.worker = null; state.regionBusy = false; }
  state.regionTimer = setTimeout(() => {
    if (!state.worker) {
      state.worker = new Worker("/static/region.js", { type: "module" });
      state.worker.onmessage = ({ data }) => {
        if (data.id !== state.regionId) return;
        if (data.final) state.regionBusy = false;
        const share = data.mask.reduce((a, b) => a + b, 0) / data.mask.length;
        state.region = { key: data.key, mask: data.mask, nu: data.nu, nv: data.nv, share, final: data.final };
        document.body.dataset.regionReady = data.key;
        document.body.dataset.regionCells = `${data.nu}x${data.nv}`;
        schedule({ full: false });
      };
    }
    const s = state.s;
    state.regionId += 1;
    state.regionBusy = true;
    state.worker.postMessage({ id: state.regionId, key, name: s.surface, bounds: state.land.bounds, lr: s.lr,
      steps: Math.min(s.steps, REGION_STEPS), jump: jumpOf(state.land), nu: REGION[0], nv: REGION[1] });
  }, 400);
}

function simulate() {
  const s = state.s;
  state.runs = simulateAll(s.surface, [s.u, s.v], { lr: s.lr, threshold: s.threshold, steps: s.steps });
  window.cliffRuns = state.runs; // read by the browser tests (the same arrays the page draws)
  setAttr("frame", "max", String(maxFrame()));
  state.frame = maxFrame();
  requestRegion();
}

// Redraw: at once for input (Chromium already delivers slider and pointer input once per frame, so the
// work is done before that frame is painted), or coalesced into the next animation frame otherwise.
function render() {
  const t0 = performance.now();
  if (state.needSim) simulate();
  const t1 = performance.now();
  drawAll({ full: state.needFull });
  state.needSim = false; state.needFull = false;
  // Read by the benchmark: the page's JavaScript for this input, simulation and drawing. The canvases'
  // rasterisation comes later in the same frame (Chromium flushes a canvas at the end of the task).
  window.frameWork = performance.now() - t0;
  window.frameSimulate = t1 - t0;
}

function schedule({ resimulate = false, full = true, now = false } = {}) {
  state.needSim ||= resimulate;
  state.needFull ||= full;
  if (now) { render(); return; }
  if (state.pending) return;
  state.pending = true;
  requestAnimationFrame(() => {
    state.pending = false;
    render();
  });
}

// ---- controls ------------------------------------------------------------------------------------
const SLIDERS = {
  lr: { toValue: (x) => Number((10 ** x).toPrecision(3)), text: (v) => `learning rate ${v}` },
  threshold: { toValue: (x) => Number((10 ** x).toPrecision(3)), text: (v) => `threshold c ${v}` },
  steps: { toValue: (x) => Math.max(1, Math.round(10 ** x)), text: (v) => `${v} steps` },
};

function showControls() {
  const s = state.s;
  if ($("surface").value !== s.surface) $("surface").value = s.surface;
  setText("u-name", state.land.axes[0]);
  setText("v-name", state.land.axes[1]);
  setNumber("u", s.u); setNumber("v", s.v);
  for (const [id, sl] of Object.entries(SLIDERS)) {
    // A slider moves in steps of 0.01 (log10 units): a value within half a step is where it already is.
    if (!(Math.abs(Number($(id).value) - Math.log10(s[id])) < 0.005)) $(id).value = Math.log10(s[id]);
    setText(`${id}-out`, String(s[id]));
    setAttr(id, "aria-valuetext", sl.text(s[id]));
  }
  for (const el of document.querySelectorAll("[data-surface]")) {
    const hidden = el.dataset.surface !== s.surface;
    if (el.hidden !== hidden) el.hidden = hidden;
  }
  for (const el of document.querySelectorAll("input[name=view]")) {
    if (el.checked !== (el.value === state.view)) el.checked = el.value === state.view;
  }
}

function set(values, { push = true, now = false } = {}) {
  const land = findLand(values.surface ?? state.s.surface);
  const surfaceChanged = land !== state.land;
  state.land = land;
  state.s = { ...(surfaceChanged ? defaults(land) : state.s), ...values, surface: land.name };
  state.playing = false;
  $("play").textContent = "play";
  showControls();
  schedule({ resimulate: true, now });
  if (push) settingsChanged();
}

function play() {
  if (state.playing) { state.playing = false; $("play").textContent = "play"; return; }
  state.playing = true;
  $("play").textContent = "pause";
  if (state.frame >= maxFrame()) state.frame = 0;
  const from = state.frame, t0 = performance.now();
  const tick = (now) => {
    if (!state.playing) return;
    // A whole run in about PLAY_MS, whatever its length.
    state.frame = Math.min(maxFrame(), from + Math.floor(((now - t0) / PLAY_MS) * maxFrame()));
    drawAll({ full: false });
    if (state.frame >= maxFrame()) { state.playing = false; $("play").textContent = "play"; return; }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

function onSurfaceClick(event) {
  const ax = state.ax;
  const box = $("surface-canvas").getBoundingClientRect();
  const x = event.clientX - box.left, y = event.clientY - box.top;
  if (x < ax.box.left || x > ax.box.left + ax.box.width || y < ax.box.top || y > ax.box.top + ax.box.height) return;
  // The start is exactly the clicked point (to 6 digits, well under a pixel): no snapping.
  const u = Number(ax.dx(x).toPrecision(6)), v = Number(ax.dy(y).toPrecision(6));
  document.body.dataset.clicks = String(Number(document.body.dataset.clicks || 0) + 1);
  set({ u, v });
}

function parsers() {
  const bounded = (axis) => (text, values) => {
    const land = findLand(values.surface ?? state.s.surface);
    const [lo, hi] = land.bounds[axis];
    return number(lo, hi)(text);
  };
  return {
    surface: (text) => {
      if (!findLand(text)) throw new Error(`must be one of ${state.info.surfaces.map((s) => s.name).join(", ")}`);
      return text;
    },
    u: bounded(0), v: bounded(1),
    lr: number(0, limits().lr, { openLo: true }),
    threshold: number(0, limits().threshold, { openLo: true }),
    steps: number(1, limits().steps, { integer: true }),
    view: (text) => { if (!["heatmap", "contours"].includes(text)) throw new Error("must be heatmap or contours"); return text; },
  };
}

export function initCliff(info) {
  state.info = info;
  state.land = info.surfaces[0];
  state.s = defaults(state.land);
  $("surface").innerHTML = info.surfaces.map((s) => `<option value="${s.name}">${s.name}: ${s.title}</option>`).join("");
  for (const [id, sl] of Object.entries(SLIDERS)) {
    $(id).addEventListener("input", () => set({ [id]: sl.toValue(Number($(id).value)) }, { now: true }));
  }
  for (const id of ["u", "v"]) {
    $(id).addEventListener("change", () => {
      const value = Number($(id).value);
      const [lo, hi] = state.land.bounds[id === "u" ? 0 : 1];
      if (Number.isFinite(value) && value >= lo && value <= hi) set({ [id]: value });
      else { $(id).value = state.s[id]; $("cliff-error").textContent = `${state.land.axes[id === "u" ? 0 : 1]} must be in [${lo}, ${hi}]`; }
    });
  }
  $("surface").addEventListener("change", () => set(defaults(findLand($("surface").value))));
  for (const el of document.querySelectorAll("input[name=view]")) {
    el.addEventListener("change", () => { state.view = el.value; schedule({ full: false }); settingsChanged(); });
  }
  $("play").addEventListener("click", play);
  $("step").addEventListener("click", () => {
    state.playing = false; $("play").textContent = "play";
    state.frame = state.frame >= maxFrame() ? 0 : state.frame + 1;
    schedule({ full: false });
  });
  $("frame").addEventListener("input", () => { state.frame = Number($("frame").value); schedule({ full: false }); });
  $("surface-canvas").addEventListener("click", onSurfaceClick);
  $("show-vanishing").addEventListener("click", () => { set({ ...defaults(findLand("cliff")), u: 3, v: -6.5 }); $("cliff").scrollIntoView(); });
  $("show-high-lr").addEventListener("click", () => { set({ ...defaults(findLand("bowl")), lr: 0.6 }); $("cliff").scrollIntoView(); });
  onCanvasResize(() => schedule({ full: false }));
  window.addEventListener("resize", () => schedule({ full: false })); // a zoom changes the pixel density
  registerSettings({
    keys: parsers(),
    apply: (values) => {
      state.view = values.view ?? "heatmap";
      const land = findLand(values.surface ?? info.surfaces[0].name);
      state.land = land;
      state.s = { ...defaults(land), ...values, surface: land.name };
      set({}, { push: false });
    },
    values: () => ({ ...state.s, view: state.view === "heatmap" ? null : state.view }),
  });
}
