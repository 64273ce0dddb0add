// The loss and gradient-norm curves of the three runs (log scale, frame line and markers), and the
// table of how each run ended.
import { COLORS, DASHES, LABELS, TEXT_COLORS, fmt } from "./common.js";
import { METHODS } from "./landscapes.js";
import { axes, drawAxes, drawBase, fitCanvas, marker, polyline, sameUntil } from "./plot.js";
import { inside } from "./story.js";

export const SHAPES = { none: "circle", norm: "square", value: "triangle" };
export const WIDTHS = { none: 3, norm: 2.5, value: 2.5 };

function range(arrays) {
  let lo = Infinity, hi = 0;
  for (const a of arrays) for (const x of a) if (Number.isFinite(x) && x > 0) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
  if (!Number.isFinite(lo)) return [1e-3, 1];
  // Keep the lowest run in view: an overflowing run leaves through the top of the axes instead of
  // pushing the others off the bottom (at most 40 decades are shown).
  hi = Math.min(hi, lo * 1e40);
  return [10 ** Math.floor(Math.log10(lo)), 10 ** Math.ceil(Math.log10(hi) + 1e-9)];
}

// Axes, grid and threshold as the static part (rendered anew when the range, the step count or c
// changes); the curves, the frame line and the markers over it.
export function drawCurve(canvas, runs, key, { steps, frame, hline = null, ylabel, cover = true }) {
  const { ctx, w, h } = fitCanvas(canvas, { clear: false });
  const series = METHODS.map((m) => runs[m][key]);
  const [lo, hi] = range(hline ? [...series, [hline]] : series);
  const n = steps;
  const box = (bw, bh) => ({ left: 50, top: 8, width: bw - 66, height: bh - 44 });
  const ax = axes({ box: box(w, h), x: [0, n], y: [lo, hi], logY: true });
  drawBase(canvas, `${lo}/${hi}/${n}/${hline}/${ylabel}`, (bctx, bw, bh) => {
    const bax = axes({ box: box(bw, bh), x: [0, n], y: [lo, hi], logY: true });
    drawAxes(bctx, bax, { xlabel: "step", ylabel });
    if (hline) {
      bctx.save();
      bctx.beginPath(); bctx.rect(bax.box.left, bax.box.top, bax.box.width, bax.box.height); bctx.clip();
      polyline(bctx, bax, [0, n], [hline, hline], 2, { color: "#555", dash: [3, 3], width: 1.5, halo: false });
      bctx.restore();
    }
  });
  ctx.save();
  ctx.beginPath(); ctx.rect(ax.box.left, ax.box.top, ax.box.width, ax.box.height); ctx.clip();
  const k = frame;
  ctx.strokeStyle = "#777"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(ax.px(k), ax.box.top); ctx.lineTo(ax.px(k), ax.box.top + ax.box.height); ctx.stroke();
  // The unclipped curve on top: it carries the story. No white halo here: the plot is white already,
  // and a halo doubles what is rasterised on every input. Where a clipped run's curve equals the
  // unclipped one (before its first clip, or all along), the wider unclipped line covers it: it is drawn
  // from one point before they part (to 1e-9, the same pixel on any axis: the norm-clipped run sums
  // its gradient norm in another order; `cover` false: every curve whole, for the tests).
  const top = runs.none[key];
  for (const m of ["value", "norm", "none"]) {
    const ys = runs[m][key];
    const from = m === "none" || !cover ? 0 : Math.max(0, sameUntil(ys, top, 1e-9) - 1);
    polyline(ctx, ax, null, ys, ys.length, { color: COLORS[m], dash: DASHES[m], width: WIDTHS[m], halo: false, from });
  }
  for (const m of METHODS) {
    const ys = runs[m][key];
    const i = Math.min(k, ys.length - 1);
    if (i >= 0 && ys[i] > 0 && Number.isFinite(ys[i])) marker(ctx, ax.px(i), ax.py(Math.max(lo, ys[i])), SHAPES[m], COLORS[m], 4.5);
    if (runs[m].diverged) {
      ctx.font = "bold 12px system-ui, sans-serif"; ctx.fillStyle = TEXT_COLORS[m]; ctx.textAlign = "center";
      // Over the last step, kept whole inside the axes (a run that overflows at once ends at the left edge).
      const text = "overflow ↑", half = ctx.measureText(text).width / 2 + 2, { left, width } = ax.box;
      ctx.fillText(text, Math.min(Math.max(ax.px(ys.length - 1), left + half), left + width - half), ax.box.top + 12);
    }
  }
  ctx.restore();
}

// The table is built once and then only its cells' texts change (no new elements on every input).
export function drawStats(table, runs, s, land) {
  if (table.rows.length !== METHODS.length) {
    table.innerHTML = METHODS.map((m) => `<tr id="stat-${m}"><th scope="row"><span class="swatch ${m}"></span>${LABELS[m]}</th>`
      + '<td class="final-loss"></td><td class="max-step"></td><td></td><td class="clips"></td><td></td></tr>').join("");
  }
  METHODS.forEach((m, row) => {
    const r = runs[m];
    const longest = r.stepLength.reduce((a, b) => Math.max(a, b), 0);
    const clips = r.clipped.reduce((a, b) => a + b, 0);
    const bound = m === "none" ? "none" : fmt(m === "norm" ? s.lr * s.threshold : s.lr * s.threshold * Math.SQRT2);
    const end = r.u.length - 1;
    const off = r.u.findIndex((u, i) => !inside(land, u, r.v[i]));
    const where = r.diverged ? `overflowed after step ${end}`
      : `${off >= 0 ? `left the map at step ${off}; ` : ""}ended at (${fmt(r.u[end])}, ${fmt(r.v[end])})`;
    const texts = [r.diverged ? "overflow" : fmt(r.loss[r.loss.length - 1]), fmt(longest), bound, `${clips} of ${r.clipped.length}`, where];
    const cells = table.rows[row].cells;
    texts.forEach((text, i) => { if (cells[i + 1].textContent !== text) cells[i + 1].textContent = text; });
  });
}
