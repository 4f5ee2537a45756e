"""A second process that computes the gradient of the second half of every batch of a training run.

Two threads cannot both run Python: each NumPy call gives up the GIL and must take it back, so the halves
of a backward on two threads (`parallel.pair`) run 1.4-1.6x faster than one, not 2x. Measured on an ICNN
half batch: 1.9 ms alone, 2.9 ms each when two threads run one at once, and 1.9 ms each when two processes
do. So a training run forks one worker process that holds the same compiled plan:

- the params live in an anonymous shared mapping made before the fork, so the worker reads the values the
  optimizer has just written in place, with no copy;
- the second half's input rows are copied into the mapping, the worker's gradients are copied out of it,
  and a pipe each way carries "go" and "done" (or an error message);
- the worker leaves when its pipe closes: when `close` is called, the object is collected, or the parent dies.

Only on Linux (fork without exec), where two cores are free and the batch is large enough
(`HalfBatchWorker.start` returns None elsewhere, and callers use `Plan.backward`).
"""
from __future__ import annotations

import math
import mmap
import os
import sys
import warnings
import weakref
from typing import TYPE_CHECKING

import numpy as np

from . import parallel
from .evaluate import Plan

if TYPE_CHECKING:
    from typing import Self  # Python 3.11+, and only an annotation here

_ALIGN = 64                                    # bytes: each array starts on a cache line
# The worker's gradients are copied out and added in: worth it where the batch's values outnumber the
# params (an ICNN of width 256 on 32 inputs, batch 256: 5x, and 1.2-1.6x faster than the thread pair;
# width 512 on 784 inputs, batch 128: 0.5x, and 15% slower)
COPY_RATIO = 2


class HalfBatchWorker:
    """Gradients of the mean loss over a batch, the second half computed in a forked process.

    `params` (a dict) is moved into shared memory: its arrays are replaced by shared arrays of the same
    values, which the caller then updates in place (an array put in their place is copied in before each
    step). Use as a context manager, or call `close`.
    """

    @classmethod
    def start(cls, plan: Plan, params: dict[str, np.ndarray], inputs: list[str], loss: str, wrt: set[str],
              max_batch: int) -> HalfBatchWorker | None:
        """A worker where one pays off, else None."""
        if not sys.platform.startswith("linux") or parallel.THREADS < 2 or max_batch < 64 or \
                not set(wrt) <= set(params):
            return None
        nid = plan._loss_id(loss)
        tape = plan._tape(plan._batched(inputs), (nid,), frozenset(wrt))
        work = max_batch * tape.entries_per_example
        if not tape.batched[nid] or not tape.halves_pay(max_batch) or \
                work < COPY_RATIO * sum(np.size(params[k]) for k in wrt):
            return None
        used = [name for _, name, _, is_b in tape.variables if is_b]
        return cls(plan, params, used, loss, wrt, max_batch)

    def __init__(self, plan: Plan, params: dict[str, np.ndarray], inputs: list[str], loss: str, wrt: set[str],
                 max_batch: int):
        """`inputs`: the batched variables the loss depends on; `wrt`: params."""
        self.plan, self.inputs, self.loss, self.wrt = plan, list(inputs), loss, sorted(wrt)
        self.tape = plan._tape(plan._batched(inputs), (plan._loss_id(loss),), frozenset(wrt))
        self.max_batch, self.rows = max_batch, max_batch - max_batch // 2
        net, dtype = plan.net, np.dtype(plan.dtype)
        shapes = {f"p:{k}": np.shape(v) for k, v in params.items()}
        shapes.update({f"x:{k}": (self.rows, *net.variables[k].shape) for k in self.inputs})
        shapes.update({f"g:{k}": np.shape(params[k]) for k in self.wrt})
        offsets, end = {}, 2 * 8                # the head: the loss sum and the row counts
        for key, shape in shapes.items():
            offsets[key] = end
            end += -(-math.prod(shape) * dtype.itemsize // _ALIGN) * _ALIGN
        self._mem = mmap.mmap(-1, max(end, 1))  # anonymous and shared: the child sees the parent's writes
        buf = memoryview(self._mem)
        self._head = np.frombuffer(buf, dtype=np.float64, count=2)
        self.shared = {key: np.frombuffer(buf, dtype=dtype, count=math.prod(shape), offset=offsets[key])
                       .reshape(shape) for key, shape in shapes.items()}
        for k, v in params.items():
            self.shared[f"p:{k}"][...] = v
            params[k] = self.shared[f"p:{k}"]
        go_r, self._go = os.pipe()
        self._done, done_w = os.pipe()
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a process with threads may deadlock the child; this child
            # only runs NumPy and OpenBLAS (which reinitialises itself at fork) and never takes the
            # locks of the parent's other threads
            warnings.simplefilter("ignore", DeprecationWarning)
            self.pid = os.fork()
        if self.pid == 0:                       # the child: serve until the pipe closes, never return
            status = 0
            try:
                os.close(self._go)
                os.close(self._done)
                self._serve(go_r, done_w)
            except BaseException:               # noqa: BLE001 - nothing may escape into the parent's code
                status = 1
            finally:
                os._exit(status)
        os.close(go_r)
        os.close(done_w)
        self._finalizer = weakref.finalize(self, _stop, self.pid, self._go, self._done)

    # -- the parent --------------------------------------------------------------------------------
    def backward(self, env: dict, parts: bool = False) -> tuple[float, dict]:
        """(mean loss over the batch in `env`, its gradient with respect to `wrt`), as `Plan.backward`.

        With `parts`, each gradient is a pair (this process's part, the worker's) whose sum it is, for an
        optimizer that adds them in its own pass; the worker's part is valid until the next call.
        """
        _, nb = self.plan._load(self.tape, env)          # checks every shape, as Plan.backward does
        if not self._finalizer.alive or not 2 <= nb <= self.max_batch:
            return self.plan.backward(env, set(self.inputs), self.loss, wrt=set(self.wrt))
        mid = nb // 2
        for k, v in env.items():
            shared = self.shared.get(f"p:{k}")
            if shared is not None and v is not shared:
                shared[...] = v                 # an array put in the place of a shared one: copy it in
            elif k in self.inputs:
                self.shared[f"x:{k}"][:nb - mid] = v[mid:]
        first = {k: (v[:mid] if k in self.inputs else self.shared.get(f"p:{k}", v)) for k, v in env.items()}
        self._head[1] = nb
        try:
            os.write(self._go, b"g")
        except BrokenPipeError:
            self._lost()
        try:
            with parallel.cores_taken():
                total, grads = self.plan.backward_sum(first, set(self.inputs), self.loss, set(self.wrt), nb)
        finally:
            reply = os.read(self._done, 4096)  # always: the two sides stay in step
        if not reply:
            self._lost()
        if reply[:1] != b"d":
            raise ValueError(reply[1:].decode("utf-8", "replace"))
        if parts:
            return (total + float(self._head[0])) / nb, {k: (g, self.shared[f"g:{k}"]) for k, g in grads.items()}
        for k, g in grads.items():
            parallel.add_into(g, self.shared[f"g:{k}"])
        return (total + float(self._head[0])) / nb, grads

    def close(self) -> None:
        self._finalizer()

    def _lost(self):
        self.close()                            # later calls run in this process
        raise RuntimeError("the gradient worker process ended unexpectedly")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the child ---------------------------------------------------------------------------------
    def _serve(self, go_r: int, done_w: int) -> None:
        parallel.THREADS = 1                    # this process has one core: no helper thread here
        blas = parallel._openblas()
        if blas is not None:
            blas.set(1)
        params = {k[2:]: v for k, v in self.shared.items() if k.startswith("p:")}
        while os.read(go_r, 1) == b"g":
            nb = int(self._head[1])
            rows = nb - nb // 2
            env = dict(params, **{k: self.shared[f"x:{k}"][:rows] for k in self.inputs})
            try:
                total, grads = self.plan.backward_sum(env, set(self.inputs), self.loss, set(self.wrt), nb)
                for k, g in grads.items():
                    self.shared[f"g:{k}"][...] = g
                self._head[0] = total
                os.write(done_w, b"d")
            except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
                os.write(done_w, b"e" + str(err).encode("utf-8", "replace")[:4000])


def _stop(pid: int, go: int, done: int) -> None:
    """Close the pipe (the child leaves its loop) and reap the child."""
    for fd in (go, done):
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
