"""Composite scalar atoms (issue 17, Method 2): a Hessian enclosure where the composition rules stop.

A scalar subexpression of one to three scalar variables that the rules leave unknown is analysed as a whole:
its value, gradient and Hessian are carried forward through the DAG as intervals (second-order forward-mode
automatic differentiation), every operation rounded outward by `lattice`, every atom's value and derivatives
read from the table's sound `image` of the atom and of its derivative atoms. The enclosure is taken over the
box of the variables' declared ranges (the other names are constants ranging over their constraints), and
the box is bisected while the test fails and the time allows.

The Hessian matrix test is sound for interval matrices: every point matrix inside the enclosure is positive
semidefinite when all its principal minors are (Sylvester's criterion for semidefiniteness), and each minor is
computed in interval arithmetic, so a nonnegative lower bound holds for the true Hessian at every point of
the box; diagonal dominance (Gershgorin) is tried first. PSD at every point of a convex box makes a twice
differentiable function convex there, so boxes covering the domain suffice (each one must be inside every
atom's domain, and only atoms smooth inside their domains are read: no relu, abs or other kinked atom).

>>> from dcpnet.graph import load_text
>>> from dcpnet.prove import Analyzer
>>> net = load_text("input t >= 0\\nw = t^2 * exp(t) + sqrt(t + 1)\\n")
>>> enclose_step(Analyzer(net), net.names["w"], frozenset({"t"})).curvature
<Curvature.CONVEX: 'convex'>
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import lattice as L
from .atoms import SCALAR_ATOMS, power
from .lattice import INF, Curvature, Interval

MAX_VARIABLES = 3
MAX_BOXES = 96          # per composite: the bound that decides (so a verdict does not depend on the machine)
SECONDS = 1.0           # a safety net only, far above what 96 boxes take

_ZERO = L.point(0.0)
_ONE = L.point(1.0)
_TWO = L.point(2.0)


class _Unsupported(Exception):
    """An op or atom without a smooth interval rule on this box: the method says nothing."""


@dataclass(frozen=True)
class Jet:
    """Value, gradient and Hessian of a scalar function, each entry an interval."""

    v: Interval
    g: tuple
    h: tuple

    @staticmethod
    def constant(v: Interval, n: int) -> Jet:
        return Jet(v, (_ZERO,) * n, tuple((_ZERO,) * n for _ in range(n)))

    @staticmethod
    def variable(v: Interval, i: int, n: int) -> Jet:
        return Jet(v, tuple(_ONE if j == i else _ZERO for j in range(n)), tuple((_ZERO,) * n for _ in range(n)))


def _add(a: Jet, b: Jet) -> Jet:
    return Jet(L.add(a.v, b.v), tuple(L.add(x, y) for x, y in zip(a.g, b.g)),
               tuple(tuple(L.add(x, y) for x, y in zip(ra, rb)) for ra, rb in zip(a.h, b.h)))


def _neg(a: Jet) -> Jet:
    return Jet(L.neg(a.v), tuple(L.neg(x) for x in a.g), tuple(tuple(L.neg(x) for x in r) for r in a.h))


def _mul(a: Jet, b: Jet) -> Jet:
    """(ab)'' = a''b + a'b'ᵀ + b'a'ᵀ + ab''."""
    n = len(a.g)
    g = tuple(L.add(L.mul(a.g[i], b.v), L.mul(a.v, b.g[i])) for i in range(n))
    h = tuple(tuple(L.add(L.add(L.mul(a.h[i][j], b.v), L.mul(a.v, b.h[i][j])),
                          L.add(L.mul(a.g[i], b.g[j]), L.mul(a.g[j], b.g[i]))) for j in range(n)) for i in range(n))
    return Jet(L.mul(a.v, b.v), g, h)


def _chain(a: Jet, f: Interval, d1: Interval, d2: Interval) -> Jet:
    """φ(a): φ'(a)·a' and φ''(a)·a'a'ᵀ + φ'(a)·a''."""
    n = len(a.g)
    g = tuple(L.mul(d1, x) for x in a.g)
    h = tuple(tuple(L.add(L.mul(d2, L.mul(a.g[i], a.g[j])), L.mul(d1, a.h[i][j])) for j in range(n))
              for i in range(n))
    return Jet(f, g, h)


def _img(name: str, box: Interval) -> Interval:
    return SCALAR_ATOMS[name].image(box)


def _pow_img(p: float, box: Interval) -> Interval:
    if p == 0:
        return _ONE
    return power(p).image(box)


def _reciprocal_derivatives(box: Interval) -> tuple:
    r = L.reciprocal(box)
    r2 = L.mul(r, r)
    return r, L.neg(r2), L.mul(_TWO, L.mul(r, r2))


def _sigmoid_derivatives(s: Interval) -> tuple:
    d1 = L.mul(s, L.sub(_ONE, s))
    return d1, L.mul(d1, L.sub(_ONE, L.mul(_TWO, s)))


# each atom: the argument's enclosure → (φ, φ', φ'') enclosures; the box already lies in the atom's domain
def _exp(b):
    e = _img("exp", b)
    return e, e, e


def _log(b):
    r = L.reciprocal(b)
    return _img("log", b), r, L.neg(L.mul(r, r))


def _sqrt(b):
    s = _img("sqrt", b)
    return s, L.mul(L.point(0.5), L.reciprocal(s)), L.mul(L.point(-0.25), _pow_img(-1.5, b))


def _square(b):
    return _img("square", b), L.mul(_TWO, b), _TWO


def _softplus(b):
    s = _img("sigmoid", b)
    return (_img("softplus", b), s, *_sigmoid_derivatives(s)[:1])


def _sigmoid(b):
    s = _img("sigmoid", b)
    return (s, *_sigmoid_derivatives(s))


def _tanh(b):
    t = _img("tanh", b)
    d1 = L.sub(_ONE, _img("square", t))
    return t, d1, L.mul(L.point(-2.0), L.mul(t, d1))


def _inv_pos(b):
    return _reciprocal_derivatives(b)


def _entr(b):
    return _img("entr", b), L.sub(L.neg(_img("log", b)), _ONE), L.neg(L.reciprocal(b))


# Only atoms smooth inside their domain: the boxes of a subdivision each prove a PSD Hessian, and that makes the
# whole convex only for a C² function (a kink of relu or abs on a cut between two boxes would go unseen). Where
# an atom's derivative blows up at its domain's end (sqrt, entr at 0), the enclosure holds ±inf and fails.
SMOOTH: dict[str, Callable] = {"exp": _exp, "log": _log, "sqrt": _sqrt, "square": _square, "softplus": _softplus,
                               "sigmoid": _sigmoid, "tanh": _tanh, "inv_pos": _inv_pos, "entr": _entr}


def _power(p: float):
    def rule(b):
        d2 = L.mul(L.point(p * (p - 1)), _pow_img(p - 2, b)) if p not in (0, 1) else _ZERO
        return power(p).image(b), L.mul(L.point(p), _pow_img(p - 1, b)) if p != 0 else _ZERO, d2
    return rule


def _scalar(an, node, a: Jet) -> Jet:
    f = an.atom(node)
    key = node.attrs
    if not f.defined_on(a.v):
        raise _Unsupported
    rule = _power(key[1]) if key[0] == "power" else SMOOTH.get(key[0]) if len(key) == 1 else None
    if rule is None:
        raise _Unsupported
    return _chain(a, *rule(a.v))


def _div(a: Jet, b: Jet) -> Jet:
    if not (b.v.lo > 0 or b.v.hi < 0):
        raise _Unsupported
    return _mul(a, _chain(b, *_reciprocal_derivatives(b.v)))


OPS: dict[str, Callable] = {
    "add": lambda an, node, a, b: _add(a, b),
    "sub": lambda an, node, a, b: _add(a, _neg(b)),
    "neg": lambda an, node, a: _neg(a),
    "mul": lambda an, node, a, b: _mul(a, b),
    "div": lambda an, node, a, b: _div(a, b),
    "scalar": _scalar,
}


def jets(an, root: int, variables: list[str], box: dict[str, Interval]) -> Jet:
    """The jet of `root` with the variables in `box` (others over their constraints)."""
    n = len(variables)
    out: dict[int, Jet] = {}
    for i in an.net.ancestors(root):
        node = an.net.nodes[i]
        if node.shape != ():
            raise _Unsupported
        if node.op == "var":
            name = node.attrs[0]
            out[i] = Jet.variable(box[name], variables.index(name), n) if name in box else \
                Jet.constant(an.net.variables[name].bounds, n)
        elif node.op == "const":
            out[i] = Jet.constant(L.point(node.attrs[0]), n)
        elif node.op in OPS:
            out[i] = OPS[node.op](an, node, *(out[a] for a in node.args))
        else:
            raise _Unsupported
    return out[root]


# -- the matrix test ---------------------------------------------------------------------------------
def _minors(h) -> list[Interval]:
    """Every principal minor of a symmetric interval matrix of order 1-3, in interval arithmetic."""
    n = len(h)
    out = [h[i][i] for i in range(n)]
    if n >= 2:
        for i in range(n):
            for j in range(i + 1, n):
                out.append(L.sub(L.mul(h[i][i], h[j][j]), _img("square", h[i][j])))
    if n == 3:
        a, b, c, d, e, f = h[0][0], h[0][1], h[0][2], h[1][1], h[1][2], h[2][2]
        t1 = L.mul(a, L.sub(L.mul(d, f), _img("square", e)))
        t2 = L.mul(b, L.sub(L.mul(b, f), L.mul(e, c)))
        t3 = L.mul(c, L.sub(L.mul(b, e), L.mul(d, c)))
        out.append(L.add(L.sub(t1, t2), t3))
    return out


def _dominant(h) -> bool:
    """Nonnegative diagonal dominating its row (Gershgorin): every eigenvalue ≥ 0."""
    n = len(h)
    for i in range(n):
        off = _ZERO
        for j in range(n):
            if j != i:
                off = L.add(off, Interval(0.0, max(-h[i][j].lo, h[i][j].hi)))
        if L.sub(h[i][i], off).lo < 0:
            return False
    return True


def psd(h) -> bool:
    """Is every symmetric matrix inside the interval matrix `h` positive semidefinite?

    >>> psd(((Interval(1, 2), Interval(-0.5, 0.5)), (Interval(-0.5, 0.5), Interval(1, 2))))
    True
    >>> psd(((Interval(0, 1), Interval(1, 1)), (Interval(1, 1), Interval(0, 1))))
    False
    """
    return _dominant(h) or all(m.lo >= 0 for m in _minors(h))


def _negated(h):
    return tuple(tuple(L.neg(x) for x in r) for r in h)


# -- boxes --------------------------------------------------------------------------------------------
def _split(iv: Interval) -> tuple[Interval, Interval] | None:
    lo, hi = iv.lo, iv.hi
    if math.isinf(lo) and math.isinf(hi):
        mid = 0.0
    elif math.isinf(hi):
        mid = max(2 * lo, lo + 1.0) if lo >= 0 else 0.0
    elif math.isinf(lo):
        mid = min(2 * hi, hi - 1.0) if hi <= 0 else 0.0
    else:
        mid = lo + (hi - lo) / 2
    if not lo < mid < hi:
        return None
    return Interval(lo, mid), Interval(mid, hi)


def _width(iv: Interval) -> float:
    return INF if math.isinf(iv.lo) or math.isinf(iv.hi) else iv.hi - iv.lo


def settle(an, root: int, variables: list[str], want: str, deadline: float) -> tuple[int, Jet] | None:
    """Bisect the variables' box until the Hessian test holds for `want` ("convex"/"concave") on every part.

    Returns the number of boxes and the jet of the whole box, or None when time or boxes ran out first.
    """
    whole = {v: an.net.variables[v].bounds for v in variables}
    todo, done, first = [whole], 0, None
    while todo:
        if done + len(todo) > MAX_BOXES or time.perf_counter() > deadline:
            return None
        box = todo.pop()
        try:
            jet = jets(an, root, variables, box)
            ok = psd(jet.h if want == "convex" else _negated(jet.h))
        except _Unsupported:
            jet, ok = None, False
        first = first or jet
        if ok:
            done += 1
            continue
        widest = max(variables, key=lambda v: _width(box[v]))
        halves = _split(box[widest])
        if halves is None:
            return None
        todo.extend({**box, widest: half} for half in halves)
    return (done, first) if first is not None else None


def _centre(iv: Interval) -> float:
    lo, hi = iv.lo, iv.hi
    if math.isinf(lo) and math.isinf(hi):
        return 0.0
    if math.isinf(hi):
        return lo + 1.0
    if math.isinf(lo):
        return hi - 1.0
    return lo + (hi - lo) / 2


def surely_not(an, root: int, variables: list[str], want: str) -> bool:
    """At the centre of the box the Hessian is enclosed tightly: a minor there whose upper bound is negative
    proves the property false, so no subdivision is tried (a quick, sound rejection)."""
    box = {v: L.point(_centre(an.net.variables[v].bounds)) for v in variables}
    try:
        h = jets(an, root, variables, box).h
    except _Unsupported:
        return True
    return any(m.hi < 0 for m in _minors(h if want == "convex" else _negated(h)))


def enclose_step(an, root: int, wrt: frozenset):
    """A Step proving `root` convex or concave by its Hessian, or None; its `detail` holds the enclosure."""
    from .prove import Step

    net = an.net
    ids = net.ancestors(root)
    variables = [net.nodes[i].attrs[0] for i in ids if net.nodes[i].op == "var" and net.nodes[i].attrs[0] in wrt]
    if not variables or len(variables) > MAX_VARIABLES or any(net.variables[v].shape != () for v in variables):
        return None
    if any(net.nodes[i].shape != () for i in ids):
        return None
    deadline = time.perf_counter() + SECONDS
    for want in ("convex", "concave"):
        if surely_not(an, root, variables, want):
            continue
        found = settle(an, root, variables, want, deadline)
        if found is None:
            continue
        boxes, jet = found
        box = ", ".join(f"{v} ∈ {net.variables[v].bounds}" for v in variables)
        curv = Curvature.CONVEX if want == "convex" else Curvature.CONCAVE
        test = "Hessian ⪰ 0" if want == "convex" else "Hessian ⪯ 0"
        detail = {"method": "hessian", "variables": variables,
                  "box": {v: net.variables[v].bounds.as_list() for v in variables}, "boxes": boxes,
                  "hessian": [[x.as_list() for x in row] for row in jet.h], "test": test}
        return Step(curv, "Hessian enclosure (interval second-order AD, outward rounded) over {} in {} box{}: "
                    "{} on each, by principal minors or diagonal dominance; whole-box enclosure {} → {}",
                    (box, boxes, "" if boxes == 1 else "es", test, _matrix_words(jet.h), curv), detail=detail)
    return None


def _matrix_words(h) -> str:
    return "[" + "; ".join(", ".join(str(x) for x in row) for row in h) + "]"


def prove_by_hessian(an, root: int, wrt: frozenset):
    """The hook the prover calls at a lowest unknown node."""
    return enclose_step(an, root, wrt)
