"""Limits on sympy's work: a wall clock and a memory cap around each atom (a child process), and a time
limit on each sympy question inside it (an alarm: an inner helper only, since an alarm can be swallowed).

The child is forked, so sympy, imported once in the parent, costs nothing more per atom. What crosses back
is plain data (pickled): the atom's facts as floats and text, never sympy objects.
"""
from __future__ import annotations

import os
import pickle
import resource
import signal
import threading
import time

QUESTION_SECONDS = 0.5     # one sympy question (a solve, a limit, a simplification)
ATOM_SECONDS = 5.0         # all questions about one atom; past it the rest are unknown
WALL_SECONDS = 10.0        # the child's wall clock: past it the child is killed
MEMORY_BYTES = 2 << 30     # the child's address space may grow by this much


# -- time limits ------------------------------------------------------------------------------------
class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so sympy's own `except Exception` cannot swallow it."""


class Unknown(Exception):
    """sympy could not answer in time or returned an unsolved set."""


def _on_alarm(signum, frame):
    raise _Timeout


class Asker:
    """Runs sympy questions, each within `question` seconds and all within one atom's budget."""

    def __init__(self, seconds: float | None = None, question: float | None = None):
        self.deadline = time.monotonic() + (ATOM_SECONDS if seconds is None else seconds)
        self.question = QUESTION_SECONDS if question is None else question

    def __call__(self, fn, *args, **kwargs):
        budget = min(self.question, self.deadline - time.monotonic())
        if budget <= 0:
            raise Unknown("out of time")
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            return self._with_alarm(budget, fn, args, kwargs)
        return self._in_thread(budget, fn, args, kwargs)

    @staticmethod
    def _with_alarm(budget, fn, args, kwargs):
        old_handler = signal.signal(signal.SIGALRM, _on_alarm)
        start, old_timer = time.monotonic(), (0.0, 0.0)
        try:
            try:
                old_timer = signal.setitimer(signal.ITIMER_REAL, budget)
                return fn(*args, **kwargs)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)   # the alarm may still fire up to here: caught below
        except _Timeout:
            raise Unknown("timeout") from None
        except (Unknown, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001 - sympy raises NotImplementedError, ValueError, TypeError, ...
            raise Unknown(repr(err)) from None
        finally:
            signal.signal(signal.SIGALRM, old_handler)
            if old_timer[0] > 0:  # someone else's alarm was running: put it back
                signal.setitimer(signal.ITIMER_REAL, max(old_timer[0] - (time.monotonic() - start), 1e-3),
                                 old_timer[1])

    @staticmethod
    def _in_thread(budget, fn, args, kwargs):
        # no alarms outside the main thread: run in a daemon thread and abandon it when late
        box: list = []

        def work():
            try:
                box.append(("ok", fn(*args, **kwargs)))
            except Exception as err:  # noqa: BLE001 - reported as unknown
                box.append(("err", err))

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        worker.join(budget)
        if not box or box[0][0] != "ok":
            raise Unknown("timeout or error")
        return box[0][1]




# -- the child process ------------------------------------------------------------------------------
class Limit(Exception):
    """The child ran past its wall clock or memory cap, or died; the message says which."""


def run_limited(fn, args: tuple, seconds: float | None = None, memory: int | None = None):
    """fn(*args) in a forked child with a wall clock and an address-space cap; its (picklable) result.

    Raises Limit when the child is late (it is killed), runs out of memory, or dies; an exception
    raised by fn comes back as Limit too, with its text.

    >>> run_limited(sum, ([1, 2, 3],))
    6
    >>> run_limited(time.sleep, (5,), seconds=0.2)
    Traceback (most recent call last):
    ...
    dcpnet.symbolic.limits.Limit: sympy ran past its wall-clock limit of 0.2 s
    """
    result = run_each_limited(lambda a: fn(*a), [args], seconds, memory)[0]
    if isinstance(result, Limit):
        raise result
    return result


def run_each_limited(fn, items: list, seconds: float | None = None, memory: int | None = None) -> list:
    """[fn(item) or a Limit] for each item, in one forked child reused from item to item (sympy's caches
    carry over), each item under its own wall clock. A child that is late, out of memory or dead is
    replaced by a fresh one for the items left.

    >>> run_each_limited(lambda x: 1 / x, [1, 0, 4])
    [1.0, Limit('sympy failed: ZeroDivisionError: division by zero'), 0.25]
    """
    seconds = WALL_SECONDS if seconds is None else seconds
    memory = MEMORY_BYTES if memory is None else memory
    results: list = []
    while len(results) < len(items):
        results += _one_child(fn, items[len(results):], seconds, memory)
    return results


def _one_child(fn, items: list, seconds: float, memory: int) -> list:
    """Results for a prefix of items (at least one, maybe a Limit) from one child."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: never returns
        os.close(read_fd)
        _child(fn, items, write_fd, memory)
    os.close(write_fd)
    out: list = []
    try:
        messages = _Messages(read_fd)
        while len(out) < len(items):
            data = messages.next(time.monotonic() + seconds)
            if data is None:
                out.append(Limit(f"sympy ran past its wall-clock limit of {seconds:g} s"))
                break
            if data == b"":
                out.append(Limit("the sympy process died (out of memory or crashed)"))
                break
            kind, value = pickle.loads(data)
            out.append(value if kind == "ok" else Limit(value))
            if kind == "memory":
                break
    finally:
        os.close(read_fd)
        _reap(pid)
    return out


def _child(fn, items: list, write_fd: int, memory: int) -> None:
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)   # ^C in the parent ends the child too
        _silence()
        _cap_memory(memory)
        for item in items:
            try:
                result = ("ok", fn(item))
            except MemoryError:   # the heap may be in pieces: this child stops, a fresh one goes on
                result = ("memory", f"sympy ran past its memory limit of {memory >> 20} MiB")
            except BaseException as err:  # noqa: BLE001 - every failure becomes the sound fallback
                result = ("err", f"sympy failed: {type(err).__name__}: {err}"[:300])
            data = pickle.dumps(result)
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
    """Cap the child's address space at its present size plus `memory` (sympy's growth past it raises)."""
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
