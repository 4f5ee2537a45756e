"""The atom library as one table of data.

A scalar atom (applied elementwise) is described by facts on intervals: where it is convex, concave,
nondecreasing, nonincreasing, and where it is defined. The analysis answers "convex on the box of the
argument's range?" by asking whether the box lies inside one of the listed intervals, so a wrong row is the
only way to a wrong proof, and `tests/test_atoms.py` checks every row against numbers.

Interval endpoints that are irrational (√2 for gelu, 1/e for entr) are rounded *inward*, so each listed
interval is a subset of the true one; the gaps between pieces are covered by the global range hint.

User atoms (`atom NAME(u) = …`) become the same records (see `symbolic.py`).
"""
from __future__ import annotations

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
    hull_of,
    monotonicity_of,
    point,
    widen,
)

Intervals = tuple[Interval, ...]


@dataclass(frozen=True)
class ScalarAtom:
    """Facts about a scalar function f(u), each a tuple of maximal intervals (subsets of the truth)."""

    name: str
    formula: str                  # f in words, e.g. "log(1 + exp(u))"
    derivative: str               # f' in words, used to explain failures, e.g. "2u"
    convex_on: Intervals
    concave_on: Intervals
    increasing_on: Intervals
    decreasing_on: Intervals
    f: Callable                   # NumPy, elementwise
    df: Callable                  # NumPy derivative (a subgradient at kinks: the left one)
    mp: Callable                  # one mpmath number to one mpmath number
    domain: Interval = REALS
    open_at: tuple[bool, bool] = (False, False)   # domain excludes its lower / upper endpoint
    bounds: Interval = REALS      # the image of the whole domain (a hull), used where pieces leave gaps
    params: tuple = field(default=())  # constants a factory baked in, e.g. (0.1,) for leaky_relu(u, 0.1)

    # -- questions on a box (the argument's range, already met with the domain) -------------------
    def convex_on_box(self, box: Interval) -> bool:
        return _covered(box, self.convex_on)

    def concave_on_box(self, box: Interval) -> bool:
        return _covered(box, self.concave_on)

    def monotonicity_on_box(self, box: Interval) -> Monotonicity:
        return monotonicity_of(_covered(box, self.increasing_on), _covered(box, self.decreasing_on))

    def defined_on(self, box: Interval) -> bool:
        lo_ok = box.lo > self.domain.lo if self.open_at[0] else box.lo >= self.domain.lo
        hi_ok = box.hi < self.domain.hi if self.open_at[1] else box.hi <= self.domain.hi
        return lo_ok and hi_ok

    def image(self, box: Interval) -> Interval:
        """A sound hull of f(box): endpoint values on each monotone piece, the global bounds on gaps."""
        box = box.meet(self.domain) or self.domain
        cuts = sorted({box.lo, box.hi} | {e for iv in self.increasing_on + self.decreasing_on
                                           for e in (iv.lo, iv.hi) if box.lo < e < box.hi})
        lo, hi = INF, -INF
        for a, b in zip(cuts, cuts[1:] or cuts):
            piece = Interval(a, b)
            ends = widen(hull_of([self._value(a), self._value(b)]))
            if _covered(piece, self.increasing_on) or _covered(piece, self.decreasing_on):
                piece_image = ends
            else:
                piece_image = self._gap_image(a, b, ends)
            lo, hi = min(lo, piece_image.lo), max(hi, piece_image.hi)
        return Interval(max(lo, self.bounds.lo), min(hi, self.bounds.hi))

    def _gap_image(self, a: float, b: float, ends: Interval) -> Interval:
        """A piece between two monotone ones brackets one extremum: rising then falling holds a maximum."""
        up_then_down = _covered(point(a), self.increasing_on) and _covered(point(b), self.decreasing_on)
        down_then_up = _covered(point(a), self.decreasing_on) and _covered(point(b), self.increasing_on)
        lo = ends.lo if up_then_down else self.bounds.lo
        hi = ends.hi if down_then_up else self.bounds.hi
        return Interval(lo, hi)

    def _value(self, u: float) -> float:
        with np.errstate(all="ignore"):
            v = float(self.f(np.float64(u)))
        if math.isnan(v):  # a limit at an open end, e.g. log at 0: fall back to the global bound
            return self.bounds.lo if u <= self.domain.lo else self.bounds.hi
        return v


def _covered(box: Interval, pieces: Intervals) -> bool:
    return any(box.within(p) for p in pieces)


def _iv(lo: float, hi: float) -> Interval:
    return Interval(lo, hi)


# -- NumPy and mpmath pieces --------------------------------------------------------------------------
def _mp():
    import mpmath  # imported lazily: only witnesses need it

    return mpmath


def _sigmoid(u):
    return np.where(u >= 0, 1 / (1 + np.exp(-np.abs(u))), np.exp(-np.abs(u)) / (1 + np.exp(-np.abs(u))))


def _softplus(u):
    return np.logaddexp(0, u)


def _erf(u):
    # vectorised erf without scipy: math.erf is exact to an ulp and the evaluator batches anyway
    return np.vectorize(math.erf, otypes=[float])(u)


def _phi(u):
    return np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)


def _Phi(u):
    return 0.5 * (1 + _erf(u / math.sqrt(2)))


SELU_L, SELU_A = 1.0507009873554805, 1.6732632423543772
SQRT2 = math.sqrt(2)
# gelu'(u) = Φ(u) + uφ(u) = 0 and silu'(u) = σ(u)(1 + u(1-σ(u))) = 0 at one point each; silu'' = 0 at ±c.
GELU_MIN_AT = (-0.7517916, -0.7517915)   # bracket of the root
SILU_MIN_AT = (-1.2784645, -1.2784645 + 1e-7)
SILU_INFLECT = 2.3993572                 # silu'' = 0 at ±2.39935728...; this is just inside


def _leaky(a: float) -> ScalarAtom:
    # two affine pieces meeting at 0 with slopes a (left) and 1 (right): convex iff a ≤ 1
    pieces = (NONPOS, NONNEG)
    return ScalarAtom(
        name="leaky_relu", formula=f"leaky_relu(u, {a:g})", derivative=f"{a:g} for u < 0, 1 for u > 0",
        convex_on=(REALS,) if a <= 1 else pieces,
        concave_on=(REALS,) if a >= 1 else pieces,
        increasing_on=(REALS,) if a >= 0 else (NONNEG,),
        decreasing_on=(NONPOS,) if a <= 0 else (),
        f=lambda u: np.where(u > 0, u, a * u),
        df=lambda u: np.where(u > 0, 1.0, a),
        mp=lambda u: u if u > 0 else a * u,
        params=(a,),
    )


def power(p: float) -> ScalarAtom:
    """u^p, by cases on p as in the SPEC; for p < 0 the domain is u > 0 (as in CVXPY)."""
    f = (lambda u: np.power(u, p))
    df = (lambda u: p * np.power(u, p - 1))
    mp = (lambda u: u ** (int(p) if float(p).is_integer() else _mp().mpf(p)))
    common = dict(name="power", formula=f"u^{p:g}", derivative=f"{p:g}·u^{p - 1:g}", f=f, df=df, mp=mp,
                  params=(p,))
    is_int = float(p).is_integer()
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


def _entr_mp(u):
    return -u * _mp().log(u) if u > 0 else _mp().mpf(0)


_E_INV = 1 / math.e

SCALAR_ATOMS: dict[str, ScalarAtom] = {a.name: a for a in [
    ScalarAtom("relu", "max(u, 0)", "0 for u < 0, 1 for u > 0",
               convex_on=(REALS,), concave_on=(NONPOS, NONNEG), increasing_on=(REALS,), decreasing_on=(NONPOS,),
               f=lambda u: np.maximum(u, 0.0), df=lambda u: (u > 0).astype(float),
               mp=lambda u: u if u > 0 else 0 * u, bounds=NONNEG),
    ScalarAtom("abs", "|u|", "sign(u)",
               convex_on=(REALS,), concave_on=(NONPOS, NONNEG), increasing_on=(NONNEG,), decreasing_on=(NONPOS,),
               f=np.abs, df=np.sign, mp=abs, bounds=NONNEG),
    ScalarAtom("square", "u^2", "2u",
               convex_on=(REALS,), concave_on=(), increasing_on=(NONNEG,), decreasing_on=(NONPOS,),
               f=np.square, df=lambda u: 2 * u, mp=lambda u: u * u, bounds=NONNEG),
    ScalarAtom("sqrt", "sqrt(u)", "1/(2 sqrt(u))",
               convex_on=(), concave_on=(NONNEG,), increasing_on=(NONNEG,), decreasing_on=(),
               f=np.sqrt, df=lambda u: 0.5 / np.sqrt(u), mp=lambda u: _mp().sqrt(u),
               domain=NONNEG, bounds=NONNEG),
    ScalarAtom("exp", "exp(u)", "exp(u)",
               convex_on=(REALS,), concave_on=(), increasing_on=(REALS,), decreasing_on=(),
               f=np.exp, df=np.exp, mp=lambda u: _mp().exp(u), bounds=NONNEG),
    ScalarAtom("log", "log(u)", "1/u",
               convex_on=(), concave_on=(NONNEG,), increasing_on=(NONNEG,), decreasing_on=(),
               f=np.log, df=lambda u: 1 / u, mp=lambda u: _mp().log(u),
               domain=NONNEG, open_at=(True, False)),
    ScalarAtom("softplus", "log(1 + exp(u))", "sigmoid(u)",
               convex_on=(REALS,), concave_on=(), increasing_on=(REALS,), decreasing_on=(),
               f=_softplus, df=_sigmoid, mp=lambda u: _mp().log1p(_mp().exp(u)), bounds=NONNEG),
    ScalarAtom("sigmoid", "1/(1 + exp(-u))", "sigmoid(u)(1 - sigmoid(u))",
               convex_on=(NONPOS,), concave_on=(NONNEG,), increasing_on=(REALS,), decreasing_on=(),
               f=_sigmoid, df=lambda u: _sigmoid(u) * (1 - _sigmoid(u)),
               mp=lambda u: 1 / (1 + _mp().exp(-u)), bounds=_iv(0.0, 1.0)),
    ScalarAtom("tanh", "tanh(u)", "1 - tanh(u)^2",
               convex_on=(NONPOS,), concave_on=(NONNEG,), increasing_on=(REALS,), decreasing_on=(),
               f=np.tanh, df=lambda u: 1 - np.tanh(u) ** 2, mp=lambda u: _mp().tanh(u), bounds=_iv(-1.0, 1.0)),
    ScalarAtom("elu", "u for u > 0, exp(u) - 1 otherwise", "1 for u > 0, exp(u) otherwise",
               convex_on=(REALS,), concave_on=(NONNEG,), increasing_on=(REALS,), decreasing_on=(),
               f=lambda u: np.where(u > 0, u, np.expm1(np.minimum(u, 0))),
               df=lambda u: np.where(u > 0, 1.0, np.exp(np.minimum(u, 0))),
               mp=lambda u: u if u > 0 else _mp().expm1(u), bounds=_iv(-1.0, INF)),
    ScalarAtom("selu", "λu for u > 0, λα(exp(u) - 1) otherwise", "λ for u > 0, λα exp(u) otherwise",
               convex_on=(NONPOS, NONNEG), concave_on=(NONNEG,), increasing_on=(REALS,), decreasing_on=(),
               f=lambda u: SELU_L * np.where(u > 0, u, SELU_A * np.expm1(np.minimum(u, 0))),
               df=lambda u: SELU_L * np.where(u > 0, 1.0, SELU_A * np.exp(np.minimum(u, 0))),
               mp=lambda u: SELU_L * (u if u > 0 else SELU_A * _mp().expm1(u)),
               bounds=_iv(-SELU_L * SELU_A * (1 + 1e-15), INF)),
    ScalarAtom("gelu", "u Φ(u)", "Φ(u) + u φ(u)",
               convex_on=(_iv(_up(-SQRT2), _down(SQRT2)),), concave_on=(_iv(-INF, -1.4142136), _iv(1.4142136, INF)),
               increasing_on=(_iv(GELU_MIN_AT[1], INF),), decreasing_on=(_iv(-INF, GELU_MIN_AT[0]),),
               f=lambda u: u * _Phi(u), df=lambda u: _Phi(u) + u * _phi(u),
               mp=lambda u: u * _mp().ncdf(u), bounds=_iv(-0.17, INF)),
    ScalarAtom("silu", "u sigmoid(u)", "sigmoid(u)(1 + u(1 - sigmoid(u)))",
               convex_on=(_iv(-SILU_INFLECT, SILU_INFLECT),),
               concave_on=(_iv(-INF, -SILU_INFLECT - 1e-6), _iv(SILU_INFLECT + 1e-6, INF)),
               increasing_on=(_iv(SILU_MIN_AT[1], INF),), decreasing_on=(_iv(-INF, SILU_MIN_AT[0]),),
               f=lambda u: u * _sigmoid(u), df=lambda u: _sigmoid(u) * (1 + u * (1 - _sigmoid(u))),
               mp=lambda u: u / (1 + _mp().exp(-u)), bounds=_iv(-0.28, INF)),
    ScalarAtom("inv_pos", "1/u", "-1/u^2",
               convex_on=(NONNEG,), concave_on=(), increasing_on=(), decreasing_on=(NONNEG,),
               f=lambda u: 1 / u, df=lambda u: -1 / (u * u), mp=lambda u: 1 / u,
               domain=NONNEG, open_at=(True, False), bounds=NONNEG),
    ScalarAtom("entr", "-u log(u)", "-log(u) - 1",
               convex_on=(), concave_on=(NONNEG,), increasing_on=(_iv(0.0, _down(_E_INV)),),
               decreasing_on=(_iv(_up(_E_INV), INF),),
               f=lambda u: -u * np.log(np.where(u > 0, u, 1.0)),
               df=lambda u: -np.log(u) - 1, mp=_entr_mp, domain=NONNEG, bounds=_iv(-INF, _up(_E_INV))),
    ScalarAtom("huber", "u^2 for |u| ≤ 1, 2|u| - 1 otherwise", "2u for |u| ≤ 1, 2 sign(u) otherwise",
               convex_on=(REALS,), concave_on=(_iv(-INF, -1.0), _iv(1.0, INF)),
               increasing_on=(NONNEG,), decreasing_on=(NONPOS,),
               f=lambda u: np.where(np.abs(u) <= 1, u * u, 2 * np.abs(u) - 1),
               df=lambda u: np.clip(2 * u, -2, 2),
               mp=lambda u: u * u if abs(u) <= 1 else 2 * abs(u) - 1, bounds=NONNEG),
]}

# u^2 is the square atom; every other power is made by `power(p)`.
PARAMETRIC_ATOMS: dict[str, Callable[[float], ScalarAtom]] = {"leaky_relu": _leaky}


# -- elementwise atoms of several arguments, and reductions ------------------------------------------
@dataclass(frozen=True)
class Reduction:
    """A function of a whole vector (or of several equal-shaped arguments, elementwise).

    `monotone` is "increasing" (↑ in every entry) or "by_sign" (↑ in entries ≥ 0, ↓ in entries ≤ 0).
    `image(arg_ranges, sizes)` bounds the result from each argument's range and entry count.
    """

    name: str
    convex: bool
    concave: bool
    monotone: str
    image: Callable
    f: Callable                 # NumPy: values with a leading batch axis → result
    arity: str = "one"          # "one" vector, "many" equal-shaped (elementwise), "quad_over_lin"


def _sum_image(r, n):
    from .lattice import scale

    return scale(r[0], n[0])


def _lse_image(r, n):
    return Interval(r[0].lo, _up(r[0].hi + math.log(n[0])) if n[0] > 1 else r[0].hi)


def _abs_range(r: Interval) -> Interval:
    if r.lo >= 0:
        return r
    if r.hi <= 0:
        return Interval(-r.hi, -r.lo)
    return Interval(0.0, max(-r.lo, r.hi))


def _norm_image(k_of_n):
    def image(r, n):
        a, k = _abs_range(r[0]), k_of_n(n[0])
        return Interval(_down(a.lo * k), _up(a.hi * k))
    return image


def _sum_squares_image(r, n):
    a = _abs_range(r[0])
    return Interval(_down(a.lo * a.lo * n[0]), _up(a.hi * a.hi * n[0]))


def _quad_over_lin_image(r, n):
    a, v = _abs_range(r[0]), r[1]
    if v.lo <= 0:
        return NONNEG
    low = 0.0 if v.hi == INF else a.lo * a.lo * n[0] / v.hi
    return Interval(_down(low), _up(a.hi * a.hi * n[0] / v.lo))


def _maximum_image(r, n):
    return Interval(max(x.lo for x in r), max(x.hi for x in r))


def _minimum_image(r, n):
    return Interval(min(x.lo for x in r), min(x.hi for x in r))


def _flat(v):
    return v.reshape(v.shape[0], -1)


REDUCTIONS: dict[str, Reduction] = {r.name: r for r in [
    Reduction("sum", True, True, "increasing", _sum_image, lambda v: _flat(v).sum(axis=1)),
    Reduction("mean", True, True, "increasing", lambda r, n: r[0], lambda v: _flat(v).mean(axis=1)),
    Reduction("max", True, False, "increasing", lambda r, n: r[0], lambda v: _flat(v).max(axis=1)),
    Reduction("min", False, True, "increasing", lambda r, n: r[0], lambda v: _flat(v).min(axis=1)),
    Reduction("log_sum_exp", True, False, "increasing", _lse_image,
              lambda v: np.logaddexp.reduce(_flat(v), axis=1)),
    Reduction("norm1", True, False, "by_sign", _norm_image(lambda n: n), lambda v: np.abs(_flat(v)).sum(axis=1)),
    Reduction("norm2", True, False, "by_sign", _norm_image(math.sqrt), lambda v: np.sqrt((_flat(v) ** 2).sum(axis=1))),
    Reduction("norm_inf", True, False, "by_sign", _norm_image(lambda n: 1), lambda v: np.abs(_flat(v)).max(axis=1)),
    Reduction("sum_squares", True, False, "by_sign", _sum_squares_image, lambda v: (_flat(v) ** 2).sum(axis=1)),
    Reduction("quad_over_lin", True, False, "by_sign", _quad_over_lin_image,
              lambda v, w: (_flat(v) ** 2).sum(axis=1) / w, arity="quad_over_lin"),
    Reduction("maximum", True, False, "increasing", _maximum_image, None, arity="many"),
    Reduction("minimum", False, True, "increasing", _minimum_image, None, arity="many"),
]}

BUILTIN_NAMES = sorted(set(SCALAR_ATOMS) | set(PARAMETRIC_ATOMS) | set(REDUCTIONS))
