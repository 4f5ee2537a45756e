"""Interval arithmetic is sound (it holds the exact result, computed with Fractions) and keeps exact zeros;
the curvature and monotonicity tables agree with their definitions, checked on sample functions."""
from __future__ import annotations

import itertools
import math
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dcpnet.lattice import (
    INF,
    NONNEG,
    NONPOS,
    REALS,
    Curvature,
    Interval,
    Monotonicity,
    add,
    add_curvature,
    curvature_of,
    div,
    flip,
    hull_of,
    monotonicity_of,
    mul,
    neg,
    point,
    reciprocal,
    scale,
    scale_curvature,
    sub,
    widen,
)

MAX = sys.float_info.max
SPECIAL = [0.0, 5e-324, 1e-320, 1e-310, 2.2250738585072014e-308, 1e-200, 1e-150, 1e-16, 0.1, 0.5, 1.0, 2.0, 3.0,
           10.0, 1e16, 1e150, 1e200, 1e300, MAX / 2, MAX]
finite = st.one_of(
    st.sampled_from(SPECIAL + [-v for v in SPECIAL] + [-0.0]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-1000, 1000).map(float),
    st.floats(-1e-300, 1e-300),
)
bound = st.one_of(finite, finite, st.sampled_from([INF, -INF]))
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def interval_and_point(draw) -> tuple[Interval, float]:
    """An interval with at least one finite point, and a finite point of it (often an end)."""
    lo, hi = sorted([draw(bound), draw(bound)])
    assume(lo < INF and hi > -INF)
    ends = [e for e in (lo, hi) if math.isfinite(e)]
    if lo == hi:   # also [0.0, -0.0]
        return Interval(lo, hi), lo
    inner = st.floats(min_value=None if math.isinf(lo) else lo, max_value=None if math.isinf(hi) else hi,
                      allow_nan=False, allow_infinity=False)
    x = draw(st.one_of(st.sampled_from(ends), inner) if ends else inner)
    return Interval(lo, hi), x


def holds(r: Interval, exact: Fraction) -> bool:
    return r.lo <= exact <= r.hi


def F(x: float) -> Fraction:
    return Fraction(x)


# -- soundness: the computed interval holds the exact result of any points of the arguments ---------------
@SETTINGS
@given(interval_and_point(), interval_and_point())
def test_add_and_sub_hold_the_exact_result(ax, by):
    (a, x), (b, y) = ax, by
    assert holds(add(a, b), F(x) + F(y)), (a, b, x, y, add(a, b))
    assert holds(sub(a, b), F(x) - F(y)), (a, b, x, y, sub(a, b))
    assert holds(neg(a), -F(x))


@SETTINGS
@given(interval_and_point(), interval_and_point())
def test_mul_holds_the_exact_product(ax, by):
    (a, x), (b, y) = ax, by
    r = mul(a, b)
    assert holds(r, F(x) * F(y)), (a, b, x, y, r)
    assert r == mul(b, a)


@SETTINGS
@given(interval_and_point(), st.integers(1, 12), st.data())
def test_scale_holds_every_sum_of_n_terms(ax, n, data):
    a, x = ax
    ends = [e for e in (a.lo, a.hi) if math.isfinite(e)]
    terms = [x] + [data.draw(st.sampled_from(ends + [x])) for _ in range(n - 1)]
    assert holds(scale(a, n), sum(F(t) for t in terms)), (a, n, terms, scale(a, n))


@SETTINGS
@given(interval_and_point(), interval_and_point())
def test_reciprocal_and_div_hold_the_exact_quotient(ax, by):
    (a, x), (b, y) = ax, by
    assume(y != 0)
    assert holds(reciprocal(b), 1 / F(y)), (b, y, reciprocal(b))
    assert holds(div(a, b), F(x) / F(y)), (a, b, x, y, div(a, b))


@SETTINGS
@given(interval_and_point(), st.integers(0, 4))
def test_widen_contains_its_argument(ax, steps):
    a, x = ax
    w = widen(a, steps)
    assert a.within(w) and holds(w, F(x))
    if steps and math.isfinite(a.lo):
        assert w.lo < a.lo


@SETTINGS
@given(finite, finite)
def test_single_operations_are_rounded_by_at_most_one_step(x, y):
    """Completeness: a result is the float result or its neighbour (never a needlessly wide interval)."""
    for op, exact in ((add, x + y), (mul, x * y)):
        if not math.isfinite(exact) or exact == 0:
            continue
        r = op(point(x), point(y))
        assert math.nextafter(exact, -INF) <= r.lo <= exact <= r.hi <= math.nextafter(exact, INF)


@SETTINGS
@given(st.lists(st.floats(allow_nan=True), max_size=6))
def test_hull_of_holds_every_value(values):
    h = hull_of(values)
    assert all(h.lo <= v <= h.hi for v in values if not math.isnan(v))


# -- exactness ------------------------------------------------------------------------------------------
@SETTINGS
@given(interval_and_point())
def test_exact_zeros_stay_exact(ax):
    a, _ = ax
    zero = point(0.0)
    assert mul(zero, a) == zero and mul(a, zero) == zero and mul(point(-0.0), a) == zero
    assert scale(zero, 7) == zero and add(zero, zero) == zero
    if a.lo > 0 or a.hi < 0:
        assert div(zero, a) == zero


def test_signs_of_half_lines_are_exact():
    assert mul(NONNEG, NONNEG) == NONNEG and mul(NONPOS, NONPOS) == NONNEG
    assert mul(NONNEG, NONPOS) == NONPOS and mul(REALS, NONNEG) == REALS
    assert mul(point(0.0), REALS) == point(0.0) and mul(Interval(0.0, 2.0), Interval(3.0, INF)) == NONNEG
    assert add(NONNEG, NONNEG) == NONNEG and scale(NONNEG, 64) == NONNEG and scale(NONPOS, 3) == NONPOS
    assert reciprocal(Interval(0.0, 4.0)) == Interval(0.25, INF) and reciprocal(NONPOS) == NONPOS
    assert reciprocal(Interval(-1.0, 1.0)) == REALS and reciprocal(point(0.0)) == REALS
    assert div(Interval(1.0, 2.0), Interval(0.0, 1.0)) == Interval(1.0, INF)


def test_exact_float_results_are_not_widened():
    assert add(Interval(1.0, 2.0), Interval(3.0, 4.0)) == Interval(4.0, 6.0)
    assert mul(Interval(-1.5, 2.0), Interval(3.0, 4.0)) == Interval(-6.0, 8.0)
    assert div(Interval(1.0, 3.0), point(4.0)) == Interval(0.25, 0.75)
    assert scale(Interval(-0.5, 1.25), 4) == Interval(-2.0, 5.0)
    third = reciprocal(point(3.0))
    assert third.lo < Fraction(1, 3) < third.hi and third.hi <= math.nextafter(math.nextafter(third.lo, INF), INF)


def test_underflow_and_overflow_keep_the_sign_and_stay_finite_below():
    tiny = point(1e-200)
    r = mul(tiny, tiny)                              # 1e-400 rounds to 0: keep it ≥ 0 and the bound above > 0
    assert r.lo == 0 and r.hi > 0
    r = mul(tiny, point(-1e-200))
    assert r.hi == 0 and r.lo < 0
    big = mul(point(1e200), point(1e200))            # 1e400 is finite: the lower bound is the largest float
    assert big == Interval(MAX, INF)
    assert add(point(MAX), point(MAX)) == Interval(MAX, INF)
    assert add(point(INF), point(-INF)) == REALS     # inf - inf: anything


# -- curvature and monotonicity: the tables against their definitions -----------------------------------
C = Curvature
XS = np.linspace(-2, 2, 41)
CONST = [XS * 0, XS * 0 + 1.5, XS * 0 - 2]
AFF = CONST + [XS, -2 * XS + 1]
VEX = AFF + [XS ** 2, np.exp(XS), np.abs(XS)]
CAVE = AFF + [-v for v in VEX]
SAMPLES = {C.CONSTANT: CONST, C.AFFINE: AFF, C.CONVEX: VEX, C.CONCAVE: CAVE, C.UNKNOWN: VEX + CAVE + [XS ** 3]}
SUBCLASSES = {C.CONSTANT: [], C.AFFINE: [C.CONSTANT], C.CONVEX: [C.CONSTANT, C.AFFINE],
              C.CONCAVE: [C.CONSTANT, C.AFFINE], C.UNKNOWN: [C.CONSTANT, C.AFFINE, C.CONVEX, C.CONCAVE]}


def member(values: np.ndarray, c: Curvature) -> bool:
    """Does a function, sampled on XS, belong to class c (by definition, to a float tolerance)?"""
    d2 = values[:-2] - 2 * values[1:-1] + values[2:]
    tol = 1e-9
    return {C.CONSTANT: np.ptp(values) <= tol, C.AFFINE: bool(np.all(np.abs(d2) <= tol)),
            C.CONVEX: bool(np.all(d2 >= -tol)), C.CONCAVE: bool(np.all(d2 <= tol)), C.UNKNOWN: True}[c]


def tight(results: list[np.ndarray], c: Curvature) -> bool:
    """Every smaller class is broken by some sample: the table could not have said more."""
    return all(any(not member(v, sub) for v in results) for sub in SUBCLASSES[c])


def test_curvature_order_flags():
    for c in C:
        assert c.is_affine == (c in (C.CONSTANT, C.AFFINE))
        assert c.is_convex == (c.is_affine or c is C.CONVEX) and c.is_concave == (c.is_affine or c is C.CONCAVE)


@pytest.mark.parametrize("a, b", list(itertools.product(C, C)))
def test_add_curvature_is_sound_and_tight(a, b):
    c = add_curvature(a, b)
    sums = [f + g for f in SAMPLES[a] for g in SAMPLES[b]]
    assert all(member(s, c) for s in sums), (a, b, c)
    assert tight(sums, c), (a, b, c)
    assert c == add_curvature(b, a)


@pytest.mark.parametrize("a", list(C))
def test_flip_is_negation(a):
    c = flip(a)
    assert all(member(-f, c) for f in SAMPLES[a]) and tight([-f for f in SAMPLES[a]], c)
    assert flip(c) == a


FACTORS = [point(0.0), Interval(0.0, 2.0), Interval(1.0, 3.0), Interval(-3.0, -1.0), Interval(-2.0, 0.0),
           Interval(-1.0, 1.0), NONNEG, NONPOS, REALS, point(-0.5)]


def _factor_points(r: Interval) -> list[float]:
    lo, hi = max(r.lo, -1e3), min(r.hi, 1e3)
    return sorted({lo, hi, (lo + hi) / 2} | ({0.0} if lo <= 0 <= hi else set()))


@pytest.mark.parametrize("a, factor", list(itertools.product(C, FACTORS)), ids=str)
def test_scale_curvature_is_sound_and_tight(a, factor):
    c = scale_curvature(a, factor)
    products = [k * f for k in _factor_points(factor) for f in SAMPLES[a]]
    assert all(member(p, c) for p in products), (a, factor, c)
    assert tight(products, c), (a, factor, c)


def test_curvature_of_and_monotonicity_of_truth_tables():
    assert curvature_of(True, True, constant=True) is C.CONSTANT
    table = {(True, True): C.AFFINE, (True, False): C.CONVEX, (False, True): C.CONCAVE, (False, False): C.UNKNOWN}
    for (vex, cave), want in table.items():
        got = curvature_of(vex, cave)
        assert got is want and got.is_convex == vex and got.is_concave == cave
    M = Monotonicity
    want = {(True, True): M.CONSTANT, (True, False): M.INCREASING, (False, True): M.DECREASING,
            (False, False): M.NONE}
    assert all(monotonicity_of(i, d) is m for (i, d), m in want.items())


def test_interval_basics():
    assert Interval(0, 1).within(REALS) and not REALS.within(NONNEG)
    assert NONNEG.meet(NONPOS) == point(0.0) and Interval(1, 2).meet(Interval(3, 4)) is None
    assert NONNEG.hull(NONPOS) == REALS and NONNEG.as_list() == [0.0, None]
    assert str(point(2.0)) == "{2}" and str(Interval(-INF, 1.5)) == "(-inf, 1.5]"
    assert type(Interval(np.float64(1.0), np.float64(2.0)).lo) is float
    with pytest.raises(ValueError):
        Interval(2.0, 1.0)
    with pytest.raises(ValueError):
        Interval(math.nan, 1.0)
