"""User atoms: curvature, monotonicity and range of a scalar formula, derived with sympy (the only sympy importer).

An atom body becomes a sympy expression f(u) plus the conditions its built-ins put on their arguments. The
analysis then works on intervals of the real line, never on sympy's all-of-ℝ predicates (`is_convex` calls
sqrt non-convex because it is undefined for u < 0, and calls a leaky relu of slope 2 convex):

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
Numbers are read as the exact decimals written (0.1 is 1/10).

If the natural domain is not an interval (1/u), `domain` is its closed hull and the facts are intervals inside
its components only; a box spanning a hole is covered by no fact.

>>> u = sp.Symbol("u", real=True)
>>> a = derive(u**2, u, "sq", "u^2")
>>> a.convex_on, a.decreasing_on, a.derivative
((Interval(lo=-inf, hi=inf),), (Interval(lo=-inf, hi=0.0),), '2*u')
"""
from __future__ import annotations

import itertools
import math
import signal
import threading
import time
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp

from . import syntax as st
from .atoms import SELU_A, SELU_L, ScalarAtom
from .lattice import INF, REALS, Interval

QUESTION_SECONDS = 0.5     # one sympy question (a solve, a limit, a simplification)
ATOM_SECONDS = 5.0         # all questions about one atom; past it the rest are unknown
DIGITS = 30                # precision of sign readings and endpoint values

PROPS = ("increasing", "decreasing", "convex", "concave")


# -- time limits ------------------------------------------------------------------------------------
class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so sympy's own `except Exception` cannot swallow it."""


class _Unknown(Exception):
    """sympy could not answer in time or returned an unsolved set."""


def _on_alarm(signum, frame):
    raise _Timeout


class _Asker:
    """Runs sympy questions, each within QUESTION_SECONDS and all within one atom's budget."""

    def __init__(self, seconds: float = ATOM_SECONDS):
        self.deadline = time.monotonic() + seconds

    def __call__(self, fn, *args, **kwargs):
        budget = min(QUESTION_SECONDS, self.deadline - time.monotonic())
        if budget <= 0:
            raise _Unknown("out of time")
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            return self._with_alarm(budget, fn, args, kwargs)
        return self._in_thread(budget, fn, args, kwargs)

    @staticmethod
    def _with_alarm(budget, fn, args, kwargs):
        old_handler = signal.signal(signal.SIGALRM, _on_alarm)
        start, old_timer = time.monotonic(), (0.0, 0.0)
        try:
            try:
                old_timer = signal.setitimer(signal.ITIMER_REAL, budget)
                return fn(*args, **kwargs)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)   # the alarm may still fire up to here: caught below
        except _Timeout:
            raise _Unknown("timeout") from None
        except (_Unknown, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001 - sympy raises NotImplementedError, ValueError, TypeError, ...
            raise _Unknown(repr(err)) from None
        finally:
            signal.signal(signal.SIGALRM, old_handler)
            if old_timer[0] > 0:  # someone else's alarm was running: put it back
                signal.setitimer(signal.ITIMER_REAL, max(old_timer[0] - (time.monotonic() - start), 1e-3),
                                 old_timer[1])

    @staticmethod
    def _in_thread(budget, fn, args, kwargs):
        # no alarms outside the main thread: run in a daemon thread and abandon it when late
        box: list = []

        def work():
            try:
                box.append(("ok", fn(*args, **kwargs)))
            except Exception as err:  # noqa: BLE001 - reported as unknown
                box.append(("err", err))

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        worker.join(budget)
        if not box or box[0][0] != "ok":
            raise _Unknown("timeout or error")
        return box[0][1]


# -- the language's built-ins as sympy formulas -----------------------------------------------------
def _dec(v: float) -> sp.Rational:
    """A float as the exact decimal it prints as (0.1 → 1/10)."""
    return sp.Rational(repr(float(v)))


_SELU_L, _SELU_A = _dec(SELU_L), _dec(SELU_A)

# name → (formula of the argument a, conditions on a beyond those the formula implies)
BUILTIN_FORMULAS: dict[str, tuple] = {
    "relu": (lambda a: sp.Max(a, 0), ()),
    "abs": (lambda a: sp.Abs(a), ()),
    "square": (lambda a: a**2, ()),
    "sqrt": (lambda a: sp.sqrt(a), ()),
    "exp": (lambda a: sp.exp(a), ()),
    "log": (lambda a: sp.log(a), ()),
    "softplus": (lambda a: sp.log(1 + sp.exp(a)), ()),
    "sigmoid": (lambda a: 1 / (1 + sp.exp(-a)), ()),
    "tanh": (lambda a: sp.tanh(a), ()),
    "elu": (lambda a: sp.Max(a, 0) + sp.exp(sp.Min(a, 0)) - 1, ()),
    "selu": (lambda a: _SELU_L * (sp.Max(a, 0) + _SELU_A * (sp.exp(sp.Min(a, 0)) - 1)), ()),
    "gelu": (lambda a: a * (1 + sp.erf(a / sp.sqrt(2))) / 2, ()),
    "silu": (lambda a: a / (1 + sp.exp(-a)), ()),
    "inv_pos": (lambda a: 1 / a, (">0",)),
    "entr": (lambda a: sp.Piecewise((-a * sp.log(a), a > 0), (0, True)), (">=0",)),
    "huber": (lambda a: sp.Min(sp.Abs(a), 1) ** 2 + 2 * sp.Max(sp.Abs(a) - 1, 0), ()),
}


def leaky_relu_formula(a: sp.Expr, slope: sp.Expr) -> sp.Expr:
    return sp.Max(a, 0) + slope * sp.Min(a, 0)


# -- syntax tree → sympy ----------------------------------------------------------------------------
@dataclass
class _Converter:
    defs: dict
    conditions: list = field(default_factory=list)   # (g, ">0" | ">=0" | "!=0")

    def expr(self, e: st.Expr, env: dict[str, sp.Expr]) -> sp.Expr:
        if isinstance(e, st.Num):
            return _dec(e.value)
        if isinstance(e, st.Name):
            return env[e.id]
        if isinstance(e, st.Neg):
            return -self.expr(e.operand, env)
        if isinstance(e, st.BinOp):
            a, b = self.expr(e.left, env), self.expr(e.right, env)
            return {"+": a + b, "-": a - b, "*": a * b}[e.op] if e.op != "/" else a / b
        if isinstance(e, st.Pow):
            return self.power(self.expr(e.base, env), e.exponent)
        if isinstance(e, st.Call):
            return self.call(e.func, [self.expr(a, env) for a in e.args])
        raise ValueError(f"{type(e).__name__} cannot appear in an atom body")

    def power(self, base: sp.Expr, p: float) -> sp.Expr:
        # the domain follows `atoms.power`: u ≥ 0 for fractional p, u > 0 for any p < 0 (as in CVXPY)
        q = _dec(p)
        if q < 0:
            self.conditions.append((base, ">0"))
        elif not q.is_integer:
            self.conditions.append((base, ">=0"))
        return sp.Integer(1) if q == 0 else base**q

    def call(self, func: str, args: list[sp.Expr]) -> sp.Expr:
        if func in BUILTIN_FORMULAS:
            formula, conds = BUILTIN_FORMULAS[func]
            self.conditions.extend((args[0], c) for c in conds)
            return formula(args[0])
        if func == "leaky_relu":
            if not args[1].is_number:
                raise ValueError("leaky_relu needs a constant slope")
            return leaky_relu_formula(args[0], args[1])
        if func in ("maximum", "minimum"):
            return (sp.Max if func == "maximum" else sp.Min)(*args)
        d = self.defs[func]  # an earlier user atom: inline it
        return self.expr(d.body, {d.arg: args[0]})


def to_sympy(net, name: str) -> tuple[sp.Expr, sp.Symbol, tuple]:
    """The body of user atom `name` as a sympy expression in its argument, and its domain conditions."""
    d = net.atom_defs[name]
    var = sp.Symbol(d.arg, real=True)
    conv = _Converter(net.atom_defs)
    expr = conv.expr(d.body, {d.arg: var})
    return expr, var, tuple(conv.conditions)


# -- the analysis -----------------------------------------------------------------------------------
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
    atom: ScalarAtom | None = None


def analyse(expr: sp.Expr, var: sp.Symbol, conditions: tuple = (), asker: _Asker | None = None) -> Analysis:
    """Derive the interval facts of f = expr(var); `conditions` restrict the domain ((g, ">0"), ...).

    >>> u = sp.Symbol("u", real=True)
    >>> an = analyse(sp.Max(u, 0), u)
    >>> an.facts["convex"], an.facts["concave"]   # (lo, hi, lo_open, hi_open): the slope rises at 0
    ([(-oo, oo, False, False)], [(-oo, 0, False, False), (0, oo, False, False)])
    """
    ask = asker or _Asker()
    everything = [REALS]
    try:
        components = _domain(expr, var, conditions, ask)
    except _Unknown:
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
        except _Unknown:
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
            raise _Unknown(f"domain {part}")
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
    raise _Unknown("no Piecewise branch")


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
    """Exact zeros of g in the open interval (lo, hi); [] when g vanishes on all of it; _Unknown if unsolved."""
    found = _zero_set(g, var, lo, hi, ask)
    if found is None:
        raise _Unknown("zeros")
    return [] if found == "all" else found


def _zero_set(g, var, lo, hi, ask):
    """The zeros of g on the open interval: a list, "all" when g vanishes identically, None when unknown."""
    if g == 0:
        return "all"
    if not g.has(var):
        return []
    try:
        found = ask(sp.solveset, g, var, sp.Interval.open(lo, hi))
    except _Unknown:
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
    except _Unknown:
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
    except _Unknown:
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
        fn = sp.lambdify(var, d, modules=[_NUMPY_EXTRAS, "numpy"])
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
    except _Unknown:
        continuous = None
    try:
        sl, sr = _one_sided(left.d1, var, k, "-", ask), _one_sided(right.d1, var, k, "+", ask)
        rise = _compare(sr, sl, ask)    # +1: sr > sl, 0: equal, -1: sr < sl, None: unknown
    except _Unknown:
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
        raise _Unknown("value at the kink")
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
        raise _Unknown(f"value {v}")
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
        except _Unknown:
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
        raise _Unknown(f"end value {v}")
    return v


# -- the record -------------------------------------------------------------------------------------------
_NUMPY_EXTRAS = {"erf": np.vectorize(math.erf, otypes=[float])}


def _numpy(var, e, mp=None):
    """An elementwise NumPy function; log1p/expm1 where they keep digits, and mpmath where floats overflow."""
    from sympy.codegen.rewriting import optimize, optims_c99

    try:
        e = optimize(e, optims_c99)
    except Exception:  # noqa: BLE001, S110 - an optimisation that does not apply is no loss
        pass
    raw = sp.lambdify(var, e, modules=[_NUMPY_EXTRAS, "numpy"])

    def f(u):
        u = np.asarray(u, dtype=float)
        with np.errstate(all="ignore"):
            out = np.asarray(raw(u), dtype=float) + np.zeros_like(u)
        if mp is not None:
            _repair(out, u, mp)
        return out[()] if out.ndim == 0 else out

    return f


def _repair(out: np.ndarray, u: np.ndarray, mp) -> None:
    """Recompute the few entries that came out inf or nan at finite points (exp(800) overflowing in log(1 + e^u))."""
    bad = np.flatnonzero(~np.isfinite(out) & np.isfinite(u))
    if 0 < bad.size <= 1000:
        flat_out, flat_u = out.reshape(-1), u.reshape(-1)
        for i in bad:
            try:
                v = mp(flat_u[i])
                flat_out[i] = float(v) if isinstance(v, mpmath.mpf) else np.nan
            except (ValueError, ZeroDivisionError, TypeError, OverflowError):
                pass


def _mpmath(var, e):
    raw = sp.lambdify(var, e, modules="mpmath")

    def mp(u):
        v = raw(mpmath.mpf(u))
        return v if isinstance(v, mpmath.mpc) else mpmath.mpf(v)

    return mp


def _derivative_text(an: Analysis) -> str:
    """f' in words: one formula, or one per piece with the ranges where each holds."""
    if not an.pieces:
        return sp.sstr(sp.diff(an.expr, an.var))
    texts = [(a, b, sp.sstr(d1)) for a, b, _, d1 in an.pieces]
    merged = [list(texts[0])]
    for a, b, t in texts[1:]:
        if t == merged[-1][2] and a == merged[-1][1]:
            merged[-1][1] = b
        else:
            merged.append([a, b, t])
    if len(merged) == 1:
        return merged[0][2]
    v = an.var.name

    def where(a, b):
        if a is sp.S.NegativeInfinity:
            return f"{v} < {sp.sstr(b)}"
        if b is sp.oo:
            return f"{v} > {sp.sstr(a)}"
        return f"{sp.sstr(a)} < {v} < {sp.sstr(b)}"

    return ", ".join(f"{t} for {where(a, b)}" for a, b, t in merged)


def _df_expr(an: Analysis):
    """f' as one Piecewise over the pieces, taking the left derivative at each kink."""
    if not an.pieces:
        return sp.diff(an.expr, an.var)
    if len(an.pieces) == 1:
        return an.pieces[0][3]
    branches = [(d1, an.var <= b) for a, b, _, d1 in an.pieces[:-1]]
    return sp.Piecewise(*branches, (an.pieces[-1][3], True))


def _record(an: Analysis, name: str, formula: str, ask) -> ScalarAtom:
    mp = _mpmath(an.var, an.expr)
    facts = {p: tuple(iv for iv in (_inner(*run) for run in an.facts[p]) if iv is not None) for p in PROPS}
    if an.components:
        lo, _, lo_open, _ = an.components[0]
        _, hi, _, hi_open = an.components[-1]
        dom = _outer(lo, hi)
        # a float end that is not the exact end lies outside the domain: it is excluded
        open_at = (not math.isinf(dom.lo) and (lo_open or not _exact(dom.lo, lo)),
                   not math.isinf(dom.hi) and (hi_open or not _exact(dom.hi, hi)))
    else:
        dom, open_at = REALS, (False, False)
    return ScalarAtom(
        name=name, formula=formula, derivative=_derivative_text(an),
        convex_on=facts["convex"], concave_on=facts["concave"],
        increasing_on=facts["increasing"], decreasing_on=facts["decreasing"],
        f=_numpy(an.var, an.expr, mp), df=_numpy(an.var, _df_expr(an)), mp=mp,
        domain=dom, open_at=open_at, bounds=_bounds(an, ask),
    )


_DERIVED: dict = {}
_NOTES: dict[int, tuple] = {}   # id(atom) → (atom, argument name, f'' text), for the words in reports


def derive(expr: sp.Expr, var: sp.Symbol, name: str, formula: str, conditions: tuple = ()) -> ScalarAtom:
    """The ScalarAtom record of f = expr(var), derived once per process for each formula.

    >>> u = sp.Symbol("u", real=True)
    >>> a = derive(u * sp.log(u), u, "xlx", "u*log(u)")
    >>> a.convex_on, a.domain, a.open_at
    ((Interval(lo=0.0, hi=inf),), Interval(lo=0.0, hi=inf), (True, False))
    """
    key = (expr, var, name, formula, tuple(conditions))
    if key not in _DERIVED:
        ask = _Asker()
        an = analyse(expr, var, tuple(conditions), ask)
        atom = _record(an, name, formula, ask)
        an.atom = atom
        d2 = sp.sstr(an.pieces[0][3].diff(var)) if len(an.pieces) == 1 else ""
        _NOTES[id(atom)] = (atom, var.name, d2)
        _DERIVED[key] = atom
    return _DERIVED[key]


def _body_text(net, d: st.AtomDef) -> str:
    lines = net.source.lines if net.source else []
    line = lines[d.pos.line - 1] if 0 < d.pos.line <= len(lines) else ""
    text = line.split("#", 1)[0]
    return text.split("=", 1)[1].strip() if "=" in text else d.name


def user_atom(net, name: str) -> ScalarAtom:
    """The record of the user atom `name` of `net` (its facts derived with sympy, once per net and name).

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x\\natom sq(t) = t^2\\ny = sq(x)\\n")
    >>> a = user_atom(net, "sq")
    >>> a.increasing_on, a.decreasing_on, a.derivative
    ((Interval(lo=0.0, hi=inf),), (Interval(lo=-inf, hi=0.0),), '2*t')
    """
    cache = net.__dict__.setdefault("_symbolic_atoms", {})
    if name not in cache:
        expr, var, conditions = to_sympy(net, name)
        cache[name] = derive(expr, var, name, _body_text(net, net.atom_defs[name]), conditions)
    return cache[name]


# -- words for the reports ----------------------------------------------------------------------------------
def _fmt(v: float) -> str:
    return ("inf" if v > 0 else "-inf") if math.isinf(v) else f"{v:.6g}"


def _fmt_set(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    return f"{'(' if lo_open or math.isinf(lo) else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open or math.isinf(hi) else ']'}"


def _box(box: Interval) -> str:
    return _fmt_set(box.lo, box.hi, False, False)


def _bad_part(box: Interval, wrong: tuple, right: tuple):
    """A piece of `box` inside some `wrong` interval and outside every `right` one: (lo, hi, lo_open, hi_open)."""
    for w in wrong:
        part = box.meet(w)
        if part is None:
            continue
        lo, hi, lo_open, hi_open = part.lo, part.hi, False, False
        for r in right:  # cut away the right intervals touching the ends (the facts are maximal runs)
            if r.lo <= lo <= r.hi:
                lo, lo_open = r.hi, True
            if r.lo <= hi <= r.hi:
                hi, hi_open = r.lo, True
        if lo < hi or (lo == hi and not (lo_open or hi_open)):
            return lo, hi, lo_open, hi_open
    return None


def _names(atom: ScalarAtom) -> tuple[str, str]:
    note = _NOTES.get(id(atom))
    return (note[1], note[2]) if note and note[0] is atom else ("u", "")


def explain_monotone(atom: ScalarAtom, box: Interval) -> str | None:
    """Why `atom` is not nondecreasing on `box`, in words; None when it is.

    >>> from dcpnet.atoms import SCALAR_ATOMS
    >>> explain_monotone(SCALAR_ATOMS["square"], Interval(-1.0, INF))
    "square'(u) = 2u < 0 for u in [-1, 0), inside the range [-1, inf)"
    """
    if atom.monotonicity_on_box(box).value in ("nondecreasing", "constant"):
        return None
    var, _ = _names(atom)
    bad = _bad_part(box, atom.decreasing_on, atom.increasing_on)
    if bad is None:
        return (f"{atom.name}'({var}) = {atom.derivative} is not proved >= 0 for {var} in {box} "
                f"(sympy could not decide its sign there)")
    return f"{atom.name}'({var}) = {atom.derivative} < 0 for {var} in {_fmt_set(*bad)}, inside the range {_box(box)}"


def explain_convex(atom: ScalarAtom, box: Interval) -> str | None:
    """Why `atom` is not convex on `box`, in words; None when it is.

    >>> from dcpnet.atoms import PARAMETRIC_ATOMS
    >>> explain_convex(PARAMETRIC_ATOMS["leaky_relu"](2.0), Interval(-1.0, 1.0))
    'leaky_relu(u, 2) has a kink at u = 0 where its slope drops (2 for u < 0, 1 for u > 0), inside the range [-1, 1]'
    """
    if atom.convex_on_box(box):
        return None
    var, d2 = _names(atom)
    bad = _bad_part(box, atom.concave_on, atom.convex_on)
    if bad is not None and (bad[0] < bad[1]):
        what = f"{atom.name}''({var}) = {d2} < 0" if d2 else f"{atom.name} is concave, not convex,"
        return f"{what} for {var} in {_fmt_set(*bad)}, inside the range {_box(box)}"
    for a in atom.convex_on:  # two convex intervals meeting inside the box without merging: a kink
        for b in atom.convex_on:
            if a.hi == b.lo and box.lo < a.hi < box.hi:
                return (f"{atom.formula} has a kink at {var} = {_fmt(a.hi)} where its slope drops "
                        f"({atom.derivative}), inside the range {_box(box)}")
    return f"{atom.name} is not proved convex for {var} in {box} (sympy could not decide the sign of its f'')"


__all__ = [
    "ATOM_SECONDS",
    "BUILTIN_FORMULAS",
    "QUESTION_SECONDS",
    "Analysis",
    "analyse",
    "derive",
    "explain_convex",
    "explain_monotone",
    "leaky_relu_formula",
    "to_sympy",
    "user_atom",
]
