"""The DAG compiled to a tape of NumPy steps: batched forward values and reverse-mode gradients.

`compile_network` walks the DAG once; for each set of batched variables it then builds (and caches) a tape:
one step per node with its forward kernel and its vector-Jacobian rule already chosen (an unbatched matrix
times a batched vector is one GEMM `X @ W.T`, never a loop over examples). A forward pass is one loop over
the tape; a backward pass is one reversed loop, each rule taken from the tables below, keyed by operation.

Values carry a leading axis: B for values that depend on a batched variable, 1 for the others, so that
NumPy broadcasting does the sharing of params across the batch. Scalars next to arrays are reshaped to
(N, 1, ...) once, at compile time.

Subgradient convention at kinks (the left derivative, as `atoms.py`'s `df` gives): relu'(0) = 0,
abs'(0) = 0, leaky_relu'(0) = a, huber clipped at ±2; `max`, `min`, `norm_inf`, `maximum` and `minimum`
send the whole gradient to the *first* extremal entry (or argument); `norm2` at 0 has gradient 0.

Speed: a backward over a large batch runs its two halves at once, one per core (`parallel.pair`; the
halves' gradients of the params are added, those of batched inputs concatenated); large elementwise kernels
of a single pass run on two threads (`DCPNET_THREADS=1` for one of each). On glibc the first
compiled plan raises malloc's mmap and trim thresholds, so that the large temporaries of each pass are
recycled from the heap instead of being mapped, faulted in and unmapped every time (a third of a training
step otherwise); `DCPNET_MALLOC_TUNE=0` leaves malloc alone.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from .graph import Network, Node
from .parallel import PARALLEL_MIN_CHEAP, add_into, can_pair, inline, pair, split_rows

HALVING_MIN = 1 << 16                          # batched entries from which a backward is split in two halves
# Forward GEMM FLOPs per batched entry above which a backward is left whole, OpenBLAS's threads sharing each
# GEMM: two half-batch GEMMs on one thread each run slower than one on two (an ICNN of width 512 on 784
# inputs: 520 FLOPs an entry, 8% faster whole; width 256 on 32 inputs: 100, 15% faster in halves)
GEMM_BOUND = 300

# ----------------------------------------------------------------------------------------------------
# Steps: one per computed node, with everything the kernels need chosen at compile time.
# ----------------------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Step:
    node: Node
    out: int                                  # node id: its slot in the value list
    args: tuple[int, ...]
    batched: bool                             # the output carries the batch axis
    arg_batched: tuple[bool, ...]
    fwd: object                               # (step, *arg values) -> value
    vjp: object                               # (step, g, value, *arg values) -> one gradient per arg
    need: tuple[bool, ...] = ()               # which args want a gradient
    pads: tuple = ()                          # per arg: a reshape that lets a scalar broadcast, or None
    reds: tuple = ()                          # per arg: (axes, shape) summing a gradient back, or None
    info: object = None                       # op-specific: the atom, the index, matmul dimensions, ...
    dtype: object = np.float64
    inplace: int = -1                         # the arg whose buffer the output may take over, if any
    rule: str = ""                            # key of the rule in VJP_READS


def _pad(v, p):
    return v if p is None else v.reshape(p)


def _unbroadcast(g, red):
    if red is None:
        return g
    axes, shape = red
    if axes == (0,) and g.shape[0] > 1 and g.flags.c_contiguous and g.dtype in (np.float64, np.float32):
        # the sum over the batch (a bias gradient) as one GEMV: 2-5x faster than sum(axis=0)
        return (_ones(g.shape[0], g.dtype) @ g.reshape(g.shape[0], -1)).reshape(shape)
    return g.sum(axis=axes).reshape(shape)


_ONES: dict = {}


def _ones(n: int, dtype) -> np.ndarray:
    ones = _ONES.get((n, dtype))
    if ones is None:
        if len(_ONES) > 64:                    # many batch sizes (the refuter's): keep the cache small
            _ONES.clear()
        ones = _ONES[(n, dtype)] = np.ones(n, dtype=dtype)
        ones.flags.writeable = False
    return ones


def _rows(v, lo, hi):
    return v[lo:hi] if v.shape[0] > 1 else v


# ----------------------------------------------------------------------------------------------------
# Forward kernels and vector-Jacobian rules, keyed by operation.
# ----------------------------------------------------------------------------------------------------

def _binary(s, a, b):
    a, b = _pad(a, s.pads[0]), _pad(b, s.pads[1])
    out = a if s.inplace == 0 else b if s.inplace == 1 else None
    if a.ndim != b.ndim or max(a.size, b.size) < PARALLEL_MIN_CHEAP:
        return s.info(a, b, out=out)
    if out is None:
        out = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=s.dtype)
    f = s.info
    split_rows(lambda lo, hi: f(_rows(a, lo, hi), _rows(b, lo, hi), out=out[lo:hi]), out.shape[0], out.size,
                PARALLEL_MIN_CHEAP)
    return out


def _add_vjp(s, g, y, a, b):
    return _unbroadcast(g, s.reds[0]), _unbroadcast(g, s.reds[1])


def _sub_vjp(s, g, y, a, b):
    return _unbroadcast(g, s.reds[0]), (_unbroadcast(-g, s.reds[1]) if s.need[1] else None)


def _mul_vjp(s, g, y, a, b):
    ga = _unbroadcast(g * _pad(b, s.pads[1]), s.reds[0]) if s.need[0] else None
    gb = _unbroadcast(g * _pad(a, s.pads[0]), s.reds[1]) if s.need[1] else None
    return ga, gb


def _div_vjp(s, g, y, a, b):
    b = _pad(b, s.pads[1])
    ga = _unbroadcast(g / b, s.reds[0]) if s.need[0] else None
    gb = _unbroadcast(-(g * y) / b, s.reds[1]) if s.need[1] else None
    return ga, gb


def _neg(s, a):
    return -a


def _neg_vjp(s, g, y, a):
    return (-g,)


def _index(s, a):
    return a[:, s.info]


def _index_vjp(s, g, y, a):
    z = np.zeros_like(a)
    z[:, s.info] = g
    return (z,)


# matmul: info = (lvec, rvec, m, n, k, out_shape, a_shape, b_shape); m = 1 for a vector on the left and
# k = 1 for a vector on the right, so every case is an (m, n) @ (n, k) product, stacked or not.
def _matmul(s, a, b):
    lvec, rvec, m, n, k, out_shape, _, _ = s.info
    bl, br = s.arg_batched
    if not bl and not br:
        return np.reshape(a[0] @ b[0], (1, *out_shape))
    if not bl:                                 # shared W, batched x: one GEMM  X @ W.T
        w = a[0]
        return b @ w.T if rvec else np.matmul(w, b)
    if not br:                                 # batched A, shared v: stack the rows of every example
        v = b[0]
        return a @ v if lvec else (a.reshape(-1, n) @ v).reshape(a.shape[0], m, *v.shape[1:])
    lc = a.reshape(a.shape[0], m, n)
    rc = b.reshape(b.shape[0], n, k)
    return np.matmul(lc, rc).reshape(a.shape[0], *out_shape)


def _matmul_vjp(s, g, y, a, b):
    _, rvec, m, n, k, _, a_shape, b_shape = s.info
    bl, br = s.arg_batched
    ga = gb = None
    if not bl and not br:
        lc, rc, gc = a[0].reshape(m, n), b[0].reshape(n, k), g[0].reshape(m, k)
        if s.need[0]:
            ga = (gc @ rc.T).reshape(1, *a_shape)
        if s.need[1]:
            gb = (lc.T @ gc).reshape(1, *b_shape)
    elif not bl:
        w, nb = a[0].reshape(m, n), b.shape[0]
        if rvec:                               # X (B, n), g (B, m): gW = g.T @ X, gX = g @ W
            g2 = g.reshape(nb, m)
            if s.need[0]:
                ga = (g2.T @ b).reshape(1, *a_shape)
            if s.need[1]:
                gb = g2 @ w
        else:
            gc = g.reshape(nb, m, k)
            if s.need[0]:
                ga = np.tensordot(gc, b, axes=([0, 2], [0, 2])).reshape(1, *a_shape)
            if s.need[1]:
                gb = np.matmul(w.T, gc)
    elif not br:                               # rows of all examples stacked: two GEMMs
        v, ac = b[0].reshape(n, k), a.reshape(-1, n)
        gc = g.reshape(-1, k)
        if s.need[0]:
            ga = (gc @ v.T).reshape(a.shape)
        if s.need[1]:
            gb = (ac.T @ gc).reshape(1, *b_shape)
    else:
        nb = a.shape[0]
        lc, rc, gc = a.reshape(nb, m, n), b.reshape(nb, n, k), g.reshape(nb, m, k)
        if s.need[0]:
            ga = np.matmul(gc, rc.transpose(0, 2, 1)).reshape(a.shape)
        if s.need[1]:
            gb = np.matmul(lc.transpose(0, 2, 1), gc).reshape(b.shape)
    return ga, gb


# -- elementwise atoms: the record's f and df, with faster kernels for the common ones --------------
def _scalar(s, u):
    return np.asarray(s.info.f(u), dtype=s.dtype)


def _scalar_vjp(s, g, y, u):
    return (g * np.asarray(s.info.df(u), dtype=s.dtype),)


def _relu(s, u):
    out = u if s.inplace == 0 else np.empty_like(u)
    split_rows(lambda lo, hi: np.maximum(u[lo:hi], 0, out=out[lo:hi]), u.shape[0], u.size, PARALLEL_MIN_CHEAP)
    return out


def _relu_vjp(s, g, y, u):
    out = np.empty_like(g)                     # relu'(0) = 0; y > 0 exactly where u > 0
    split_rows(lambda lo, hi: np.multiply(g[lo:hi], y[lo:hi] > 0, out=out[lo:hi]), g.shape[0], g.size,
                PARALLEL_MIN_CHEAP)
    return (out,)


def _softplus_rows(u, t):
    # max(u, 0) + log1p(exp(-|u|)): exact to a few ulps, and SIMD kernels where logaddexp has none
    np.abs(u, out=t)
    np.negative(t, out=t)
    np.exp(t, out=t)
    np.log1p(t, out=t)
    t += np.maximum(u, 0)


# below this, exp(u) is finite and log1p(exp(u)) is exact to a few ulps: two passes instead of six
_SOFTPLUS_DIRECT = {np.float64: 700.0, np.float32: 80.0}


def _softplus_direct_rows(u, t):
    np.exp(u, out=t)
    np.log1p(t, out=t)


def _softplus(s, u):
    out = np.empty_like(u)
    direct = u.size and u.max() < _SOFTPLUS_DIRECT.get(s.dtype, 0.0)   # a NaN fails it too
    rows = _softplus_direct_rows if direct else _softplus_rows
    split_rows(lambda lo, hi: rows(u[lo:hi], out[lo:hi]), u.shape[0], u.size)
    return out


def _softplus_vjp_rows(g, y, u, t):
    # sigmoid(u) = exp(u - softplus(u)): one exp, relative error about |u| ulp
    np.subtract(u, y, out=t)
    np.exp(t, out=t)
    t *= g


def _softplus_vjp(s, g, y, u):
    out = np.empty_like(g)
    split_rows(lambda lo, hi: _softplus_vjp_rows(g[lo:hi], y[lo:hi], u[lo:hi], out[lo:hi]), g.shape[0], g.size)
    return (out,)


def _exp_vjp(s, g, y, u):
    return (g * y,)


def _square_vjp(s, g, y, u):
    return (2 * g * u,)


def _tanh_vjp(s, g, y, u):
    return (g * (1 - y * y),)


def _sigmoid_vjp(s, g, y, u):
    return (g * (y * (1 - y)),)


# atom name -> (forward or None for the record's f, vjp)
ATOM_RULES = {
    "relu": (_relu, _relu_vjp),
    "softplus": (_softplus, _softplus_vjp),
    "exp": (None, _exp_vjp),
    "square": (None, _square_vjp),
    "tanh": (None, _tanh_vjp),
    "sigmoid": (None, _sigmoid_vjp),
}


# -- reductions: (N, ...) -> (N,) --------------------------------------------------------------------
def _flat(v):
    return v.reshape(v.shape[0], -1)


def _spread(g, v):
    """g (N,) broadcast over the entries of v (N, ...)."""
    return np.broadcast_to(g.reshape((-1,) + (1,) * (v.ndim - 1)), v.shape)


def _pick(v, idx, g):
    """A zero gradient but for g at entry idx of each example."""
    z = np.zeros((v.shape[0], idx.shape[0] and v.size // v.shape[0]), dtype=v.dtype)
    z[np.arange(v.shape[0]), idx] = g
    return z.reshape(v.shape)


def _lse(v):
    f = _flat(v)
    m = f.max(axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return m[:, 0] + np.log(np.exp(f - m).sum(axis=1))


def _norm2_vjp(s, g, y, v):
    y = y.reshape((-1,) + (1,) * (v.ndim - 1))
    scale = np.divide(v, y, out=np.zeros_like(v), where=y > 0)   # norm2 at 0: the subgradient 0
    return (scale * g.reshape(y.shape),)


def _inf_vjp(s, g, y, v):
    f = _flat(v)
    idx = np.abs(f).argmax(axis=1)             # the first entry of largest magnitude
    sign = np.sign(f[np.arange(f.shape[0]), idx])
    return (_pick(v, idx, g * sign),)


# reduction name -> (forward on one (N, ...) array, vjp)
REDUCE_RULES = {
    "sum": (lambda v: _flat(v).sum(axis=1), lambda s, g, y, v: (_spread(g, v),)),
    "mean": (lambda v: _flat(v).mean(axis=1),
             lambda s, g, y, v: (_spread(g / (v.size // v.shape[0]), v),)),
    "max": (lambda v: _flat(v).max(axis=1),
            lambda s, g, y, v: (_pick(v, _flat(v).argmax(axis=1), g),)),
    "min": (lambda v: _flat(v).min(axis=1),
            lambda s, g, y, v: (_pick(v, _flat(v).argmin(axis=1), g),)),
    "log_sum_exp": (_lse, lambda s, g, y, v: (np.exp(v - _spread(y, v)) * _spread(g, v),)),
    "norm1": (lambda v: np.abs(_flat(v)).sum(axis=1), lambda s, g, y, v: (np.sign(v) * _spread(g, v),)),
    "norm2": (lambda v: np.sqrt((_flat(v) ** 2).sum(axis=1)), _norm2_vjp),
    "norm_inf": (lambda v: np.abs(_flat(v)).max(axis=1), _inf_vjp),
    "sum_squares": (lambda v: (_flat(v) ** 2).sum(axis=1), lambda s, g, y, v: (2 * v * _spread(g, v),)),
}


def _reduce(s, v):
    return REDUCE_RULES[s.info][0](v)


def _reduce_vjp(s, g, y, v):
    return REDUCE_RULES[s.info][1](s, g, y, v)


def _quad_over_lin(s, u, w):
    # u unbatched and w batched (or the reverse) meet on the leading axis
    return (_flat(u) ** 2).sum(axis=1) / w


def _quad_over_lin_vjp(s, g, y, u, w):
    scale = (g / w).reshape((-1,) + (1,) * (u.ndim - 1))      # (N, 1, ...): N may exceed u's own 1
    gu = _unbroadcast(2 * u * scale, s.reds[0]) if s.need[0] else None
    gw = _unbroadcast(-(g * y) / w, s.reds[1]) if s.need[1] else None
    return gu, gw


def _extremum(s, *args):
    ufunc = np.maximum if s.info == "maximum" else np.minimum
    out = _pad(args[0], s.pads[0])
    for a, p in zip(args[1:], s.pads[1:]):
        out = ufunc(out, _pad(a, p))
    return out


def _extremum_vjp(s, g, y, *args):
    taken = np.zeros(g.shape, dtype=bool)
    grads = []
    for a, p, red, need in zip(args, s.pads, s.reds, s.need):
        hit = (_pad(a, p) == y) & ~taken       # the first argument attaining the extremum gets it all
        taken |= hit
        grads.append(_unbroadcast(g * hit, red) if need else None)
    return tuple(grads)


OP_RULES = {
    "add": (_binary, _add_vjp), "sub": (_binary, _sub_vjp), "mul": (_binary, _mul_vjp), "div": (_binary, _div_vjp),
    "neg": (_neg, _neg_vjp), "index": (_index, _index_vjp), "matmul": (_matmul, _matmul_vjp),
    "scalar": (_scalar, _scalar_vjp), "reduce": (_reduce, _reduce_vjp),
    "quad_over_lin": (_quad_over_lin, _quad_over_lin_vjp), "extremum": (_extremum, _extremum_vjp),
}


# ----------------------------------------------------------------------------------------------------
# Compilation
# ----------------------------------------------------------------------------------------------------

@dataclass
class _Tape:
    steps: list[Step]
    variables: list[tuple[int, str, tuple, bool]]     # (node id, name, shape, batched)
    initial: list                                       # constants in place, None elsewhere
    batched: list[bool]                                 # per node id (False where not in the tape)
    entries_per_example: int = 0                        # entries of the batched values: the work's size
    flops_per_example: int = 0                          # of the forward's batched matrix products

    @property
    def gemm_bound(self) -> bool:
        return self.flops_per_example > GEMM_BOUND * self.entries_per_example

    def halves_pay(self, nb: int) -> bool:
        """Whether running two halves of a batch of `nb` at once beats one pass with threaded GEMMs."""
        return nb >= 32 and nb * self.entries_per_example >= HALVING_MIN and not self.gemm_bound


@dataclass
class Plan:
    """A network compiled for NumPy: call `forward` for values, `backward` for gradients.

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x[2]\\nparam W[3, 2]\\ny = sum(relu(W @ x))\\n")
    >>> plan = compile_network(net)
    >>> env = {"x": np.array([[1.0, 2.0], [3.0, 4.0]]), "W": np.ones((3, 2))}
    >>> plan.forward(env)["y"]
    array([ 9., 21.])
    >>> loss, grads = plan.backward(env, loss="y")
    >>> float(loss), grads["W"][0].tolist()
    (15.0, [2.0, 3.0])
    """

    net: Network
    outputs: list                       # as requested: names or node ids
    dtype: type = np.float64
    _targets: tuple[int, ...] = ()
    _tapes: dict = field(default_factory=dict)

    # -- public ------------------------------------------------------------------------------------
    def forward(self, env: dict, batched: set[str] | None = None) -> dict:
        """Values of the plan's outputs, each with a leading batch axis B (broadcast where unbatched).

        `env` maps every variable the outputs need to its value: declared shape, or (B, *shape) when its
        name is in `batched` (default: the network's inputs). With nothing batched, B is 1.
        """
        tape = self._tape(self._batched(batched), self._targets, None)
        vals, nb = self._run(tape, env)
        out = {}
        for key, nid in zip(self.outputs, self._targets):
            v = vals[nid]
            shape = (nb, *self.net.nodes[nid].shape)
            out[key] = v if v.shape == shape else np.broadcast_to(v, shape).copy()
        return out

    def backward(self, env: dict, batched: set[str] | None = None, loss: str | int | None = None, *,
                 wrt: set[str] | None = None, per_example: bool = False) -> tuple[float, dict]:
        """(mean over the batch of the scalar `loss`, its gradient with respect to each variable).

        Gradients have the declared shape for unbatched variables and (B, *shape) for batched ones;
        `wrt` limits them to some variables (default: all the loss depends on, zeros for the others).
        With `per_example`, the seed is 1 per example instead of 1/B: the gradient of a batched
        variable is then that of its own example's loss, and unbatched ones get the gradient of the sum.
        """
        nid = self._loss_id(loss)
        names = set(self.net.variables) if wrt is None else set(wrt)
        bset = self._batched(batched)
        tape = self._tape(bset, (nid,), frozenset(names))
        vals, nb = self._load(tape, env)
        if not per_example and self._worth_halving(tape, nid, nb):
            return self._backward_in_halves(tape, vals, nid, names, nb, bset, env)
        # GEMM-bound: OpenBLAS's threads share each GEMM and spin between them; a helper thread would fight
        # them for the second core (measured 8% slower), so the elementwise work stays on this thread
        with inline() if tape.gemm_bound else contextlib.nullcontext():
            self._execute(tape, vals)
            lv = vals[nid]
            loss_mean = float(np.mean(lv)) if lv.shape[0] == nb else float(lv[0])
            n_seed = lv.shape[0]
            seed = np.full(n_seed, 1.0 if per_example or n_seed == 1 else 1.0 / nb, dtype=self.dtype)
            if n_seed == 1 and per_example and nb > 1:
                seed *= nb                      # an unbatched loss summed over B examples
            grads = self._reverse(tape, vals, nid, seed)
        return loss_mean, self._collect(tape, grads, names, nb, bset, env)

    def halves(self, nb: int, loss: str | int | None = None, wrt: set[str] | None = None,
               batched: set[str] | None = None) -> bool:
        """Whether `backward` on a batch of `nb` runs its two halves at once (on two threads)."""
        nid = self._loss_id(loss)
        names = set(self.net.variables) if wrt is None else set(wrt)
        return self._worth_halving(self._tape(self._batched(batched), (nid,), frozenset(names)), nid, nb)

    def backward_sum(self, env: dict, batched: set[str] | None, loss: str | int | None, wrt: set[str],
                     total: int) -> tuple[float, dict]:
        """(sum of the loss over these examples, gradient of that sum / `total`): the share of some rows
        of a batch of `total` examples, as a process computing half of a batch needs it."""
        nid = self._loss_id(loss)
        tape = self._tape(self._batched(batched), (nid,), frozenset(wrt))
        vals, nb = self._load(tape, env)
        if not tape.batched[nid]:
            raise ValueError(f"the loss `{self.net.nodes[nid].label}` depends on no batched variable")
        return self._share_of(tape, vals, nid, set(wrt), nb, self._batched(batched), env, total)

    def _share_of(self, tape: _Tape, vals: list, nid: int, names: set, rows: int, bset: frozenset, env: dict,
                  total: int) -> tuple[float, dict]:
        """(sum of the loss over the `rows` examples in `vals`, gradient of that sum / `total`)."""
        self._execute(tape, vals)
        grads = self._reverse(tape, vals, nid, np.full(rows, 1.0 / total, dtype=self.dtype))
        return float(np.sum(vals[nid])), self._collect(tape, grads, names, rows, bset, env)

    # -- internals ---------------------------------------------------------------------------------
    def _batched(self, batched) -> frozenset:
        names = frozenset(self.net.inputs if batched is None else batched)
        unknown = names - set(self.net.variables)
        if unknown:
            raise ValueError(f"not variables of the network: {sorted(unknown)}")
        return names

    def _loss_id(self, loss) -> int:
        if loss is None:
            if len(self._targets) != 1:
                raise ValueError("say which output is the loss")
            nid = self._targets[0]
        else:
            nid = loss if isinstance(loss, int) else self.net.names[loss]
        if self.net.nodes[nid].shape != ():
            raise ValueError(f"the loss `{self.net.nodes[nid].label}` must be a scalar")
        return nid

    def _tape(self, batched: frozenset, targets: tuple, wrt: frozenset | None) -> _Tape:
        key = (batched, targets, wrt)
        tape = self._tapes.get(key)
        if tape is None:
            tape = self._tapes[key] = _compile(self.net, batched, targets, wrt, self.dtype)
        return tape

    def _run(self, tape: _Tape, env: dict) -> tuple[list, int]:
        vals, nb = self._load(tape, env)
        self._execute(tape, vals)
        return vals, nb

    def _load(self, tape: _Tape, env: dict) -> tuple[list, int]:
        """The value list with the variables in place, checked and cast; and the batch size."""
        vals = list(tape.initial)
        nb = None
        for nid, name, shape, is_b in tape.variables:
            if name not in env:
                raise ValueError(f"no value for `{name}`")
            v = np.asarray(env[name], dtype=self.dtype)
            if is_b:
                if v.shape[1:] != shape or v.ndim != len(shape) + 1:
                    raise ValueError(f"`{name}` has shape {v.shape}; expected (B, {', '.join(map(str, shape))})")
                if nb is None:
                    nb = v.shape[0]
                elif v.shape[0] != nb:
                    raise ValueError(f"`{name}` has {v.shape[0]} examples, others {nb}")
            else:
                if v.shape != shape:
                    raise ValueError(f"`{name}` has shape {v.shape}; expected {shape}")
                v = v.reshape(1, *shape)
            vals[nid] = v
        return vals, (1 if nb is None else nb)

    @staticmethod
    def _execute(tape: _Tape, vals: list) -> None:
        with np.errstate(all="ignore"):         # outside a domain: NaN, as NumPy gives it
            for s in tape.steps:
                vals[s.out] = s.fwd(s, *[vals[i] for i in s.args])

    # -- the data-parallel backward: each half of the batch on its own core ----------------------------
    @staticmethod
    def _worth_halving(tape: _Tape, nid: int, nb: int) -> bool:
        # examples are independent (no operation mixes them), so halves are exact; a handoff costs
        # about 50 µs, worth it from some 10^5 batched entries
        return tape.batched[nid] and tape.halves_pay(nb) and can_pair()

    def _backward_in_halves(self, tape: _Tape, vals: list, nid: int, names: set, nb: int, bset: frozenset,
                            env: dict) -> tuple[float, dict]:
        batched_vars = {v for v, _, _, is_b in tape.variables if is_b}

        def half(lo: int, hi: int):
            part = [v[lo:hi] if i in batched_vars else v for i, v in enumerate(vals)]
            return self._share_of(tape, part, nid, names, hi - lo, bset, env, nb)

        mid = nb // 2
        (sum_a, a), (sum_b, b) = pair(lambda: half(0, mid), lambda: half(mid, nb))
        in_tape = {name for _, name, _, is_b in tape.variables if is_b}
        for name, g in a.items():
            if name in in_tape:
                a[name] = np.concatenate([g, b[name]])
            elif name not in bset:              # an unbatched variable: the halves' gradients add up
                add_into(g, b[name])
        return (sum_a + sum_b) / nb, a

    def _reverse(self, tape: _Tape, vals: list, root: int, seed) -> list:
        grads: list = [None] * len(vals)
        grads[root] = seed
        with np.errstate(all="ignore"):
            for s in reversed(tape.steps):
                g = grads[s.out]
                if g is None:
                    continue
                for i, need, gi in zip(s.args, s.need, s.vjp(s, g, vals[s.out], *[vals[i] for i in s.args])):
                    if need and gi is not None:
                        cur = grads[i]
                        grads[i] = gi if cur is None else cur + gi
        return grads

    def _collect(self, tape: _Tape, grads: list, names: set, nb: int, batched: frozenset, env: dict) -> dict:
        out, roots = {}, set()
        for name in names:
            var = self.net.variables[name]
            g = grads[var.node]
            is_b = name in batched
            if g is None:                       # the loss does not depend on it (maybe not even in the tape)
                lead = (nb,) if is_b and var.node < len(tape.batched) and tape.batched[var.node] else \
                    np.shape(env[name])[:1] if is_b and name in env else ()
                out[name] = np.zeros(lead + var.shape, dtype=self.dtype)
                continue
            shape = (nb, *var.shape) if is_b else var.shape
            g = np.broadcast_to(g, (nb, *var.shape)) if is_b else g.reshape(shape)
            root = g if g.base is None else g.base
            # an array shared by two results (add passes g through) or a broadcast view is copied
            if id(root) in roots or not g.flags.writeable or not g.flags.c_contiguous:
                g = g.copy()
            roots.add(id(root))
            out[name] = g
        return out


_malloc_tuned = False


def _tune_malloc() -> None:
    """glibc: keep freed blocks up to 32 MiB in the heap (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD)."""
    global _malloc_tuned
    if _malloc_tuned or os.environ.get("DCPNET_MALLOC_TUNE", "1") == "0" or not sys.platform.startswith("linux"):
        return
    _malloc_tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)             # M_MMAP_THRESHOLD: its maximum on 64-bit glibc
        libc.mallopt(-1, 1 << 30)              # M_TRIM_THRESHOLD
        libc.mallopt(-2, 64 << 20)             # M_TOP_PAD
    except (OSError, AttributeError):          # not glibc (musl, ...): nothing to tune
        pass


def compile_network(net: Network, outputs: list[str | int] | None = None, dtype=np.float64) -> Plan:
    """Compile the part of `net` that `outputs` (names or node ids; default the network's outputs) need.

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input t\\nparam a >= 0\\nf = softplus(a * t)\\n")
    >>> compile_network(net).forward({"t": np.array([0.0, 1.0]), "a": np.array(0.0)})["f"].round(4)
    array([0.6931, 0.6931])
    """
    _tune_malloc()
    outputs = list(net.outputs if outputs is None else outputs)
    targets = tuple(o if isinstance(o, int) else net.names[o] for o in outputs)
    return Plan(net, outputs, np.dtype(dtype).type, targets)


def _compile(net: Network, batched: frozenset, targets: tuple, wrt: frozenset | None, dtype) -> _Tape:
    ids = sorted(set().union(*(net.ancestors(t) for t in targets)))
    is_b = [False] * len(net.nodes)
    grad = [False] * len(net.nodes)            # the node depends on a variable we differentiate for
    initial: list = [None] * len(net.nodes)
    variables, steps = [], []
    for nid in ids:
        node = net.nodes[nid]
        if node.op == "var":
            name = node.attrs[0]
            is_b[nid] = name in batched
            grad[nid] = wrt is not None and name in wrt
            variables.append((nid, name, node.shape, is_b[nid]))
            continue
        if node.op == "const":
            initial[nid] = np.full(1, node.attrs[0], dtype=dtype)
            continue
        is_b[nid] = any(is_b[a] for a in node.args)
        grad[nid] = any(grad[a] for a in node.args)
        steps.append(_step(net, node, is_b, grad, dtype))
    _plan_buffers(net, steps, targets, is_b, backward=wrt is not None)
    entries = sum(math.prod(s.node.shape) for s in steps if s.batched)
    flops = sum(2 * s.info[2] * s.info[3] * s.info[4] for s in steps if s.batched and s.rule == "matmul")
    return _Tape(steps, variables, initial, is_b, entries, flops)


# What each vjp reads besides g: (the output y, the arguments). A value no rule reads may be overwritten.
VJP_READS = {
    "add": (False, False), "sub": (False, False), "neg": (False, False), "index": (False, False),
    "mul": (False, True), "div": (True, True), "matmul": (False, True), "scalar": (False, True),
    "relu": (True, False), "softplus": (True, True), "exp": (True, False), "square": (False, True),
    "tanh": (True, False), "sigmoid": (True, False),
    "reduce": (True, True), "quad_over_lin": (True, True), "extremum": (True, True),
}
_ALIASING = {"index", "scalar"}                # kernels whose output may be a view of their argument
_IN_PLACE = {"add", "sub", "mul", "div", "relu"}   # kernels able to write into an argument


def _plan_buffers(net: Network, steps: list[Step], targets: tuple, is_b: list, backward: bool) -> None:
    """Let a step write its output into an argument's buffer when nothing reads that value afterwards:
    it is a fresh array of the same shape made by an earlier step, this is its last use, no view of it
    exists, it is not an output, and the backward pass (when there is one) does not read it."""
    last_use: dict[int, int] = {}
    viewed: set[int] = set()
    read_back: set[int] = set(targets)
    for i, s in enumerate(steps):
        for a in s.args:
            last_use[a] = i
        if s.rule in _ALIASING:
            viewed.update(s.args)
        if backward and any(s.need):           # this vjp will run
            reads_y, reads_args = VJP_READS[s.rule]
            if reads_y:
                read_back.add(s.out)
            if reads_args:
                read_back.update(s.args)
    made = {s.out for s in steps if s.rule not in _ALIASING}
    for i, s in enumerate(steps):
        if s.rule not in _IN_PLACE:
            continue
        for k, a in enumerate(s.args):
            if a in made and a not in viewed and a not in read_back and last_use[a] == i \
                    and s.args.count(a) == 1 and net.nodes[a].shape == s.node.shape and is_b[a] == s.batched:
                s.inplace = k
                break


def _step(net: Network, node: Node, is_b: list, grad: list, dtype) -> Step:
    args = node.args
    arg_b = tuple(is_b[a] for a in args)
    out_b = is_b[node.id]
    shapes = [net.nodes[a].shape for a in args]
    op, info = node.op, None
    if op == "scalar":
        info = net.scalar_atom(node.attrs)
        fast = ATOM_RULES.get(info.name) if node.attrs[0] != "user" else None
        fwd, vjp = (fast[0] or _scalar, fast[1]) if fast else OP_RULES["scalar"]
        rule = info.name if fast else "scalar"
    elif op == "reduce":
        name = node.attrs[0]
        op = "quad_over_lin" if name == "quad_over_lin" else "extremum" if name in ("maximum", "minimum") \
            else "reduce"
        info = name
        fwd, vjp = OP_RULES[op]
        rule = op
    else:
        fwd, vjp = OP_RULES[op]
        rule = op
        if op in _UFUNCS:
            info = _UFUNCS[op]
        elif op == "index":
            info = node.attrs[0]
        elif op == "matmul":
            a_s, b_s = shapes
            lvec, rvec = len(a_s) == 1, len(b_s) == 1
            m = 1 if lvec else a_s[0]
            k = 1 if rvec else b_s[1]
            info = (lvec, rvec, m, a_s[-1], k, node.shape, a_s, b_s)
    pads = tuple(_pad_for(s, node.shape) for s in shapes)
    reds = tuple(_red_for(s, b, node.shape, out_b) for s, b in zip(shapes, arg_b))
    need = tuple(grad[a] for a in args)
    return Step(node, node.id, args, out_b, arg_b, fwd, vjp, need, pads, reds, info, dtype, rule=rule)


_UFUNCS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


def _pad_for(arg_shape: tuple, out_shape: tuple):
    """A scalar (N,) meeting an array (N, ...) becomes (N, 1, ...)."""
    return (-1,) + (1,) * len(out_shape) if not arg_shape and out_shape else None


def _red_for(arg_shape: tuple, arg_b: bool, out_shape: tuple, out_b: bool):
    """How to sum an output gradient back onto an argument that was broadcast."""
    axes = (0,) if out_b and not arg_b else ()
    if not arg_shape and out_shape:
        axes += tuple(range(1, 1 + len(out_shape)))
    if not axes:
        return None
    lead = -1 if arg_b else 1
    return axes, (lead, *arg_shape)


# ----------------------------------------------------------------------------------------------------
# Parameters: an initialisation inside every constraint, and the projection back onto it
# ----------------------------------------------------------------------------------------------------

def init_params(net: Network, rng: np.random.Generator, dtype=np.float64) -> dict[str, np.ndarray]:
    """Initial values for every param, each inside its declared interval.

    The role of a param is read off the DAG. A weight (an operand of `@`) with fan-in n gets:
    - unconstrained or with a constraint containing 0 on both sides: N(0, 1/n) (LeCun), clipped into
      [lo, hi];
    - lower bound 0 (the z-path of an input-convex network): the principled ICNN initialisation of Hoedt &
      Klambauer (NeurIPS 2023): log-normal weights whose mean² = ρ / f_c(n) and variance = 2(1 - ρ)/n, with
      target correlation ρ = 1/2 and unit target variance, which keep the mean and the correlation of the
      signal from drifting through layers of nonnegative weights; the bias added next to such a product is
      shifted by -n·sqrt(mean²/(2π)) to centre the pre-activation. Then clipped to the upper bound, if any;
    - upper bound 0: the mirror image; another one-sided or bounded interval: a uniform draw inside it.
    Any other param (a bias, a scalar gain) starts at 0 (or the ICNN shift), clipped into [lo, hi].

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x[3]\\nparam W[4, 3] >= 0, b[4]\\ny = relu(W @ x + b)\\n")
    >>> p = init_params(net, np.random.default_rng(0))
    >>> bool((p["W"] >= 0).all()), p["b"].shape, bool((p["b"] < 0).all())
    (True, (4,), True)
    """
    fan_in, shifts = _roles(net)
    out = {}
    for name in net.params:
        var = net.variables[name]
        lo, hi = var.bounds.lo, var.bounds.hi
        n = fan_in.get(name)
        if n is None:
            value = np.full(var.shape, shifts.get(name, 0.0))
        elif lo == 0 and hi > 0:
            value = _icnn_weights(rng, var.shape, n)
        elif hi == 0 and lo < 0:
            value = -_icnn_weights(rng, var.shape, n)
        elif lo <= 0 <= hi:
            value = rng.normal(0.0, 1.0 / math.sqrt(n), var.shape)
        else:
            a = lo if math.isfinite(lo) else hi - 1.0
            b = hi if math.isfinite(hi) else lo + 1.0
            value = rng.uniform(a, b, var.shape)
        out[name] = np.asarray(np.clip(value, lo, hi), dtype=dtype)   # an array even for a scalar param
    return out


_ICNN_CORR = 0.5


def _icnn_moments(n: int) -> tuple[float, float]:
    """(mean², variance) of the weights for fan-in n (Hoedt & Klambauer 2023, eqs. 35 and their code)."""
    rho = _ICNN_CORR
    mix = math.sqrt(1 - rho * rho) + rho * math.acos(-rho)
    f_c = n * (math.pi - n + (n - 1) * mix) / (2 * math.pi)
    return rho / f_c, 2 * (1 - rho) / n


def _icnn_weights(rng: np.random.Generator, shape: tuple, n: int) -> np.ndarray:
    mean_sq, var = _icnn_moments(n)
    log_mom2 = math.log(mean_sq + var)
    mu = math.log(mean_sq) - log_mom2 / 2
    sigma = math.sqrt(log_mom2 - math.log(mean_sq))
    return np.exp(rng.normal(mu, sigma, shape))


def _roles(net: Network) -> tuple[dict[str, int], dict[str, float]]:
    """Fan-in of each param used as a matmul operand; the ICNN bias shift of biases next to W ≥ 0."""
    var_of = {v.node: v for v in net.variables.values() if v.kind == "param"}
    fan_in: dict[str, int] = {}
    consumers: dict[int, list[Node]] = {}
    for node in net.nodes:
        for a in node.args:
            consumers.setdefault(a, []).append(node)
        if node.op == "matmul":
            left, right = node.args
            if left in var_of:
                fan_in.setdefault(var_of[left].name, net.nodes[left].shape[-1])
            if right in var_of:
                fan_in.setdefault(var_of[right].name, net.nodes[right].shape[0])
    shifts: dict[str, float] = {}
    for node in net.nodes:
        left = node.args[0] if node.op == "matmul" else None
        if left not in var_of or var_of[left].bounds.lo != 0 or var_of[left].name not in fan_in:
            continue
        mean_sq, _ = _icnn_moments(fan_in[var_of[left].name])
        shift = -fan_in[var_of[left].name] * math.sqrt(mean_sq / (2 * math.pi))
        for bias in _added_params(node, consumers, var_of, net):
            if bias not in fan_in:
                shifts.setdefault(bias, shift)
    return fan_in, shifts


def _added_params(node: Node, consumers: dict, var_of: dict, net: Network) -> list[str]:
    """Params summed together with `node` in the chain of `+` above it."""
    found, stack, seen = [], [node.id], set()
    while stack:
        for c in consumers.get(stack.pop(), []):
            if c.op != "add" or c.id in seen:
                continue
            seen.add(c.id)
            stack.append(c.id)
            found += [var_of[a].name for a in c.args if a in var_of and net.nodes[a].shape == node.shape]
    return found


def project_params(net: Network, params: dict[str, np.ndarray]) -> None:
    """Clip every constrained param onto its declared interval, in place (scalars are replaced in the dict),
    so that `lo <= value <= hi` holds exactly: in float32 a bound like 0.7 rounds to 0.69999999, so the
    clip uses the nearest float32 inside the interval.

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x\\nparam w[2] in [0, 1]\\ny = sum(w * x)\\n")
    >>> p = {"w": np.array([-0.5, 2.0])}
    >>> project_params(net, p); p["w"].tolist()
    [0.0, 1.0]
    >>> net = load_text("input x\\nparam w[2] in [0.7, 1.1]\\ny = sum(w * x)\\n")
    >>> p = {"w": np.array([0.0, 2.0], dtype=np.float32)}
    >>> project_params(net, p); bool(p["w"][0] >= 0.7 and p["w"][1] <= 1.1)
    True
    """
    bounds = param_bounds(net, params)
    for name, value in params.items():
        if name not in bounds:
            continue
        lo, hi = bounds[name]
        if isinstance(value, np.ndarray) and value.flags.writeable:
            if hi == math.inf:                  # one-sided: a single cheap pass (np.clip is slower)
                np.maximum(value, lo, out=value)
            elif lo == -math.inf:
                np.minimum(value, hi, out=value)
            else:
                np.clip(value, lo, hi, out=value)
        else:                                   # a NumPy scalar cannot be written into: replace it
            params[name] = np.clip(value, lo, hi)


def param_bounds(net: Network, params: dict[str, np.ndarray]) -> dict[str, tuple]:
    """(lo, hi) of every constrained param among `params`, as numbers of its dtype inside the declared interval
    (what the optimizers clip onto, in the same pass as their update)."""
    out = {}
    for name, value in params.items():
        var = net.variables.get(name)
        if var is not None and (var.bounds.lo > -math.inf or var.bounds.hi < math.inf):
            out[name] = _inside_bounds(var.bounds.lo, var.bounds.hi, np.asarray(value).dtype)
    return out


def _inside_bounds(lo: float, hi: float, dtype) -> tuple[float, float]:
    """The bounds as numbers of `dtype` that lie inside [lo, hi] (a float64 bound is exact already)."""
    if np.dtype(dtype) == np.float64:
        return lo, hi
    kind = np.dtype(dtype).type
    low, high = kind(lo), kind(hi)
    if math.isfinite(lo) and float(low) < lo:
        low = np.nextafter(low, kind(np.inf))
    if math.isfinite(hi) and float(high) > hi:
        high = np.nextafter(high, kind(-np.inf))
    return low, high


# ----------------------------------------------------------------------------------------------------
# `dcpnet eval`
# ----------------------------------------------------------------------------------------------------

CHUNK = 1 << 16                                # examples per forward pass, to bound memory


def run_eval(args) -> int:
    """`dcpnet eval FILE --params P.npz --data D.npz [--out OUT.npz] [--dtype float32]` (SPEC section 3)."""
    from .cli import load_network
    from .data import load_data, load_params, save_npz

    net = load_network(args.file)
    dtype = np.float32 if getattr(args, "dtype", "float64") == "float32" else np.float64
    params = load_params(net, args.params, dtype)
    data, n = load_data(net, args.data, dtype)
    plan = compile_network(net, net.outputs, dtype)
    parts = []
    for start in range(0, max(n, 1), CHUNK):
        env = dict(params)
        env.update({k: v[start:start + CHUNK] for k, v in data.items()})
        parts.append(plan.forward(env, set(net.inputs)))
    results = {name: np.concatenate([p[name] for p in parts]) if len(parts) > 1 else parts[0][name]
               for name in net.outputs}
    for name, value in results.items():
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        if bad:
            sys.stderr.write(f"{args.file}: warning: output `{name}` has {bad} non-finite value(s) "
                             f"(an argument outside an atom's domain)\n")
    if args.out:
        save_npz(args.out, results)
        print(f"wrote {os.fspath(args.out)}: " + ", ".join(f"{k} {v.shape}" for k, v in results.items()))
    else:
        for name, value in results.items():
            with np.errstate(all="ignore"):
                print(f"{name}: shape {value.shape}, mean {np.mean(value):.6g}, "
                      f"min {np.min(value):.6g}, max {np.max(value):.6g}")
    return 0
