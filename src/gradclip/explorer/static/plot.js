// Small canvas plotting: canvases sized to their box at the screen's pixel density, and log-scale line
// charts. Canvas instead of Plotly for the live views: a redraw costs well under a frame.
//
// Chromium copies every canvas on the page into the compositor on every frame (software compositing
// here, no GPU), whether it was drawn to or not, at a cost that grows with its pixels. So a live figure
// is one canvas: its static part (heatmap, axes, text) is rendered into an offscreen canvas only when it
// changes and copied in first on every redraw, then what moves is drawn over it; and lines are thinned to
// about one point per pixel before they are drawn.

const AXIS = "#444"; // 9.7:1 on white
const GRID = "#e3e3e3";
export const FONT = "12px system-ui, sans-serif";

// CSS sizes of the canvases, kept by a ResizeObserver: reading getBoundingClientRect while drawing would
// force a layout in the middle of every input (the texts have just changed).
const sizes = new WeakMap();
let observer = null;
const listeners = new Set();

export function onCanvasResize(callback) {
  listeners.add(callback);
}

function cssSize(canvas) {
  let size = sizes.get(canvas);
  if (!size) {
    const box = canvas.getBoundingClientRect();
    size = { w: Math.max(1, Math.round(box.width)), h: Math.max(1, Math.round(box.height)) };
    sizes.set(canvas, size);
    observer ||= new ResizeObserver((entries) => {
      let changed = false;
      for (const e of entries) {
        const old = sizes.get(e.target);
        const w = Math.max(1, Math.round(e.contentRect.width)), h = Math.max(1, Math.round(e.contentRect.height));
        if (!old || old.w !== w || old.h !== h) { sizes.set(e.target, { w, h }); changed = true; }
      }
      if (changed) for (const callback of listeners) callback();
    });
    observer.observe(canvas);
  }
  return size;
}

export function fitCanvas(canvas, { clear = true } = {}) {
  const dpr = window.devicePixelRatio || 1;
  const { w, h } = cssSize(canvas);
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  if (clear) ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
}

// A figure's static part, under what moves: rendered by `paint(ctx, w, h)` into an offscreen canvas
// only when `key` changes (or the size does), then copied onto `canvas`, replacing every pixel (so
// fitCanvas need not clear it first); returns whether it was rendered anew.
const bases = new WeakMap();

export function drawBase(canvas, key, paint) {
  const { w, h } = cssSize(canvas);
  const dpr = window.devicePixelRatio || 1;
  const full = `${key}/${w}x${h}/${dpr}`;
  let base = bases.get(canvas);
  const fresh = base?.key !== full;
  if (fresh) {
    const off = base?.canvas || document.createElement("canvas");
    off.width = Math.round(w * dpr);
    off.height = Math.round(h * dpr);
    const bctx = off.getContext("2d");
    bctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    bctx.clearRect(0, 0, w, h);
    paint(bctx, w, h);
    base = { canvas: off, key: full };
    bases.set(canvas, base);
  }
  const ctx = canvas.getContext("2d");
  ctx.save();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.globalCompositeOperation = "copy";
  ctx.drawImage(base.canvas, 0, 0);
  ctx.restore();
  return fresh;
}

// A linear map from data to pixels for each axis; `log` axes map log10 of the value.
export function axes({ box, x: [x0, x1], y: [y0, y1], logY = false }) {
  const ty = (y) => (logY ? Math.log10(y) : y);
  const ly0 = ty(y0), ly1 = ty(y1);
  return {
    box, logY, x0, x1, y0, y1,
    px: (x) => box.left + ((x - x0) / (x1 - x0)) * box.width,
    py: (y) => box.top + (1 - (ty(y) - ly0) / (ly1 - ly0)) * box.height,
    dx: (px) => x0 + ((px - box.left) / box.width) * (x1 - x0),
    dy: (py) => {
      const t = ly0 + (1 - (py - box.top) / box.height) * (ly1 - ly0);
      return logY ? 10 ** t : t;
    },
  };
}

export function niceTicks(lo, hi, count = 5) {
  const span = hi - lo;
  const step0 = 10 ** Math.floor(Math.log10(span / count));
  const step = [1, 2, 5, 10].map((m) => m * step0).find((s) => span / s <= count) || 10 * step0;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9 * span; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

function logTicks(lo, hi) {
  const a = Math.ceil(Math.log10(lo)), b = Math.floor(Math.log10(hi));
  const every = Math.max(1, Math.ceil((b - a + 1) / 6));
  const ticks = [];
  for (let e = a; e <= b; e += every) ticks.push(e);
  return ticks;
}

const SUPERSCRIPT = { "-": "⁻", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹" };
const power = (e) => (e === 0 ? "1" : `10${String(e).replace(/[-0-9]/g, (ch) => SUPERSCRIPT[ch])}`);

export function drawAxes(ctx, ax, { xlabel = "", ylabel = "" } = {}) {
  const { box } = ax;
  ctx.save();
  ctx.font = FONT;
  ctx.strokeStyle = GRID;
  ctx.fillStyle = AXIS;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const yt = ax.logY ? logTicks(ax.y0, ax.y1).map((e) => [10 ** e, power(e)]) : niceTicks(ax.y0, ax.y1).map((t) => [t, String(t)]);
  for (const [t, label] of yt) {
    const y = ax.py(t);
    ctx.beginPath(); ctx.moveTo(box.left, y); ctx.lineTo(box.left + box.width, y); ctx.stroke();
    ctx.fillText(label, box.left - 4, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of niceTicks(ax.x0, ax.x1, Math.max(2, Math.floor(box.width / 70)))) {
    const x = ax.px(t);
    ctx.beginPath(); ctx.moveTo(x, box.top); ctx.lineTo(x, box.top + box.height); ctx.stroke();
    ctx.fillText(String(t), x, box.top + box.height + 3);
  }
  ctx.strokeStyle = AXIS;
  ctx.strokeRect(box.left, box.top, box.width, box.height);
  if (xlabel) ctx.fillText(xlabel, box.left + box.width / 2, box.top + box.height + 17);
  if (ylabel) {
    ctx.translate(12, box.top + box.height / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText(ylabel, 0, 0);
  }
  ctx.restore();
}

// A polyline through (xs[i], ys[i]) for i < n (xs null: x = i), skipping non-finite points; a white
// halo under it keeps the line's contrast whatever it crosses. The path is thinned first (thinPath,
// thinSeries): what is drawn differs from the full path by less than a pixel. The line may start at
// index `from` (where what came before is covered by a line drawn over it: sameUntil).
export function polyline(ctx, ax, xs, ys, n, { color, dash = [], width = 2, halo = true, from = 0 }) {
  const path = xs ? thinPath(ax, xs, ys, n, new Path2D(), from) : thinSeries(ax, ys, n, new Path2D(), from);
  ctx.save();
  // Bevel joins look the same at these widths and rasterise faster than round ones (a run that
  // oscillates has a corner every step). A solid line ends in round caps; dashes and dots take butt
  // caps, which rasterise about twice as fast (a dot is then a small square).
  ctx.lineJoin = "bevel";
  ctx.lineCap = dash.length ? "butt" : "round";
  if (halo) {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = width + 3;
    ctx.setLineDash([]);
    ctx.stroke(path);
  }
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.setLineDash(dash);
  ctx.stroke(path);
  ctx.restore();
}

const TOLERANCE = 0.5; // px

// Streaming line simplification (sleeve fitting, after Zhao & Saalfeld 1997): from the last point kept
// (the anchor) the line goes on while one direction passes within TOLERANCE of every point since and the
// points keep moving away; when a point leaves that cone of directions, or comes back towards the anchor,
// the previous point is kept and becomes the anchor. A point within TOLERANCE of the anchor is covered by
// it. Every point ends up within TOLERANCE·√2 of the drawn line (off the line, and past its end); a
// straight or gently curving stretch (a run descending a valley, a loss falling geometrically on a log
// axis) becomes one segment, corners and spikes are kept.
class Simplifier {
  constructor(path) { this.path = path; this.pen = false; }
  break() { this.end(); this.pen = false; }
  end() { if (this.pen && this.has) this.path.lineTo(this.lx, this.ly); this.has = false; }
  add(x, y) {
    if (!this.pen) { this.path.moveTo(x, y); this.anchor(x, y); this.pen = true; return; }
    const dx = x - this.ax, dy = y - this.ay, d = Math.hypot(dx, dy);
    if (d < this.far - TOLERANCE) { this.restart(x, y); return; }
    if (d <= TOLERANCE) {
      if (this.rx === null) { this.lx = x; this.ly = y; this.has = true; } // else: the line keeps its farther end
      return;
    }
    if (this.rx === null) {
      this.rx = dx / d; this.ry = dy / d; this.lo = -TOLERANCE / d; this.hi = TOLERANCE / d;
    } else {
      // Angle from the first direction; TOLERANCE/d <= asin(TOLERANCE/d) keeps the cone on the safe side.
      const phi = Math.atan2(this.rx * dy - this.ry * dx, this.rx * dx + this.ry * dy), half = TOLERANCE / d;
      if (phi < this.lo || phi > this.hi) { this.restart(x, y); return; }
      this.lo = Math.max(this.lo, phi - half); this.hi = Math.min(this.hi, phi + half);
    }
    this.far = Math.max(this.far, d);
    this.lx = x; this.ly = y; this.has = true;
  }
  restart(x, y) { // keep the previous point, continue from it
    this.path.lineTo(this.lx, this.ly);
    this.anchor(this.lx, this.ly);
    this.add(x, y);
  }
  anchor(x, y) { this.ax = x; this.ay = y; this.rx = null; this.far = 0; this.has = false; }
}

// A path in the plane, in data units; non-finite points break the line. `path` receives moveTo and
// lineTo calls in pixels (a Path2D, or a recorder in the tests). A segment the path has already drawn
// (both ends on the same points of a 1/8 px grid, either way round) is not drawn again: a run that hops back and forth across
// a valley retraces the same few segments hundreds of times, and each retrace costs as much to
// rasterise as a new segment while changing no pixel. Points before `from` are left out.
export function thinPath(ax, xs, ys, n, path = new Path2D(), from = 0) {
  const line = new Simplifier(new Retraces(path));
  for (let i = from; i < n; i++) {
    const x = ax.px(xs[i]), y = ax.py(ys[i]);
    if (Number.isFinite(x) && Number.isFinite(y)) line.add(x, y); else line.break();
  }
  line.end();
  return path;
}

// Passes moveTo/lineTo on to `path`, leaving out the segments it has passed already.
class Retraces {
  constructor(path) { this.path = path; this.seen = new Set(); this.x = NaN; this.y = NaN; this.moved = false; }
  moveTo(x, y) { this.x = x; this.y = y; this.moved = true; }
  lineTo(x, y) {
    const a = `${Math.round(8 * this.x)},${Math.round(8 * this.y)}`, b = `${Math.round(8 * x)},${Math.round(8 * y)}`;
    const key = a < b ? `${a} ${b}` : `${b} ${a}`;
    if (!this.seen.has(key)) {
      this.seen.add(key);
      if (this.moved) { this.path.moveTo(this.x, this.y); this.moved = false; }
      this.path.lineTo(x, y);
    } else this.moved = true;
    this.x = x; this.y = y;
  }
}

// A series y[i] against i. Within each pixel column only the first, lowest, highest and last points
// are kept, in their order (all that a column of a line chart shows), then the line is simplified, so a
// 5000-step curve on 500 pixels is drawn with at most 2000 points, usually far fewer, and looks the same.
// Points before `from` are left out.
export function thinSeries(ax, ys, n, path = new Path2D(), from = 0) {
  const line = new Simplifier(path);
  let col = NaN, first = 0, last = 0, lo = 0, hi = 0, iLo = 0, iHi = 0, x0 = 0, xl = 0, count = 0;
  const flush = () => {
    line.add(x0, first);
    if (count > 2) {
      if (iLo <= iHi) { line.add(x0, lo); line.add(x0, hi); } else { line.add(x0, hi); line.add(x0, lo); }
    }
    if (count > 1) line.add(xl, last);
  };
  for (let i = from; i < n; i++) {
    const x = ax.px(i), y = ax.py(ys[i]);
    if (!Number.isFinite(y)) {
      if (count) flush();
      line.break(); col = NaN; count = 0;
      continue;
    }
    const c = Math.floor(x);
    if (c !== col) {
      if (count) flush();
      col = c; first = last = lo = hi = y; iLo = iHi = i; x0 = xl = x; count = 1;
      continue;
    }
    last = y; xl = x; count += 1;
    if (y < lo) { lo = y; iLo = i; }
    if (y > hi) { hi = y; iHi = i; }
  }
  if (count) flush();
  line.end();
  return line.path;
}

// How many leading values of `a` equal those of `b` (to a relative `rtol`): the stretch where a line
// drawn over another through the same points hides it.
export function sameUntil(a, b, rtol = 0) {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && (a[i] === b[i] || Math.abs(a[i] - b[i]) <= rtol * Math.abs(b[i]))) i++;
  return i;
}

// Method markers differ in shape as well as colour: circle, square, triangle.
export function marker(ctx, x, y, shape, color, size = 6) {
  ctx.save();
  ctx.beginPath();
  if (shape === "square") ctx.rect(x - size, y - size, 2 * size, 2 * size);
  else if (shape === "triangle") {
    ctx.moveTo(x, y - 1.2 * size); ctx.lineTo(x + 1.1 * size, y + 0.9 * size); ctx.lineTo(x - 1.1 * size, y + 0.9 * size);
    ctx.closePath();
  } else ctx.arc(x, y, size, 0, 2 * Math.PI);
  ctx.fillStyle = color;
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 2;
  ctx.fill();
  ctx.stroke();
  ctx.restore();
}
