"""Outside work (an importer reading a model, ...) under a wall clock and a memory cap that cannot be swallowed.

The work runs in a forked child with `RLIMIT_AS` set; the parent waits on a pipe with a deadline and kills
the child when it is late. Neither a `try` in the library nor a busy C loop can keep the parent from its
answer. What crosses back is pickled: the result, or the bad-input error the work raised (a `DcpnetError`,
re-raised as it is in the parent), or the text of any other exception.
"""
from __future__ import annotations

import os
import pickle
import resource
import select
import time

from .errors import DcpnetError, Diagnostic


class Limit(Exception):
    """The child ran past its wall clock or memory cap, died, or raised; the message says which."""


def run_limited(fn, args: tuple = (), seconds: float = 60.0, memory: int = 8 << 30, what: str = "the work"):
    """fn(*args) in a forked child with a wall clock of `seconds` and `memory` bytes more address space.

    >>> run_limited(sum, ([1, 2, 3],))
    6
    >>> run_limited(time.sleep, (5,), seconds=0.2, what="sleeping")
    Traceback (most recent call last):
    ...
    dcpnet.limits.Limit: sleeping ran past its wall-clock limit of 0.2 s
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:                               # the child: never returns
        os.close(read_fd)
        _child(fn, args, write_fd, memory)
    os.close(write_fd)
    try:
        data = _read_all(read_fd, time.monotonic() + seconds)
    finally:
        os.close(read_fd)
        _reap(pid)
    if data is None:
        raise Limit(f"{what} ran past its wall-clock limit of {seconds:g} s")
    if not data:
        raise Limit(f"{what} died (out of its memory cap of {memory >> 20} MiB, or crashed)")
    kind, value = pickle.loads(data)
    if kind == "ok":
        return value
    if kind == "bad-input":
        raise DcpnetError(value)
    raise Limit(f"{what} failed: {value}")


def _child(fn, args, write_fd: int, memory: int) -> None:
    try:
        _cap_memory(memory)
        try:
            message = ("ok", fn(*args))
        except DcpnetError as err:
            message = ("bad-input", err.diagnostics)
        except BaseException as err:  # noqa: BLE001 - everything goes back to the parent as text
            message = ("error", f"{type(err).__name__}: {err}")
        try:
            data = pickle.dumps(message)
        except Exception as err:  # noqa: BLE001 - an unpicklable result
            data = pickle.dumps(("error", f"the result cannot be sent back: {err}"))
        with os.fdopen(write_fd, "wb") as fh:
            fh.write(data)
    finally:
        os._exit(0)                            # no atexit handlers, no flushing of the parent's buffers


def _cap_memory(extra: int) -> None:
    used = _address_space()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = used + extra if hard == resource.RLIM_INFINITY else min(used + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _address_space() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _read_all(fd: int, deadline: float) -> bytes | None:
    """Everything the child writes, or None when the deadline passes first."""
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _reap(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def as_bad_input(limit: Limit, path: str) -> DcpnetError:
    """A limit met while reading a user's file is a problem with that input: exit 2, at the file."""
    return DcpnetError(Diagnostic(str(limit), path, 1, 1))
