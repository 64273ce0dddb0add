"""``gradclip explore``: serve the explorer on 127.0.0.1 and open it in the browser.

``add_arguments`` and ``run`` plug into the ``gradclip`` command; ``main(argv)`` runs alone
(``python -m gradclip.explorer.cli --no-browser``). The listening socket is opened before the server
starts, so a port in use is reported at once and ``--port 0`` can name the port it was given.
"""

from __future__ import annotations

import argparse
import sys
import threading
import webbrowser
from collections.abc import Sequence
from pathlib import Path

from gradclip._argparse import Parser

__all__ = ["add_arguments", "main", "run"]

DEFAULT_PORT = 8765


def _host(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"expected an address to listen on (127.0.0.1, ::1, 0.0.0.0 or a host name), got {text!r}"
        )
    return text.strip()


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535 (0: any free port), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the explorer's options to ``parser``."""
    parser.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1); a non-loopback one lifts the localhost-only check",
    )
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="0: any free port")
    parser.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="directory of monitor runs to list (default runs)"
    )
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    return parser


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C); exit code 2 when a dependency or an argument is wrong."""
    try:
        import uvicorn

        from gradclip.explorer.server import create_app, is_loopback, listen
    except ModuleNotFoundError as err:
        print(
            f"gradclip explore: error: needs {err.name}; `pip install 'gradclip[explorer]'` installs it",
            file=sys.stderr,
        )
        return 2
    if args.runs_dir.exists() and not args.runs_dir.is_dir():
        raise ValueError(f"--runs-dir must be a directory, got the file {str(args.runs_dir)!r}")
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    print(f"gradclip explorer at {url} (runs from {args.runs_dir}); Ctrl-C stops it")
    local = is_loopback(args.host)
    if not local:
        print(f"note: listening on {args.host}, so other machines can reach this page", file=sys.stderr)
    if not args.no_browser:
        # A daemon thread: some browsers block webbrowser.open until they exit.
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    config = uvicorn.Config(
        create_app(runs_dir=args.runs_dir, any_host=not local), log_level="warning", access_log=False
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(Parser(prog="gradclip explore", description="Serve the clipping explorer."))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
