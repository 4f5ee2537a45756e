"""What dcpnet computes once and keeps between processes: the user cache folder and its digest-checked files.

A kept file is a first line holding the SHA-256 of the rest, then the rest (JSON text). A file whose digest
does not match, or that cannot be read, is ignored, never trusted; a file is written beside the one it
replaces and renamed over it, so readers see the old file or the new. Keys are made by the callers from
everything that decides the contents (the code that computed them included), so a change makes new files.
Nothing here raises: a folder that cannot be written costs the time of computing again, nothing else.
"""
from __future__ import annotations

import contextlib
import os
from functools import cache
from pathlib import Path


def cache_dir() -> Path | None:
    """Where dcpnet keeps what it computes once: $DCPNET_CACHE_DIR (set but empty: nowhere), else
    $XDG_CACHE_HOME/dcpnet, else ~/.cache/dcpnet."""
    chosen = os.environ.get("DCPNET_CACHE_DIR")
    if chosen is not None:
        return Path(chosen) if chosen else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dcpnet"


@cache
def sha256():
    """SHA-256 from CPython's own module where there is one: hashlib would load OpenSSL, which costs more
    than the whole parse of a small file."""
    try:
        from _sha256 import sha256  # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # CPython 3.12 and later
        except ImportError:
            from hashlib import sha256
    return sha256


def digest(*parts: bytes) -> str:
    """The hex SHA-256 of the parts, each preceded by its length (so no two splits of one text collide)."""
    h = sha256()()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def read_kept(path: Path | None) -> str | None:
    """The text kept at `path`, or None when there is none or it is damaged."""
    if path is None:
        return None
    try:
        head, _, body = path.read_text(encoding="utf-8").partition("\n")
    except (OSError, ValueError):
        return None
    return body if head == sha256()(body.encode()).hexdigest() else None


def keep(path: Path | None, body: str) -> None:
    """Keep `body` at `path` (a temporary file beside it, then a rename); nothing when it cannot be written."""
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(sha256()(body.encode()).hexdigest() + "\n" + body, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
