"""Random `.net` networks for property tests, and a small independent NumPy evaluator to check them with.

The evaluator here is deliberately separate from dcpnet/evaluate.py: the soundness tests should not trust
the code they are checking.
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from dcpnet.atoms import REDUCTIONS, SCALAR_ATOMS

UNARY = sorted(SCALAR_ATOMS)
VECTOR_REDUCTIONS = ["sum", "mean", "max", "min", "log_sum_exp", "norm1", "norm2", "norm_inf", "sum_squares"]
CONSTRAINTS = ["", " >= 0", " <= 0", " in [-1, 1]", " >= 1", " in [0, 2]"]


@st.composite
def networks(draw, max_layers: int = 5):
    """A random network text over scalar and vector variables, with its list of variable names."""
    n = draw(st.integers(2, 3))
    lines, scalars, vectors, names = [], [], [], []
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["input", "param"]))
        cons = draw(st.sampled_from(CONSTRAINTS))
        if draw(st.booleans()):
            lines.append(f"{kind} s{i}{cons}")
            scalars.append(f"s{i}")
            names.append(f"s{i}")
        else:
            lines.append(f"{kind} v{i}[{n}]{cons}")
            vectors.append(f"v{i}")
            names.append(f"v{i}")
    cons = draw(st.sampled_from(CONSTRAINTS))
    lines.append(f"param M[{n}, {n}]{cons}")
    names.append("M")
    for k in range(draw(st.integers(1, max_layers))):
        expr = draw(_expression(scalars, vectors))
        lines.append(f"e{k} = {expr}")
        (vectors if expr.startswith("V:") else scalars).append(f"e{k}")
    lines = [ln.replace("V:", "") for ln in lines]
    return "\n".join(lines) + "\n", names


def _expression(scalars, vectors):
    def vec(name):
        return "V:" + name

    choices = []
    if vectors:
        v = st.sampled_from(vectors)
        choices += [
            v.flatmap(lambda a: st.sampled_from(UNARY).map(lambda f: vec(f"{f}({a})"))),
            v.map(lambda a: vec(f"M @ {a}")),
            st.tuples(v, v).map(lambda ab: vec(f"{ab[0]} + {ab[1]}")),
            st.tuples(v, v).map(lambda ab: vec(f"{ab[0]} - {ab[1]}")),
            st.tuples(v, v).map(lambda ab: vec(f"maximum({ab[0]}, {ab[1]})")),
            st.tuples(v, st.floats(-3, 3).map(lambda c: round(c, 2))).map(lambda ac: vec(f"{ac[1]} * {ac[0]}")),
            st.tuples(st.sampled_from(VECTOR_REDUCTIONS), v).map(lambda fa: f"{fa[0]}({fa[1]})"),
            st.tuples(v, v).map(lambda ab: f"{ab[0]} @ {ab[1]}"),
            v.map(lambda a: f"{a}[0]"),
        ]
    if scalars:
        s = st.sampled_from(scalars)
        choices += [
            s.flatmap(lambda a: st.sampled_from(UNARY).map(lambda f: f"{f}({a})")),
            st.tuples(s, s).map(lambda ab: f"{ab[0]} + {ab[1]}"),
            st.tuples(s, s).map(lambda ab: f"{ab[0]} * {ab[1]}"),
            st.tuples(s, st.sampled_from([2, 3, 0.5, -1, 1.5])).map(lambda ap: f"({ap[0]})^{ap[1]}"),
            st.tuples(s, st.floats(-3, 3).map(lambda c: round(c, 2))).map(lambda ac: f"{ac[1]} * {ac[0]}"),
            st.tuples(s, st.sampled_from([0.1, 2, -0.5])).map(lambda ap: f"leaky_relu({ap[0]}, {ap[1]})"),
            s.map(lambda a: f"-{a}"),
        ]
    return st.one_of(choices)


# -- an independent evaluator (batched over the leading axis of every variable) ------------------------
def evaluate(net, node_id: int, env: dict[str, np.ndarray]) -> np.ndarray:
    values: dict[int, np.ndarray] = {}
    batch = len(next(iter(env.values())))
    for i in net.ancestors(node_id):
        node = net.nodes[i]
        a = [values[j] for j in node.args]
        values[i] = _apply(net, node, a, env, batch)
    return values[node_id]


def _apply(net, node, a, env, batch):
    op = node.op
    if op == "var":
        return env[node.attrs[0]]
    if op == "const":
        return np.full((batch,), node.attrs[0])
    if op in ("add", "sub", "mul", "div"):
        x, y = _align(a[0], a[1])
        return {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op](x, y)
    if op == "neg":
        return -a[0]
    if op == "index":
        return a[0][:, node.attrs[0]]
    if op == "matmul":
        return _matmul(a[0], a[1])
    if op == "scalar":  # undefined (NaN) outside the atom's domain, whatever NumPy would compute there
        atom = net.scalar_atom(node.attrs)
        u, d = a[0], atom.domain
        inside = (u > d.lo if atom.open_at[0] else u >= d.lo) & (u < d.hi if atom.open_at[1] else u <= d.hi)
        return np.where(inside, atom.f(np.where(inside, u, d.lo if np.isfinite(d.lo) else 0.0)), np.nan)
    name = node.attrs[0]
    if name in ("maximum", "minimum"):
        x = a[0]
        for y in a[1:]:
            x, y = _align(x, y)
            x = np.maximum(x, y) if name == "maximum" else np.minimum(x, y)
        return x
    if name == "quad_over_lin":
        return (a[0].reshape(batch, -1) ** 2).sum(axis=1) / a[1]
    return REDUCTIONS[name].f(a[0])


def _align(x, y):
    while x.ndim < y.ndim:
        x = x[..., None]
    while y.ndim < x.ndim:
        y = y[..., None]
    return x, y


def _matmul(x, y):
    if x.ndim == 3 and y.ndim == 2:
        return np.einsum("bij,bj->bi", x, y)
    if x.ndim == 3 and y.ndim == 3:
        return np.einsum("bij,bjk->bik", x, y)
    if x.ndim == 2 and y.ndim == 3:
        return np.einsum("bj,bjk->bk", x, y)
    return np.einsum("bj,bj->b", x, y)


def sample(net, names, rng, n: int, scale: float) -> dict[str, np.ndarray]:
    """Values for `names` within their declared constraints, with a leading axis of n."""
    out = {}
    for name in names:
        var = net.variables[name]
        lo, hi = var.bounds.lo, var.bounds.hi
        shape = (n, *var.shape)
        if math.isfinite(lo) and math.isfinite(hi):
            out[name] = lo + (hi - lo) * rng.random(shape)
        elif math.isfinite(lo):
            out[name] = lo + scale * rng.exponential(size=shape)
        elif math.isfinite(hi):
            out[name] = hi - scale * rng.exponential(size=shape)
        else:
            out[name] = scale * rng.standard_normal(shape)
    return out
