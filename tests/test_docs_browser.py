"""The built documentation in a real browser (Debian's chromium via Playwright), opened from disk."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "no /usr/bin/chromium: the test command installs it (apt-get install -y chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api")

from test_docs import build_site  # noqa: E402 (tests/ is on sys.path, as for strategies.py)

pytestmark = pytest.mark.slow
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def test_search_works_from_file_url(tmp_path):
    site = tmp_path / "site"
    build_site(site)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto((site / "index.html").as_uri())  # as the README says to open it: from disk
            search = page.locator("input.md-search__input")
            search.wait_for(state="visible", timeout=15_000)  # Material hides search when it cannot run
            search.click()
            search.press_sequentially("ZScore", delay=20)  # typed, as a user does
            result = page.locator(".md-search-result__item").first
            result.wait_for(state="visible", timeout=15_000)
            assert "ZScore" in page.locator(".md-search-result").inner_text()
            link = page.locator(".md-search-result__link").first.get_attribute("href") or ""
            assert link and not link.startswith("http"), link  # a page of the site, from disk too
            assert not errors, errors
        finally:
            browser.close()
