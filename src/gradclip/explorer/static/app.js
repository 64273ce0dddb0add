// Entry point: start each view, then read the link's settings into them.
import { initCliff } from "./cliff.js";
import { api, startHistory } from "./common.js";
import { initRuns } from "./runs.js";
import { initVector } from "./vector.js";

async function main() {
  const info = await api("/api/surfaces");
  initCliff(info);
  initVector();
  initRuns();
  startHistory();
  document.body.dataset.ready = "1";
}

main().catch((err) => {
  const box = document.getElementById("link-error");
  box.hidden = false;
  box.textContent = `The explorer cannot start: ${err.message || err}`;
});
