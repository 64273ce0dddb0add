"""The explorer's web app (Starlette, ASGI): the page, its static files and a JSON API over
[`cliff`][gradclip.explorer.cliff].

Routes:

```text
GET /                          the page (static/index.html)
GET /static/...                the page's CSS and JavaScript
GET /vendor/plotly.min.js      Plotly.js from the installed ``plotly`` package (no CDN: works offline)
GET /api/surfaces              landscapes, their domains and default settings, and the API's limits
GET /api/surface?surface=cliff&grid=121
GET /api/simulate?surface=cliff&u=5&v=-3.5&lr=0.1&threshold=1&steps=200   all three methods
GET /api/vector?gx=3&gy=1&threshold=1                                        norm vs value clipping
GET /api/runs                  the monitor runs under the runs directory
GET /api/run?run=ID            one run's timeline, clip rate, warnings and advice
```

Requests must name a loopback host (``127.0.0.1``, ``localhost``, ``[::1]``) in their ``Host`` header
unless the app was made with ``any_host=True`` (``gradclip explore --host`` on a non-loopback address):
a web page elsewhere cannot reach the explorer by pointing a DNS name at 127.0.0.1 (DNS rebinding).
Every query is checked by `params` (unknown, repeated, unparsable, non-finite or out-of-range
values are refused with HTTP 400 and ``{"error": message}``); work is bounded (steps at most
`MAX_STEPS`, grids at most `MAX_GRID` squared). Handlers are plain functions, which
Starlette runs in its thread pool, so a long simulation never blocks the event loop.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import math
import socket
import threading
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gradclip.explorer import cliff, runs
from gradclip.explorer.params import BadRequest, Choice, Number, Text, parse_query

__all__ = ["MAX_GRID", "MAX_STEPS", "create_app", "is_loopback", "listen", "serve_in_thread"]

MAX_STEPS = 10_000
MIN_GRID, MAX_GRID, DEFAULT_GRID = 8, 400, 121
MAX_LR, MAX_THRESHOLD, MAX_COMPONENT = 100.0, 1e4, 1e4

STATIC = Path(str(files("gradclip.explorer") / "static"))

_SURFACE = Choice(tuple(cliff.LANDSCAPES))
_LR = Number(0.0, MAX_LR, open_lo=True)
_THRESHOLD = Number(0.0, MAX_THRESHOLD, open_lo=True)


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        # allow_nan=False: a NaN that slipped through fails here, in tests, not in the browser's parser.
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def _finite(a: np.ndarray) -> list[Any]:
    """A float array as a JSON list; NaN and infinity (a diverged loss) become null."""
    values = a.tolist()
    if np.isfinite(a).all():
        return values
    return [x if math.isfinite(x) else None for x in values]


def _query(request: Request, spec: dict[str, Any]) -> dict[str, Any]:
    return parse_query(request.query_params.multi_items(), spec)


def _landscape_info(land: cliff.Landscape) -> dict[str, Any]:
    return {
        "name": land.name,
        "title": land.title,
        "axes": list(land.axes),
        "bounds": [list(b) for b in land.bounds],
        "defaults": {"u": land.start[0], "v": land.start[1], "lr": land.lr, "threshold": land.threshold,
                     "steps": land.steps},
        "log_color": land.log_color,
    }  # fmt: skip


def surfaces(request: Request) -> Response:
    _query(request, {})
    limits = {"steps": MAX_STEPS, "grid": [MIN_GRID, MAX_GRID], "lr": MAX_LR, "threshold": MAX_THRESHOLD}
    body = {
        "surfaces": [_landscape_info(land) for land in cliff.LANDSCAPES.values()],
        "methods": list(cliff.METHODS),
        "limits": limits,
    }
    return _Json(body)


def surface(request: Request) -> Response:
    q = _query(request, {"surface": _SURFACE, "grid": Number(MIN_GRID, MAX_GRID, DEFAULT_GRID, integer=True)})
    s = cliff.surface(q["surface"], grid=q["grid"])
    return _Json({"surface": q["surface"], "u": _finite(s.u), "v": _finite(s.v), "loss": _finite(s.loss)})


def _trajectory(t: cliff.Trajectory) -> dict[str, Any]:
    return {
        "u": _finite(t.points[:, 0]),
        "v": _finite(t.points[:, 1]),
        "loss": _finite(t.loss),
        "grad_norm": _finite(t.grad_norm),
        "clipped": t.clipped.tolist(),
        "step_length": _finite(t.step_length),
        "diverged": t.diverged,
        "clip_count": int(t.clipped.sum()),
        "max_step": float(t.step_length.max()) if len(t.step_length) else 0.0,
    }


def simulate(request: Request) -> Response:
    name = parse_query([p for p in request.query_params.multi_items() if p[0] == "surface"],
                       {"surface": _SURFACE})["surface"]  # fmt: skip
    (u0, u1), (v0, v1) = cliff.LANDSCAPES[name].bounds
    spec = {
        "surface": _SURFACE,
        "u": Number(u0, u1),
        "v": Number(v0, v1),
        "lr": _LR,
        "threshold": _THRESHOLD,
        "steps": Number(1, MAX_STEPS, integer=True),
    }
    q = _query(request, spec)
    runs_ = cliff.simulate_all(
        name, (q["u"], q["v"]), lr=q["lr"], threshold=q["threshold"], steps=int(q["steps"])
    )
    body = {"settings": q, "runs": {m: _trajectory(t) for m, t in runs_.items()}}
    return _Json(body)


def vector(request: Request) -> Response:
    component = Number(-MAX_COMPONENT, MAX_COMPONENT)
    q = _query(request, {"gx": component, "gy": component, "threshold": _THRESHOLD})
    c = cliff.compare_clipping([q["gx"], q["gy"]], q["threshold"])
    return _Json({
        "threshold": q["threshold"],
        "grad": c.grad.tolist(),
        "norm_clipped": c.norm_clipped.tolist(),
        "value_clipped": c.value_clipped.tolist(),
        "norm": c.norm,
        "norm_clipped_norm": c.norm_clipped_norm,
        "value_clipped_norm": c.value_clipped_norm,
        "angle_deg": c.angle_deg,
    })  # fmt: skip


def _run_list(request: Request) -> Response:
    _query(request, {})
    root = request.app.state.runs_dir
    # The directory's own name only: the absolute path says more about the machine than the page needs.
    return _Json({"runs_dir": root.name or str(root), "runs": runs.list_runs(root)})


def _run(request: Request) -> Response:
    q = _query(request, {"run": Text()})
    return _Json(runs.load_run(request.app.state.runs_dir, q["run"]))


def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def plotly_js(request: Request) -> Response:
    path = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


async def _bad_request(request: Request, exc: Exception) -> Response:
    return _Json({"error": str(exc)}, status_code=400)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return _Json({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    if header.startswith("["):  # [::1]:8765
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _LoopbackHostOnly:
    """ASGI middleware: answer 421 to any request whose ``Host`` header is not a loopback name."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            if not is_loopback(_host_name(host)):
                message = f"this explorer answers only for localhost, not for the host {host!r}"
                await _Json({"error": message}, status_code=421)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(*, runs_dir: str | Path = "runs", any_host: bool = False) -> Starlette:
    """The explorer app; ``runs_dir`` is the only directory whose files the runs view reads.

    ``any_host=False`` (the default) refuses requests whose ``Host`` header is not a loopback name.
    """
    routes = [
        Route("/", index),
        Route("/api/surfaces", surfaces),
        Route("/api/surface", surface),
        Route("/api/simulate", simulate),
        Route("/api/vector", vector),
        Route("/api/runs", _run_list),
        Route("/api/run", _run),
        Route("/vendor/plotly.min.js", plotly_js),
        Route("/favicon.ico", lambda request: Response(status_code=204)),  # browsers ask; nothing to show
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers: dict[Any, Any] = {BadRequest: _bad_request, HTTPException: _http_error}
    middleware = [] if any_host else [Middleware(_LoopbackHostOnly)]
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)
    app.state.runs_dir = Path(runs_dir)
    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket with TCP_NODELAY; ``ValueError`` when the address cannot be bound.

    The protocol is given as IPPROTO_TCP (not 0) so that asyncio also sets TCP_NODELAY on each
    accepted connection: without it, Nagle's algorithm holds back small kept-alive responses ~40 ms.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ValueError(f"cannot listen on {host}:{port} ({err.strerror}); try another --port") from None
        raise ValueError(f"--host {host!r} is not an address of this machine ({err.strerror})") from None
    sock.listen(2048)
    return sock


def serve_in_thread(runs_dir: str | Path, *, timeout: float = 20.0) -> tuple[str, Any, threading.Thread]:
    """Start the app on a free 127.0.0.1 port in a daemon thread; return (url, server, thread).

    For tests and benchmarks: stop it with ``server.should_exit = True; thread.join()``. Raises
    ``RuntimeError`` when uvicorn has not started within ``timeout`` seconds.
    """
    import uvicorn

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(runs_dir=runs_dir), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread
