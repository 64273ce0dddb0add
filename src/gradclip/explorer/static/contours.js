// Level lines of a gridded surface by marching squares, and the colour map of the heatmap.

// Segments [x0, y0, x1, y1] (in grid index units: x = column, y = row) where z crosses `level`.
export function contourSegments(z, n, level) {
  const out = [];
  const at = (a, b) => (level - a) / (b - a);
  for (let i = 0; i + 1 < n; i++) {
    for (let j = 0; j + 1 < n; j++) {
      const a = z[i * n + j], b = z[i * n + j + 1], c = z[(i + 1) * n + j + 1], d = z[(i + 1) * n + j];
      if (!(Number.isFinite(a) && Number.isFinite(b) && Number.isFinite(c) && Number.isFinite(d))) continue;
      const code = (a > level ? 1 : 0) | (b > level ? 2 : 0) | (c > level ? 4 : 0) | (d > level ? 8 : 0);
      if (code === 0 || code === 15) continue;
      // Crossing points on the four edges: bottom (a-b), right (b-c), top (d-c), left (a-d).
      const e = {
        b: [j + at(a, b), i], r: [j + 1, i + at(b, c)], t: [j + at(d, c), i + 1], l: [j, i + at(a, d)],
      };
      const pairs = {
        1: ["l", "b"], 2: ["b", "r"], 3: ["l", "r"], 4: ["r", "t"], 6: ["b", "t"], 7: ["l", "t"], 8: ["l", "t"],
        9: ["b", "t"], 11: ["r", "t"], 12: ["l", "r"], 13: ["b", "r"], 14: ["l", "b"],
      };
      if (code === 5) out.push([...e.l, ...e.t], [...e.b, ...e.r]);
      else if (code === 10) out.push([...e.l, ...e.b], [...e.r, ...e.t]);
      else { const [p, q] = pairs[code]; out.push([...e[p], ...e[q]]); }
    }
  }
  return out;
}

// Viridis (perceptually uniform, readable in grey and under colour-vision deficiencies), 9 stops.
const VIRIDIS = ["#440154", "#472c7b", "#3a528b", "#2c728e", "#20908c", "#28ae7f", "#5ec961", "#addc30", "#fde724"]
  .map((h) => [1, 3, 5].map((k) => Number.parseInt(h.slice(k, k + 2), 16)));

export function viridis(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const k = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - k;
  return VIRIDIS[k].map((c, i) => Math.round(c + f * (VIRIDIS[k + 1][i] - c)));
}
