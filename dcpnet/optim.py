"""Optimizers that update params in place: torch.optim.Adam's rule and plain SGD.

Adam's pass over the params is the largest elementwise job of a training step (five arrays of the size
of all the weights), so it is cut into blocks of `BLOCK` entries that stay in L2 while all their passes
run, and the blocks are shared between the two threads of `parallel`. With the optional `fast` extra
(numba), each block is one fused loop instead of ten NumPy passes; `DCPNET_NUMBA=0` keeps NumPy.

The moments are kept unnormalised, M = m / (1 - b1) and V = v / (1 - b2), which saves two passes
(M = b1 M + g needs no (1 - b1) g); the update is torch's up to rounding:
p -= lr m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps).
"""
from __future__ import annotations

import math
import os

import numpy as np

from .parallel import split_rows

BLOCK = 1 << 16                                # entries per block: five arrays of it fit in L2
NUMBA_MIN = 1 << 16                            # entries from which numba's import and first call pay off


class SGD:
    """p -= lr * g."""

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-2):
        self.lr = lr
        self.blocks = _blocks(params)

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        flat = {k: (p.reshape(-1), grads[k].reshape(-1)) for k, p in params.items()}

        def run(lo, hi):
            for k, a, b in self.blocks[lo:hi]:
                p, g = flat[k]
                p[a:b] -= p.dtype.type(self.lr) * g[a:b]
        _share(run, self.blocks)


class Adam:
    """torch.optim.Adam (no weight decay, no amsgrad), in place.

    >>> p = {"w": np.array([1.0, -1.0])}
    >>> opt = Adam(p, lr=0.1)
    >>> opt.step(p, {"w": np.array([2.0, -3.0])}); p["w"].round(6).tolist()
    [0.9, -0.9]
    """

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = {k: np.zeros(v.size, dtype=v.dtype) for k, v in params.items()}
        self.v = {k: np.zeros(v.size, dtype=v.dtype) for k, v in params.items()}
        self.blocks = _blocks(params)
        self.size = sum(v.size for v in params.values())
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        # p -= scale * M / (sqrt(V) + eps'), constants in the params' dtype (float64 would upcast float32)
        root = math.sqrt((1 - self.b2) / (1 - self.b2 ** self.t))
        scale = self.lr * (1 - self.b1) / (1 - self.b1 ** self.t) / root
        consts = (self.b1, self.b2, scale, self.eps / root)
        kernel = _adam_kernel(self.size)
        arrays = {k: (p.reshape(-1), np.ascontiguousarray(grads[k], dtype=p.dtype).reshape(-1), self.m[k], self.v[k],
                      tuple(p.dtype.type(c) for c in consts)) for k, p in params.items()}

        def run(lo, hi):
            scratch = np.empty(BLOCK, dtype=np.float64)
            for k, a, b in self.blocks[lo:hi]:
                p, g, m, v, c = arrays[k]
                kernel(p[a:b], g[a:b], m[a:b], v[a:b], scratch.view(p.dtype)[:b - a], *c)
        _share(run, self.blocks)


OPTIMIZERS = {"adam": Adam, "sgd": SGD}


def _blocks(params: dict[str, np.ndarray]) -> list[tuple[str, int, int]]:
    return [(k, a, min(a + BLOCK, p.size)) for k, p in params.items() for a in range(0, p.size, BLOCK)]


def _share(run, blocks: list) -> None:
    """run(lo, hi) over the blocks, the two halves of the entries on two threads when worth it."""
    sizes = [b - a for _, a, b in blocks]
    total = sum(sizes)
    if len(blocks) < 2:
        run(0, len(blocks))
        return
    # split where half of the entries are done, not half of the blocks (the last of each param is short)
    done, mid = 0, len(blocks) - 1
    for i, n in enumerate(sizes):
        done += n
        if 2 * done >= total:
            mid = i + 1
            break
    bounds = (0, mid, len(blocks))
    split_rows(lambda lo, hi: run(bounds[lo], bounds[hi]), 2, total, least=2 * BLOCK)


def _adam_numpy(p, g, m, v, t, b1, b2, scale, eps):
    m *= b1                             # M = b1 M + g
    m += g
    np.multiply(g, g, out=t)            # V = b2 V + g^2
    v *= b2
    v += t
    np.sqrt(v, out=t)
    t += eps
    np.divide(m, t, out=t)
    t *= scale
    p -= t


_kernel: list = []


def _adam_kernel(size: int):
    """The fused numba kernel where the `fast` extra is installed (compiled once, cached on disk) and the
    params are many enough; NumPy's passes otherwise."""
    if size < NUMBA_MIN:
        return _adam_numpy
    if not _kernel:
        _kernel.append(_numba_adam() if os.environ.get("DCPNET_NUMBA", "1") != "0" else None)
    return _kernel[0] or _adam_numpy


def kernel_name(size: int = NUMBA_MIN) -> str:
    """Which Adam kernel params of `size` entries get: "numba" or "numpy"."""
    return "numpy" if _adam_kernel(size) is _adam_numpy else "numba"


def _numba_adam():
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(nogil=True, cache=True, error_model="numpy")   # numpy: no zero-division branch, so SIMD
    def adam(p, g, m, v, _t, b1, b2, scale, eps):   # pragma: no cover - compiled
        for i in range(p.size):
            gi = g[i]
            mi = b1 * m[i] + gi
            vi = b2 * v[i] + gi * gi
            m[i] = mi
            v[i] = vi
            p[i] -= scale * mi / (math.sqrt(vi) + eps)
    return adam
