"""The atom library as one table of data.

A scalar atom (applied elementwise) is described by facts on intervals: where it is convex, concave,
nondecreasing, nonincreasing, and where it is defined. The analysis answers "convex on the box of the
argument's range?" by asking whether the box lies inside one of the listed intervals, so a wrong row is the
only way to a wrong proof, and `tests/test_atoms.py` checks every row against numbers.

Interval endpoints that are irrational (√2 for gelu, 1/e for entr) are rounded *inward*, so each listed
interval is a subset of the true one; the gaps between pieces are covered by the global `bounds` (rounded
outward). `image` is sound for the true function, not only for its NumPy version: each value it reads is
widened by the row's `rtol` (the NumPy f's relative error, checked against mpmath), tiny values by an absolute
margin, and values the table lists as exact zeros stay exact. Outside its domain f (and f') give nan.

User atoms (`atom NAME(u) = …`) become the same records (see `symbolic/`): facts derived with sympy, values read
from the body as written (`body.py`), and ranges bounded by the body's outward-rounded interval evaluation.
"""
from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .lattice import (
    INF,
    NONNEG,
    NONPOS,
    REALS,
    Interval,
    Monotonicity,
    _down,
    _up,
    add,
    div,
    monotonicity_of,
    mul,
    point,
    scale,
)

Intervals = tuple[Interval, ...]

# Below this magnitude a float value may have lost its relative precision (subnormal intermediates), so
# `image` trusts it only to within ±_TINY_VALUE; above it, to within the record's `rtol`.
_TINY_VALUE = 1e-290
_RTOL_AT_INF = 1e-9   # rtol None: a finite NumPy limit at ±inf is trusted to this
_RTOL = 4e-15           # rtol of the table's NumPy functions: a few ulps (checked by tests/test_atoms.py)


@dataclass(frozen=True)
class ScalarAtom:
    """Facts about a scalar function f(u), each a tuple of maximal intervals (subsets of the truth).

    Convention for `image`: a gap left between a piece where f is ↑ and a later piece where f is ↓ (or ↓
    then ↑) is the inward-rounded bracket of one turning point, so f on the gap lies between the gap's end
    values and the global `bounds`.

    >>> relu = SCALAR_ATOMS["relu"]
    >>> relu.convex_on_box(REALS), relu.concave_on_box(NONNEG), str(relu.monotonicity_on_box(NONPOS))
    (True, True, 'constant')
    >>> relu.image(Interval(-2.0, 3.0)), SCALAR_ATOMS["sigmoid"].image(REALS)
    (Interval(lo=0.0, hi=3.0), Interval(lo=0.0, hi=1.0))
    """

    name: str
    formula: str                  # f in words, e.g. "log(1 + exp(u))"
    derivative: str               # f' in words, used to explain failures, e.g. "2u"
    convex_on: Intervals
    concave_on: Intervals
    increasing_on: Intervals
    decreasing_on: Intervals
    f: Callable                   # NumPy, elementwise; at ±inf it gives the limit (or NaN)
    df: Callable                  # NumPy derivative; at a kink a subgradient (the left derivative, abs: 0)
    mp: Callable                  # one mpmath number to one mpmath number
    domain: Interval = REALS
    open_at: tuple[bool, bool] = (False, False)   # domain excludes its lower / upper endpoint
    bounds: Interval = REALS      # the image of the whole domain (a hull), used where pieces leave gaps
    params: tuple = field(default=())  # constants a factory baked in, e.g. (0.1,) for leaky_relu(u, 0.1)
    zeros: Intervals = ()         # where f is exactly 0: `image` keeps such values exact
    # |NumPy f - true f| ≤ rtol·|true f| where |f| ≥ 1e-290 (0: f is exact). None (user atoms): unknown, so
    # `image` evaluates the ends of pieces with mpmath instead
    rtol: float | None = None
    # f as a sympy formula: sympy(sympy_module, u) (the module is passed in: only symbolic/ imports sympy)
    sympy: Callable | None = field(default=None, compare=False, repr=False)
    # user atoms: a sound interval extension of f on a box (outward rounded, from the body as written).
    # `image` then bounds every region that is not a monotone piece by it, never by the turning-point rule
    enclose: Callable | None = field(default=None, compare=False, repr=False)
    var: str = "u"                # the argument's name, for the words of reports
    second_derivative: str = ""   # f'' in words where one formula holds (user atoms), for reports
    notes: tuple[str, ...] = ()   # what limited the derivation (a time or memory limit), for reports
    # working state, rebuilt by __post_init__ whatever is passed (so `ScalarAtom(**a.__dict__)` copies cleanly)
    _f_inside: Callable | None = field(default=None, compare=False, repr=False)   # f without the domain mask
    _images: dict | None = field(default=None, compare=False, repr=False)        # box → image cache

    def __post_init__(self):
        # outside the domain f and df give nan (no warning), so evaluators and Jensen tests can tell
        object.__setattr__(self, "_f_inside", self.f)   # `image` evaluates f inside the domain only
        object.__setattr__(self, "_images", {})
        if self.domain != REALS:
            for name in ("f", "df"):
                object.__setattr__(self, name, _masked(getattr(self, name), self.domain, self.open_at))

    # -- questions on a box (the argument's range, already met with the domain) -------------------
    def convex_on_box(self, box: Interval) -> bool:
        return _covered(box, self.convex_on)

    def concave_on_box(self, box: Interval) -> bool:
        return _covered(box, self.concave_on)

    def monotonicity_on_box(self, box: Interval) -> Monotonicity:
        return monotonicity_of(_covered(box, self.increasing_on), _covered(box, self.decreasing_on))

    def defined_on(self, box: Interval) -> bool:
        """True when every point of box lies in the domain (open ends excluded)."""
        lo_ok = box.lo > self.domain.lo if self.open_at[0] else box.lo >= self.domain.lo
        hi_ok = box.hi < self.domain.hi if self.open_at[1] else box.hi <= self.domain.hi
        return lo_ok and hi_ok

    def image(self, box: Interval) -> Interval:
        """A sound hull of f(box ∩ domain): end values on each monotone piece, the global bounds on gaps."""
        cache = self._images   # networks repeat boxes (REALS, [0, inf], ...)
        key = (box.lo, box.hi)
        if key not in cache:
            if len(cache) > 4096:
                cache.clear()
            cache[key] = self._image(box)
        return cache[key]

    def _image(self, box: Interval) -> Interval:
        box = box.meet(self.domain) or self.domain
        if self.enclose is not None:
            return self._image_enclosed(box)
        ends = {e for iv in self.increasing_on + self.decreasing_on for e in (iv.lo, iv.hi) if box.lo < e < box.hi}
        cuts = sorted({box.lo, box.hi} | ends)
        with np.errstate(all="ignore"):
            values = [self._enclose(u) for u in cuts]
        lo, hi = values[0]
        for i in range(len(cuts) - 1):
            p_lo, p_hi = self._piece_image(cuts[i], cuts[i + 1], values[i], values[i + 1])
            lo, hi = min(lo, p_lo), max(hi, p_hi)
        b = self.bounds
        return Interval(max(lo, b.lo), min(hi, b.hi)) if max(lo, b.lo) <= min(hi, b.hi) else b

    def _image_enclosed(self, box: Interval) -> Interval:
        """End values (enclosed) on each monotone piece; the subdivided enclosure on every other region."""
        inc, dec = self.increasing_on, self.decreasing_on
        ends = {e for iv in inc + dec for e in (iv.lo, iv.hi) if box.lo < e < box.hi}
        cuts = sorted({box.lo, box.hi} | ends)
        regions = list(itertools.pairwise(cuts)) or [(box.lo, box.hi)]
        lo, hi = INF, -INF
        for a, b in regions:
            if _holds(a, b, inc) or _holds(a, b, dec):
                parts = [self._end_value(a, b), self._end_value(b, a)]
            else:
                parts = [self.enclose(Interval(a, b))]
            lo, hi = min(lo, *(p.lo for p in parts)), max(hi, *(p.hi for p in parts))
        b = self.bounds
        return Interval(max(lo, b.lo), min(hi, b.hi)) if max(lo, b.lo) <= min(hi, b.hi) else b

    def _end_value(self, u: float, other: float) -> Interval:
        """An enclosure of f at the end u of a monotone piece (of its limit, over the tail, when u is infinite)."""
        if math.isfinite(u):
            return self.enclose(point(u))
        if math.isfinite(other):
            return self.enclose(Interval(min(u, other), max(u, other)))
        return self.enclose(REALS)

    def _piece_image(self, a: float, b: float, fa: tuple, fb: tuple) -> tuple[float, float]:
        lo, hi = min(fa[0], fb[0]), max(fa[1], fb[1])
        inc, dec = self.increasing_on, self.decreasing_on
        if _holds(a, b, inc) or _holds(a, b, dec):
            return lo, hi
        # a gap brackets one turning point: rising then falling holds a maximum, falling then rising a minimum
        up_then_down = _holds(a, a, inc) and _holds(b, b, dec)
        down_then_up = _holds(a, a, dec) and _holds(b, b, inc)
        return (lo if up_then_down else min(lo, self.bounds.lo)), (hi if down_then_up else max(hi, self.bounds.hi))

    def _enclose(self, u: float) -> tuple[float, float]:
        """Bounds on the true f(u) (its limit at an infinite u), from the NumPy value; u lies in the domain."""
        if self.rtol is None and math.isfinite(u):
            return self._enclose_mp(u)
        v = float(self._f_inside(np.float64(u)))
        if math.isnan(v):
            return self.bounds.lo, self.bounds.hi
        if math.isinf(v):   # a limit at an open end or at ±inf, or an overflow of a finite value
            return (v, v) if math.isinf(u) else (1e308, INF) if v > 0 else (-INF, -1e308)
        if v == 0 and (math.isinf(u) or self.rtol == 0 or _holds(u, u, self.zeros)):
            return 0.0, 0.0   # exact: a zero of the table, or a limit such as exp(-inf)
        if abs(v) < _TINY_VALUE and self.rtol != 0:
            return min(v, 0.0) - _TINY_VALUE, max(v, 0.0) + _TINY_VALUE
        m = (self.rtol if self.rtol is not None else _RTOL_AT_INF) * abs(v)
        return v - m, v + m

    def _enclose_mp(self, u: float) -> tuple[float, float]:
        """f(u) with mpmath at 50 digits, widened by its distance to the 30-digit value (which catches the
        cancellation a formula may suffer) and rounded outward; the global bounds where f(u) is not real."""
        m = _mp()
        try:
            values = []
            for dps in (30, 50):
                with m.workdps(dps):
                    values.append(self.mp(m.mpf(u)))
            rough, w = values
            if not all(isinstance(v, m.mpf) and m.isfinite(v) for v in values):
                return (float(w), float(w)) if isinstance(w, m.mpf) and m.isinf(w) else (self.bounds.lo, self.bounds.hi)
            with m.workdps(50):
                err = abs(w - rough)
                lo, hi = w - err, w + err
        except (ValueError, ZeroDivisionError, OverflowError, TypeError):
            return self.bounds.lo, self.bounds.hi
        return _float_down(lo), _float_up(hi)


def _float_down(w) -> float:
    v = float(w)   # nearest, so the true value is at most one step away
    return v if v == w else math.nextafter(v, -INF)


def _float_up(w) -> float:
    v = float(w)
    return v if v == w else math.nextafter(v, INF)


def _masked(fn: Callable, domain: Interval, open_at: tuple[bool, bool]) -> Callable:
    lo_open, hi_open = open_at
    lo, hi = domain.lo, domain.hi
    # a point inside the domain, evaluated in place of the outside ones (whose results are thrown away)
    safe = ((lo + hi) / 2 if math.isfinite(lo) and math.isfinite(hi) else
            (lo + 1 if lo_open else lo) if math.isfinite(lo) else (hi - 1 if hi_open else hi))

    def masked(u):
        u = np.asarray(u, dtype=float)
        inside = ((u > domain.lo) if lo_open else (u >= domain.lo)) & ((u < domain.hi) if hi_open else (u <= domain.hi))
        return np.where(inside, fn(np.where(inside, u, safe)), np.nan)
    return masked


def _covered(box: Interval, pieces: Intervals) -> bool:
    return any(box.within(p) for p in pieces)


def _holds(lo: float, hi: float, pieces: Intervals) -> bool:
    """[lo, hi] lies in one of the pieces (floats, no Interval built: `image` is on the analysis' hot path)."""
    return any(p.lo <= lo and hi <= p.hi for p in pieces)


def _iv(lo: float, hi: float) -> Interval:
    return Interval(lo, hi)


# -- NumPy and mpmath pieces --------------------------------------------------------------------------
def _mp():
    import mpmath  # imported lazily: witnesses and the ranges of user atoms need it

    return mpmath


def _quiet(fn: Callable) -> Callable:
    """f or f' that is infinite at a domain end (sqrt' at 0, u^-1 at 0): no divide-by-zero warning there."""
    def quiet(u):
        with np.errstate(divide="ignore"):
            return fn(u)
    return quiet


def _sigmoid(u):
    e = np.exp(-np.abs(u))   # never overflows; both branches are evaluated by np.where
    return np.where(u >= 0, 1 / (1 + e), e / (1 + e))


def _dsigmoid(u):
    e = np.exp(-np.abs(u))   # σ(1 - σ) = e^-|u| / (1 + e^-|u|)^2, without the cancellation of 1 - σ
    return e / ((1 + e) * (1 + e))


def _dtanh(u):
    e = np.exp(-2 * np.abs(u))   # 1 - tanh² = 4e^-2|u| / (1 + e^-2|u|)^2, accurate in the tails
    return 4 * e / ((1 + e) * (1 + e))


def _softplus(u):
    return np.logaddexp(0, u)


_erfc = np.vectorize(math.erfc, otypes=[float])   # no scipy: math.erfc is accurate to an ulp, also in the tail


def _Phi(u):
    return 0.5 * _erfc(-u / SQRT2)   # erfc, not 1 + erf: Φ(u) for u ≪ 0 keeps its relative precision


def _phi(u):
    v = np.minimum(np.abs(u), 1e3)   # φ(1e3) is already 0; avoids u² overflowing
    return np.exp(-0.5 * v * v) / math.sqrt(2 * math.pi)


def _gelu(u):
    return np.maximum(u, -1e300) * _Phi(u)   # the clamp makes gelu(-inf) the limit 0, not -inf·0


def _dgelu(u):
    return _Phi(u) + np.clip(u, -1e300, 1e300) * _phi(u)


def _silu(u):
    return np.maximum(u, -1e300) * _sigmoid(u)


def _dsilu(u):
    s = _sigmoid(u)
    return s * (1 + np.clip(u, -1e300, 1e300) * (1 - s))


def _huber(u):
    c = np.clip(u, -1.0, 1.0)   # c² + 2(|u| - |c|): u² inside, 2|u| - 1 outside, and no u² overflow
    return c * c + 2 * (np.abs(u) - np.abs(c))


def _entr(u):
    return -u * np.log(np.where(u > 0, u, 1.0))   # entr(0) = 0, the limit


def _gelu_mp(u):
    m = _mp()
    if abs(u) <= 1e15:
        return u * m.ncdf(u)
    # mpmath's erfc overflows beyond; there u·Φ(u) is u (to 40 digits) or its tail expansion -φ(u)(1 - 1/u² + 3/u⁴)
    return u if u > 0 else -m.npdf(u) * (1 - 1 / u**2 + 3 / u**4)


def _entr_mp(u):
    return -u * _mp().log(u) if u != 0 else _mp().mpf(0)   # complex for u < 0: outside the domain


SELU_L, SELU_A = 1.0507009873554805, 1.6732632423543772
SQRT2 = math.sqrt(2)     # rounds up: 1.41421356237309515 > √2
# The irrational ends below were computed with mpmath at 40 digits and rounded inward (or outward for bounds):
# gelu'(u) = Φ(u) + uφ(u) = 0 at -0.75179152469…, gelu'' = φ(u)(2 - u²) = 0 at ±√2, min gelu = -0.1699712074799…;
# silu'(u) = σ(u)(1 + u(1 - σ(u))) = 0 at -1.27846454276…, silu'' = 0 at ±2.39935728051…, min silu = -0.27846454276…;
# entr' = -log(u) - 1 = 0 at 1/e = 0.36787944117144232…, max entr = 1/e.
GELU_MIN_AT = (-0.7517916, -0.7517915)   # bracket of the root of gelu'
SILU_MIN_AT = (-1.2784646, -1.2784645)   # bracket of the root of silu'
SILU_INFLECT = 2.3993572                 # silu'' = 0 at ±2.39935728...; this is just inside
_E_INV_IN = (0.3678794411714423, 0.36787944117144233)   # 1/e lies strictly between


def _selu_sympy(sp, u):
    lam, alpha = sp.Rational(SELU_L), sp.Rational(SELU_A)   # the doubles exactly, as the other readers use them
    return lam * (sp.Max(u, 0) + alpha * (sp.exp(sp.Min(u, 0)) - 1))


def _leaky(a: float) -> ScalarAtom:
    """leaky_relu(u, a): two affine pieces meeting at 0 with slopes a (left) and 1 (right); convex iff a ≤ 1.

    >>> PARAMETRIC_ATOMS["leaky_relu"](0.1).convex_on_box(REALS), _leaky(-0.5).image(REALS)
    (True, Interval(lo=0.0, hi=inf))
    """
    pieces = (NONPOS, NONNEG)
    return ScalarAtom(
        name="leaky_relu", formula=f"leaky_relu(u, {a:g})", derivative=f"{a:g} for u < 0, 1 for u > 0",
        convex_on=(REALS,) if a <= 1 else pieces,
        concave_on=(REALS,) if a >= 1 else pieces,
        increasing_on=(REALS,) if a >= 0 else (NONNEG,),
        decreasing_on=(NONPOS,) if a <= 0 else (),
        # a = 0 is relu: a·u would make 0·(-inf) = nan at the limit
        f=(lambda u: np.where(u > 0, u, a * u)) if a != 0 else (lambda u: np.maximum(u, 0.0)),
        df=lambda u: np.where(u > 0, 1.0, a),
        mp=lambda u: u if u > 0 else a * u,
        bounds=NONNEG if a <= 0 else REALS, zeros=(NONPOS,) if a == 0 else (point(0.0),),
        params=(a,), rtol=_RTOL, sympy=lambda sp, u: sp.Max(u, 0) + sp.Rational(a) * sp.Min(u, 0),
    )


def power(p: float) -> ScalarAtom:
    """u^p, by cases on p as in the SPEC; for p < 0 the domain is u > 0 (as in CVXPY).

    >>> power(2).convex_on_box(REALS), power(0.5).domain, power(-1).open_at
    (True, Interval(lo=0.0, hi=inf), (True, False))
    """
    is_int = float(p).is_integer()
    f = _quiet(lambda u: np.power(u, float(p)))
    df = _quiet(lambda u: p * np.power(u, float(p) - 1)) if p != 0 else (lambda u: np.zeros_like(u, dtype=float))
    mp = (lambda u: u ** (int(p) if is_int else _mp().mpf(p)))
    slope = {0: "0", 1: "1", 2: "2·u"}.get(p, f"{p:g}·u^{p - 1:g}")   # d/du u^p, written as a person would
    # sympy reads p as its shortest decimal: the same curvature class as the double, and easier to solve
    common = {"name": "power", "formula": f"u^{p:g}", "derivative": slope, "f": f, "df": df,
              "mp": mp, "params": (p,), "zeros": (point(0.0),) if p > 0 else (), "rtol": _RTOL,
              "sympy": lambda sp, u: sp.Integer(1) if p == 0 else u ** sp.Rational(repr(float(p)))}
    if p == 0:
        return ScalarAtom(convex_on=(REALS,), concave_on=(REALS,), increasing_on=(REALS,),
                          decreasing_on=(REALS,), bounds=Interval(1.0, 1.0), **common)
    if p == 1:
        return ScalarAtom(convex_on=(REALS,), concave_on=(REALS,), increasing_on=(REALS,), decreasing_on=(),
                          **common)
    if is_int and p > 0 and int(p) % 2 == 0:
        return ScalarAtom(convex_on=(REALS,), concave_on=(), increasing_on=(NONNEG,),
                          decreasing_on=(NONPOS,), bounds=NONNEG, **common)
    if is_int and p > 0:
        return ScalarAtom(convex_on=(NONNEG,), concave_on=(NONPOS,), increasing_on=(REALS,),
                          decreasing_on=(), **common)
    if p > 1:
        return ScalarAtom(convex_on=(NONNEG,), concave_on=(), increasing_on=(NONNEG,), decreasing_on=(),
                          domain=NONNEG, bounds=NONNEG, **common)
    if p > 0:
        return ScalarAtom(convex_on=(), concave_on=(NONNEG,), increasing_on=(NONNEG,), decreasing_on=(),
                          domain=NONNEG, bounds=NONNEG, **common)
    return ScalarAtom(convex_on=(NONNEG,), concave_on=(), increasing_on=(), decreasing_on=(NONNEG,),
                      domain=NONNEG, open_at=(True, False), bounds=NONNEG, **common)


_ZERO = (point(0.0),)

SCALAR_ATOMS: dict[str, ScalarAtom] = {a.name: a for a in [
    ScalarAtom("relu", "max(u, 0)", "0 for u < 0, 1 for u > 0",
               convex_on=(REALS,), concave_on=(NONPOS, NONNEG), increasing_on=(REALS,), decreasing_on=(NONPOS,),
               f=lambda u: np.maximum(u, 0.0), df=lambda u: np.where(u > 0, 1.0, 0.0),
               mp=lambda u: u if u > 0 else 0 * u, bounds=NONNEG, zeros=(NONPOS,), sympy=lambda sp, u: sp.Max(u, 0),
               rtol=0.0),
    ScalarAtom("abs", "|u|", "sign(u)",
               convex_on=(REALS,), concave_on=(NONPOS, NONNEG), increasing_on=(NONNEG,), decreasing_on=(NONPOS,),
               f=np.abs, df=np.sign, mp=abs, bounds=NONNEG, zeros=_ZERO, sympy=lambda sp, u: sp.Abs(u),
               rtol=0.0),
    ScalarAtom("square", "u^2", "2u",
               convex_on=(REALS,), concave_on=(), increasing_on=(NONNEG,), decreasing_on=(NONPOS,),
               f=np.square, df=lambda u: 2 * u, mp=lambda u: u * u, bounds=NONNEG, zeros=_ZERO, sympy=lambda sp, u: u**2,
               rtol=_RTOL),
    ScalarAtom("sqrt", "sqrt(u)", "1/(2 sqrt(u))",
               convex_on=(), concave_on=(NONNEG,), increasing_on=(NONNEG,), decreasing_on=(),
               f=np.sqrt, df=_quiet(lambda u: 0.5 / np.sqrt(u)), mp=lambda u: _mp().sqrt(u),
               domain=NONNEG, bounds=NONNEG, zeros=_ZERO, sympy=lambda sp, u: sp.sqrt(u),
               rtol=_RTOL),
    ScalarAtom("exp", "exp(u)", "exp(u)",
               convex_on=(REALS,), concave_on=(), increasing_on=(REALS,), decreasing_on=(),
               f=np.exp, df=np.exp, mp=lambda u: _mp().exp(u), bounds=NONNEG, sympy=lambda sp, u: sp.exp(u),
               rtol=_RTOL),
    ScalarAtom("log", "log(u)", "1/u",
               convex_on=(), concave_on=(NONNEG,), increasing_on=(NONNEG,), decreasing_on=(),
               f=_quiet(np.log), df=_quiet(lambda u: 1 / u), mp=lambda u: _mp().log(u),
               domain=NONNEG, open_at=(True, False), zeros=(point(1.0),), sympy=lambda sp, u: sp.log(u),
               rtol=_RTOL),
    ScalarAtom("softplus", "log(1 + exp(u))", "sigmoid(u)",
               convex_on=(REALS,), concave_on=(), increasing_on=(REALS,), decreasing_on=(),
               f=_softplus, df=_sigmoid, mp=lambda u: _mp().log1p(_mp().exp(u)), bounds=NONNEG, sympy=lambda sp, u: sp.log(1 + sp.exp(u)),
               rtol=_RTOL),
    ScalarAtom("sigmoid", "1/(1 + exp(-u))", "sigmoid(u)(1 - sigmoid(u))",
               convex_on=(NONPOS,), concave_on=(NONNEG,), increasing_on=(REALS,), decreasing_on=(),
               f=_sigmoid, df=_dsigmoid, mp=lambda u: 1 / (1 + _mp().exp(-u)), bounds=_iv(0.0, 1.0), sympy=lambda sp, u: 1 / (1 + sp.exp(-u)),
               rtol=_RTOL),
    ScalarAtom("tanh", "tanh(u)", "1 - tanh(u)^2",
               convex_on=(NONPOS,), concave_on=(NONNEG,), increasing_on=(REALS,), decreasing_on=(),
               f=np.tanh, df=_dtanh, mp=lambda u: _mp().tanh(u), bounds=_iv(-1.0, 1.0), zeros=_ZERO, sympy=lambda sp, u: sp.tanh(u),
               rtol=_RTOL),
    ScalarAtom("elu", "u for u > 0, exp(u) - 1 otherwise", "1 for u > 0, exp(u) otherwise",
               convex_on=(REALS,), concave_on=(NONNEG,), increasing_on=(REALS,), decreasing_on=(),
               f=lambda u: np.where(u > 0, u, np.expm1(np.minimum(u, 0))),
               df=lambda u: np.where(u > 0, 1.0, np.exp(np.minimum(u, 0))),
               mp=lambda u: u if u > 0 else _mp().expm1(u), bounds=_iv(-1.0, INF), zeros=_ZERO, sympy=lambda sp, u: sp.Max(u, 0) + sp.exp(sp.Min(u, 0)) - 1,
               rtol=_RTOL),
    ScalarAtom("selu", "λu for u > 0, λα(exp(u) - 1) otherwise", "λ for u > 0, λα exp(u) otherwise",
               convex_on=(NONPOS, NONNEG), concave_on=(NONNEG,), increasing_on=(REALS,), decreasing_on=(),
               f=lambda u: SELU_L * np.where(u > 0, u, SELU_A * np.expm1(np.minimum(u, 0))),
               df=lambda u: SELU_L * np.where(u > 0, 1.0, SELU_A * np.exp(np.minimum(u, 0))),
               mp=lambda u: SELU_L * (u if u > 0 else SELU_A * _mp().expm1(u)),
               bounds=_iv(_down(-SELU_L * SELU_A), INF), zeros=_ZERO, sympy=_selu_sympy,
               rtol=_RTOL),
    ScalarAtom("gelu", "u Φ(u)", "Φ(u) + u φ(u)",
               convex_on=(_iv(_up(-SQRT2), _down(SQRT2)),), concave_on=(_iv(-INF, -SQRT2), _iv(SQRT2, INF)),
               increasing_on=(_iv(GELU_MIN_AT[1], INF),), decreasing_on=(_iv(-INF, GELU_MIN_AT[0]),),
               f=_gelu, df=_dgelu, mp=_gelu_mp, bounds=_iv(-0.1699712075, INF), zeros=_ZERO,
               sympy=lambda sp, u: u * (1 + sp.erf(u / sp.sqrt(2))) / 2,
               rtol=1e-12),   # Φ(u/√2 rounded) loses about u²·ulp relatively for u ≪ 0
    ScalarAtom("silu", "u sigmoid(u)", "sigmoid(u)(1 + u(1 - sigmoid(u)))",
               convex_on=(_iv(-SILU_INFLECT, SILU_INFLECT),),
               concave_on=(_iv(-INF, -SILU_INFLECT - 1e-6), _iv(SILU_INFLECT + 1e-6, INF)),
               increasing_on=(_iv(SILU_MIN_AT[1], INF),), decreasing_on=(_iv(-INF, SILU_MIN_AT[0]),),
               f=_silu, df=_dsilu, mp=lambda u: u / (1 + _mp().exp(-u)), bounds=_iv(-0.2784645428, INF),
               zeros=_ZERO, sympy=lambda sp, u: u / (1 + sp.exp(-u)),
               rtol=_RTOL),
    ScalarAtom("inv_pos", "1/u", "-1/u^2",
               convex_on=(NONNEG,), concave_on=(), increasing_on=(), decreasing_on=(NONNEG,),
               f=_quiet(lambda u: 1 / u), df=_quiet(lambda u: -np.square(1 / u)), mp=lambda u: 1 / u,
               domain=NONNEG, open_at=(True, False), bounds=NONNEG, sympy=lambda sp, u: 1 / u,
               rtol=_RTOL),
    ScalarAtom("entr", "-u log(u)", "-log(u) - 1",
               convex_on=(), concave_on=(NONNEG,), increasing_on=(_iv(0.0, _E_INV_IN[0]),),
               decreasing_on=(_iv(_E_INV_IN[1], INF),),
               f=_entr, df=_quiet(lambda u: -np.log(u) - 1), mp=_entr_mp, domain=NONNEG,
               bounds=_iv(-INF, _E_INV_IN[1]), zeros=(point(0.0), point(1.0)), sympy=lambda sp, u: sp.Piecewise((-u * sp.log(u), u > 0), (0, True)),
               rtol=_RTOL),
    ScalarAtom("huber", "u^2 for |u| ≤ 1, 2|u| - 1 otherwise", "2u for |u| ≤ 1, 2 sign(u) otherwise",
               convex_on=(REALS,), concave_on=(_iv(-INF, -1.0), _iv(1.0, INF)),
               increasing_on=(NONNEG,), decreasing_on=(NONPOS,),
               f=_huber, df=lambda u: 2 * np.clip(u, -1.0, 1.0),
               mp=lambda u: u * u if abs(u) <= 1 else 2 * abs(u) - 1, bounds=NONNEG, zeros=_ZERO, sympy=lambda sp, u: sp.Min(sp.Abs(u), 1) ** 2 + 2 * sp.Max(sp.Abs(u) - 1, 0),
               rtol=_RTOL),
]}

# u^2 is the square atom; every other power is made by `power(p)`.
PARAMETRIC_ATOMS: dict[str, Callable[[float], ScalarAtom]] = {"leaky_relu": _leaky}


# -- elementwise atoms of several arguments, and reductions ------------------------------------------
@dataclass(frozen=True)
class Reduction:
    """A function of a whole vector (or of several equal-shaped arguments, elementwise).

    `monotone` is "increasing" (↑ in every entry) or "by_sign" (↑ in entries ≥ 0, ↓ in entries ≤ 0);
    for quad_over_lin it speaks of u, and `monotone_v` ("decreasing") of the scalar v.
    `image(arg_ranges, sizes)` bounds the result from each argument's range and entry count.

    >>> REDUCTIONS["sum"].image([Interval(0, 1)], [3]), REDUCTIONS["norm2"].image([Interval(-2, 1)], [4])
    (Interval(lo=0.0, hi=3.0), Interval(lo=0.0, hi=4.0))
    """

    name: str
    convex: bool
    concave: bool
    monotone: str
    image: Callable
    f: Callable                 # NumPy: values with a leading batch axis → result (maximum/minimum: several)
    arity: str = "one"          # "one" vector, "many" equal-shaped (elementwise), "quad_over_lin"
    monotone_v: str = ""        # quad_over_lin: "decreasing" in its second argument v > 0
    # mpmath: the list of entries → one number ("many": two numbers → one; quad_over_lin: (entries, v));
    # ValueError outside the domain
    mp: Callable | None = None


def _sum_image(r, n):
    return scale(r[0], n[0])


def _log_n(n: int) -> Interval:
    v = math.log(n)   # correct to an ulp; exact 0 for n = 1
    return point(v) if n == 1 else Interval(_down(v), _up(v))


def _lse_image(r, n):
    # max ≤ lse ≤ max + log n, and lse ≥ lo + log n since every entry is ≥ lo
    shifted = add(r[0], _log_n(n[0]))
    return Interval(shifted.lo, shifted.hi)


def _abs_range(r: Interval) -> Interval:
    if r.lo >= 0:
        return r
    if r.hi <= 0:
        return Interval(-r.hi, -r.lo)
    return Interval(0.0, max(-r.lo, r.hi))


def _norm_image(k_of_n):
    # ‖v‖ of n entries with |v_i| in [a, b] lies in [k(n)·a, k(n)·b]: k = n, √n, 1 for norms 1, 2, inf
    def image(r, n):
        return mul(_abs_range(r[0]), k_of_n(n[0]))
    return image


def _sqrt_n(n: int) -> Interval:
    v = math.sqrt(n)   # correctly rounded; exact for squares
    return point(v) if v * v == n else Interval(_down(v), _up(v))


def _sum_squares_image(r, n):
    a = _abs_range(r[0])
    return scale(mul(a, a), n[0])


def _quad_over_lin_image(r, n):
    ss, v = _sum_squares_image(r[:1], n[:1]), r[1]
    if v.hi <= 0:   # never in the domain v > 0
        return NONNEG
    return div(ss, Interval(max(v.lo, 0.0), v.hi))


def _maximum_image(r, n):
    return Interval(max(x.lo for x in r), max(x.hi for x in r))


def _minimum_image(r, n):
    return Interval(min(x.lo for x in r), min(x.hi for x in r))


def _flat(v):
    return v.reshape(v.shape[0], -1)


def _lse(v):
    f = _flat(v)
    m = f.max(axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)   # all -inf: exp(-inf - 0) = 0, so the result is -inf; +inf stays inf
    with np.errstate(divide="ignore"):
        return m[:, 0] + np.log(np.exp(f - m).sum(axis=1))


def _norm2(v):
    """sqrt(sum v²) scaled by the largest |v| first: no overflow of the squares (1e200), and three fast passes."""
    f = np.abs(_flat(v))
    m = f.max(axis=1, keepdims=True) if f.shape[1] else np.zeros((f.shape[0], 1))
    scale = np.where((m > 0) & np.isfinite(m), m, 1.0)
    return scale[:, 0] * np.sqrt(np.square(f / scale).sum(axis=1))


def _first_extreme(xs: list, pick_max: bool):
    """The first largest (or smallest) entry: where max and min send their gradient."""
    best = xs[0]
    for x in xs[1:]:
        if (x > best) if pick_max else (x < best):
            best = x
    return best


def _lse_mp(xs):
    m = _mp()
    top = max(xs)
    return top + m.log(m.fsum(m.exp(x - top) for x in xs))


def _quad_over_lin_mp(xs, v):
    if not v > 0:
        raise ValueError(f"the divisor {_mp().nstr(v, 17)} must be positive")
    return _mp().fsum(x * x for x in xs) / v


REDUCTIONS: dict[str, Reduction] = {r.name: r for r in [
    Reduction("sum", True, True, "increasing", _sum_image, lambda v: _flat(v).sum(axis=1),
              mp=lambda xs: _mp().fsum(xs)),
    Reduction("mean", True, True, "increasing", lambda r, n: r[0], lambda v: _flat(v).mean(axis=1),
              mp=lambda xs: _mp().fsum(xs) / len(xs)),
    Reduction("max", True, False, "increasing", lambda r, n: r[0], lambda v: _flat(v).max(axis=1),
              mp=lambda xs: _first_extreme(xs, True)),
    Reduction("min", False, True, "increasing", lambda r, n: r[0], lambda v: _flat(v).min(axis=1),
              mp=lambda xs: _first_extreme(xs, False)),
    Reduction("log_sum_exp", True, False, "increasing", _lse_image,
              _lse, mp=_lse_mp),
    Reduction("norm1", True, False, "by_sign", _norm_image(lambda n: point(float(n))),
              lambda v: np.abs(_flat(v)).sum(axis=1), mp=lambda xs: _mp().fsum(abs(x) for x in xs)),
    Reduction("norm2", True, False, "by_sign", _norm_image(_sqrt_n),
              _norm2,
              mp=lambda xs: _mp().sqrt(_mp().fsum(x * x for x in xs))),
    Reduction("norm_inf", True, False, "by_sign", _norm_image(lambda n: point(1.0)),
              lambda v: np.abs(_flat(v)).max(axis=1), mp=lambda xs: max(abs(x) for x in xs)),
    Reduction("sum_squares", True, False, "by_sign", _sum_squares_image, lambda v: (_flat(v) ** 2).sum(axis=1),
              mp=lambda xs: _mp().fsum(x * x for x in xs)),
    Reduction("quad_over_lin", True, False, "by_sign", _quad_over_lin_image,
              lambda v, w: (_flat(v) ** 2).sum(axis=1) / w, arity="quad_over_lin", monotone_v="decreasing",
              mp=_quad_over_lin_mp),
    Reduction("maximum", True, False, "increasing", _maximum_image, lambda *vs: functools.reduce(np.maximum, vs),
              arity="many", mp=lambda x, y: max(x, y)),
    Reduction("minimum", False, True, "increasing", _minimum_image, lambda *vs: functools.reduce(np.minimum, vs),
              arity="many", mp=lambda x, y: min(x, y)),
]}

BUILTIN_NAMES = sorted(set(SCALAR_ATOMS) | set(PARAMETRIC_ATOMS) | set(REDUCTIONS))
