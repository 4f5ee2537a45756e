"""The small lattices the analysis works in: intervals, curvature, monotonicity.

Everything here is a pure function on immutable values. Interval bounds are floats (±inf allowed) and are
rounded outward after every inexact operation, so a computed range always contains the true one. Exact
zeros are kept exact: the rule "relu of a nonnegative argument is affine" depends on `0 * x` being 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

INF = math.inf


def _down(v: float) -> float:
    """One step toward -inf, keeping 0 and infinities (a correctly rounded nonzero result keeps its sign)."""
    if v == 0 or math.isinf(v) or math.isnan(v):
        return v
    return math.nextafter(v, -INF)


def _up(v: float) -> float:
    if v == 0 or math.isinf(v) or math.isnan(v):
        return v
    return math.nextafter(v, INF)


@dataclass(frozen=True)
class Interval:
    """A closed interval [lo, hi] of the extended reals; one range shared by every entry of a node."""

    lo: float = -INF
    hi: float = INF

    def __post_init__(self):
        if math.isnan(self.lo) or math.isnan(self.hi) or self.lo > self.hi:
            raise ValueError(f"not an interval: [{self.lo}, {self.hi}]")

    # -- questions ---------------------------------------------------------------------------------
    @property
    def nonneg(self) -> bool:
        return self.lo >= 0

    @property
    def nonpos(self) -> bool:
        return self.hi <= 0

    @property
    def positive(self) -> bool:
        return self.lo > 0

    @property
    def is_point(self) -> bool:
        return self.lo == self.hi

    def within(self, other: Interval) -> bool:
        """True when self ⊆ other."""
        return other.lo <= self.lo and self.hi <= other.hi

    def meet(self, other: Interval) -> Interval | None:
        lo, hi = max(self.lo, other.lo), min(self.hi, other.hi)
        return Interval(lo, hi) if lo <= hi else None

    def hull(self, other: Interval) -> Interval:
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    def as_list(self) -> list:
        """JSON form: infinite bounds become null."""
        return [None if math.isinf(self.lo) else self.lo, None if math.isinf(self.hi) else self.hi]

    def __str__(self) -> str:
        def fmt(v: float) -> str:
            if math.isinf(v):
                return "inf" if v > 0 else "-inf"
            return f"{v:.6g}"

        if self.is_point:
            return "{" + fmt(self.lo) + "}"
        return f"[{fmt(self.lo)}, {fmt(self.hi)}]"


REALS = Interval()
NONNEG = Interval(0.0, INF)
NONPOS = Interval(-INF, 0.0)


def point(v: float) -> Interval:
    return Interval(v, v)


def hull_of(values) -> Interval:
    values = [v for v in values if not math.isnan(v)]
    return Interval(min(values), max(values))


# -- interval arithmetic (outward rounded) ------------------------------------------------------------
def add(a: Interval, b: Interval) -> Interval:
    # inf + -inf cannot happen for a lower bound sum since lower bounds are never +inf
    return Interval(_down(a.lo + b.lo), _up(a.hi + b.hi))


def neg(a: Interval) -> Interval:
    return Interval(-a.hi, -a.lo)


def sub(a: Interval, b: Interval) -> Interval:
    return add(a, neg(b))


def _mul_bound(x: float, y: float) -> float:
    # 0 * inf is 0 here: an entry that is exactly zero contributes zero whatever the other factor
    if x == 0 or y == 0:
        return 0.0
    return x * y


def mul(a: Interval, b: Interval) -> Interval:
    products = [_mul_bound(x, y) for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
    lo, hi = min(products), max(products)
    # a zero product of nonzero bounds is an underflow: widen it off zero
    if lo == 0 and 0 not in (a.lo, a.hi, b.lo, b.hi):
        lo = -5e-324 if any(p < 0 or p == 0 for p in products) else lo
    return Interval(_down(lo), _up(hi))


def scale(a: Interval, n: int) -> Interval:
    """The range of a sum of n terms each in a (used by matmul and reductions)."""
    if n == 1:
        return a
    return Interval(_down(_mul_bound(a.lo, n)), _up(_mul_bound(a.hi, n)))


def reciprocal(a: Interval) -> Interval:
    """1/a when a excludes zero (both signs give [1/hi, 1/lo]); the whole line otherwise."""
    if a.lo > 0 or a.hi < 0:
        def inv(v: float) -> float:
            return 0.0 if math.isinf(v) else 1 / v
        return Interval(_down(inv(a.hi)), _up(inv(a.lo)))
    return REALS


def div(a: Interval, b: Interval) -> Interval:
    return mul(a, reciprocal(b))


def widen(a: Interval, steps: int = 2) -> Interval:
    """Outward by a few ulps, for bounds computed by library functions correct to about one ulp."""
    lo, hi = a.lo, a.hi
    for _ in range(steps):
        lo, hi = _down(lo), _up(hi)
    return Interval(lo, hi)


# -- curvature ----------------------------------------------------------------------------------------
class Curvature(Enum):
    CONSTANT = "constant"
    AFFINE = "affine"
    CONVEX = "convex"
    CONCAVE = "concave"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value

    @property
    def is_convex(self) -> bool:
        return self in (Curvature.CONSTANT, Curvature.AFFINE, Curvature.CONVEX)

    @property
    def is_concave(self) -> bool:
        return self in (Curvature.CONSTANT, Curvature.AFFINE, Curvature.CONCAVE)

    @property
    def is_affine(self) -> bool:
        return self in (Curvature.CONSTANT, Curvature.AFFINE)


C = Curvature


def curvature_of(convex: bool, concave: bool, constant: bool = False) -> Curvature:
    """The class from the two facts:  convex∧concave → affine,  convex → convex,  concave → concave."""
    if constant:
        return C.CONSTANT
    if convex and concave:
        return C.AFFINE
    if convex:
        return C.CONVEX
    if concave:
        return C.CONCAVE
    return C.UNKNOWN


def add_curvature(a: Curvature, b: Curvature) -> Curvature:
    """Sum:  const+x = x,  affine+affine = affine,  convex+convex = convex,  convex+concave = unknown."""
    return curvature_of(a.is_convex and b.is_convex, a.is_concave and b.is_concave,
                        a is C.CONSTANT and b is C.CONSTANT)


def flip(a: Curvature) -> Curvature:
    """Negation (or a nonpositive factor) swaps convex and concave."""
    return {C.CONVEX: C.CONCAVE, C.CONCAVE: C.CONVEX}.get(a, a)


def scale_curvature(a: Curvature, factor: Interval) -> Curvature:
    """c·g for a constant c in `factor`: keeps for c ≥ 0, flips for c ≤ 0, needs affine g otherwise."""
    if factor.lo == 0 and factor.hi == 0:
        return C.CONSTANT
    if factor.nonneg:
        return a
    if factor.nonpos:
        return flip(a)
    return a if a.is_affine else C.UNKNOWN


# -- monotonicity -------------------------------------------------------------------------------------
class Monotonicity(Enum):
    INCREASING = "nondecreasing"
    DECREASING = "nonincreasing"
    CONSTANT = "constant"
    NONE = "not monotone"

    def __str__(self) -> str:
        return self.value


def monotonicity_of(increasing: bool, decreasing: bool) -> Monotonicity:
    if increasing and decreasing:
        return Monotonicity.CONSTANT
    if increasing:
        return Monotonicity.INCREASING
    if decreasing:
        return Monotonicity.DECREASING
    return Monotonicity.NONE


# -- verdicts -----------------------------------------------------------------------------------------
class Verdict(Enum):
    PROVED = "proved"
    REFUTED = "refuted"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value
