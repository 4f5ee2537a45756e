"""The same DAG at one point in high precision (mpmath), to certify witnesses.

Values are mpmath numbers: a scalar is an `mpf`, a vector or matrix a NumPy object array of `mpf`. Inputs
given as floats are converted exactly (every float is a dyadic rational); numeric literals of the network are
taken as the decimals they were written as (`0.1` is one tenth, not the float nearest to it). Anything
outside a domain (log or sqrt of a negative number, division by zero, a complex result) raises
`OutsideDomain`, so the caller can discard the candidate point instead of trusting a NaN.
"""
from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np

from .atoms import REDUCTIONS
from .graph import Network, Node, const_exact


class OutsideDomain(ArithmeticError):
    """The point lies outside the domain of some node (named in the message)."""


def evaluate_precise(net: Network, nodes: list[int | str], env: dict, dps: int = 50) -> dict:
    """Values of `nodes` (names or ids) at the single point `env` (variable name -> value), with `dps` digits.

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x[2]\\ny = log(sum(exp(x)))\\n")
    >>> v = evaluate_precise(net, ["y"], {"x": [0.0, 0.0]}, dps=30)["y"]
    >>> mpmath.nstr(v, 20)
    '0.69314718055994530942'
    >>> evaluate_precise(load_text("input t\\ny = sqrt(t)\\n"), ["y"], {"t": -1.0})
    Traceback (most recent call last):
    ...
    dcpnet.precise.OutsideDomain: sqrt(t): sqrt of -1.0 is outside its domain
    """
    targets = [n if isinstance(n, int) else net.names[n] for n in nodes]
    ids = sorted(set().union(*(net.ancestors(t) for t in targets)))
    with mpmath.workdps(dps):
        vals: dict[int, object] = {}
        for nid in ids:
            node = net.nodes[nid]
            try:
                vals[nid] = _value(net, node, [vals[a] for a in node.args], env)
            except ZeroDivisionError:
                raise OutsideDomain(f"{node.text}: division by zero") from None
            if node.op in ("scalar", "div", "reduce"):   # sums and products of finite reals stay finite
                _check_real(node, vals[nid])
        return {key: vals[t] for key, t in zip(nodes, targets)}


def to_mp(value, shape: tuple = ()):
    """A number or nested list/array to mpf (exact for floats), shaped as declared."""
    arr = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) or value.dtype != object \
        else value
    if arr.shape != tuple(shape):
        raise ValueError(f"value of shape {arr.shape}; expected {tuple(shape)}")
    if arr.dtype == object and set(map(type, arr.flat)) == {mpmath.mpf}:
        out = arr                              # already converted (the refuter converts fixed values once)
    elif arr.dtype == object:
        out = np.empty(arr.shape, dtype=object)
        for i, x in np.ndenumerate(arr):
            out[i] = _mpf(x)
    else:  # a float array: one vectorised pass (mpf of a float is exact)
        out = _FROM_FLOAT(np.asarray(arr, dtype=float)).astype(object)
    return out[()] if not shape else out


_FROM_FLOAT = np.frompyfunc(mpmath.mpf, 1, 1)


def _mpf(x):
    if isinstance(x, mpmath.mpf):
        return x
    if isinstance(x, (bool, np.bool_)):
        return mpmath.mpf(int(x))
    if isinstance(x, (int, np.integer)):
        return mpmath.mpf(int(x))
    return mpmath.mpf(float(x))                # exact: a float is a dyadic rational


def exact_mpf(q: Fraction) -> mpmath.mpf:
    """The rational q rounded once to the working precision."""
    return mpmath.mpf(mpmath.libmp.from_rational(q.numerator, q.denominator, mpmath.mp.prec, "n"))


def mpf_fraction(x: mpmath.mpf) -> Fraction:
    """An mpf exactly, as a Fraction."""
    man, exp = x.man_exp
    return Fraction(man) * (Fraction(2) ** exp)


def _check_declared(net: Network, name: str, value) -> None:
    """A point outside a declared constraint, read as the decimals written (`x >= 0.1` admits no float
    below one tenth), is no point of the claim: OutsideDomain."""
    var = net.variables.get(name)
    if var is None or var.exact == (None, None):
        return
    lo, hi = (_as_double(q) for q in var.exact)   # a bound a double holds: compared without Fractions
    for v in (value.flat if isinstance(value, np.ndarray) else (value,)):
        if not (isinstance(v, mpmath.mpf) and mpmath.isfinite(v)):
            raise OutsideDomain(f"{name} = {v} is not a finite real number")
        inside = (var.exact[0] is None or (v >= lo if lo is not None else mpf_fraction(v) >= var.exact[0])) and \
                 (var.exact[1] is None or (v <= hi if hi is not None else mpf_fraction(v) <= var.exact[1]))
        if not inside:
            raise OutsideDomain(f"{name} = {mpmath.nstr(v, 20)} is outside its declared constraint")


def _as_double(q: Fraction | None) -> float | None:
    """q as a double when one holds it exactly, else None."""
    if q is None:
        return None
    f = float(q)
    return f if Fraction(f) == q else None


def _check_real(node: Node, value) -> None:
    items = value.flat if isinstance(value, np.ndarray) else (value,)
    for v in items:
        if not isinstance(v, mpmath.mpf) or not mpmath.isfinite(v):
            raise OutsideDomain(f"{node.text}: the value {v} is not a finite real number")


def _value(net: Network, node: Node, args: list, env: dict):
    op = node.op
    if op == "var":
        name = node.attrs[0]
        if name not in env:
            raise ValueError(f"no value for `{name}`")
        value = to_mp(env[name], node.shape)
        _check_declared(net, name, value)
        return value
    if op == "const":
        return exact_mpf(const_exact(node))   # the literal as written, e.g. one tenth for 0.1
    if op == "add":
        return args[0] + args[1]
    if op == "sub":
        return args[0] - args[1]
    if op == "mul":
        return args[0] * args[1]
    if op == "div":
        return _divide(*args)
    if op == "neg":
        return -args[0]
    if op == "index":
        return args[0][node.attrs[0]]
    if op == "slice":
        return args[0][node.attrs[0]:node.attrs[1]]
    if op == "concat":
        return np.concatenate([np.asarray(a, dtype=object).reshape(-1) for a in args])
    if op == "matmul":
        return _matmul(*args)
    if op == "scalar":
        return _elementwise(net, node, args[0])
    return _reduce(node, args)


def _divide(a, b):
    for v in (b.flat if isinstance(b, np.ndarray) else (b,)):
        if v == 0:
            raise ZeroDivisionError
    return a / b


def _matmul(a, b):
    """Each entry one mpmath.fdot (exact products summed, rounded once at dps): more accurate than
    element-by-element arithmetic on object arrays, and about 2.5 times faster."""
    if a.ndim == 1 and b.ndim == 1:
        return mpmath.fdot(a, b)
    if b.ndim == 1:
        return _objects([mpmath.fdot(row, b) for row in a])
    if a.ndim == 1:
        return _objects([mpmath.fdot(a, col) for col in b.T])
    return _objects([[mpmath.fdot(row, col) for col in b.T] for row in a])


def _objects(values: list) -> np.ndarray:
    out = np.empty((len(values), len(values[0])) if values and isinstance(values[0], list) else len(values),
                   dtype=object)
    if out.ndim == 1:
        out[:] = values
    else:
        for i, row in enumerate(values):
            out[i, :] = row
    return out


def _elementwise(net: Network, node: Node, u):
    atom = net.scalar_atom(node.attrs)
    lo, hi = atom.domain.lo, atom.domain.hi
    open_lo, open_hi = atom.open_at

    def one(x):
        if x < lo or x > hi or (open_lo and x == lo) or (open_hi and x == hi):
            raise OutsideDomain(f"{node.text}: {atom.name} of {mpmath.nstr(x, 17)} is outside its domain")
        try:
            y = atom.mp(x)
        except (ValueError, ZeroDivisionError) as err:
            raise OutsideDomain(f"{node.text}: {atom.name} of {mpmath.nstr(x, 17)}: {err}") from None
        return y if isinstance(y, mpmath.mpf) else _mpf(y) if isinstance(y, (int, float)) else y

    if not isinstance(u, np.ndarray):
        return one(u)
    out = np.empty(u.shape, dtype=object)
    for i, x in np.ndenumerate(u):
        out[i] = one(x)
    return out


def _entries(v) -> list:
    return list(v.flat) if isinstance(v, np.ndarray) else [v]


def _reduce(node: Node, args: list):
    """The reduction's own mpmath form, from its row of the atom table."""
    row = REDUCTIONS[node.attrs[0]]
    try:
        if row.arity == "many":
            out = args[0]
            for a in args[1:]:
                out = np.frompyfunc(row.mp, 2, 1)(out, a)
            return out
        if row.arity == "quad_over_lin":
            return row.mp(_entries(args[0]), args[1])
        return row.mp(_entries(args[0]))
    except ValueError as err:
        raise OutsideDomain(f"{node.text}: {err}") from None
