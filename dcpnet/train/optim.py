"""Optimizers that update params in place: torch.optim.Adam's rule and plain SGD, each followed in the same
pass by the projection of constrained params onto their bounds.

Adam's pass over the params is the largest elementwise job of a training step (five arrays of the size
of all the weights), so it runs in blocks of `BLOCK` entries that stay in L2 while all their passes run.
With the optional `fast` extra (numba), each block is one fused loop instead of ten NumPy passes
(about 3x faster on 10^6 entries); `DCPNET_NUMBA=0` keeps NumPy.

The moments are kept unnormalised, M = m / (1 - b1) and V = v / (1 - b2), which saves two passes
(M = b1 M + g needs no (1 - b1) g); the update is torch's up to rounding:
p -= lr m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps).
"""
from __future__ import annotations

import math
import os

import numpy as np

BLOCK = 1 << 16                                # entries per block: five arrays of it fit in L2
NUMBA_MIN = 1 << 16                            # entries from which numba's import and first call pay off


class _Optimizer:
    """The params cut into blocks, and the bounds each is clipped onto."""

    def __init__(self, params: dict[str, np.ndarray], bounds: dict[str, tuple] | None):
        self.blocks = [(k, a, min(a + BLOCK, p.size)) for k, p in params.items() for a in range(0, p.size, BLOCK)]
        self.bounds = bounds or {}
        self.size = sum(np.size(v) for v in params.values())

    def _arrays(self, params: dict, grads: dict) -> dict:
        """Per param: (flat param, flat gradient, lo, hi) in the param's dtype."""
        out = {}
        for k, p in params.items():
            if not isinstance(p, np.ndarray) or not p.flags.writeable or not p.flags.c_contiguous:
                raise TypeError(f"param `{k}` must be a writable C-ordered array: it is updated in place")
            kind = p.dtype.type
            g = np.ascontiguousarray(grads[k], dtype=p.dtype).reshape(-1)
            lo, hi = self.bounds.get(k, (-math.inf, math.inf))
            out[k] = (p.reshape(-1), g, kind(lo), kind(hi))
        return out


class SGD(_Optimizer):
    """p -= lr * g, then clipped onto its bounds.

    >>> p = {"w": np.array([1.0, -1.0])}
    >>> SGD(p, lr=0.5, bounds={"w": (0.0, 2.0)}).step(p, {"w": np.array([1.0, 1.0])}); p["w"].tolist()
    [0.5, 0.0]
    """

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-2, bounds: dict[str, tuple] | None = None):
        super().__init__(params, bounds)
        self.lr = lr

    def step(self, params: dict[str, np.ndarray], grads: dict) -> None:
        arrays = self._arrays(params, grads)
        for k, a, b in self.blocks:
            p, g, low, high = arrays[k]
            p[a:b] -= p.dtype.type(self.lr) * g[a:b]
            _clip(p[a:b], low, high)


class Adam(_Optimizer):
    """torch.optim.Adam (no weight decay, no amsgrad), in place, then clipped onto the bounds.

    >>> p = {"w": np.array([1.0, -1.0])}
    >>> Adam(p, lr=0.1, bounds={"w": (-1.05, 2.0)}).step(p, {"w": np.array([2.0, 3.0])}); p["w"].round(6).tolist()
    [0.9, -1.05]
    """

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 bounds: dict[str, tuple] | None = None):
        super().__init__(params, bounds)
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = {k: np.zeros(np.size(v), dtype=np.asarray(v).dtype) for k, v in params.items()}
        self.v = {k: np.zeros(np.size(v), dtype=np.asarray(v).dtype) for k, v in params.items()}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict) -> None:
        """Update `params` in place from `grads` (one array per param)."""
        self.t += 1
        # p -= scale * M / (sqrt(V) + eps'), constants in the params' dtype (float64 would upcast float32)
        root = math.sqrt((1 - self.b2) / (1 - self.b2 ** self.t))
        scale = self.lr * (1 - self.b1) / (1 - self.b1 ** self.t) / root
        consts = (self.b1, self.b2, scale, self.eps / root)
        kernel = _adam_kernel(self.size)
        arrays = self._arrays(params, grads)
        scratch = np.empty(BLOCK, dtype=np.float64)
        for k, a, b in self.blocks:
            p, g, low, high = arrays[k]
            c = tuple(p.dtype.type(x) for x in consts)
            kernel(p[a:b], g[a:b], self.m[k][a:b], self.v[k][a:b], scratch.view(p.dtype)[:b - a], *c, low, high)


OPTIMIZERS = {"adam": Adam, "sgd": SGD}


def _clip(p, lo, hi) -> None:
    if lo > -math.inf:
        np.maximum(p, lo, out=p)
    if hi < math.inf:
        np.minimum(p, hi, out=p)


def _adam_numpy(p, g, m, v, t, b1, b2, scale, eps, lo, hi):
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


_numba: list = []


def _adam_kernel(size: int):
    """numba's fused loop where the `fast` extra is installed (compiled once, cached on disk) and the params
    are many enough; NumPy's passes otherwise."""
    if size < NUMBA_MIN:
        return _adam_numpy
    if not _numba:
        _numba.append(_numba_adam() if os.environ.get("DCPNET_NUMBA", "1") != "0" else None)
    return _numba[0] or _adam_numpy


def kernel_name(size: int = NUMBA_MIN) -> str:
    """Which Adam kernel params of `size` entries get: "numba" or "numpy"."""
    return "numpy" if _adam_kernel(size) is _adam_numpy else "numba"


def _numba_adam():
    try:
        import numba  # optional, and slow to import: only here
    except ImportError:
        return None
    # error_model="numpy": no zero-division branch, so the loop vectorises

    @numba.njit(nogil=True, cache=True, error_model="numpy")
    def fused(p, g, m, v, _t, b1, b2, scale, eps, lo, hi):   # pragma: no cover - compiled
        for i in range(p.size):
            gi = g[i]
            mi = b1 * m[i] + gi
            vi = b2 * v[i] + gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = min(max(p[i] - scale * mi / (math.sqrt(vi) + eps), lo), hi)
    return fused
