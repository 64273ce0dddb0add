// The loss surfaces and gradient descent of gradclip.explorer.cliff, ported line for line so that the
// page can simulate on every slider move. Python stays the reference: a browser test runs both and
// requires the trajectories to agree to 1e-9 relative (same operations in the same order, float64).
// No DOM here: the page and the catapult worker both import it.

export const METHODS = ["none", "norm", "value"];
const RNN_STEPS = 50, RNN_X0 = 0.5, RNN_TARGET = 0.7; // Pascanu et al. (2013), §2.3, Fig. 6
const EPS = 1e-6; // gradclip.numpy.clip_grad_norm_'s default: scale = c / (||g|| + eps)

const sigmoid = (x) => 0.5 + 0.5 * Math.tanh(0.5 * x); // as the Python: no overflow for very negative x

// Loss and gradient of x_t = w σ(x_{t-1}) + b, E = (σ(x_50) - 0.7)², by forward-mode differentiation.
// Once x_t reaches a fixed point exactly (about one step in seven on the default runs) σ is not
// recomputed: the same input gives the same bits, and the tanh is most of this function's time.
function cliff(w, b) {
  let x = RNN_X0, dw = 0, db = 0, sx = NaN, s = 0;
  for (let t = 0; t < RNN_STEPS; t++) {
    if (x !== sx) { s = sigmoid(x); sx = x; }
    const k = w * s * (1 - s); // ∂x_t/∂x_{t-1}: its product over t is what explodes
    dw = s + k * dw;
    db = 1 + k * db;
    x = w * s + b;
  }
  if (x !== sx) s = sigmoid(x);
  const r = s - RNN_TARGET;
  const c = 2 * r * s * (1 - s);
  return [r * r, c * dw, c * db];
}

function valley(u, v) {
  const v3 = v * v * v;
  return [(u * u) / 20 + v3 * v, u / 10, 4 * v3];
}

function bowl(u, v) {
  return [0.5 * (u * u + 4 * v * v), u, 4 * v];
}

export const LOSS_AND_GRAD = { cliff, valley, bowl };

export function lossAndGrad(name, u, v) {
  const f = LOSS_AND_GRAD[name];
  if (!f) throw new Error(`unknown surface ${JSON.stringify(name)}; choose from ${Object.keys(LOSS_AND_GRAD)}`);
  return f(u, v);
}

// One clip of g = [gu, gv] in place; returns [pre-clip norm, whether the clip changed g].
function clipStep(g, method, c) {
  if (method === "norm") {
    const total = Math.sqrt(g[0] * g[0] + g[1] * g[1]); // gradclip.numpy: sqrt(dot(g, g))
    if (!(total > c)) return [total, false];
    const scale = Math.min(c / (total + EPS), 1);
    g[0] *= scale;
    g[1] *= scale;
    return [total, true];
  }
  const norm = Math.hypot(g[0], g[1]);
  if (method === "value") {
    const acted = Math.abs(g[0]) > c || Math.abs(g[1]) > c;
    g[0] = Math.min(Math.max(g[0], -c), c);
    g[1] = Math.min(Math.max(g[1], -c), c);
    return [norm, acted];
  }
  return [norm, false];
}

/**
 * Gradient descent θ_{k+1} = θ_k - lr · clip(∇f(θ_k)) from start = [u, v], as cliff.simulate does.
 * Returns typed arrays: u, v, loss (n+1 each), gradNorm, clipped, stepLength (n each), and diverged
 * (the loss, the gradient or the parameters stopped being finite numbers; the run stops there).
 */
export function simulate(name, start, { lr, threshold, steps, method }) {
  return descend(name, start, lr, threshold, steps, method, null, null);
}

// The descent, optionally resumed at step `prefix.k` of `prefix.run` (whose steps before k are this
// run's: nothing was clipped in them; their gradient norms, as this method computes them, are
// `prefix.gradNorm`), and optionally recording each step's gradient into `grads` ({u, v}).
function descend(name, start, lr, threshold, steps, method, prefix, grads) {
  const f = LOSS_AND_GRAD[name];
  const us = new Float64Array(steps + 1), vs = new Float64Array(steps + 1), loss = new Float64Array(steps + 1);
  const norms = new Float64Array(steps), clipped = new Uint8Array(steps);
  let [u, v] = start;
  us[0] = u; vs[0] = v;
  const g = [0, 0];
  let n = 0; // steps taken
  let diverged = false;
  if (prefix) {
    n = prefix.k;
    us.set(prefix.run.u.subarray(0, n + 1)); vs.set(prefix.run.v.subarray(0, n + 1));
    loss.set(prefix.run.loss.subarray(0, n)); norms.set(prefix.gradNorm.subarray(0, n));
    u = us[n]; v = vs[n];
  }
  for (let k = n; k <= steps; k++) {
    const [l, gu, gv] = f(u, v);
    loss[k] = l;
    if (!(Number.isFinite(l) && Number.isFinite(gu) && Number.isFinite(gv))) { diverged = true; break; }
    if (k === steps) break;
    if (grads) { grads.u[k] = gu; grads.v[k] = gv; }
    g[0] = gu; g[1] = gv;
    const [norm, acted] = clipStep(g, method, threshold);
    const u1 = u - lr * g[0], v1 = v - lr * g[1];
    if (!(Number.isFinite(u1) && Number.isFinite(v1))) { diverged = true; break; }
    norms[k] = norm; clipped[k] = acted ? 1 : 0;
    if (Object.is(u1, u) && Object.is(v1, v)) {
      // The step rounded to nothing (a run at rest, or stranded where the gradient is below the last
      // bit of θ): every later step repeats this one exactly, so the rest of the run is filled in.
      us.fill(u, k + 1); vs.fill(v, k + 1); loss.fill(l, k + 1);
      norms.fill(norm, k + 1); clipped.fill(clipped[k], k + 1);
      if (grads) { grads.u.fill(gu, k + 1); grads.v.fill(gv, k + 1); }
      n = steps;
      break;
    }
    u = u1; v = v1;
    n = k + 1;
    us[n] = u; vs[n] = v;
  }
  const stepLength = new Float64Array(n);
  for (let k = 0; k < n; k++) stepLength[k] = Math.hypot(us[k + 1] - us[k], vs[k + 1] - vs[k]);
  return {
    method, diverged, steps: n,
    u: us.subarray(0, n + 1), v: vs.subarray(0, n + 1), loss: loss.subarray(0, n + 1),
    gradNorm: norms.subarray(0, n), clipped: clipped.subarray(0, n), stepLength,
  };
}

// The three runs, the same as three calls of simulate, bit for bit. Until a clipped run's first
// clip its steps are the unclipped run's (clipping passes the gradient through untouched), so it is
// resumed from there instead of being run again: on the default scene that is most of each run.
export function simulateAll(name, start, settings) {
  const { lr, threshold: c, steps } = settings;
  const grads = { u: new Float64Array(steps), v: new Float64Array(steps) };
  const none = descend(name, start, lr, c, steps, "none", null, grads);
  const runs = { none };
  for (const method of ["norm", "value"]) {
    const gradNorm = new Float64Array(none.steps);
    let k = 0;
    for (; k < none.steps; k++) {
      const gu = grads.u[k], gv = grads.v[k];
      if (method === "norm") {
        const total = Math.sqrt(gu * gu + gv * gv); // as clipStep
        if (total > c) break;
        gradNorm[k] = total;
      } else {
        if (Math.abs(gu) > c || Math.abs(gv) > c) break;
        gradNorm[k] = none.gradNorm[k];
      }
    }
    runs[method] = descend(name, start, lr, c, steps, method, { run: none, k, gradNorm }, null);
  }
  return runs;
}

// loss[i][j] = f(u_j, v_i) on a grid x grid lattice over bounds [[u0, u1], [v0, v1]] (rows follow v).
export function surfaceGrid(name, bounds, grid) {
  const f = LOSS_AND_GRAD[name];
  const [[u0, u1], [v0, v1]] = bounds;
  const u = Float64Array.from({ length: grid }, (_, j) => u0 + ((u1 - u0) * j) / (grid - 1));
  const v = Float64Array.from({ length: grid }, (_, i) => v0 + ((v1 - v0) * i) / (grid - 1));
  const loss = new Float64Array(grid * grid);
  for (let i = 0; i < grid; i++) for (let j = 0; j < grid; j++) loss[i * grid + j] = f(u[j], v[i])[0];
  return { u, v, loss, grid };
}

/**
 * Whether an unclipped run from (u, v) is catapulted: some single step longer than `jump` (a quarter
 * of the map's shorter side) lands where the loss is at least 10x the lowest it has been, or the run
 * diverges. A long step that lands lower (a first stride down a bowl) is not a catapult. Stops early
 * once it is decided (story.catapult applies the same rule to a simulated run).
 */
export function catapults(name, u, v, { lr, steps, jump }) {
  const f = LOSS_AND_GRAD[name];
  let low = Infinity, thrown = false;
  for (let k = 0; k <= steps; k++) {
    const [l, gu, gv] = f(u, v);
    if (!(Number.isFinite(l) && Number.isFinite(gu) && Number.isFinite(gv))) return true;
    if (thrown && l >= 10 * low) return true;
    low = Math.min(low, l);
    if (k === steps) return false;
    const du = lr * gu, dv = lr * gv;
    thrown = !(Math.hypot(du, dv) <= jump);
    const u1 = u - du, v1 = v - dv;
    if (Object.is(u1, u) && Object.is(v1, v)) return false; // at rest: every later step repeats this short one
    u = u1; v = v1;
  }
  return false;
}

// One vector clipped by norm and by value at the same c (the vector view; cliff.compare_clipping).
export function compareClipping(gx, gy, c) {
  const norm = Math.hypot(gx, gy);
  const scale = norm > c ? Math.min(c / (norm + EPS), 1) : 1;
  const byNorm = [gx * scale, gy * scale];
  const byValue = [Math.min(Math.max(gx, -c), c), Math.min(Math.max(gy, -c), c)];
  return {
    grad: [gx, gy], normClipped: byNorm, valueClipped: byValue, norm,
    normClippedNorm: Math.hypot(...byNorm), valueClippedNorm: Math.hypot(...byValue),
    angleDeg: angleDeg([gx, gy], byValue),
  };
}

// 2 atan2(|â - b̂|, |â + b̂|) (Kahan): exact near 0°, where acos of the cosine loses digits.
function angleDeg(a, b) {
  const na = Math.hypot(...a), nb = Math.hypot(...b);
  if (na === 0 || nb === 0) return 0;
  const d = [a[0] / na - b[0] / nb, a[1] / na - b[1] / nb];
  const s = [a[0] / na + b[0] / nb, a[1] / na + b[1] / nb];
  return (2 * Math.atan2(Math.hypot(...d), Math.hypot(...s)) * 180) / Math.PI;
}
