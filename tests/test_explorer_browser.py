"""The explorer page in a real browser (Debian's chromium via Playwright) against a real uvicorn server.

The page is loaded, sliders moved, the map clicked and tapped, the vector dragged by touch, runs
picked by keyboard, Back pressed; the checks read what the page computed and drew (its trajectories,
its texts, its URL) and hold it to the Python reference and to the maths.
"""

from __future__ import annotations

import itertools
import math
import random
import warnings
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "no /usr/bin/chromium: the test command installs it (apt-get install -y chromium)",
        allow_module_level=True,
    )
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from gradclip.explorer import cliff  # noqa: E402
from gradclip.explorer.server import serve_in_thread  # noqa: E402
from gradclip.monitor import GradMonitor  # noqa: E402

pytestmark = pytest.mark.slow
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}


def _monitor_run(path: Path, losses, norms, *, close: bool = True, threshold: float | None = 1.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monitor = GradMonitor(log_dir=path, max_norm=threshold)
        for loss, norm in zip(losses, norms, strict=True):
            monitor.record(norm, threshold=threshold, loss=loss)
        if close:
            monitor.close()
    return monitor


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    n = 200
    # Shaped like `gradclip demo`'s pair: one bad batch at step 60 wrecks the unclipped run.
    wrecked = [2.3 * 0.98**i if i < 60 else 500.0 + 50 * rng.random() for i in range(n)]
    spike = [0.5 + 0.1 * rng.random() if i != 60 else 2e7 for i in range(n)]
    _monitor_run(root / "demo" / "no-clipping", wrecked, spike, threshold=None)
    _monitor_run(root / "demo" / "clipped", [2.3 * 0.98**i for i in range(n)], spike)
    (root / "broken").mkdir()
    (root / "broken" / "grads.jsonl").write_text("this is not a gradclip log\n")
    return root


@pytest.fixture(scope="module")
def base_url(runs_dir):
    url, server, thread = serve_in_thread(runs_dir)
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
        yield b
        b.close()


def _context(browser, base_url, *, phone: bool = False):
    if phone:
        return browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True, device_scale_factor=2)
    return browser.new_context(viewport=DESKTOP)


@pytest.fixture
def page(browser, base_url):
    context = _context(browser, base_url)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda err: errors.append(str(err)))
    # The browser logs every HTTP 400 it receives; the page shows those itself (an unreadable run).
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "400" not in m.text else None)
    pg.base_url = base_url
    yield pg
    context.close()
    assert errors == [], errors


def _count(page, key: str) -> int:
    return int(page.evaluate(f"Number(document.body.dataset.{key} || 0)"))


def _wait_more(page, key: str, before: int) -> None:
    page.wait_for_function(f"Number(document.body.dataset.{key} || 0) > {before}", timeout=20_000)


def _open(page, query: str = "") -> None:
    page.goto(f"{page.base_url}/{query}")
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=20_000)
    _wait_more(page, "cliffRedraws", 0)
    _wait_more(page, "vectorRedraws", 0)


def _runs(page) -> dict[str, dict[str, list[float]]]:
    return page.evaluate(
        """() => Object.fromEntries(Object.entries(window.cliffRuns).map(([m, r]) => [m, {
            u: Array.from(r.u), v: Array.from(r.v),
            loss: Array.from(r.loss, x => Number.isFinite(x) ? x : null),
            steps: r.steps, diverged: r.diverged }]))"""
    )


def _set_range(page, selector: str, value: float) -> None:
    """Move a slider the way a user does: set its value and fire the input event."""
    page.eval_on_selector(
        selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }", value
    )


def _pixel(page, u: float, v: float) -> tuple[float, float]:
    return tuple(
        page.evaluate(
            """([u, v]) => { const ax = window.cliffAxes, box = document.getElementById('surface-canvas')
                .getBoundingClientRect(); return [box.left + ax.px(u), box.top + ax.py(v)]; }""",
            [u, v],
        )
    )


SIMULATE_JS = """async (cases) => {
    const m = await import('/static/landscapes.js');
    return cases.map(c => { const r = m.simulate(c.name, c.start, c);
        const out = a => Array.from(a, x => Number.isFinite(x) ? x : String(x));
        return { u: out(r.u), v: out(r.v), loss: out(r.loss), norm: out(r.gradNorm),
                 clipped: Array.from(r.clipped, Boolean), diverged: r.diverged }; });
}"""


def _random_settings(rng: random.Random, per_surface: int, steps=(500,), lr_decades=(-2, 0.5)) -> list[dict]:
    """Random starts, learning rates and thresholds on every surface (the page's units)."""
    cases = []
    for name, land in cliff.LANDSCAPES.items():
        (u0, u1), (v0, v1) = land.bounds
        for _ in range(per_surface):
            cases.append({
                "name": name, "start": [rng.uniform(u0, u1), rng.uniform(v0, v1)], "steps": rng.choice(steps),
                "lr": 10 ** rng.uniform(*lr_decades), "threshold": 10 ** rng.uniform(-1.5, 1),
            })  # fmt: skip
    return cases


def test_js_trajectories_equal_the_python_reference(page):
    rng = random.Random(18)
    cases = [{**case, "method": rng.choice(cliff.METHODS)} for case in _random_settings(rng, 20)]
    _open(page)
    js = page.evaluate(SIMULATE_JS, cases)
    for case, got in zip(cases, js, strict=True):
        t = cliff.simulate(case["name"], case["start"], lr=case["lr"], threshold=case["threshold"],
                           steps=500, method=case["method"])  # fmt: skip
        assert got["diverged"] == t.diverged, case
        for ours, theirs in ((got["u"], t.points[:, 0]), (got["v"], t.points[:, 1]), (got["loss"], t.loss),
                             (got["norm"], t.grad_norm)):  # fmt: skip
            ours = np.array(ours, dtype=float)
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0, err_msg=str(case))
        assert got["clipped"] == t.clipped.tolist()


def test_default_scene_tells_the_story(page):
    _open(page)
    runs = _runs(page)
    none, norm, value = runs["none"], runs["norm"], runs["value"]
    loss = np.array(none["loss"], dtype=float)
    assert (loss[1:] / np.minimum.accumulate(loss)[:-1]).max() > 100  # the loss jumps by orders of magnitude
    assert none["diverged"] or loss[-1] >= 10 * norm["loss"][-1]
    assert norm["loss"][-1] <= norm["loss"][0] / 10 and not norm["diverged"]
    gap = np.hypot(np.subtract(norm["u"], value["u"]), np.subtract(norm["v"], value["v"]))
    assert gap.max() > 0.5  # value clipping visibly takes another path
    assert "left the map" in page.text_content("#stat-none")
    assert "stranded" in page.text_content("#caption")
    page.wait_for_function("document.body.dataset.regionReady", timeout=30_000)
    assert "Hatched" in page.text_content("#surface-summary")  # the catapult region, computed in the page
    # then refined along its edge to twice the resolution, in the background
    page.wait_for_function("document.body.dataset.regionCells === '96x84'", timeout=60_000)
    assert "Hatched" in page.text_content("#surface-summary")
    assert "jumps from its low of" in page.text_content("#loss-summary")


def _captions(page, frames) -> list[str]:
    texts = []
    for frame in frames:
        before = _count(page, "cliffRedraws")
        _set_range(page, "#frame", min(frame, int(page.get_attribute("#frame", "max"))))
        _wait_more(page, "cliffRedraws", before)
        texts.append(page.text_content("#caption"))
    return texts


@pytest.mark.parametrize(
    ("query", "story"),
    [
        ("?surface=bowl", "not needed"),  # the unclipped run converges fastest: nothing was saved
        ("?surface=valley", "overshoots"),  # each step lands higher up the other wall, then overflow
        ("?surface=bowl&lr=0.6", "overshoots"),  # lr above 2 / (largest curvature): a growing oscillation
        ("?surface=cliff&u=3&v=-6.5", "never acted"),  # the vanishing side: every gradient within c
    ],
)
def test_each_surface_is_narrated_as_what_happens_on_it(page, query, story):
    # The cliff's words (a cliff, a throw, a stranded run) belong to the cliff; the valley and a bowl
    # at too high a learning rate are wrecked by overshooting; the bowl at its defaults needs no rescue.
    _open(page, query)
    captions = _captions(page, [1, 3, 5, 30, 60, 10**6])
    summary = page.text_content("#loss-summary")
    text = " ".join([*captions, summary])
    for cliff_word in ("cliff", "threw", "stranded", "throws it away"):
        assert cliff_word not in text, (cliff_word, text)
    if story in ("not needed", "never acted"):
        assert story in summary and "overshoots" not in text
    else:
        assert story in captions[1] and story in summary


CATAPULTS_JS = """async (cases) => {
    const m = await import('/static/landscapes.js');
    return cases.map((c) => m.catapults(c.name, c.start[0], c.start[1], c));
}"""


def test_the_catapult_region_follows_its_rule_on_the_full_trajectories(page):
    # The worker's check stops as soon as it knows; the rule, applied here to the Python reference's
    # whole unclipped trajectory: some step longer than a quarter of the map's shorter side lands at
    # 10x the lowest loss so far, or the run overflows. The three default scenes: the cliff and the
    # valley are catapults, the bowl (a long first stride that lands lower) is not.
    cases = _random_settings(random.Random(3), 40, steps=(100, 500), lr_decades=(-1.5, 0.5))
    cases += [{"name": n, "start": list(land.start), "steps": land.steps, "lr": land.lr, "threshold": 1.0}
              for n, land in cliff.LANDSCAPES.items()]  # fmt: skip
    for case in cases:
        (u0, u1), (v0, v1) = cliff.LANDSCAPES[case["name"]].bounds
        case["jump"] = min(u1 - u0, v1 - v0) / 4
    _open(page)
    got = page.evaluate(CATAPULTS_JS, cases)
    expected = []
    for case in cases:
        t = cliff.simulate(case["name"], case["start"], lr=case["lr"], threshold=1.0, steps=case["steps"],
                           method="none")  # fmt: skip
        steps = np.hypot(*np.diff(t.points, axis=0).T)
        low = np.minimum.accumulate(t.loss[: len(steps)])
        landed = t.loss[1 : len(steps) + 1]
        expected.append(bool(t.diverged or np.any((steps > case["jump"]) & (landed >= 10 * low))))
    assert got == expected
    assert got[-3:] == [True, True, False]  # cliff, valley, bowl at their defaults
    assert 0 < sum(got) < len(got)


def test_play_moves_the_markers_and_narrates(page):
    _open(page)
    page.click("#play")
    seen = set()
    captions = set()
    while True:
        state = page.evaluate("[window.lastRedraw.frame, document.getElementById('caption').textContent]")
        seen.add(state[0])
        captions.add(state[1])
        if state[0] == 200 and len(seen) > 1:
            break
        page.wait_for_timeout(40)
    assert len(seen) >= 15  # the markers moved through many frames, not a jump to the end
    assert any("threw the run" in c for c in captions)
    assert page.text_content("#play") == "play"


def test_click_starts_exactly_where_clicked_and_counts_once(page):
    _open(page)
    target = (7.0, -5.0)
    before, clicks = _count(page, "cliffRedraws"), _count(page, "clicks")
    page.mouse.click(*_pixel(page, *target))
    _wait_more(page, "cliffRedraws", before)
    start = _runs(page)["norm"]
    width = page.evaluate("window.cliffAxes.box.width")
    half_pixel = 0.5 * 8.0 / width  # the map spans 8 in w over `width` pixels
    assert abs(start["u"][0] - target[0]) <= half_pixel and abs(start["v"][0] - target[1]) <= half_pixel
    assert _count(page, "clicks") == clicks + 1
    assert float(page.input_value("#u")) == start["u"][0]


def test_sliders_redraw_in_the_page_and_announce_real_values(page):
    requests: list[str] = []
    _open(page)
    page.on("request", lambda r: requests.append(r.url))
    before = _count(page, "cliffRedraws")
    _set_range(page, "#lr", -0.5)  # log10 units on a 0.01 grid
    _wait_more(page, "cliffRedraws", before)
    assert [r for r in requests if "/api/" in r] == []  # no server round trip: the page simulates
    assert page.get_attribute("#lr", "aria-valuetext") == "learning rate 0.316"
    norm = _runs(page)["norm"]
    steps = np.hypot(np.diff(norm["u"]), np.diff(norm["v"]))
    assert steps.max() <= 0.316 * 1.0 * (1 + 1e-9)
    page.check("input[value=contours]")
    page.wait_for_function("location.search.includes('view=contours')", timeout=5_000)


def test_no_request_leaves_the_pages_origin_and_plotly_cannot_share(browser, base_url):
    context = _context(browser, base_url)
    outside: list[str] = []

    def route(r):
        if r.request.url.startswith(base_url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.base_url = base_url
    _open(page, "?run=demo/no-clipping&compare=demo/clipped")
    _wait_more(page, "runsRedraws", 0)
    page.click("#play")
    page.wait_for_timeout(500)
    assert outside == []
    buttons = page.eval_on_selector_all(".modebar-btn", "els => els.map(e => e.getAttribute('data-title'))")
    assert 0 < len(buttons) <= 4 and not [b for b in buttons if "Chart Studio" in b or "Share" in b]
    assert page.locator("a.modebar-btn[href]").count() == 0  # no "produced with Plotly" link either
    context.close()


def test_phone_layout_fits_390_px_and_touch_works(browser, base_url):
    context = _context(browser, base_url, phone=True)
    page = context.new_page()
    page.base_url = base_url
    _open(page, "?run=demo/no-clipping&compare=demo/clipped")
    _wait_more(page, "runsRedraws", 0)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # Nothing sticks out of the screen, except inside a container that scrolls on its own (the table).
    wide = page.evaluate(
        """() => [...document.querySelectorAll('body *')].filter(e => !e.closest('.scroll, .js-plotly-plot'))
            .filter(e => e.getBoundingClientRect().right > 390.5).map(e => e.tagName + '#' + e.id)"""
    )
    assert wide == []
    # One tap on the map = one click = one new start.
    page.locator("#surface-canvas").scroll_into_view_if_needed()
    clicks, before = _count(page, "clicks"), _count(page, "cliffRedraws")
    page.touchscreen.tap(*_pixel(page, 6.0, -2.0))
    _wait_more(page, "cliffRedraws", before)
    page.wait_for_timeout(300)
    assert _count(page, "clicks") == clicks + 1
    assert _runs(page)["norm"]["u"][0] == pytest.approx(6.0, abs=0.05)
    # A finger dragged across the vector view moves the gradient with it.
    page.locator("#vector-canvas").scroll_into_view_if_needed()
    box = page.locator("#vector-canvas").bounding_box()
    cdp = context.new_cdp_session(page)
    x0, y0 = box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.4
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
    before = _count(page, "vectorRedraws")
    for i in range(1, 6):
        point = {"x": x0 - i * box["width"] * 0.07, "y": y0 + i * box["height"] * 0.06}
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        page.wait_for_timeout(40)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    _wait_more(page, "vectorRedraws", before)
    gx, gy = float(page.input_value("#gx")), float(page.input_value("#gy"))
    assert gx < 0 and gy < 0  # dragged to the lower left of the origin
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def test_runs_view_overlays_two_runs_and_marks_diverged_advice(page):
    _open(page, "?run=demo/no-clipping&compare=demo/clipped")
    _wait_more(page, "runsRedraws", 0)
    traces = page.evaluate("document.getElementById('run-plot').data.map(t => [t.name, t.yaxis || 'y'])")
    names = [n for n, _ in traces]
    assert "demo/no-clipping" in names and "demo/clipped" in names
    assert {axis for _, axis in traces} == {"y", "y2"}  # loss and gradient norms
    cards = page.locator(".run-card")
    assert cards.count() == 2
    assert "Unreliable advice" in cards.nth(0).text_content()
    assert "Unreliable" not in cards.nth(1).text_content()
    assert "diverged" in page.text_content("#run-summary")
    # Without clipping beside with it, in either order: the cliff view's styles (vermillion solid, blue
    # dashed), and the cards' borders the same; one run alone is solid, in its kind's colour.
    lines = """() => Object.fromEntries(document.getElementById('run-plot').data
        .filter(t => !t.name.includes(':')).map(t => [t.name, [t.line.color, t.line.dash]]))"""
    borders = "() => [...document.querySelectorAll('.run-card')].map(c => getComputedStyle(c).borderTopStyle)"
    pair = {"demo/no-clipping": ["#D55E00", "solid"], "demo/clipped": ["#0072B2", "dash"]}
    assert page.evaluate(lines) == pair and page.evaluate(borders) == ["solid", "dashed"]
    _open(page, "?run=demo/clipped&compare=demo/no-clipping")
    _wait_more(page, "runsRedraws", 0)
    assert page.evaluate(lines) == pair and page.evaluate(borders) == ["dashed", "solid"]
    for run, color in (("demo/clipped", "#0072B2"), ("demo/no-clipping", "#D55E00")):
        _open(page, f"?run={run}")
        _wait_more(page, "runsRedraws", 0)
        assert page.evaluate(lines) == {run: [color, "solid"]}


def test_runs_list_works_by_keyboard_and_an_unreadable_run_says_so(page):
    _open(page)
    page.focus("#run-list button[data-id='demo/clipped']")
    page.keyboard.press("Enter")
    _wait_more(page, "runsRedraws", 0)
    page.wait_for_function("new URLSearchParams(location.search).get('run') === 'demo/clipped'", timeout=5000)
    assert page.locator(".run-card").count() == 1
    before = _count(page, "runsRedraws")
    page.focus("#run-list button[data-id='broken']")
    page.keyboard.press("Space")
    _wait_more(page, "runsRedraws", before)
    assert "Cannot show run broken" in page.text_content("#runs-error")
    assert page.locator(".run-card").count() == 0  # the previous run is not left on screen
    assert page.evaluate("(document.getElementById('run-plot').data || []).length") == 0


def test_a_run_being_written_is_refreshed(page, runs_dir):
    monitor = _monitor_run(runs_dir / "live", [1.0] * 30, [0.5] * 30, close=False)
    try:
        _open(page, "?run=live")
        page.wait_for_function("document.querySelector('.run-card b')?.textContent === '30'", timeout=20_000)
        assert "still being written" in page.text_content(".run-card")
        for _ in range(20):
            monitor.record(0.5, threshold=1.0, loss=1.0)
        page.wait_for_function("document.querySelector('.run-card b')?.textContent === '50'", timeout=20_000)
    finally:
        monitor.close()


def test_back_undoes_a_settled_change(page):
    _open(page)
    start = page.url
    before = _count(page, "cliffRedraws")
    _set_range(page, "#threshold", -0.3)
    _wait_more(page, "cliffRedraws", before)
    page.wait_for_function("location.search.includes('threshold=0.501')", timeout=5_000)
    before = _count(page, "cliffRedraws")
    page.go_back()
    _wait_more(page, "cliffRedraws", before)
    assert page.url == start or "threshold=1&" in page.url or page.url.endswith("threshold=1")
    assert page.text_content("#threshold-out") == "1"


def test_a_bad_link_gives_one_message_and_keeps_the_good_fields(page):
    _open(page, "?lr=-1&threshold=abc&steps=150&u=4.5&gx=2")
    message = page.text_content("#link-error")
    assert page.locator("#link-error").is_visible()
    assert 'lr="-1"' in message and 'threshold="abc"' in message and "steps" not in message
    assert page.text_content("#lr-out") == "1" and page.text_content("#threshold-out") == "1"  # defaults
    runs = _runs(page)
    assert runs["norm"]["u"][0] == 4.5 and len(runs["norm"]["u"]) == 151  # the good fields are kept
    assert page.input_value("#gx") == "2"


def test_explanations_follow_the_surface(page):
    _open(page)
    visible = page.locator(".explain[data-surface]:visible")
    assert visible.count() == 1 and "recurrent unit" in visible.text_content()
    page.select_option("#surface", "bowl")
    page.wait_for_function("document.querySelector('.explain[data-surface=bowl]').hidden === false")
    text = page.locator(".explain[data-surface]:visible").text_content()
    assert "bowl" in text and "recurrent" not in text
    start = cliff.LANDSCAPES["bowl"].start[0]
    # the runs are recomputed for the new surface after its text is shown: wait for them, not a time
    page.wait_for_function(f"window.cliffRuns && window.cliffRuns.norm.u[0] === {start!r}")
    assert _runs(page)["norm"]["u"][0] == start


def test_vector_view_matches_the_maths_when_typed(page):
    _open(page)
    before = _count(page, "vectorRedraws")
    page.fill("#gx", "4")
    page.press("#gx", "Enter")
    _wait_more(page, "vectorRedraws", before)
    expected = 45.0 - math.degrees(math.atan(1 / 4))
    assert float(page.text_content("#angle")) == pytest.approx(expected, abs=0.05)
    assert "turned by" in page.text_content("#vector-summary")


THIN_JS = """async ({ us, vs, series }) => {
    const plot = await import('/static/plot.js');
    const recorder = () => { const out = []; return { out, moveTo: (x, y) => out.push([[x, y]]),
        lineTo: (x, y) => out[out.length - 1].push([x, y]) }; };
    const box = { left: 50, top: 8, width: 500, height: 400 };
    const map = plot.axes({ box, x: [2, 10], y: [-7, 0] });
    const curve = plot.axes({ box, x: [0, series.length], y: [1e-12, 1e3], logY: true });
    const a = recorder(), b = recorder();
    plot.thinPath(map, us, vs, us.length, a);
    plot.thinSeries(curve, series.map(y => y ?? NaN), series.length, b);
    return { path: a.out, series: b.out,
             pathPx: us.map((u, i) => [map.px(u), map.py(vs[i])]),
             seriesPx: series.map((y, i) => [curve.px(i), y === null ? null : curve.py(y)]) };
}"""


def _distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance from each point to the nearest segment of `line` (k x 2), in pixels."""
    if len(line) == 1:
        return np.hypot(*(points - line[0]).T)
    a, b = line[:-1], line[1:]
    ab = b - a
    out = []
    for chunk in np.array_split(points, max(1, len(points) // 256)):  # a few MB at a time
        t = np.einsum("pij,ij->pi", chunk[:, None, :] - a, ab) / np.maximum((ab**2).sum(1), 1e-12)
        nearest = a + np.clip(t, 0, 1)[..., None] * ab
        out.append(np.hypot(*(chunk[:, None, :] - nearest).transpose(2, 0, 1)).min(1))
    return np.concatenate(out)


def test_thinned_lines_stay_within_a_pixel_of_every_point(page):
    # The page draws each line thinned to about one point per pixel (plot.js); what is drawn must stay
    # within a pixel of every simulated point, and keep the breaks where the values stop being finite.
    _open(page, "?steps=3000")
    runs = _runs(page)
    rng = np.random.default_rng(5)
    walk = 10.0 ** np.cumsum(rng.normal(0, 0.3, 5000)).clip(-11, 2)
    series = [None if 2400 <= i < 2410 else float(y) for i, y in enumerate(walk)]
    out = page.evaluate(THIN_JS, {"us": runs["value"]["u"], "vs": runs["value"]["v"], "series": series})
    # The path is drawn as pieces: a segment it has drawn already is left out (a hop back and forth
    # retraces the same few segments), and the pen is lifted to the next new one.
    path_px, pieces = np.array(out["pathPx"]), [np.array(piece) for piece in out["path"]]
    assert sum(map(len, pieces)) < len(path_px) / 5  # 3000 steps, a crawl or a tiny zigzag: thinned a lot
    distance = np.min([_distance_to_polyline(path_px, piece) for piece in pieces if len(piece) > 1], axis=0)
    assert distance.max() <= 0.75
    assert np.allclose(pieces[0][0], path_px[0])
    ends = [np.round(8 * piece).astype(int) for piece in pieces]  # to 1/8 px, as plot.js compares them
    segments = [tuple(sorted((tuple(a), tuple(b)))) for piece in ends for a, b in itertools.pairwise(piece)]
    assert len(set(segments)) == len(segments)  # no segment drawn twice
    assert len(out["series"]) == 2  # the stretch of NaN breaks the curve in two
    for stretch, points in zip(out["series"], (out["seriesPx"][:2400], out["seriesPx"][2410:]), strict=True):
        points, drawn = np.array(points, dtype=float), np.array(stretch)
        assert len(drawn) <= 4 * 500 * len(points) / 5000 + 8  # at most 4 points per pixel column
        # within its pixel column and half a pixel: so each column still reaches its lowest and highest value
        assert _distance_to_polyline(points, drawn).max() <= 1.5


HOP_JS = """async () => {
    const plot = await import('/static/plot.js');
    const out = [];
    const rec = { moveTo: (x, y) => out.push([[x, y]]), lineTo: (x, y) => out.at(-1).push([x, y]) };
    const ax = plot.axes({ box: { left: 0, top: 0, width: 100, height: 100 }, x: [0, 100], y: [100, 0] });
    const us = [10, 50, 10, 50, 10, 50, 10, 50, 90], vs = [10, 10, 10, 10, 10, 10, 10, 10, 40];
    plot.thinPath(ax, us, vs, us.length, rec);
    return out;
}"""


def test_a_hop_back_and_forth_is_drawn_once(page):
    # A run hopping between two points over and over (the clipped run at the wall) retraces one
    # segment: it is drawn once, and the next new segment starts where the pen was lifted.
    _open(page)
    pieces = page.evaluate(HOP_JS)
    assert len(pieces) == 2
    assert np.allclose(pieces[0], [[10, 10], [50, 10]]) and np.allclose(pieces[1], [[50, 10], [90, 40]])


SIMULATE_ALL_JS = """async (cases) => {
    const m = await import('/static/landscapes.js');
    const same = (a, b) => ArrayBuffer.isView(a)
        ? a.length === b.length && Array.from(a).every((x, i) => Object.is(x, b[i])) : Object.is(a, b);
    return cases.flatMap((c, i) => {
        const all = m.simulateAll(c.name, c.start, c);
        return m.METHODS.flatMap((method) => {
            const one = m.simulate(c.name, c.start, { ...c, method });
            return Object.keys(one).filter((k) => !same(one[k], all[method][k])).map((k) => [i, method, k]);
        });
    });
}"""


def test_simulate_all_resumes_each_clipped_run_bit_for_bit(page):
    # simulateAll starts each clipped run at its first clip from the unclipped run's steps: every
    # array and flag must be the one a run of its own gives, bit for bit (signs of zero included).
    cases = _random_settings(random.Random(7), 40, steps=(1, 2, 60, 500), lr_decades=(-2, 0.7))
    for name, land in cliff.LANDSCAPES.items():
        default = {"name": name, "start": list(land.start), "lr": land.lr}
        cases.append({**default, "steps": 500, "threshold": land.threshold})
        cases.append({**default, "steps": 50, "threshold": 1e6})  # never clips
    _open(page)
    assert page.evaluate(SIMULATE_ALL_JS, cases) == []


# Each figure's lines drawn twice, every line whole and with what a later line covers left out, as
# solid lines (a dash pattern starts where a line starts); how many pixels differ, and by how much.
COVER_JS = """async ({ key, frame }) => {
    const { drawPaths } = await import('/static/cliff.js');
    const { drawCurve } = await import('/static/curves.js');
    const { DASHES } = await import('/static/common.js');
    const dashes = { ...DASHES };
    for (const m in DASHES) DASHES[m] = [];
    const runs = window.cliffRuns, ax = window.cliffAxes, map = document.getElementById('surface-canvas');
    const render = (cover) => {
        const c = document.createElement('canvas');
        if (key === 'map') {
            c.width = map.width; c.height = map.height;
            const ctx = c.getContext('2d');
            ctx.fillStyle = '#3a528b'; ctx.fillRect(0, 0, c.width, c.height);
            drawPaths(ctx, ax, runs, frame, { cover });
        } else {
            c.style.width = '566px'; c.style.height = '230px';
            document.body.append(c);
            drawCurve(c, runs, key, { steps: runs.none.loss.length - 1, frame, ylabel: key, cover });
            c.remove();
        }
        return c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    };
    const a = render(false), b = render(true);
    Object.assign(DASHES, dashes);
    let differ = 0, strong = 0;
    for (let i = 0; i < a.length; i += 4) {
        let d = 0;
        for (let j = 0; j < 4; j++) d = Math.max(d, Math.abs(a[i + j] - b[i + j]));
        if (d > 0) differ++;
        if (d > 96) strong++;
    }
    const shared = runs.none.u.findIndex((u, i) => u !== runs.norm.u[i]);
    return { differ, strong, pixels: a.length / 4, shared };
}"""


@pytest.mark.parametrize("key", ["map", "loss", "gradNorm"])
def test_lines_left_out_under_a_covering_line_change_only_edge_pixels(page, key):
    # The map draws a run only from where it parts from a run drawn over it (whose halo covers it),
    # and the curves draw the clipped runs only from where they part from the unclipped one: the
    # pixels must be those of drawing every line whole, but for a few where they part (the rest of
    # the line is thinned from there, within half a pixel) and the edges of the shared stretch.
    # The default scene's runs share their first steps; mid-play and at its last frame.
    _open(page)
    for frame in (60, 200):
        got = page.evaluate(COVER_JS, {"key": key, "frame": frame})
        assert got["shared"] > 20  # the runs share a stretch, so something was left out
        # Measured: 3-14 pixels change by more than 96 of 255 (where the lines part) and 540-610 by
        # less (anti-aliased edges along the shared stretch, blended once instead of twice), of about
        # 480,000 (map) or 130,000 (curves). A clipped run drawn from 5 steps too late: 42-978.
        assert got["strong"] <= 30 and got["differ"] <= 1200, got


def test_the_overflow_label_stays_whole_inside_the_axes(page):
    # On the valley the unclipped run overflows at step 6, at the left edge of each curve: its label is
    # drawn over that step but kept inside the axes (it was cut in half). Every text drawn on the two
    # curves is recorded, with how wide it is.
    _open(page, "?surface=valley")
    page.evaluate(
        """() => { window.texts = []; const fill = CanvasRenderingContext2D.prototype.fillText;
        CanvasRenderingContext2D.prototype.fillText = function (text, x, y) {
            const width = this.measureText(text).width;
            if (this.canvas.id) window.texts.push([this.canvas.id, text, x, this.textAlign, width]);
            return fill.apply(this, arguments); }; }"""
    )
    before = _count(page, "cliffRedraws")
    page.click("#step")
    _wait_more(page, "cliffRedraws", before)
    labels = [t for t in page.evaluate("window.texts") if t[1].startswith("overflow")]
    assert {t[0] for t in labels} == {"loss-canvas", "norm-canvas"}
    for _, _, x, align, width in labels:
        assert align == "center" and x - width / 2 >= 50  # the curves' axes start 50 px in


def test_every_canvas_follows_its_box_when_the_window_is_resized(page):
    # The canvases' sizes are kept by a ResizeObserver (no layout is forced while drawing): after a
    # resize each one must be redrawn at its new size, not stretched.
    _open(page)
    sizes = """() => [...document.querySelectorAll('canvas')].map(c => { const r = c.getBoundingClientRect();
        return [c.id, c.width, c.height, Math.round(r.width), Math.round(r.height)]; })"""
    for width in (700, 390, 1400):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_function(
            f"""() => ({sizes})().every(([, w, h, cw, ch]) => w === cw && h === ch)""", timeout=5_000
        )
    assert len(page.evaluate(sizes)) == 4  # map, loss, norm, vector: one canvas each
