// Words for what the cliff view draws: the caption of the current frame, and text summaries of the
// map and of the curves (for screen readers, and for anyone who prefers to read the numbers).
import { LABELS, fmt } from "./common.js";

// The unclipped run's catapult: its first step longer than `jump` that lands where the loss is at
// least 10x the lowest so far (landscapes.catapults' rule), or null.
export function catapult(run, jump) {
  let low = Infinity;
  for (let i = 0; i < run.stepLength.length; i++) {
    low = Math.min(low, run.loss[i]);
    const landed = run.loss[i + 1];
    if (run.stepLength[i] > jump && (!Number.isFinite(landed) || landed >= 10 * low)) {
      return { step: i, length: run.stepLength[i] };
    }
  }
  return null;
}

const last = (r) => r.loss[r.loss.length - 1];

// Whether the unclipped run came to harm that norm clipping avoided: it overflowed and the norm-clipped
// run did not, or it ended at least 10x higher. (A bowl at a sensible learning rate: no.)
export function wrecked(runs) {
  const none = runs.none, norm = runs.norm;
  if (norm.diverged) return false;
  return none.diverged || last(none) >= 10 * last(norm);
}

// The step from which the unclipped run's loss keeps rising to the end (each step overshoots further
// up the other side), or -1: how the valley and a bowl at too high a learning rate are wrecked.
function overshootFrom(run) {
  let k = run.loss.length - 1;
  if (run.diverged) k -= 1; // the last loss is not a number
  while (k > 0 && run.loss[k] > run.loss[k - 1]) k -= 1;
  return k < run.loss.length - 2 ? k + 1 : -1;
}

const HOLD = 40; // frames
const at = (run, k) => Math.min(k, run.u.length - 1);
const point = (run, k) => `(${fmt(run.u[at(run, k)])}, ${fmt(run.v[at(run, k)])})`;
const lossAt = (run, k) => run.loss[Math.min(k, run.loss.length - 1)];

export function inside(land, u, v) {
  const [[u0, u1], [v0, v1]] = land.bounds;
  return u >= u0 && u <= u1 && v >= v0 && v <= v1;
}

// The largest rise of the loss over its lowest value so far: [step, low, high] (null when it never rises 10x).
export function lossJump(run) {
  let low = Infinity, best = null;
  for (let k = 0; k < run.loss.length; k++) {
    const l = run.loss[k];
    if (k > 0 && (!Number.isFinite(l) || l > 10 * low) && (!best || !(l / low <= best[2] / best[1]))) best = [k, low, l];
    if (Number.isFinite(l)) low = Math.min(low, l);
  }
  return best;
}

export function caption(runs, k, s, land, jump) {
  const none = runs.none, norm = runs.norm;
  const c = s.threshold;
  if (k === 0) {
    return `Step 0: all three runs start at ${point(norm, 0)}, loss ${fmt(norm.loss[0])}. Press play to watch them descend.`;
  }
  const harm = wrecked(runs);
  if (harm && none.diverged && k >= none.u.length - 1) {
    return `Step ${k}: without clipping the run has overflowed: after step ${none.u.length - 1} its loss is no longer a`
      + ` number. Norm clipping is at loss ${fmt(lossAt(norm, k))}, every step at most lr·c = ${fmt(s.lr * c)} long.`;
  }
  const hit = harm && land.name === "cliff" ? catapult(none, jump) : null;
  const rising = harm && land.name !== "cliff" ? overshootFrom(none) : -1;
  if (rising > 0 && k >= rising) {
    const i = Math.min(k, none.stepLength.length) - 1;
    return `Step ${k}: without clipping each step overshoots the minimum and lands higher up the other side, where the`
      + ` gradient is larger still: this step was ${fmt(none.stepLength[i])} long, loss ${fmt(lossAt(none, k))}.`
      + ` Norm clipping keeps every step at most lr·c = ${fmt(s.lr * c)} long: loss ${fmt(lossAt(norm, k))}.`;
  }
  if (hit && k === hit.step) {
    const g = none.gradNorm[hit.step];
    return `Step ${k}: the runs reach the cliff. Loss ${fmt(lossAt(none, k))}, and the gradient norm is ${fmt(g)},`
      + ` ${fmt(g / c)}× the threshold c = ${fmt(c)}: the next step decides everything.`;
  }
  // The throw stays in the caption for a while: at play speed one frame lasts only 20 ms.
  if (hit && k > hit.step && k <= hit.step + HOLD) {
    const g = none.gradNorm[hit.step];
    const cut = norm.stepLength[Math.min(hit.step, norm.stepLength.length - 1)] || 0;
    return `Step ${k}: at step ${hit.step + 1}, without clipping, the full gradient (norm ${fmt(g)}) was applied: a step`
      + ` ${fmt(hit.length)} long threw the run to ${point(none, hit.step + 1)}, loss ${fmt(lossAt(none, k))}. Norm clipping rescaled the same gradient`
      + ` to length c, a step of ${fmt(cut)}, and stays near the valley; value clipping clamped each component instead.`;
  }
  if (!hit || k < hit.step) {
    const g = norm.gradNorm[Math.min(k - 1, norm.gradNorm.length - 1)];
    const clippedSoFar = norm.clipped.subarray(0, k).reduce((a, b) => a + b, 0);
    const verdict = g > c ? `above c = ${fmt(c)}, so norm clipping shrinks it to length c`
      : `within c = ${fmt(c)}, so clipping passes it through untouched`;
    const all = harm ? "" : ` Without clipping: loss ${fmt(lossAt(none, k))}; value clipping: ${fmt(lossAt(runs.value, k))}.`;
    return `Step ${k}: gradient norm ${fmt(g)}, ${verdict}. Loss ${fmt(lossAt(norm, k))}`
      + ` (norm clipping has acted on ${clippedSoFar} of ${k} steps).${all}`;
  }
  const lost = lossAt(none, k), kept = lossAt(norm, k);
  const where = inside(land, none.u[at(none, k)], none.v[at(none, k)]) ? "" : " (off the map)";
  const g = none.gradNorm[Math.min(k, none.gradNorm.length - 1)];
  return `Step ${k}: without clipping the run is stranded at ${point(none, k)}${where}, loss ${fmt(lost)}, where the`
    + ` gradient (${fmt(g)}) is far too small to bring it back; norm clipping is at loss ${fmt(kept)}`
    + `${kept > 0 ? `, ${fmt(lost / kept)}× lower` : ""}; value clipping, whose steps were bent, at ${fmt(lossAt(runs.value, k))}.`;
}

export function lossSummary(runs, jump, land) {
  const parts = Object.entries(runs).map(([m, r]) => {
    const end = r.diverged ? `overflows after step ${r.u.length - 1}` : `ends at ${fmt(r.loss[r.loss.length - 1])}`;
    return `${LABELS[m]} ${end}`;
  });
  const rise = lossJump(runs.none);
  let why = "";
  const acted = (r) => r.clipped.some((x) => x);
  if (!acted(runs.norm) && !acted(runs.value)) {
    why = " Clipping never acted: every gradient stayed within the threshold, so the three runs are one.";
  } else if (!wrecked(runs)) {
    why = " Clipping was not needed here: without it the run ends lower than ten times norm clipping's loss.";
  } else if (land.name === "cliff") {
    const hit = catapult(runs.none, jump);
    if (hit) why = ` At step ${hit.step + 1} a single unclipped step ${fmt(hit.length)} long throws it away.`;
  } else {
    const from = overshootFrom(runs.none);
    if (from > 0) why = ` From step ${from} on, each unclipped step overshoots further than the last.`;
  }
  const jumpText = rise ? ` Without clipping the loss jumps from its low of ${fmt(rise[1])} to ${fmt(rise[2])} at step ${rise[0]}.` : "";
  return `Loss by step, log scale, from ${fmt(runs.norm.loss[0])}: ${parts.join(", ")}.${jumpText}${why}`;
}

export function normSummary(runs, s) {
  const parts = Object.entries(runs).map(([m, r]) => {
    const largest = r.gradNorm.reduce((a, b) => Math.max(a, b), 0);
    const clips = r.clipped.reduce((a, b) => a + b, 0);
    return `${LABELS[m]}: largest ${fmt(largest)}${m === "none" ? "" : `, clipped on ${clips} of ${r.clipped.length} steps`}`;
  });
  return `Gradient norm before clipping, log scale, against the threshold c = ${fmt(s.threshold)}: ${parts.join("; ")}.`;
}

export function mapSummary(runs, k, land, regionShare) {
  const [[u0, u1], [v0, v1]] = land.bounds;
  const where = Object.entries(runs).map(([m, r]) => {
    const i = at(r, k);
    const off = inside(land, r.u[i], r.v[i]) ? "" : ", off the map";
    return `${LABELS[m]} at ${point(r, k)}${off}`;
  });
  let region = "";
  if (regionShare === 0) region = " At these settings no start is catapulted without clipping: nothing is hatched.";
  else if (regionShare !== null) {
    region = ` Hatched: the ${fmt(100 * regionShare, 2)}% of starts from which an unclipped run is catapulted.`;
  }
  return `Map of the loss over ${land.axes[0]} in [${u0}, ${u1}] and ${land.axes[1]} in [${v0}, ${v1}]; brighter is`
    + ` higher.${region} At step ${k}: ${where.join("; ")}.`;
}
