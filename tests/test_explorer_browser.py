"""The explorer page in a real browser (Debian's chromium via Playwright) against a real uvicorn server.

The page is loaded, sliders moved, the surface clicked and the vector dragged; the checks read what
the page drew (Plotly's trace data, the numbers shown) and hold it to the maths. Screenshots go to
pytest's temporary directory (printed with ``-s``).
"""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "no /usr/bin/chromium: the test command installs it (apt-get install -y chromium)",
        allow_module_level=True,
    )
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

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


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with GradMonitor(log_dir=runs_dir / "demo", max_norm=1.0) as monitor:
            for i in range(200):
                monitor.record(5.0 if i % 4 == 0 else 0.5, threshold=1.0, loss=1.0)  # clips 1 step in 4
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


@pytest.fixture
def page(browser, base_url, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda err: errors.append(str(err)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.base_url = base_url
    pg.shots = tmp_path
    yield pg
    pg.screenshot(path=str(tmp_path / "final.png"), full_page=True)
    print(f"screenshots in {tmp_path}")
    context.close()
    assert errors == [], errors


def _redraws(page, view: str) -> int:
    return int(page.evaluate(f"Number(document.body.dataset.{view}Redraws || 0)"))


def _wait_redraw(page, view: str, before: int) -> None:
    page.wait_for_function(f"Number(document.body.dataset.{view}Redraws || 0) > {before}", timeout=20_000)


def _open(page, query: str = "") -> None:
    page.goto(f"{page.base_url}/{query}")
    _wait_redraw(page, "cliff", 0)
    _wait_redraw(page, "vector", 0)


def _set_range(page, selector: str, value: float) -> None:
    """Move a slider the way a user does: set its value and fire the input event."""
    page.eval_on_selector(
        selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }", value
    )


def _trajectories(page) -> dict[str, list[tuple[float, float]]]:
    data = page.evaluate("document.getElementById('cliff-plot').data.slice(1, 4).map(t => [t.x, t.y])")
    return {
        m: list(zip(x, y, strict=True)) for m, (x, y) in zip(("none", "norm", "value"), data, strict=True)
    }


def _steps(points):
    return [math.dist(a, b) for a, b in itertools.pairwise(points)]


def test_page_draws_the_catapult_and_clipped_steps_stay_within_lr_times_c(page):
    _open(page)
    page.locator("#cliff").screenshot(path=str(page.shots / "cliff.png"))
    runs = _trajectories(page)
    assert len(runs["norm"]) == 201
    assert max(_steps(runs["norm"])) <= 0.1 * 1.0 * (1 + 1e-9)
    assert max(_steps(runs["value"])) <= 0.1 * 1.0 * math.sqrt(2) * (1 + 1e-9)
    assert max(_steps(runs["none"])) > 10  # the catapult
    assert "left the map" in page.text_content("#stat-none")


def test_moving_sliders_redraws_and_keeps_the_bound(page):
    _open(page)
    before = _redraws(page, "cliff")
    _set_range(page, "#lr", -0.5)  # sliders move in log10 units, on a 0.01 grid
    _wait_redraw(page, "cliff", before)
    before = _redraws(page, "cliff")
    _set_range(page, "#threshold", -0.3)
    _wait_redraw(page, "cliff", before)
    lr, c = 0.316, 0.501  # 10**-0.5 and 10**-0.3 to three digits, as the page shows and sends them
    assert page.text_content("#lr-out") == "0.316" and page.text_content("#threshold-out") == "0.501"
    assert "lr=0.316" in page.url and "threshold=0.501" in page.url
    norm = _trajectories(page)["norm"]
    assert max(_steps(norm)) <= lr * c * (1 + 1e-9)
    assert float(page.text_content("#stat-norm .max-step")) <= round(lr * c, 3)
    page.locator("#curves").screenshot(path=str(page.shots / "curves.png"))


def test_clicking_the_surface_moves_the_start(page):
    _open(page)
    target = (7.0, -5.0)
    x, y = page.evaluate(
        """([u, v]) => {
            const gd = document.getElementById('cliff-plot');
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
            return [box.left + xa._offset + xa.l2p(u), box.top + ya._offset + ya.l2p(v)];
        }""",
        list(target),
    )
    before = _redraws(page, "cliff")
    page.mouse.click(x, y)
    _wait_redraw(page, "cliff", before)
    start = _trajectories(page)["norm"][0]
    cell = (8 / 160, 7 / 160)  # the heatmap reports the centre of the clicked cell
    assert abs(start[0] - target[0]) <= cell[0] and abs(start[1] - target[1]) <= cell[1]
    assert float(page.input_value("#u")) == pytest.approx(start[0], rel=1e-3)


def test_animation_steps_through_frames(page):
    _open(page)
    page.click("#step")  # from the last frame, step wraps to the start
    page.wait_for_function("document.getElementById('cliff-plot').data[1].x.length === 1")
    page.click("#step")
    page.wait_for_function("document.getElementById('cliff-plot').data[1].x.length === 2")
    page.click("#play")
    page.wait_for_function("document.getElementById('cliff-plot').data[1].x.length === 201", timeout=20_000)


def test_settings_come_from_the_url(page):
    _open(page, "?surface=bowl&lr=0.6&threshold=1&steps=100&u=-4&v=4")
    assert page.input_value("#surface") == "bowl" and page.text_content("#lr-out") == "0.6"
    norm = _trajectories(page)["norm"]
    assert norm[0] == (-4, 4) and max(_steps(norm)) <= 0.6 * (1 + 1e-9)


def test_vector_view_matches_the_maths_when_typed_and_dragged(page):
    _open(page)
    before = _redraws(page, "vector")
    page.fill("#gx", "4")
    page.fill("#gy", "1")
    page.press("#gy", "Enter")
    _wait_redraw(page, "vector", before)
    page.wait_for_function("document.getElementById('angle').textContent !== '26.6'")
    expected = 45.0 - math.degrees(math.atan(1 / 4))
    assert float(page.text_content("#angle")) == pytest.approx(expected, abs=0.05)
    page.locator("#vector-plot").scroll_into_view_if_needed()  # the mouse acts on the viewport only
    box = page.locator("#vector-plot").bounding_box()
    before = _redraws(page, "vector")
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.up()
    _wait_redraw(page, "vector", before)
    gx, gy = float(page.input_value("#gx")), float(page.input_value("#gy"))
    assert gx < 0 < gy  # upper left of the origin
    page.locator("#vector").screenshot(path=str(page.shots / "vector.png"))


def test_runs_view_shows_the_clip_rate(page):
    _open(page)
    page.click("#run-list tbody tr[data-id='demo']")
    _wait_redraw(page, "runs", 0)
    assert page.text_content("#clip-rate") == "25.0%"
    assert "run=demo" in page.url
    page.locator("#runs").screenshot(path=str(page.shots / "runs.png"))
