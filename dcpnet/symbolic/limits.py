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


def run_limited(fn, args: tuple, seconds: float = WALL_SECONDS, memory: int = MEMORY_BYTES):
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
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: never returns
        os.close(read_fd)
        _child(fn, args, write_fd, memory)
    os.close(write_fd)
    try:
        data = _read_until(read_fd, time.monotonic() + seconds)
    finally:
        os.close(read_fd)
        _reap(pid)
    if data is None:
        raise Limit(f"sympy ran past its wall-clock limit of {seconds:g} s")
    if not data:
        raise Limit("the sympy process died (out of memory or crashed)")
    kind, value = pickle.loads(data)
    if kind == "ok":
        return value
    raise Limit(value)


def _child(fn, args, write_fd: int, memory: int) -> None:
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)   # ^C in the parent ends the child too
        _silence()
        _cap_memory(memory)
        try:
            result = ("ok", fn(*args))
        except MemoryError:
            result = ("err", f"sympy ran past its memory limit of {memory >> 20} MiB")
        except BaseException as err:  # noqa: BLE001 - every failure becomes the sound fallback
            result = ("err", f"sympy failed: {type(err).__name__}: {err}"[:300])
        data = pickle.dumps(result)
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view):]
    except BaseException:  # noqa: BLE001 - nothing may escape the child
        code = 1
    finally:
        os._exit(code)


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


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything the child writes until it closes the pipe; None when the deadline passes first."""
    import select

    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


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
