// Worker: which starts on a coarse grid are catapulted without clipping (landscapes.catapults), so the
// page can hatch that region without blocking a slider drag. Answers carry the request's id; the page
// draws only the newest.
import { catapults } from "./landscapes.js";

self.onmessage = ({ data }) => {
  const { id, key, name, bounds, lr, steps, jump, nu, nv } = data;
  const [[u0, u1], [v0, v1]] = bounds;
  const mask = new Uint8Array(nu * nv);
  for (let i = 0; i < nv; i++) {
    const v = v0 + ((v1 - v0) * (i + 0.5)) / nv; // cell centres, rows follow v upwards
    for (let j = 0; j < nu; j++) {
      const u = u0 + ((u1 - u0) * (j + 0.5)) / nu;
      mask[i * nu + j] = catapults(name, u, v, { lr, steps, jump }) ? 1 : 0;
    }
  }
  self.postMessage({ id, key, mask, nu, nv }, [mask.buffer]);
};
