// The vector view: one 2-D gradient clipped by norm and by value, drawn to scale with the threshold
// circle and box. Drag (mouse, pen or finger: pointer events) or type the components.
import { COLORS, DASHES, fmt, number, registerSettings, settingsChanged } from "./common.js";
import { compareClipping } from "./landscapes.js";
import { axes, drawAxes, fitCanvas, onCanvasResize } from "./plot.js";

const $ = (id) => document.getElementById(id);
const DEFAULTS = { gx: 3, gy: 1, vthreshold: 1 };
const state = { ...DEFAULTS, extent: 4, ax: null, pending: false };
const GREY = "#595959"; // 7:1 on white

function arrow(ctx, ax, [x, y], color, dash) {
  const x0 = ax.px(0), y0 = ax.py(0), x1 = ax.px(x), y1 = ax.py(y);
  const len = Math.hypot(x1 - x0, y1 - y0);
  if (len < 1) return;
  const ux = (x1 - x0) / len, uy = (y1 - y0) / len;
  ctx.save();
  ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 3; ctx.setLineDash(dash);
  ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1 - 8 * ux, y1 - 8 * uy); ctx.stroke();
  ctx.setLineDash([]);
  ctx.beginPath(); ctx.moveTo(x1, y1);
  ctx.lineTo(x1 - 13 * ux - 6 * uy, y1 - 13 * uy + 6 * ux); ctx.lineTo(x1 - 13 * ux + 6 * uy, y1 - 13 * uy - 6 * ux);
  ctx.closePath(); ctx.fill();
  ctx.restore();
}

function draw() {
  const r = compareClipping(state.gx, state.gy, state.vthreshold);
  const c = state.vthreshold;
  state.extent = Math.max(state.extent, 1.25 * Math.max(Math.abs(r.grad[0]), Math.abs(r.grad[1]), 1.5 * c));
  const e = state.extent;
  const { ctx, w, h } = fitCanvas($("vector-canvas"));
  const side = Math.min(w - 50, h - 40);
  if (side < 40) return; // not laid out yet (or hidden): nothing sensible to draw
  const ax = axes({ box: { left: 42, top: 6, width: side, height: side }, x: [-e, e], y: [-e, e] });
  state.ax = ax;
  drawAxes(ctx, ax, { xlabel: "g₁", ylabel: "g₂" });
  ctx.save();
  ctx.lineWidth = 2;
  ctx.strokeStyle = COLORS.norm; ctx.setLineDash([6, 4]);
  ctx.beginPath(); ctx.arc(ax.px(0), ax.py(0), ax.px(c) - ax.px(0), 0, 2 * Math.PI); ctx.stroke();
  ctx.strokeStyle = COLORS.value; ctx.setLineDash([2, 4]);
  ctx.strokeRect(ax.px(-c), ax.py(c), ax.px(c) - ax.px(-c), ax.py(-c) - ax.py(c));
  ctx.restore();
  arrow(ctx, ax, r.grad, GREY, []);
  arrow(ctx, ax, r.valueClipped, COLORS.value, DASHES.value);
  arrow(ctx, ax, r.normClipped, COLORS.norm, DASHES.norm);
  ctx.beginPath(); ctx.arc(ax.px(r.grad[0]), ax.py(r.grad[1]), 9, 0, 2 * Math.PI);
  ctx.fillStyle = "rgba(89,89,89,0.25)"; ctx.fill(); ctx.strokeStyle = GREY; ctx.lineWidth = 1.5; ctx.stroke();
  $("vector-numbers").innerHTML = [
    ["‖g‖", fmt(r.norm)], ["threshold c", fmt(c)],
    ["norm-clipped", `(${fmt(r.normClipped[0])}, ${fmt(r.normClipped[1])}), length ${fmt(r.normClippedNorm)}`],
    ["value-clipped", `(${fmt(r.valueClipped[0])}, ${fmt(r.valueClipped[1])}), length ${fmt(r.valueClippedNorm)}`],
    ["angle value clipping turned it by", `<span id="angle">${fmt(r.angleDeg)}</span>°`],
  ].map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
  const within = r.norm <= c;
  $("vector-summary").textContent = within
    ? `The gradient (${fmt(r.grad[0])}, ${fmt(r.grad[1])}) has norm ${fmt(r.norm)}, within c = ${fmt(c)}: both clips leave it untouched.`
    : `The gradient (${fmt(r.grad[0])}, ${fmt(r.grad[1])}) has norm ${fmt(r.norm)}, above c = ${fmt(c)}. Norm clipping shrinks it`
      + ` to length ${fmt(r.normClippedNorm)} in the same direction; value clipping clamps each component to ±${fmt(c)},`
      + ` giving length ${fmt(r.valueClippedNorm)}, turned by ${fmt(r.angleDeg)}°.`;
  document.body.dataset.vectorRedraws = String(Number(document.body.dataset.vectorRedraws || 0) + 1);
}

function schedule() {
  if (state.pending) return;
  state.pending = true;
  requestAnimationFrame(() => { state.pending = false; draw(); });
}

function show() {
  $("gx").value = state.gx;
  $("gy").value = state.gy;
  $("vthreshold").value = Math.log10(state.vthreshold);
  $("vthreshold-out").textContent = state.vthreshold;
  $("vthreshold").setAttribute("aria-valuetext", `threshold c ${state.vthreshold}`);
}

function set(values, { push = true } = {}) {
  Object.assign(state, values);
  show();
  schedule();
  if (push) settingsChanged();
}

// Pointer position -> gradient components (3 significant digits, as typed values would be).
function dragTo(event) {
  const box = $("vector-canvas").getBoundingClientRect();
  const x = state.ax.dx(event.clientX - box.left), y = state.ax.dy(event.clientY - box.top);
  if (!Number.isFinite(x) || !Number.isFinite(y)) return;
  set({ gx: Number(x.toPrecision(3)), gy: Number(y.toPrecision(3)) });
}

export function initVector() {
  for (const id of ["gx", "gy"]) {
    $(id).addEventListener("change", () => {
      const value = Number($(id).value);
      if (Number.isFinite(value) && Math.abs(value) <= 1e4) { $("vector-error").textContent = ""; set({ [id]: value }); }
      else { $("vector-error").textContent = `${id === "gx" ? "g₁" : "g₂"} must be a number in [-10000, 10000]`; show(); }
    });
  }
  $("vthreshold").addEventListener("input", () => set({ vthreshold: Number((10 ** Number($("vthreshold").value)).toPrecision(3)) }));
  const canvas = $("vector-canvas");
  // Pointer events cover mouse, pen and touch alike; touch-action: none (CSS) keeps the page from scrolling.
  canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); state.dragging = true; dragTo(e); });
  canvas.addEventListener("pointermove", (e) => { if (state.dragging) dragTo(e); });
  const stop = () => { state.dragging = false; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  window.addEventListener("resize", schedule); // a zoom changes the pixel density
  onCanvasResize(schedule); // the canvas's new size is known only after the layout that follows a resize
  const component = number(-1e4, 1e4);
  registerSettings({
    keys: { gx: component, gy: component, vthreshold: number(0, 1e4, { openLo: true }) },
    apply: (values) => set({ ...DEFAULTS, ...values }, { push: false }),
    values: () => ({ gx: state.gx, gy: state.gy, vthreshold: state.vthreshold }),
  });
}
