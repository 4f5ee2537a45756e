"""Optimizers that update params in place: torch.optim.Adam's rule and plain SGD, each followed in the same
pass by the projection of constrained params onto their bounds.

Adam's pass over the params is the largest elementwise job of a training step (five arrays of the size
of all the weights), so it is cut into blocks of `BLOCK` entries that stay in L2 while all their passes
run, and the blocks are shared between the two threads of `parallel`. With the optional `fast` extra
(numba), each block is one fused loop instead of ten NumPy passes; `DCPNET_NUMBA=0` keeps NumPy.

A gradient may come in parts whose sum it is (the two halves of a batch computed by two processes): the
parts are added inside the same pass.

The moments are kept unnormalised, M = m / (1 - b1) and V = v / (1 - b2), which saves two passes
(M = b1 M + g needs no (1 - b1) g); the update is torch's up to rounding:
p -= lr m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps).
"""
from __future__ import annotations

import math
import os

import numpy as np

from .parallel import one_blas_thread, split_rows

BLOCK = 1 << 16                                # entries per block: five arrays of it fit in L2
NUMBA_MIN = 1 << 16                            # entries from which numba's import and first call pay off


class _Optimizer:
    """Blocks of the params shared by two threads, the bounds to clip onto, the parts of a gradient."""

    def __init__(self, params: dict[str, np.ndarray], bounds: dict[str, tuple] | None):
        self.blocks = [(k, a, min(a + BLOCK, p.size)) for k, p in params.items() for a in range(0, p.size, BLOCK)]
        self.bounds = bounds or {}
        self.size = sum(np.size(v) for v in params.values())

    def _arrays(self, params: dict, grads: dict) -> dict:
        """Per param: (flat param, flat gradient parts, lo, hi) in the param's dtype."""
        out = {}
        for k, p in params.items():
            if not isinstance(p, np.ndarray) or not p.flags.writeable or not p.flags.c_contiguous:
                raise TypeError(f"param `{k}` must be a writable C-ordered array: it is updated in place")
            kind = p.dtype.type
            parts = grads[k] if isinstance(grads[k], tuple) else (grads[k],)
            flat = tuple(np.ascontiguousarray(g, dtype=p.dtype).reshape(-1) for g in parts)
            lo, hi = self.bounds.get(k, (-math.inf, math.inf))
            out[k] = (p.reshape(-1), flat, kind(lo), kind(hi))
        return out

    def _share(self, run) -> None:
        """run(lo, hi) over the blocks, the two halves of the entries on two threads when worth it."""
        blocks = self.blocks
        if len(blocks) < 2:
            run(0, len(blocks))
            return
        # split where half of the entries are done, not half of the blocks (the last of each param is short)
        done, mid = 0, len(blocks) - 1
        for i, (_, a, b) in enumerate(blocks):
            done += b - a
            if 2 * done >= self.size:
                mid = i + 1
                break
        bounds = (0, mid, len(blocks))
        # OpenBLAS's workers spin after a GEMM and would take a core from the helper thread: held at one
        # thread, they stop (measured: Adam right after a backward 1.18 ms, 0.93 ms so, 0.72 ms alone)
        with one_blas_thread():
            split_rows(lambda lo, hi: run(bounds[lo], bounds[hi]), 2, self.size, least=2 * BLOCK)


class SGD(_Optimizer):
    """p -= lr * g, then clipped onto its bounds."""

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-2, bounds: dict[str, tuple] | None = None):
        super().__init__(params, bounds)
        self.lr = lr

    def step(self, params: dict[str, np.ndarray], grads: dict) -> None:
        arrays = self._arrays(params, grads)

        def run(lo, hi):
            for k, a, b in self.blocks[lo:hi]:
                p, parts, low, high = arrays[k]
                for g in parts:
                    p[a:b] -= p.dtype.type(self.lr) * g[a:b]
                _clip(p[a:b], low, high)
        self._share(run)


class Adam(_Optimizer):
    """torch.optim.Adam (no weight decay, no amsgrad), in place, then clipped onto the bounds.

    >>> p = {"w": np.array([1.0, -1.0])}
    >>> Adam(p, lr=0.1, bounds={"w": (-1.05, 2.0)}).step(p, {"w": np.array([2.0, 3.0])}); p["w"].round(6).tolist()
    [0.9, -1.05]
    >>> q = {"w": np.array([1.0])}       # a gradient in two parts
    >>> Adam(q, lr=0.1).step(q, {"w": (np.array([-1.0]), np.array([3.0]))}); q["w"].round(6).tolist()
    [0.9]
    """

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 bounds: dict[str, tuple] | None = None):
        super().__init__(params, bounds)
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = {k: np.zeros(np.size(v), dtype=np.asarray(v).dtype) for k, v in params.items()}
        self.v = {k: np.zeros(np.size(v), dtype=np.asarray(v).dtype) for k, v in params.items()}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict) -> None:
        """Update `params` in place from `grads` (per param an array, or a tuple of parts to add)."""
        self.t += 1
        # p -= scale * M / (sqrt(V) + eps'), constants in the params' dtype (float64 would upcast float32)
        root = math.sqrt((1 - self.b2) / (1 - self.b2 ** self.t))
        scale = self.lr * (1 - self.b1) / (1 - self.b1 ** self.t) / root
        consts = (self.b1, self.b2, scale, self.eps / root)
        kernels = _adam_kernels(self.size)
        arrays = self._arrays(params, grads)

        def run(lo, hi):
            scratch = np.empty(2 * BLOCK, dtype=np.float64)
            for k, a, b in self.blocks[lo:hi]:
                p, parts, low, high = arrays[k]
                c = tuple(p.dtype.type(x) for x in consts)
                t = scratch.view(p.dtype)[:2 * (b - a)].reshape(2, -1)
                if len(parts) == 1:
                    kernels[0](p[a:b], parts[0][a:b], self.m[k][a:b], self.v[k][a:b], t, *c, low, high)
                elif len(parts) == 2:
                    kernels[1](p[a:b], parts[0][a:b], parts[1][a:b], self.m[k][a:b], self.v[k][a:b], t, *c,
                               low, high)
                else:
                    kernels[0](p[a:b], sum(g[a:b] for g in parts), self.m[k][a:b], self.v[k][a:b], t, *c,
                               low, high)
        self._share(run)


OPTIMIZERS = {"adam": Adam, "sgd": SGD}


def _clip(p, lo, hi) -> None:
    if lo > -math.inf:
        np.maximum(p, lo, out=p)
    if hi < math.inf:
        np.minimum(p, hi, out=p)


def _adam_numpy(p, g, m, v, t, b1, b2, scale, eps, lo, hi):
    t = t[0]
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
    _clip(p, lo, hi)


def _adam_numpy_2(p, g0, g1, m, v, t, b1, b2, scale, eps, lo, hi):
    g = np.add(g0, g1, out=t[1])
    _adam_numpy(p, g, m, v, t, b1, b2, scale, eps, lo, hi)


_NUMPY = (_adam_numpy, _adam_numpy_2)
_numba: list = []


def _adam_kernels(size: int):
    """(one gradient, two parts): numba's fused loops where the `fast` extra is installed (compiled once,
    cached on disk) and the params are many enough; NumPy's passes otherwise."""
    if size < NUMBA_MIN:
        return _NUMPY
    if not _numba:
        _numba.append(_numba_adam() if os.environ.get("DCPNET_NUMBA", "1") != "0" else None)
    return _numba[0] or _NUMPY


def kernel_name(size: int = NUMBA_MIN) -> str:
    """Which Adam kernel params of `size` entries get: "numba" or "numpy"."""
    return "numpy" if _adam_kernels(size) is _NUMPY else "numba"


def _numba_adam():
    try:
        import numba  # optional, and slow to import: only here
    except ImportError:
        return None
    # error_model="numpy": no zero-division branch, so the loops vectorise
    jit = numba.njit(nogil=True, cache=True, error_model="numpy")

    @jit
    def one(p, g, m, v, _t, b1, b2, scale, eps, lo, hi):   # pragma: no cover - compiled
        for i in range(p.size):
            gi = g[i]
            mi = b1 * m[i] + gi
            vi = b2 * v[i] + gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = min(max(p[i] - scale * mi / (math.sqrt(vi) + eps), lo), hi)

    @jit
    def two(p, g0, g1, m, v, _t, b1, b2, scale, eps, lo, hi):   # pragma: no cover - compiled
        for i in range(p.size):
            gi = g0[i] + g1[i]
            mi = b1 * m[i] + gi
            vi = b2 * v[i] + gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = min(max(p[i] - scale * mi / (math.sqrt(vi) + eps), lo), hi)
    return one, two
