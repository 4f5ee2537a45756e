"""Curvature and monotonicity facts of a scalar formula f(u), on intervals of the real line.

sympy's own predicates speak of all of ℝ (`is_convex` calls sqrt non-convex because it is undefined for u < 0,
and calls a leaky relu of slope 2 convex), so the analysis works piece by piece:

1. the natural domain, as a union of intervals (its components);
2. kinks: every `Abs`, `Max`, `Min` and `Piecewise` is resolved innermost first by splitting at the zeros of
   its switching function and choosing the branch at a sample point, so each *piece* is one smooth formula;
   zeros of the base of a fractional power are kinks too (sqrt(u²+u⁴) has a corner at 0);
3. on each piece, the exact zeros of f' and f'' cut it into *cells* where both signs are constant, read at a
   sample point with 30 digits;
4. cells are merged across a kink when f is continuous there (monotone facts) and, for convexity, when the
   slope does not drop (left slope ≤ right slope; concavity mirrors it).

Every sympy question runs under a time limit. A timeout, an exception or an unsolved set (`ConditionSet`)
makes the facts touching that piece unknown — never guessed. A float grid check can only remove facts.

>>> u = sp.Symbol("u", real=True)
>>> an = analyse(sp.Max(u, 0), u)
>>> an.facts["convex"], an.facts["concave"]   # (lo, hi, lo_open, hi_open): the slope rises at 0
([(-oo, oo, False, False)], [(-oo, 0, False, False), (0, oo, False, False)])
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp

from ..lattice import INF, REALS, Interval
from .limits import Asker, Unknown

DIGITS = 30                # precision of sign readings and endpoint values
PROPS = ("increasing", "decreasing", "convex", "concave")
NUMPY_EXTRAS = {"erf": np.vectorize(math.erf, otypes=[float])}

@dataclass
class _Cell:
    lo: sp.Expr
    hi: sp.Expr
    expr: sp.Expr          # the smooth formula of f here
    d1: sp.Expr
    d2: sp.Expr
    s1: str                # sign of f' on the open cell: "+", "-", "0" (identically) or "?"
    s2: str


@dataclass
class Analysis:
    """Everything derived about f: the cells, the joins between them, the facts and what stayed unknown."""

    var: sp.Symbol
    expr: sp.Expr
    components: list          # (lo, hi, left_open, right_open), exact
    cells: list               # _Cell, in order
    joins: list               # between cells i and i+1: "smooth", "break" or a dict of merge answers
    facts: dict               # prop → list of exact (lo, hi)
    unknown: dict             # prop → list of Interval where the analysis could not decide
    pieces: list              # (lo, hi, smooth expr, its derivative) for the derivative text and df


def analyse(expr: sp.Expr, var: sp.Symbol, conditions: tuple = (), asker: Asker | None = None) -> Analysis:
    """Derive the interval facts of f = expr(var); `conditions` restrict the domain ((g, ">0"), ...).

    >>> u = sp.Symbol("u", real=True)
    >>> an = analyse(sp.Max(u, 0), u)
    >>> an.facts["convex"], an.facts["concave"]   # (lo, hi, lo_open, hi_open): the slope rises at 0
    ([(-oo, oo, False, False)], [(-oo, 0, False, False), (0, oo, False, False)])
    """
    ask = asker or Asker()
    everything = [REALS]
    try:
        components = _domain(expr, var, conditions, ask)
    except Unknown:
        return Analysis(var, expr, [], [], [], {p: [] for p in PROPS}, {p: everything for p in PROPS}, [])
    cells, joins, pieces, unknown = [], [], [], {p: [] for p in PROPS}
    for ci, (lo, hi, lo_open, hi_open) in enumerate(components):
        if ci:
            joins.append("break")
        if lo == hi:
            cells.append(_Cell(lo, hi, expr, sp.Integer(0), sp.Integer(0), "0", "0"))
            continue
        try:
            comp_pieces = _pieces(expr, var, lo, hi, ask)
        except Unknown:
            for p in PROPS:
                unknown[p].append(_outer(lo, hi))
            continue
        for pi, (a, b, h) in enumerate(comp_pieces):
            piece_cells, d1 = _cells(h, var, a, b, ask)
            pieces.append((a, b, h, d1))
            if pi:
                joins.append(_kink(expr, var, cells[-1], piece_cells[0], ask))
            cells.extend(piece_cells)
            joins.extend("smooth" for _ in piece_cells[1:])
    facts = {p: _runs(cells, joins, p) for p in PROPS}
    for p in PROPS:
        unknown[p] += _unknown_regions(cells, joins, p)
    return Analysis(var, expr, components, cells, joins, facts, unknown, pieces)


# -- domain -----------------------------------------------------------------------------------------
def _natural_conditions(expr: sp.Expr) -> list:
    """Where the formula is real and finite: log(g) needs g > 0, g^p needs g ≥ 0 (fractional p), g ≠ 0 (p < 0)."""
    out = []

    def walk(e):
        if isinstance(e, sp.Piecewise):  # each branch is defined where it is chosen: only the conditions
            return
        if isinstance(e, sp.log):
            out.append((e.args[0], ">0"))
        elif isinstance(e, sp.Pow) and e.exp.is_number:
            if e.exp.is_negative:
                out.append((e.base, ">0" if not e.exp.is_integer else "!=0"))
            elif not e.exp.is_integer:
                out.append((e.base, ">=0"))
        for a in e.args:
            walk(a)

    walk(expr)
    return out


def _domain(expr, var, conditions, ask) -> list:
    dom = sp.S.Reals
    for g, kind in list(conditions) + _natural_conditions(expr):
        if not g.has(var):
            if not bool({">0": g > 0, ">=0": g >= 0, "!=0": sp.Ne(g, 0)}[kind]):
                return []
            continue
        rel = {">0": g > 0, ">=0": g >= 0, "!=0": sp.Ne(g, 0)}[kind]
        dom = dom.intersect(ask(sp.solveset, rel, var, sp.S.Reals))
    parts = dom.args if isinstance(dom, sp.Union) else (dom,)
    comps = []
    for part in parts:
        if isinstance(part, sp.Interval):
            comps.append((part.start, part.end, bool(part.left_open), bool(part.right_open)))
        elif isinstance(part, sp.FiniteSet):
            comps.extend((x, x, False, False) for x in part.args)
        elif part is not sp.S.EmptySet:
            raise Unknown(f"domain {part}")
    return sorted(comps, key=lambda c: _num(c[0]))


# -- pieces: resolving Abs, Max, Min, Piecewise -----------------------------------------------------
_SWITCHES = (sp.Abs, sp.Max, sp.Min, sp.Piecewise)


def _innermost_switch(expr):
    for node in sp.postorder_traversal(expr):
        if isinstance(node, _SWITCHES):
            return node
    return None


def _switch_functions(node) -> list:
    if isinstance(node, sp.Abs):
        return [node.args[0]]
    if isinstance(node, (sp.Max, sp.Min)):
        a = node.args
        return [a[i] - a[j] for i in range(len(a)) for j in range(i + 1, len(a))]
    out = []
    for _, cond in node.args:
        for rel in cond.atoms(sp.core.relational.Relational):
            out.append(rel.lhs - rel.rhs)
    return out


def _branch(node, var, m):
    """The smooth formula `node` equals on a piece containing the sample point m."""
    if isinstance(node, sp.Abs):
        return node.args[0] if _sign_at(node.args[0], var, m) >= 0 else -node.args[0]
    if isinstance(node, (sp.Max, sp.Min)):
        values = [_value_at(a, var, m) for a in node.args]
        best = max(values) if isinstance(node, sp.Max) else min(values)
        return node.args[values.index(best)]
    for e, cond in node.args:
        if bool(cond.subs(var, m)):
            return e
    raise Unknown("no Piecewise branch")


def _pieces(expr, var, lo, hi, ask) -> list:
    """[(a, b, smooth formula)] covering [lo, hi], split at every kink."""
    node = _innermost_switch(expr)
    if node is None:
        cuts = sorted({z for base in _fractional_bases(expr) for z in _zeros(base, var, lo, hi, ask)}, key=_num)
        ends = [lo, *cuts, hi]
        return [(a, b, expr) for a, b in itertools.pairwise(ends)]
    cuts = sorted({z for g in _switch_functions(node) if g.has(var) for z in _zeros(g, var, lo, hi, ask)}, key=_num)
    ends, out = [lo, *cuts, hi], []
    for a, b in itertools.pairwise(ends):
        smooth = expr.xreplace({node: _branch(node, var, _sample(a, b))})
        out.extend(_pieces(smooth, var, a, b, ask))
    return out


def _fractional_bases(expr) -> list:
    return [e.base for e in expr.atoms(sp.Pow)
            if e.exp.is_number and not e.exp.is_integer and e.base.has(sp.Symbol)]


def _zeros(g, var, lo, hi, ask) -> list:
    """Exact zeros of g in the open interval (lo, hi); [] when g vanishes on all of it; Unknown if unsolved."""
    found = _zero_set(g, var, lo, hi, ask)
    if found is None:
        raise Unknown("zeros")
    return [] if found == "all" else found


def _zero_set(g, var, lo, hi, ask):
    """The zeros of g on the open interval: a list, "all" when g vanishes identically, None when unknown."""
    if g == 0:
        return "all"
    if not g.has(var):
        return []
    try:
        found = ask(sp.solveset, g, var, sp.Interval.open(lo, hi))
    except Unknown:
        return None
    if found == sp.Interval.open(lo, hi):
        return "all"
    if found is sp.S.EmptySet:
        return []
    if isinstance(found, sp.Intersection):  # roots sympy could not compare with the ends: compare them here
        finite = [s for s in found.args if isinstance(s, sp.FiniteSet)]
        if len(finite) != 1 or len(found.args) != 2:
            return None
        return _strictly_inside(finite[0].args, lo, hi)
    if not isinstance(found, sp.FiniteSet) or any(z.is_real is False for z in found.args):
        return None
    return list(found.args)  # solveset has already met them with the interval


def _strictly_inside(points, lo, hi):
    """The points inside (lo, hi), compared with 40 digits; None when one is too close to an end to tell."""
    out = []
    for z in points:
        try:
            v = _mpf(z)
        except (TypeError, ValueError):
            return None
        gaps = [v - _mpf(e) for e in (lo, hi) if e not in (sp.oo, sp.S.NegativeInfinity)]
        if any(abs(g) < mpmath.mpf(10) ** -(DIGITS - 2) * max(1, abs(v)) for g in gaps):
            return None
        if (lo is sp.S.NegativeInfinity or v > _mpf(lo)) and (hi is sp.oo or v < _mpf(hi)):
            out.append(z)
    return out


# -- cells: the signs of f' and f'' ---------------------------------------------------------------------
def _tidy(e, ask):
    """A cheap tidy-up (one fraction, common factors out); `simplify` costs 0.1-0.5 s here and solves no more."""
    try:
        s = ask(lambda x: sp.factor_terms(sp.together(x)), e)
        return s if sp.count_ops(s) <= sp.count_ops(e) else e
    except Unknown:
        return e


def _cells(h, var, a, b, ask) -> tuple[list, sp.Expr]:
    d1 = _tidy(sp.diff(h, var), ask)
    d2 = _tidy(sp.diff(d1, var), ask)
    z1, z2 = _zero_set(d1, var, a, b, ask), _zero_set(d2, var, a, b, ask)
    cuts = sorted({z for zs in (z1, z2) if isinstance(zs, list) for z in zs}, key=_num)
    ends, cells = [a, *cuts, b], []
    for lo, hi in itertools.pairwise(ends):
        m = _sample(lo, hi)
        cells.append(_Cell(lo, hi, h, d1, d2, _cell_sign(d1, var, m, z1, lo, hi), _cell_sign(d2, var, m, z2, lo, hi)))
    return cells, d1


def _cell_sign(d, var, m, zeros, lo, hi) -> str:
    if zeros == "all":
        return "0"
    if zeros is None:
        return "?"
    try:
        s = _sign_at(d, var, m)
    except Unknown:
        return "?"
    if s == 0 or not _grid_agrees(d, var, lo, hi, s):
        return "?"
    return "+" if s > 0 else "-"


def _grid_agrees(d, var, lo, hi, s) -> bool:
    """A float check that d keeps sign s on the cell: it can only take a fact away (a guard against sympy)."""
    a, b = _num(lo), _num(hi)
    a, b = (max(a, b - 20) if math.isinf(a) else a), (min(b, a + 20) if math.isinf(b) else b)
    if math.isinf(a):
        a, b = -10.0, 10.0
    xs = np.linspace(a, b, 41)[1:-1]
    try:
        fn = sp.lambdify(var, d, modules=[NUMPY_EXTRAS, "numpy"])
        with np.errstate(all="ignore"):
            v = np.asarray(fn(xs), dtype=float) * np.ones_like(xs)
    except Exception:  # noqa: BLE001 - no float check possible; the exact answer stands
        return True
    v = v[np.isfinite(v)]
    if v.size == 0:
        return True
    return not np.any(s * v < -1e-6 * np.max(np.abs(v)) - 1e-300)


# -- kinks -----------------------------------------------------------------------------------------------
def _kink(expr, var, left: _Cell, right: _Cell, ask) -> dict:
    """The merge answers at a kink k: is f continuous there, and does the slope rise (convex) or fall?"""
    k = left.hi
    try:
        fk = _one_sided(expr, var, k, None, ask)
        vl, vr = _one_sided(left.expr, var, k, "-", ask), _one_sided(right.expr, var, k, "+", ask)
        continuous = bool(_same(fk, vl) and _same(fk, vr))
    except Unknown:
        continuous = None
    try:
        sl, sr = _one_sided(left.d1, var, k, "-", ask), _one_sided(right.d1, var, k, "+", ask)
        rise = _compare(sr, sl, ask)    # +1: sr > sl, 0: equal, -1: sr < sl, None: unknown
    except Unknown:
        rise = None

    def merge(slope_ok):  # True, False or None (unknown)
        if continuous is False:
            return False
        if continuous is None or rise is None:
            return None
        return slope_ok(rise)

    return {"point": k, "continuous": continuous, "increasing": merge(lambda r: True), "decreasing": merge(lambda r: True),
            "convex": merge(lambda r: r >= 0), "concave": merge(lambda r: r <= 0)}


def _one_sided(e, var, k, side, ask):
    v = e.subs(var, k)
    if v.is_finite and v.is_real is not False and v is not sp.nan:
        return v
    if side is None:
        raise Unknown("value at the kink")
    return ask(sp.limit, e, var, k, side)


def _same(a, b) -> bool:
    if a == b:
        return True
    d = sp.N(a - b, DIGITS)
    return d.is_number and d.is_real and abs(d) <= sp.Float(10) ** (-DIGITS + 8) * max(1, abs(sp.N(a, DIGITS)))


def _compare(x, y, ask):
    if x == y:
        return 0
    if x is sp.oo or y is sp.S.NegativeInfinity:
        return 1
    if x is sp.S.NegativeInfinity or y is sp.oo:
        return -1
    diff = ask(sp.simplify, x - y)
    if diff == 0:
        return 0
    v = sp.N(diff, DIGITS)
    if not (v.is_number and v.is_real) or abs(v) < sp.Float(10) ** (-DIGITS + 8):
        return None
    return 1 if v > 0 else -1


# -- merging cells into facts -------------------------------------------------------------------------
_HOLDS = {"increasing": ("s1", "+0"), "decreasing": ("s1", "-0"), "convex": ("s2", "+0"), "concave": ("s2", "-0")}


def _has(cell: _Cell, prop: str) -> bool:
    attr, ok = _HOLDS[prop]
    return getattr(cell, attr) in ok


def _joins_ok(join, prop) -> bool:
    return join == "smooth" or (isinstance(join, dict) and join[prop] is True)


def _runs(cells, joins, prop) -> list:
    """Maximal runs (lo, hi, lo_open, hi_open) of cells with the property, joined where the join allows it.

    An end is open where f may not be continuous (a jump, or a hole between domain components): the fact then
    stops just short of that point, so a box reaching it is covered by no fact.
    """
    def opens(join) -> bool:
        return join == "break" or (isinstance(join, dict) and join["continuous"] is not True)

    out, previous = [], False
    for i, cell in enumerate(cells):
        if not _has(cell, prop):
            previous = False
            continue
        before = joins[i - 1] if i else None
        if previous and _joins_ok(before, prop):
            out[-1][1] = cell.hi
        else:
            out.append([cell.lo, cell.hi, opens(before), False])
        out[-1][3] = i + 1 < len(cells) and opens(joins[i])
        previous = True
    return [tuple(r) for r in out]


def _unknown_regions(cells, joins, prop) -> list:
    attr = _HOLDS[prop][0]
    out = [_outer(c.lo, c.hi) for c in cells if getattr(c, attr) == "?"]
    out += [_outer(j["point"], j["point"]) for j in joins if isinstance(j, dict) and j[prop] is None]
    return out


# -- numbers --------------------------------------------------------------------------------------------
def _num(x) -> float:
    if x is sp.oo:
        return INF
    if x is sp.S.NegativeInfinity:
        return -INF
    return float(sp.N(x, DIGITS))


def _mpf(x) -> mpmath.mpf:
    with mpmath.workdps(DIGITS + 10):
        return mpmath.mpf(sp.N(x, DIGITS + 10))


def _float_above(x) -> float:
    """The smallest float ≥ x (x exact)."""
    if x in (sp.oo, sp.S.NegativeInfinity):
        return _num(x)
    if isinstance(x, sp.Rational):
        f = float(x)
        return f if sp.Rational(f) >= x else math.nextafter(f, INF)
    f, v = float(sp.N(x, DIGITS)), _mpf(x)
    f = f if mpmath.mpf(f) >= v else math.nextafter(f, INF)
    return f if abs(mpmath.mpf(f) - v) > abs(v) * mpmath.mpf(10) ** -(DIGITS - 2) else math.nextafter(f, INF)


def _float_below(x) -> float:
    return -_float_above(-x) + 0.0  # never -0.0


def _exact(f: float, x) -> bool:
    return isinstance(x, sp.Rational) and sp.Rational(f) == x


def _outer(lo, hi) -> Interval:
    return Interval(_float_below(lo), _float_above(hi))


def _inner(lo, hi, lo_open: bool = False, hi_open: bool = False) -> Interval | None:
    """The float interval inside [lo, hi]; an open end steps strictly past its exact point."""
    a, b = _float_above(lo), _float_below(hi)
    if lo_open and _exact(a, lo):   # an irrational end is already strictly inside
        a = math.nextafter(a, INF)
    if hi_open and _exact(b, hi):
        b = math.nextafter(b, -INF)
    return Interval(a, b) if a <= b else None


def _sample(a, b):
    if a is sp.S.NegativeInfinity and b is sp.oo:
        return sp.Integer(0)
    if a is sp.S.NegativeInfinity:
        return b - 1
    if b is sp.oo:
        return a + 1
    return (a + b) / 2


def _value_at(e, var, m):
    v = sp.N(e.subs(var, m), DIGITS)
    if not (v.is_number and v.is_real):
        raise Unknown(f"value {v}")
    return v


def _sign_at(e, var, m) -> int:
    v = _value_at(e, var, m)
    return 0 if v == 0 else (1 if v > 0 else -1)


# -- the range --------------------------------------------------------------------------------------------
def _bounds(an: Analysis, ask) -> Interval:
    """A hull of f over the whole domain: each monotone cell spans its end values; any other cell is unbounded."""
    if any(an.unknown[p] for p in ("increasing", "decreasing")) or not an.cells:
        return REALS
    lo, hi = INF, -INF
    for c in an.cells:
        if c.s1 == "?":
            return REALS
        try:
            ends = [_end_value(c.expr, an.var, c.lo, "+", ask), _end_value(c.expr, an.var, c.hi, "-", ask)]
        except Unknown:
            return REALS
        lo = min(lo, *(_float_below(v) if v is not None else -INF for v in ends))
        hi = max(hi, *(_float_above(v) if v is not None else INF for v in ends))
    return Interval(lo, hi)


def _end_value(e, var, x, side, ask):
    if x in (sp.oo, sp.S.NegativeInfinity):
        v = ask(sp.limit, e, var, x)
    else:
        v = e.subs(var, x)
        if not (v.is_finite and v.is_real):
            v = ask(sp.limit, e, var, x, side)
    if v in (sp.oo, sp.S.NegativeInfinity):
        return v
    if not (v.is_number and v.is_real is not False) or isinstance(v, sp.AccumBounds) or v is sp.nan:
        raise Unknown(f"end value {v}")
    return v

