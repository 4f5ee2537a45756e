"""Two threads for NumPy work, and the BLAS library's own threads kept out of their way.

NumPy releases the GIL inside ufunc loops and BLAS calls, so a helper thread working on half of an array,
or on half of a batch, runs truly in parallel with the main thread.

One pool for everything, as torch has: OpenBLAS's worker threads spin for a while after each GEMM, and on
a machine with two cores they then take a core from whatever runs next (measured: an Adam update right
after a GEMM ran 1.7x slower). So the data-parallel backward (`pair`) runs with OpenBLAS held at one
thread per caller (`one_blas_thread`), each half on its own core, and gives the setting back afterwards;
a GEMM-bound pass leaves OpenBLAS its two threads and keeps the elementwise work on one (`inline`).
Two threads still share the GIL: `worker.py` runs the second half in a process where that pays.

`DCPNET_THREADS=1` turns all of it off.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import threading

import numpy as np

THREADS = max(1, min(2, int(os.environ.get("DCPNET_THREADS", os.cpu_count() or 1))))
PARALLEL_MIN = 1 << 14                         # entries below which one thread beats a handoff (exp, log)
PARALLEL_MIN_CHEAP = 1 << 17                   # the same for one cheap pass (add, max): about 10 µs a handoff


class _Helper:
    """One daemon thread that runs `job(lo, hi)` on request."""

    def __init__(self):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="dcpnet-helper", daemon=True).start()

    def _loop(self):
        while True:
            job, lo, hi = self.jobs.get()
            try:
                self.done.put((job(lo, hi), None))
            except BaseException as err:  # noqa: BLE001 - handed back to the caller
                self.done.put((None, err))


_helper: _Helper | None = None
_helper_lock = threading.Lock()
_in_pair = False                               # both threads are taken: everything inside runs inline


def _get_helper() -> _Helper:
    global _helper
    if _helper is None:
        with _helper_lock:
            _helper = _helper or _Helper()
    return _helper


def _free() -> bool:
    return THREADS >= 2 and not _in_pair and threading.current_thread() is threading.main_thread()


def split_rows(job, rows: int, size: int, least: int = PARALLEL_MIN) -> None:
    """Run job(lo, hi) over rows [0, rows): the halves on two threads when `size` (entries) >= `least`.

    For NumPy work that releases the GIL (ufunc loops); called from the main thread only, else one thread.

    >>> import numpy as np
    >>> out = np.zeros(8)
    >>> split_rows(lambda lo, hi: np.add(out[lo:hi], 1, out=out[lo:hi]), 8, 8, least=1); out.tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    if size < least or rows < 2 or not _free():
        job(0, rows)
        return
    helper = _get_helper()
    mid = rows // 2
    helper.jobs.put((job, mid, rows))
    job(0, mid)
    _, err = helper.done.get()
    if err is not None:
        raise err


def add_into(dst, src) -> None:
    """dst += src for two arrays of one shape, dst C-ordered: the halves on two threads when large."""
    flat, other = dst.reshape(-1), src.reshape(-1)
    split_rows(lambda lo, hi: np.add(flat[lo:hi], other[lo:hi], out=flat[lo:hi]), flat.size, flat.size,
               PARALLEL_MIN_CHEAP)


def can_pair() -> bool:
    """Whether `pair` would run its two jobs at once (and keep BLAS out of their way)."""
    return _free() and _openblas() is not None


def pair(first, second):
    """(first(), second()), run at once on the main and the helper thread, BLAS at one thread each.

    Each job runs with `split_rows` inline: both cores are already taken. Only where `can_pair()`.
    """
    helper = _get_helper()
    with cores_taken():
        helper.jobs.put((lambda _lo, _hi: second(), 0, 0))
        try:
            a = first()
        finally:
            b, err = helper.done.get()          # never leave the helper running past the block
    if err is not None:
        raise err
    return a, b


@contextlib.contextmanager
def cores_taken():
    """Inside: both cores are busy (a pair of jobs, or another process), so `split_rows` runs inline
    and OpenBLAS uses one thread."""
    with one_blas_thread(), inline():
        yield


@contextlib.contextmanager
def inline():
    """Inside: `split_rows` runs on the calling thread alone, as where OpenBLAS's workers, spinning
    between the GEMMs of a GEMM-bound pass, hold the other core."""
    global _in_pair
    before = _in_pair
    _in_pair = True
    try:
        yield
    finally:
        _in_pair = before


# ----------------------------------------------------------------------------------------------------
# OpenBLAS's thread count, through its C API (as threadpoolctl does): NumPy's wheels bundle OpenBLAS
# under a prefixed, suffixed name (scipy_openblas_set_num_threads64_).
# ----------------------------------------------------------------------------------------------------

class _OpenBLAS:
    def __init__(self, lib, prefix: str, suffix: str):
        self.get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
        self.set = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}")
        self.get.restype = ctypes.c_int
        self.set.argtypes = [ctypes.c_int]
        self.set.restype = None


_blas: list = []                               # [] until looked for; then [_OpenBLAS or None]


def _openblas() -> _OpenBLAS | None:
    if not _blas:
        _blas.append(_find_openblas())
    return _blas[0]


def _find_openblas() -> _OpenBLAS | None:
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    except OSError:                            # not Linux: no control, so no data-parallel backward
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("64_", ""):
                with contextlib.suppress(AttributeError):
                    return _OpenBLAS(lib, prefix, suffix)
    return None


@contextlib.contextmanager
def one_blas_thread():
    """OpenBLAS at one thread per call inside the block; its previous setting restored after."""
    blas = _openblas()
    if blas is None:
        yield
        return
    before = blas.get()
    blas.set(1)
    try:
        yield
    finally:
        blas.set(before)
