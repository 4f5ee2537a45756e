"""Outside work (sympy on a user atom, an importer reading a model) under a wall clock and a memory cap that
cannot be swallowed.

The work runs in a forked child with `RLIMIT_AS` set; the parent waits on a pipe with a deadline and kills
the child when it is late, so neither a `try` in a library nor a busy C loop keeps the parent from its
answer. The child is forked, so what the parent imported costs nothing more. What crosses back is pickled
plain data: each result, or a `DcpnetError`'s diagnostics (bad input found by the work, raised as such in
the parent), or the text of any other failure (a `Limit`).
"""
from __future__ import annotations

import os
import pickle
import resource
import signal
import time

from .errors import DcpnetError, Diagnostic


class Limit(Exception):
    """The child ran past its wall clock or memory cap, died, or failed; the message says which."""


def run_limited(fn, args: tuple = (), seconds: float = 60.0, memory: int = 8 << 30, what: str = "the work"):
    """fn(*args) in a forked child with a wall clock of `seconds` and `memory` bytes more address space.

    >>> run_limited(sum, ([1, 2, 3],))
    6
    >>> run_limited(time.sleep, (5,), seconds=0.2, what="sleeping")
    Traceback (most recent call last):
    ...
    dcpnet.limits.Limit: sleeping ran past its wall-clock limit of 0.2 s
    """
    result = run_each_limited(lambda a: fn(*a), [args], seconds, memory, what)[0]
    if isinstance(result, (Limit, DcpnetError)):
        raise result
    return result


def run_each_limited(fn, items: list, seconds: float, memory: int, what: str = "the work") -> list:
    """[fn(item), or the Limit or DcpnetError it met] for each item, in one forked child reused from item to
    item (caches carry over), each item under its own wall clock. A child that is late, out of memory or
    dead is replaced by a fresh one for the items left.

    >>> run_each_limited(lambda x: 1 / x, [1, 0, 4], 10, 1 << 30, "dividing")
    [1.0, Limit('dividing failed: ZeroDivisionError: division by zero'), 0.25]
    """
    results: list = []
    while len(results) < len(items):
        results += _one_child(fn, items[len(results):], seconds, memory, what)
    return results


def as_bad_input(limit: Limit, path: str) -> DcpnetError:
    """A limit met while reading a user's file is a problem with that input: exit 2, at the file."""
    return DcpnetError(Diagnostic(str(limit), path, 1, 1))


def _one_child(fn, items: list, seconds: float, memory: int, what: str) -> list:
    """Results for a prefix of items (at least one, maybe a Limit) from one child."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: never returns
        os.close(read_fd)
        _child(fn, items, write_fd, memory, what)
    os.close(write_fd)
    out: list = []
    try:
        messages = _Messages(read_fd)
        while len(out) < len(items):
            data = messages.next(time.monotonic() + seconds)
            if data is None:
                out.append(Limit(f"{what} ran past its wall-clock limit of {seconds:g} s"))
                break
            if data == b"":
                out.append(Limit(f"the process running {what} died (out of memory or crashed)"))
                break
            kind, value = pickle.loads(data)
            out.append(value if kind == "ok" else DcpnetError(value) if kind == "bad-input" else Limit(value))
            if kind == "memory":
                break
    finally:
        os.close(read_fd)
        _reap(pid)
    return out


def _child(fn, items: list, write_fd: int, memory: int, what: str) -> None:
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)   # ^C in the parent ends the child too
        _silence()
        _cap_memory(memory)
        for item in items:
            try:
                result = ("ok", fn(item))
            except MemoryError:   # the heap may be in pieces: this child stops, a fresh one goes on
                result = ("memory", f"{what} ran past its memory limit of {memory >> 20} MiB")
            except DcpnetError as err:   # bad input found by the work: the parent reports it as such
                result = ("bad-input", err.diagnostics)
            except BaseException as err:  # noqa: BLE001 - every failure becomes the sound fallback
                result = ("err", f"{what} failed: {type(err).__name__}: {err}"[:300])
            try:
                data = pickle.dumps(result)
            except Exception as err:  # noqa: BLE001 - an unpicklable result
                data = pickle.dumps(("err", f"{what} gave a result that cannot be sent back: {err}"[:300]))
            view = memoryview(len(data).to_bytes(8, "little") + data)
            while view:
                view = view[os.write(write_fd, view):]
            if result[0] == "memory":
                break
    except BaseException:  # noqa: BLE001 - nothing may escape the child
        code = 1
    finally:
        os._exit(code)


class _Messages:
    """Length-prefixed messages from the child's pipe."""

    def __init__(self, fd: int):
        self.fd, self.buffer = fd, b""

    def next(self, deadline: float) -> bytes | None:
        """The next message; b"" when the child closed the pipe first; None when the deadline passes."""
        while True:
            if len(self.buffer) >= 8:
                size = int.from_bytes(self.buffer[:8], "little")
                if len(self.buffer) >= 8 + size:
                    data, self.buffer = self.buffer[8:8 + size], self.buffer[8 + size:]
                    return data
            chunk = self._read(deadline)
            if chunk is None or chunk == b"":
                return chunk
            self.buffer += chunk

    def _read(self, deadline: float) -> bytes | None:
        import select

        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self.fd], [], [], left)[0]:
            return None
        return os.read(self.fd, 1 << 16)


def _silence() -> None:
    """The child prints nothing: an alarm swallowed in a weakref callback would print "Exception ignored"."""
    import sys

    sys.unraisablehook = lambda unraisable: None
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _cap_memory(memory: int) -> None:
    """Cap the child's address space at its present size plus `memory` (growth past it raises MemoryError)."""
    try:
        with open("/proc/self/statm") as fh:
            size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        size = 0
    limit = size + memory
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _reap(pid: int) -> None:
    """Kill the child if it still runs, and collect it (no zombie)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
