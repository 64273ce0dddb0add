// View 2: one 2-D gradient clipped by norm and by value, drawn to scale with the threshold circle and box.
import { COLORS, PLOT_CONFIG, api, fmt, latest, markRedraw, numberSetting, saveSettings } from "./app.js";

const $ = (id) => document.getElementById(id);
let extent = 4; // half-width of the plotted square; grows (never shrinks mid-drag) to fit the vector
let threshold = 1; // exact, as the URL gave it; the slider snaps to a 0.01 grid in log10 units

function current() {
  return {
    gx: Number($("gx").value),
    gy: Number($("gy").value),
    threshold,
  };
}

function arrow(to, color, text) {
  return { x: to[0], y: to[1], ax: 0, ay: 0, xref: "x", yref: "y", axref: "x", ayref: "y", showarrow: true,
    arrowhead: 2, arrowsize: 1.2, arrowwidth: 2.5, arrowcolor: color, text: "", hovertext: text };
}

async function draw(r) {
  const c = r.threshold;
  extent = Math.max(extent, 1.25 * Math.max(Math.abs(r.grad[0]), Math.abs(r.grad[1]), 1.5 * c));
  const e = extent;
  const legend = (name, color) => ({ type: "scatter", mode: "lines", x: [null], y: [null], name, line: { color, width: 3 } });
  const traces = [
    legend("gradient", "#777"), legend("norm-clipped", COLORS.norm), legend("value-clipped", COLORS.value),
    { type: "scatter", mode: "markers", x: [r.grad[0]], y: [r.grad[1]], name: "drag me", showlegend: false,
      marker: { size: 12, color: "#777" }, hoverinfo: "skip" },
  ];
  const layout = {
    margin: { l: 45, r: 10, t: 10, b: 35 }, dragmode: false, hovermode: false, showlegend: true,
    legend: { orientation: "h", y: -0.08 },
    xaxis: { range: [-e, e], fixedrange: true, zeroline: true },
    yaxis: { range: [-e, e], fixedrange: true, zeroline: true, scaleanchor: "x", scaleratio: 1 },
    shapes: [
      { type: "circle", x0: -c, x1: c, y0: -c, y1: c, line: { color: COLORS.norm, dash: "dot" } },
      { type: "rect", x0: -c, x1: c, y0: -c, y1: c, line: { color: COLORS.value, dash: "dot" } },
    ],
    annotations: [arrow(r.grad, "#777", "gradient"), arrow(r.norm_clipped, COLORS.norm, "norm-clipped"),
      arrow(r.value_clipped, COLORS.value, "value-clipped")],
  };
  await Plotly.react("vector-plot", traces, layout, { ...PLOT_CONFIG, responsive: false });
  $("vector-numbers").innerHTML = [
    ["‖g‖", fmt(r.norm)], ["threshold c", fmt(c)],
    ["norm-clipped", `(${fmt(r.norm_clipped[0])}, ${fmt(r.norm_clipped[1])}), length ${fmt(r.norm_clipped_norm)}`],
    ["value-clipped", `(${fmt(r.value_clipped[0])}, ${fmt(r.value_clipped[1])}), length ${fmt(r.value_clipped_norm)}`],
    ["angle value clipping turned it by", `<span id="angle">${fmt(r.angle_deg)}</span>°`],
  ].map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
  markRedraw("vector");
}

const request = latest((q) => api("/api/vector", q), draw, (msg) => { $("vector-error").textContent = msg; });

function changed() {
  const q = current();
  $("vthreshold-out").textContent = q.threshold;
  saveSettings({ gx: q.gx, gy: q.gy, vthreshold: q.threshold });
  request(q);
}

// Plotly has no draggable points, so the plot's pixels are mapped to data coordinates by hand.
function dataAt(event) {
  const gd = $("vector-plot");
  const xa = gd._fullLayout.xaxis;
  const ya = gd._fullLayout.yaxis;
  const box = gd.getBoundingClientRect();
  return [xa.p2d(event.clientX - box.left - xa._offset), ya.p2d(event.clientY - box.top - ya._offset)];
}

function dragTo(event) {
  const [x, y] = dataAt(event);
  if (!Number.isFinite(x) || !Number.isFinite(y)) return;
  $("gx").value = Number(x.toPrecision(3));
  $("gy").value = Number(y.toPrecision(3));
  changed();
}

export function initVector() {
  $("gx").value = numberSetting("gx", 3);
  $("gy").value = numberSetting("gy", 1);
  threshold = numberSetting("vthreshold", 1);
  $("vthreshold").value = Math.log10(threshold);
  $("vthreshold-out").textContent = current().threshold;
  for (const id of ["gx", "gy"]) $(id).addEventListener("change", changed);
  $("vthreshold").addEventListener("input", () => {
    threshold = Number((10 ** Number($("vthreshold").value)).toPrecision(3));
    changed();
  });
  const plot = $("vector-plot");
  let dragging = false;
  // Capture phase: Plotly's own drag layer handles mouse events on the plot before they would bubble up.
  plot.addEventListener("mousedown", (e) => { dragging = true; dragTo(e); }, true);
  window.addEventListener("mousemove", (e) => { if (dragging) dragTo(e); });
  window.addEventListener("mouseup", () => { dragging = false; });
  request(current());
}
