"""Load test: 200 concurrent clients for 20 s against the explorer on 127.0.0.1; errors and p99 latency.

Run: ``.venv/bin/python bench/explorer_load.py`` (defaults: ``--clients 200 --seconds 20``, both
capped so the test stays bounded). The server runs in its own process (``gradclip.explorer.cli``
on a free port), the clients in this one (asyncio + httpx). Each client loops over a mix of
requests: a 200-step simulation with a varying learning rate, the vector comparison, a surface
grid, the runs list. An error is any exception or any status other than 200.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

MAX_CLIENTS, MAX_SECONDS = 500, 120


def _requests(rng: random.Random) -> tuple[str, dict[str, object]]:
    kind = rng.random()
    if kind < 0.5:
        lr = round(10 ** rng.uniform(-2, 0), 4)
        return "/api/simulate", {
            "surface": "cliff",
            "u": 5,
            "v": -3.5,
            "lr": lr,
            "threshold": 1,
            "steps": 200,
        }
    if kind < 0.8:
        return "/api/vector", {"gx": rng.uniform(-5, 5), "gy": rng.uniform(-5, 5), "threshold": 1}
    if kind < 0.9:
        return "/api/surface", {"surface": rng.choice(["cliff", "valley", "bowl"]), "grid": 121}
    return "/api/runs", {}


async def _client(url: str, seed: int, stop: float, latencies: list[float], errors: list[str]) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.perf_counter() < stop:
            path, params = _requests(rng)
            t0 = time.perf_counter()
            try:
                response = await client.get(path, params=params)
                if response.status_code != 200:
                    errors.append(f"{path}: HTTP {response.status_code}")
            except httpx.HTTPError as err:
                errors.append(f"{path}: {type(err).__name__}")
            latencies.append(time.perf_counter() - t0)


async def _load(url: str, clients: int, seconds: float) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    stop = t0 + seconds
    await asyncio.gather(*(_client(url, i, stop, latencies, errors) for i in range(clients)))
    return latencies, errors, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if not (1 <= args.clients <= MAX_CLIENTS and 0 < args.seconds <= MAX_SECONDS):
        parser.error(f"--clients must be in [1, {MAX_CLIENTS}] and --seconds in (0, {MAX_SECONDS}]")
    with tempfile.TemporaryDirectory() as runs_dir:
        cmd = [
            sys.executable,
            "-m",
            "gradclip.explorer.cli",
            "--no-browser",
            "--port",
            "0",
            "--runs-dir",
            runs_dir,
        ]
        server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:\d+", line)
            if match is None:
                raise SystemExit(f"the server did not start: {line!r}")
            latencies, errors, elapsed = asyncio.run(_load(match.group(), args.clients, args.seconds))
        finally:
            server.terminate()
            server.wait(10)
    ms = sorted(1e3 * x for x in latencies)
    p99 = ms[int(0.99 * (len(ms) - 1))]
    print(f"{args.clients} clients, {elapsed:.1f} s: {len(ms)} requests ({len(ms) / elapsed:.0f}/s), "
          f"{len(errors)} errors")  # fmt: skip
    print(f"latency: median {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms")
    for message in sorted(set(errors))[:10]:
        print(f"  error: {message} (x{errors.count(message)})")


if __name__ == "__main__":
    main()
