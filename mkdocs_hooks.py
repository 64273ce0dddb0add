"""mkdocs hook: the site's search works when it is opened from disk (``file://``), with no network.

Material's offline plugin ships the search index as a script, but its search still runs in a web
worker, which a browser refuses to start from a ``file://`` page; the plugin therefore links the
``iframe-worker`` shim (a worker emulated in an iframe) from a CDN. This hook copies the shim that the
set-up installed with npm (``make docs`` does: ``.venv/npm``) into the site and points every page at
that copy, so the built site needs nothing from outside. Without the shim it warns, which fails a
``--strict`` build.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

CDN_SHIM = "https://unpkg.com/iframe-worker/shim"
LOCAL_SHIM = "assets/javascripts/iframe-worker-shim.js"
log = logging.getLogger("mkdocs.plugins.gradclip")


def _find_shim() -> Path | None:
    candidates = [os.environ.get("GRADCLIP_IFRAME_WORKER_SHIM", "")]
    candidates += [
        str(Path(prefix) / "npm/node_modules/iframe-worker/shim/index.js") for prefix in (sys.prefix,)
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def on_post_build(config: Any, **kwargs: Any) -> None:
    site = Path(config["site_dir"])
    pages = [p for p in site.rglob("*.html") if CDN_SHIM in p.read_text(encoding="utf-8")]
    if not pages:
        return
    shim = _find_shim()
    if shim is None:
        log.warning(
            "search from file:// needs the iframe-worker shim: `make docs` installs it "
            "(npm install --prefix .venv/npm iframe-worker@1.0.4)"
        )
        return
    target = site / LOCAL_SHIM
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shim, target)
    for page in pages:
        relative = os.path.relpath(target, page.parent).replace(os.sep, "/")
        page.write_text(page.read_text(encoding="utf-8").replace(CDN_SHIM, relative), encoding="utf-8")
