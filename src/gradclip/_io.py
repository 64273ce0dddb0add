"""Safe file output for everything gradclip writes: atomic replaces, leftovers of killed writes, out dirs.

A file is written to a temporary file beside its destination, flushed to disk, then renamed over it,
so a crash (SIGKILL, power loss, a full disk) leaves the previous file or the complete new one, never
half of one. A killed writer leaves its ``.NAME.*.tmp`` behind; `remove_stale_temps` deletes
them at the next start. `check_out_dir` validates an output directory before anything is
written, and `resource_message` turns ENOSPC, permission and memory errors into one line.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "check_out_dir",
    "check_path",
    "read_sealed",
    "remove_stale_temps",
    "resource_message",
    "write_sealed",
]

TEMP_SUFFIX = ".tmp"
SEAL_MAGIC = b"gradclip-checkpoint\n"
SEAL_FORMAT = 1


def check_path(path: object, name: str = "path") -> Path:
    """``path`` as a Path; anything but a non-empty str or os.PathLike raises TypeError naming ``name``."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)) or os.fspath(path) == "":
        raise TypeError(f"{name} must be a file path (a non-empty str or os.PathLike), got {path!r:.60}")
    return Path(path)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    ``os.replace`` is atomic on POSIX and Windows, so readers see either the previous content or
    the complete new one; on any error the temporary file is removed and the error re-raised.
    """
    path = check_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # POSIX: mkstemp makes 0600; give the mode a plain open() would
            os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import, before any thread of ours exists


def _mode_for(path: Path) -> int:
    """The replaced file's permissions, or what ``open(path, "w")`` would give a new file."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """`atomic_write` of ``text``; it is encoded first, so an encoding error writes nothing."""
    data = text.encode(encoding)
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike[str], value: Any, *, indent: int | None = 1) -> Path:
    """`atomic_write` of ``json.dumps(value)`` (serialised before the file is touched)."""
    return atomic_write_text(path, json.dumps(value, indent=indent) + "\n")


def remove_stale_temps(directory: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Delete the temporary files a killed `atomic_write` of ``directory/<name>`` left; return them."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for name in names:
        for tmp in directory.glob(f".{name}.*{TEMP_SUFFIX}"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def check_out_dir(
    path: object, *, flag: str = "--out", finished: Iterable[str] = (), overwrite: bool = False
) -> Path:
    """Check that ``path`` can be (or is) a writable directory; return it as a Path.

    Rejects an empty path, an existing non-directory, a path below a file, a directory that cannot
    be written, and (unless ``overwrite``) a directory already holding one of the ``finished`` files,
    so that no command replaces a finished run or report unless asked. Nothing is created here.
    """
    if not isinstance(path, (str, os.PathLike)) or os.fspath(path) in ("", b""):
        raise ValueError(f"{flag} must be a directory path, got {path!r}")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {str(path)!r} exists and is not a directory")
    parent = path
    while not parent.exists():  # the nearest existing ancestor decides whether it can be created
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {str(path)!r} lies below {str(parent)!r}, which is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {str(path)!r}: {str(parent)!r} is not writable")
    done = [name for name in finished if (path / name).exists()]
    if done and not overwrite:
        raise ValueError(
            f"{flag} {str(path)!r} already holds a finished result ({', '.join(done)}); "
            "pass --overwrite to replace it or choose another directory"
        )
    return path


def resource_message(err: BaseException) -> str | None:
    """One line for a resource error (full disk, permissions, memory), or None for other errors."""
    if isinstance(err, MemoryError):
        return "out of memory; choose smaller sizes"
    if isinstance(err, OSError):
        where = f" ({err.filename})" if err.filename else ""
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"no space left on the device{where}; nothing saved before was changed"
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"permission denied{where}"
        return f"{err.strerror or err}{where}"
    return None


def write_sealed(path: str | os.PathLike[str], payload: bytes, *, kind: str) -> Path:
    """Atomically write ``payload`` behind a one-line header: format version, kind, size and SHA-256.

    The layout is ``gradclip-checkpoint\\n``, then ``{"format": 1, "kind": ..., "bytes": n,
    "sha256": ...}\\n``, then the ``n`` payload bytes; `read_sealed` verifies all of it.
    """
    header = {
        "format": SEAL_FORMAT,
        "kind": kind,
        "bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    blob = SEAL_MAGIC + json.dumps(header).encode() + b"\n" + payload
    return atomic_write(path, lambda f: f.write(blob))


def read_sealed(path: str | os.PathLike[str], *, kind: str) -> bytes:
    """The payload of a file written by `write_sealed` with the same ``kind``, verified.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: not a gradclip checkpoint, another kind, a newer format, truncated, or a digest
            mismatch (a flipped bit anywhere in the payload); the message names the file.
    """
    name = os.fspath(check_path(path))
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {name!r}")
    data = Path(path).read_bytes()
    if not data.startswith(SEAL_MAGIC):
        raise ValueError(f"checkpoint {name!r} is not a gradclip checkpoint (no gradclip header)")
    line, sep, payload = data[len(SEAL_MAGIC) :].partition(b"\n")
    try:
        header = json.loads(line) if sep else None
    except (ValueError, RecursionError):
        header = None
    if not isinstance(header, dict) or not isinstance(header.get("format"), int):
        raise ValueError(f"checkpoint {name!r} has a damaged header")
    if header["format"] > SEAL_FORMAT:
        raise ValueError(
            f"checkpoint {name!r} has format {header['format']}, newer than this gradclip reads "
            f"({SEAL_FORMAT}); upgrade gradclip"
        )
    if header.get("kind") != kind:
        raise ValueError(f"checkpoint {name!r} is a {header.get('kind')!r} checkpoint, not a {kind!r} one")
    if header.get("bytes") != len(payload):
        raise ValueError(
            f"checkpoint {name!r} is truncated or padded: {len(payload)} payload bytes, "
            f"the header says {header.get('bytes')!r}"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise ValueError(f"checkpoint {name!r} is corrupted: its SHA-256 digest does not match the header")
    return payload
