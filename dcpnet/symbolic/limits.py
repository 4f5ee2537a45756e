"""Limits on sympy's work: a wall clock and a memory cap around each atom (a child process of
`dcpnet.limits`), and a time limit on each sympy question inside it (an alarm: an inner helper only, since
an alarm can be swallowed). What crosses back is plain data: the atom's facts as floats and text, never
sympy objects.
"""
from __future__ import annotations

import signal
import threading
import time

from .. import limits
from ..limits import Limit  # noqa: F401 - the symbolic layer's name for it

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


def run_limited(fn, args: tuple, seconds: float | None = None, memory: int | None = None):
    """fn(*args) under sympy's wall clock and memory cap (see `dcpnet.limits.run_limited`).

    >>> run_limited(time.sleep, (5,), seconds=0.2)
    Traceback (most recent call last):
    ...
    dcpnet.limits.Limit: sympy ran past its wall-clock limit of 0.2 s
    """
    return limits.run_limited(fn, args, WALL_SECONDS if seconds is None else seconds,
                              MEMORY_BYTES if memory is None else memory, "sympy")


def run_each_limited(fn, items: list, seconds: float | None = None, memory: int | None = None) -> list:
    """[fn(item) or a Limit] for each item, in one child reused from atom to atom (sympy's caches carry over)."""
    return limits.run_each_limited(fn, items, WALL_SECONDS if seconds is None else seconds,
                                   MEMORY_BYTES if memory is None else memory, "sympy")
