// Worker: which starts are catapulted without clipping (landscapes.catapults), so the page can hatch that
// region without blocking a slider drag. First an nu x nv grid of cell centres, posted at once; then each
// cell on the region's edge (it or one of its eight neighbours differs) is split into four and its
// quarters are computed, posted as a 2nu x 2nv grid. A cell deep inside or outside the region keeps its
// value for its quarters: the refinement sharpens the edge, where the coarse grid is least certain.
// Answers carry the request's id; the page draws only the newest.
import { catapults } from "./landscapes.js";

function grid(name, bounds, nu, nv, settings, wanted) {
  const [[u0, u1], [v0, v1]] = bounds;
  const mask = new Uint8Array(nu * nv);
  for (let i = 0; i < nv; i++) {
    const v = v0 + ((v1 - v0) * (i + 0.5)) / nv; // cell centres, rows follow v upwards
    for (let j = 0; j < nu; j++) {
      const known = wanted(i, j);
      if (known !== null) { mask[i * nu + j] = known; continue; }
      const u = u0 + ((u1 - u0) * (j + 0.5)) / nu;
      mask[i * nu + j] = catapults(name, u, v, settings) ? 1 : 0;
    }
  }
  return mask;
}

function onEdge(mask, nu, nv, i, j) {
  const here = mask[i * nu + j];
  for (let di = -1; di <= 1; di++) for (let dj = -1; dj <= 1; dj++) {
    const ii = i + di, jj = j + dj;
    if (ii >= 0 && jj >= 0 && ii < nv && jj < nu && mask[ii * nu + jj] !== here) return true;
  }
  return false;
}

self.onmessage = ({ data }) => {
  const { id, key, name, bounds, lr, steps, jump, nu, nv } = data;
  const settings = { lr, steps, jump };
  const coarse = grid(name, bounds, nu, nv, settings, () => null);
  self.postMessage({ id, key, mask: coarse.slice(), nu, nv, final: false });
  const edge = new Uint8Array(nu * nv);
  for (let i = 0; i < nv; i++) for (let j = 0; j < nu; j++) edge[i * nu + j] = onEdge(coarse, nu, nv, i, j) ? 1 : 0;
  const fine = grid(name, bounds, 2 * nu, 2 * nv, settings, (i, j) => {
    const c = (i >> 1) * nu + (j >> 1);
    return edge[c] ? null : coarse[c];
  });
  self.postMessage({ id, key, mask: fine, nu: 2 * nu, nv: 2 * nv, final: true }, [fine.buffer]);
};
