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

Everything here is the tape: what to do with params (initialise, project) and how to train lives in
`dcpnet.train`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .atoms import REDUCTIONS
from .graph import Network, Node

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


# ----------------------------------------------------------------------------------------------------
# Forward kernels and vector-Jacobian rules, keyed by operation.
# ----------------------------------------------------------------------------------------------------

def _binary(s, a, b):
    a, b = _pad(a, s.pads[0]), _pad(b, s.pads[1])
    out = a if s.inplace == 0 else b if s.inplace == 1 else None
    return s.info(a, b, out=out)


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


def _slice(s, a):
    return a[:, s.info[0]:s.info[1]]


def _slice_vjp(s, g, y, a):
    z = np.zeros_like(a)
    z[:, s.info[0]:s.info[1]] = g
    return (z,)


# concat: info = the number of entries of each piece; a shared piece meets batched ones by broadcasting
def _concat(s, *args):
    n = max(a.shape[0] for a in args)
    return np.concatenate([np.broadcast_to(a.reshape(a.shape[0], -1), (n, k)) for a, k in zip(args, s.info)],
                          axis=1)


def _concat_vjp(s, g, y, *args):
    grads, start = [], 0
    for a, k, need in zip(args, s.info, s.need):
        piece = g[:, start:start + k]
        start += k
        if not need:
            grads.append(None)
            continue
        if a.shape[0] == 1 and piece.shape[0] > 1:   # a shared piece: the examples' gradients add up
            piece = piece.sum(axis=0, keepdims=True)
        grads.append(piece.reshape(a.shape))
    return tuple(grads)


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
    return np.maximum(u, 0, out=u if s.inplace == 0 else None)


def _relu_vjp(s, g, y, u):
    return (np.multiply(g, y > 0),)            # relu'(0) = 0; y > 0 exactly where u > 0


def _softplus_stable(u, t):
    # max(u, 0) + log1p(exp(-|u|)): exact to a few ulps, and SIMD kernels where logaddexp has none
    np.abs(u, out=t)
    np.negative(t, out=t)
    np.exp(t, out=t)
    np.log1p(t, out=t)
    t += np.maximum(u, 0)


# below this, exp(u) is finite and log1p(exp(u)) is exact to a few ulps: two passes instead of six
_SOFTPLUS_DIRECT = {np.float64: 700.0, np.float32: 80.0}


def _softplus_direct(u, t):
    np.exp(u, out=t)
    np.log1p(t, out=t)


def _softplus(s, u):
    out = np.empty_like(u)
    direct = u.size and u.max() < _SOFTPLUS_DIRECT.get(s.dtype, 0.0)   # a NaN fails it too
    (_softplus_direct if direct else _softplus_stable)(u, out)
    return out


def _softplus_vjp(s, g, y, u):
    # sigmoid(u) = exp(u - softplus(u)): one exp, relative error about |u| ulp
    out = np.subtract(u, y)
    np.exp(out, out=out)
    out *= g
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
REDUCE_RULES = {   # the forward of each is the atom table's own row (one source of each reduction's value)
    "sum": (REDUCTIONS["sum"].f, lambda s, g, y, v: (_spread(g, v),)),
    "mean": (REDUCTIONS["mean"].f, lambda s, g, y, v: (_spread(g / (v.size // v.shape[0]), v),)),
    "max": (REDUCTIONS["max"].f, lambda s, g, y, v: (_pick(v, _flat(v).argmax(axis=1), g),)),
    "min": (REDUCTIONS["min"].f, lambda s, g, y, v: (_pick(v, _flat(v).argmin(axis=1), g),)),
    "log_sum_exp": (REDUCTIONS["log_sum_exp"].f, lambda s, g, y, v: (np.exp(v - _spread(y, v)) * _spread(g, v),)),
    "norm1": (REDUCTIONS["norm1"].f, lambda s, g, y, v: (np.sign(v) * _spread(g, v),)),
    "norm2": (REDUCTIONS["norm2"].f, _norm2_vjp),
    "norm_inf": (REDUCTIONS["norm_inf"].f, _inf_vjp),
    "sum_squares": (REDUCTIONS["sum_squares"].f, lambda s, g, y, v: (2 * v * _spread(g, v),)),
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
    "slice": (_slice, _slice_vjp), "concat": (_concat, _concat_vjp),
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
        self._execute(tape, vals)
        lv = vals[nid]
        loss_mean = float(np.mean(lv)) if lv.shape[0] == nb else float(lv[0])
        n_seed = lv.shape[0]
        seed = np.full(n_seed, 1.0 if per_example or n_seed == 1 else 1.0 / nb, dtype=self.dtype)
        if n_seed == 1 and per_example and nb > 1:
            seed *= nb                          # an unbatched loss summed over B examples
        grads = self._reverse(tape, vals, nid, seed)
        return loss_mean, self._collect(tape, grads, names, nb, bset, env)

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


def compile_network(net: Network, outputs: list[str | int] | None = None, dtype=np.float64) -> Plan:
    """Compile the part of `net` that `outputs` (names or node ids; default the network's outputs) need.

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input t\\nparam a >= 0\\nf = softplus(a * t)\\n")
    >>> compile_network(net).forward({"t": np.array([0.0, 1.0]), "a": np.array(0.0)})["f"].round(4)
    array([0.6931, 0.6931])
    """
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
    return _Tape(steps, variables, initial, is_b)


# What each vjp reads besides g: (the output y, the arguments). A value no rule reads may be overwritten.
VJP_READS = {
    "add": (False, False), "sub": (False, False), "neg": (False, False), "index": (False, False),
    "slice": (False, False), "concat": (False, False),
    "mul": (False, True), "div": (True, True), "matmul": (False, True), "scalar": (False, True),
    "relu": (True, False), "softplus": (True, True), "exp": (True, False), "square": (False, True),
    "tanh": (True, False), "sigmoid": (True, False),
    "reduce": (True, True), "quad_over_lin": (True, True), "extremum": (True, True),
}
_ALIASING = {"index", "slice", "scalar"}                # kernels whose output may be a view of their argument
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
        elif op == "slice":
            info = node.attrs
        elif op == "concat":
            info = tuple(int(np.prod(sh)) for sh in shapes)
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
# Running a plan over many examples
# ----------------------------------------------------------------------------------------------------

CHUNK = 1 << 16                                # examples per forward pass, to bound memory


def forward_in_chunks(plan: Plan, params: dict, data: dict, n: int) -> dict[str, np.ndarray]:
    """The plan's outputs on `n` examples of `data` (one array per input, leading axis), `CHUNK` at a time.

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x\\nparam w\\ny = w * x\\n")
    >>> forward_in_chunks(compile_network(net), {"w": 2.0}, {"x": np.arange(3.0)}, 3)["y"].tolist()
    [0.0, 2.0, 4.0]
    """
    parts = []
    for start in range(0, max(n, 1), CHUNK):
        env = dict(params)
        env.update({k: v[start:start + CHUNK] for k, v in data.items()})
        parts.append(plan.forward(env, set(data)))
    return {name: np.concatenate([p[name] for p in parts]) if len(parts) > 1 else parts[0][name]
            for name in plan.outputs}
