"""The small lattices the analysis works in: intervals, curvature, monotonicity.

Everything here is a pure function on immutable values. Interval bounds are floats (±inf allowed); every
bound is the float result of an operation moved one step outward unless the operation was exact, so a
computed range always contains the true one (overflow and underflow included). Exact zeros are kept exact:
the rule "relu of a nonnegative argument is affine" depends on `0 * x` being 0.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

INF = math.inf
_MAX = sys.float_info.max
_TINY = 5e-324   # the least positive subnormal


def _down(v: float) -> float:
    """One step toward -inf, keeping 0 and infinities (a correctly rounded nonzero result keeps its sign)."""
    if v == 0 or math.isinf(v) or math.isnan(v):
        return v
    return math.nextafter(v, -INF)


def _up(v: float) -> float:
    if v == 0 or math.isinf(v) or math.isnan(v):
        return v
    return math.nextafter(v, INF)


# -- directed rounding of one operation ------------------------------------------------------------------
# Each helper returns a float on the right side of the exact result of x ∘ y for finite-or-infinite
# operands: the rounded result when it was exact, otherwise one step outward. Overflow to ±inf from finite
# operands means "beyond the largest float", so a lower bound becomes MAX (and an upper bound -MAX);
# underflow to 0 keeps the sign of the exact result, so a product of positives never gets a negative bound.
def _outward(v: float, exact: bool, positive: bool, up: bool) -> float:
    if exact:
        return v
    if math.isinf(v):   # overflow from finite operands
        return v if (v > 0) == up else math.copysign(_MAX, v)
    if v == 0:          # underflow: the exact value lies strictly between 0 and the next subnormal
        return (_TINY if up else 0.0) if positive else (0.0 if up else -_TINY)
    return math.nextafter(v, INF if up else -INF)


def _ratio_eq(pn: int, pd: int, an: int, ad: int) -> bool:
    return pn * ad == an * pd


def _add_round(x: float, y: float, up: bool) -> float:
    s = x + y
    if math.isnan(s):                     # inf + -inf: nothing is known
        return INF if up else -INF
    if math.isinf(x) or math.isinf(y):
        return s
    if math.isinf(s):
        return _outward(s, False, s > 0, up)
    t = s - x                             # TwoSum: the rounding error of x + y, exactly
    exact = (x - (s - t)) + (y - t) == 0
    return _outward(s, exact, s > 0, up)


def _mul_round(x: float, y: float, up: bool) -> float:
    if x == 0 or y == 0:                  # an exact zero times anything, even an infinite bound, is 0
        return 0.0
    p = x * y
    if math.isinf(x) or math.isinf(y):
        return p
    exact = math.isfinite(p) and p != 0 and _ratio_eq(*p.as_integer_ratio(), *_prod_ratio(x, y))
    return _outward(p, exact, (x > 0) == (y > 0), up)


def _div_round(x: float, y: float, up: bool) -> float:
    """x / y for y ≠ 0; a finite x over an infinite y gives 0, the limit (a bound of the closed hull)."""
    if x == 0:
        return 0.0
    if math.isinf(y):
        return (INF if up else -INF) if math.isinf(x) else 0.0
    q = x / y
    if math.isinf(x):
        return q
    exact = math.isfinite(q) and q != 0 and _ratio_eq(*_prod_ratio(q, y), *x.as_integer_ratio())   # q·y == x
    return _outward(q, exact, (x > 0) == (y > 0), up)


def _prod_ratio(x: float, y: float) -> tuple[int, int]:
    xn, xd = x.as_integer_ratio()
    yn, yd = y.as_integer_ratio()
    return xn * yn, xd * yd


@dataclass(frozen=True)
class Interval:
    """A closed interval [lo, hi] of the extended reals; one range shared by every entry of a node.

    >>> Interval(0, 1).within(Interval(-1, 2)), str(Interval(0, INF)), str(point(2))
    (True, '[0, inf)', '{2}')
    """

    lo: float = -INF
    hi: float = INF

    def __post_init__(self):
        # plain floats: NumPy scalars would warn on overflow and print as np.float64(...)
        lo, hi = self.lo, self.hi
        if type(lo) is not float or type(hi) is not float:
            object.__setattr__(self, "lo", float(lo))
            object.__setattr__(self, "hi", float(hi))
        if not self.lo <= self.hi:   # also false when either is nan
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
        # an infinite end is never attained: written open, as in [-1, inf)
        left = "(" if self.lo == -INF else "["
        right = ")" if self.hi == INF else "]"
        return f"{left}{fmt(self.lo)}, {fmt(self.hi)}{right}"


REALS = Interval()
NONNEG = Interval(0.0, INF)
NONPOS = Interval(-INF, 0.0)


def point(v: float) -> Interval:
    return Interval(v, v)


def enclose(q: Fraction) -> Interval:
    """The tightest float interval holding the exact rational q (a literal read as the decimal written).

    >>> enclose(Fraction(1, 10)), enclose(Fraction(1, 2))
    (Interval(lo=0.09999999999999999, hi=0.1), Interval(lo=0.5, hi=0.5))
    """
    f = float(q)   # correctly rounded; ±inf past the largest double
    if math.isinf(f):
        return Interval(_MAX, INF) if f > 0 else Interval(-INF, -_MAX)
    exact = Fraction(f)
    if exact == q:
        return point(f)
    return Interval(f, math.nextafter(f, INF)) if exact < q else Interval(math.nextafter(f, -INF), f)


def hull_of(values) -> Interval:
    """The smallest interval holding the values (NaNs ignored; the whole line when none is left).

    >>> hull_of([3.0, float("nan"), -1.0])
    Interval(lo=-1.0, hi=3.0)
    """
    values = [v for v in values if not math.isnan(v)]
    return Interval(min(values), max(values)) if values else REALS


# -- interval arithmetic (outward rounded) ------------------------------------------------------------
def add(a: Interval, b: Interval) -> Interval:
    """a + b, exact where the float sums are.

    >>> add(Interval(1, 2), Interval(3, INF))
    Interval(lo=4.0, hi=inf)
    """
    return Interval(_add_round(a.lo, b.lo, False), _add_round(a.hi, b.hi, True))


def neg(a: Interval) -> Interval:
    return Interval(-a.hi, -a.lo)


def sub(a: Interval, b: Interval) -> Interval:
    return add(a, neg(b))


def mul(a: Interval, b: Interval) -> Interval:
    """a · b from the four corner products; 0 · inf is 0 at a bound (an exact zero entry stays zero).

    >>> mul(point(0.0), REALS), mul(NONNEG, NONPOS), mul(Interval(1, 2), Interval(-3, 4))
    (Interval(lo=0.0, hi=0.0), Interval(lo=-inf, hi=0.0), Interval(lo=-6.0, hi=8.0))
    """
    corners = [(x, y, 0.0 if x == 0 or y == 0 else x * y) for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
    lo, hi = min(p for _, _, p in corners), max(p for _, _, p in corners)
    # rounding is monotone, so only corners whose rounded product ties the extreme can hold the exact one
    return Interval(min(_mul_round(x, y, False) for x, y, p in corners if p == lo),
                    max(_mul_round(x, y, True) for x, y, p in corners if p == hi))


def scale(a: Interval, n: int) -> Interval:
    """The range of a sum of n terms each in a (used by matmul and reductions).

    >>> scale(Interval(-1, 0.5), 3)
    Interval(lo=-3.0, hi=1.5)
    """
    if n == 1:
        return a
    return Interval(_mul_round(a.lo, float(n), False), _mul_round(a.hi, float(n), True))


def reciprocal(a: Interval) -> Interval:
    """The values of 1/x for the x ≠ 0 in a: [1/hi, 1/lo] on one side of 0, a half-line when a ends at 0,
    the whole line when 0 lies inside.

    >>> reciprocal(Interval(2, 4)), reciprocal(Interval(0, 4)), reciprocal(Interval(-1, 1))
    (Interval(lo=0.25, hi=0.5), Interval(lo=0.25, hi=inf), Interval(lo=-inf, hi=inf))
    """
    if a.lo > 0 or a.hi < 0:
        return Interval(_div_round(1.0, a.hi, False), _div_round(1.0, a.lo, True))
    if a.lo == 0 and a.hi > 0:
        return Interval(_div_round(1.0, a.hi, False), INF)
    if a.hi == 0 and a.lo < 0:
        return Interval(-INF, _div_round(1.0, a.lo, True))
    return REALS


def div(a: Interval, b: Interval) -> Interval:
    """a / b over the points where b ≠ 0; by the corner quotients when b is finite and excludes 0.

    >>> div(Interval(1, 3), point(2.0)), div(Interval(1, 2), Interval(0, 1))
    (Interval(lo=0.5, hi=1.5), Interval(lo=1.0, hi=inf))
    """
    if (b.lo > 0 or b.hi < 0) and math.isfinite(b.lo) and math.isfinite(b.hi):
        corners = [(x, y) for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
        return Interval(min(_div_round(x, y, False) for x, y in corners),
                        max(_div_round(x, y, True) for x, y in corners))
    return mul(a, reciprocal(b))


def widen(a: Interval, steps: int = 2) -> Interval:
    """Outward by a few ulps (off zero too), for bounds computed by library functions correct to about one ulp.

    >>> widen(point(0.0), 1)
    Interval(lo=-5e-324, hi=5e-324)
    """
    lo, hi = a.lo, a.hi
    for _ in range(steps):
        lo, hi = math.nextafter(lo, -INF), math.nextafter(hi, INF)
    return Interval(lo, hi)
# -- curvature ----------------------------------------------------------------------------------------
class Curvature(str, Enum):
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


def _sum_rule(a: Curvature, b: Curvature) -> Curvature:
    return curvature_of(a.is_convex and b.is_convex, a.is_concave and b.is_concave,
                        a is C.CONSTANT and b is C.CONSTANT)


_SUM = {(a, b): _sum_rule(a, b) for a in C for b in C}   # the rule tabulated: it runs at most nodes of a network
_FLIP = {C.CONVEX: C.CONCAVE, C.CONCAVE: C.CONVEX}


def add_curvature(a: Curvature, b: Curvature) -> Curvature:
    """Sum:  const+x = x,  affine+affine = affine,  convex+convex = convex,  convex+concave = unknown."""
    return _SUM[a, b]


def flip(a: Curvature) -> Curvature:
    """Negation (or a nonpositive factor) swaps convex and concave."""
    return _FLIP.get(a, a)


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
class Monotonicity(str, Enum):
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
class Verdict(str, Enum):
    """A verdict; equal to its JSON string (`Verdict.PROVED == "proved"`), as are Curvature and Monotonicity.

    >>> Verdict.PROVED == "proved", Curvature("convex").is_convex
    (True, True)
    """

    PROVED = "proved"
    REFUTED = "refuted"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value
