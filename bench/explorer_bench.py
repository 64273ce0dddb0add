"""Benchmark: the explorer's API time for a 500-step simulation, and slider-to-redraw time in a browser.

Run: ``.venv/bin/python bench/explorer_bench.py`` (the browser part needs /usr/bin/chromium).
Targets (issue 8): a 500-step simulation of all three methods answered in 20 ms; a slider moved to
the page redrawn in 100 ms. Prints medians and 90th percentiles of

* ``simulate_all``: the maths alone, in process (:func:`gradclip.explorer.cliff.simulate_all`);
* ``GET /api/simulate``: the same through a real uvicorn server on 127.0.0.1 (HTTP + JSON included);
* ``slider -> redraw``: headless chromium; from the slider's ``input`` event to the end of the
  redraw of the surface, the stats table and both curve plots (the page's ``lastRedraw`` mark).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import httpx

from gradclip.explorer import cliff
from gradclip.explorer.server import serve_in_thread

PARAMS = {"surface": "cliff", "u": 5.0, "v": -3.5, "lr": 0.1, "threshold": 1.0, "steps": 500}


def _quantiles(samples: list[float]) -> str:
    ms = sorted(1e3 * s for s in samples)
    return (
        f"median {statistics.median(ms):7.2f} ms   p90 {ms[int(0.9 * (len(ms) - 1))]:7.2f} ms   (n={len(ms)})"
    )


def bench_api(url: str, repeats: int) -> None:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        cliff.simulate_all("cliff", (5.0, -3.5), lr=0.1, threshold=1.0, steps=500)
        times.append(time.perf_counter() - t0)
    print(f"simulate_all (500 steps x 3)   {_quantiles(times)}")
    with httpx.Client(base_url=url) as client:
        client.get("/api/simulate", params=PARAMS).raise_for_status()  # warm-up
        times = []
        for i in range(repeats):
            params = {**PARAMS, "lr": 0.1 + 1e-4 * i}  # a new request each time: nothing cached
            t0 = time.perf_counter()
            client.get("/api/simulate", params=params).raise_for_status()
            times.append(time.perf_counter() - t0)
    print(f"GET /api/simulate (500 steps)  {_quantiles(times)}   target 20 ms")


REDRAW = """async (value) => {
    const before = Number(document.body.dataset.cliffRedraws);
    const slider = document.getElementById('lr');
    const t0 = performance.now();
    slider.value = value;
    slider.dispatchEvent(new Event('input', {bubbles: true}));
    while (Number(document.body.dataset.cliffRedraws) === before) await new Promise(r => setTimeout(r, 1));
    return window.lastRedraw.time - t0;
}"""


def bench_browser(url: str, repeats: int) -> None:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/?steps=500")
        page.wait_for_function("Number(document.body.dataset.cliffRedraws || 0) >= 1", timeout=30_000)
        times = []
        for i in range(repeats):
            value = math.log10(0.1) + (0.01 if i % 2 else -0.01)  # alternate: every move is a change
            times.append(page.evaluate(REDRAW, value) / 1e3)
        browser.close()
    print(f"slider -> redraw (500 steps)   {_quantiles(times)}   target 100 ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-browser", action="store_true", help="skip the browser measurement")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        url, server, thread = serve_in_thread(Path(tmp))
        try:
            bench_api(url, args.repeats)
            if not args.no_browser:
                bench_browser(url, args.repeats)
        finally:
            server.should_exit = True
            thread.join(10)


if __name__ == "__main__":
    main()
