// Small canvas plotting: a canvas sized to its box at the screen's pixel density, and log-scale line
// charts. Canvas instead of Plotly for the live views: a redraw costs well under a frame.

const AXIS = "#444"; // 9.7:1 on white
const GRID = "#e3e3e3";
export const FONT = "12px system-ui, sans-serif";

export function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const box = canvas.getBoundingClientRect();
  const w = Math.max(1, Math.round(box.width)), h = Math.max(1, Math.round(box.height));
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
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

// A polyline through (xs[i], ys[i]) for i < n, skipping non-finite points; a white halo under it keeps
// the line's contrast whatever it crosses.
export function polyline(ctx, ax, xs, ys, n, { color, dash = [], width = 2, halo = true }) {
  const path = new Path2D();
  let pen = false;
  for (let i = 0; i < n; i++) {
    const x = ax.px(xs[i]), y = ax.py(ys[i]);
    if (!Number.isFinite(x) || !Number.isFinite(y)) { pen = false; continue; }
    if (pen) path.lineTo(x, y); else path.moveTo(x, y);
    pen = true;
  }
  ctx.save();
  ctx.lineJoin = "round";
  ctx.lineCap = "round";
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
