"""Every row of the atom table checked against numbers (STYLE.md: one parametrised test per kind of fact).

The truth is the row's mpmath function at 40 digits: the derivative against central differences, the
NumPy f against mpmath, monotone pieces against sorted samples and the sign of f', curvature pieces against
midpoint (Jensen) inequalities and second differences, `image` against sampled boxes (soundness), `bounds`,
`zeros` and `defined_on` against the domain, and the SPEC's table against the rows (completeness).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from dcpnet.atoms import (
    BUILTIN_NAMES,
    PARAMETRIC_ATOMS,
    REDUCTIONS,
    SCALAR_ATOMS,
    ScalarAtom,
    power,
)
from dcpnet.lattice import INF, NONNEG, NONPOS, REALS, Interval, Monotonicity, point

DPS = 40
MAX = 1.7976931348623157e308
TINY_VALUE = 1e-290          # below this |f|, the NumPy f is trusted to an absolute error only (atoms.py)

RECORDS = ([(name, rec) for name, rec in SCALAR_ATOMS.items()]
           + [(f"power({p:g})", power(p)) for p in (2, 3, 4, 0.5, 1.5, -1, -2, -0.5, 1, 0)]
           + [(f"leaky_relu({a:g})", PARAMETRIC_ATOMS["leaky_relu"](a)) for a in (0.1, 0, -0.5, 1, 2)])
IDS = [name for name, _ in RECORDS]
ROWS = [rec for _, rec in RECORDS]


@pytest.fixture(autouse=True)
def _digits():
    with mpmath.workdps(DPS):
        yield


def _seed(rec: ScalarAtom, salt: int = 0) -> np.random.Generator:
    key = f"{rec.name}{rec.params}{salt}"
    return np.random.default_rng(sum(ord(c) * (i + 1) for i, c in enumerate(key)))


# -- sampling --------------------------------------------------------------------------------------------
def _specials(rec: ScalarAtom) -> list[float]:
    """Finite ends of every fact (kinks, turning points, inflections), 0 and ±1."""
    ends = {e for ivs in (rec.convex_on, rec.concave_on, rec.increasing_on, rec.decreasing_on)
            for iv in ivs for e in (iv.lo, iv.hi) if math.isfinite(e)}
    return sorted(ends | {0.0, 1.0, -1.0})


def _inside(rec: ScalarAtom, u: float) -> bool:
    d, (lo_open, hi_open) = rec.domain, rec.open_at
    return (u > d.lo if lo_open else u >= d.lo) and (u < d.hi if hi_open else u <= d.hi)


def _near(c: float, exps=range(1, 16, 2)) -> list[float]:
    scale = max(1.0, abs(c))
    return [c + s * 10.0 ** -k * scale for k in exps for s in (1, -1)]


def sample(rec: ScalarAtom, lo: float, hi: float, rng: np.random.Generator, n: int = 30,
           huge: float = 1e300) -> list[float]:
    """Finite points of [lo, hi] ∩ domain: uniform, log-uniform in magnitude, next to the ends and specials."""
    a, b = max(lo, -huge), min(hi, huge)
    if a > b:
        return []
    pts = [a, b]
    wa, wb = max(a, -60.0), min(b, 60.0)
    if wa <= wb:
        pts += list(rng.uniform(wa, wb, n))
    mags = 10.0 ** rng.uniform(-300, math.log10(huge), n)
    pts += [s * m for m in mags for s in (1, -1)]
    for e in [lo, hi, *_specials(rec)]:
        if math.isfinite(e):
            pts += [e, *_near(e)]
    return sorted({float(p) for p in pts if a <= p <= b and _inside(rec, p)})


def true(rec: ScalarAtom, u) -> mpmath.mpf:
    return rec.mp(mpmath.mpf(u))


def numpy_f(fn, u):
    with np.errstate(all="ignore"):
        return float(fn(np.float64(u)))


def _tol(*values) -> mpmath.mpf:
    return mpmath.mpf(10) ** (5 - DPS) * max(max(abs(v) for v in values), mpmath.mpf(10) ** -300)


# -- NumPy f and df -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rec", ROWS, ids=IDS)
def test_derivative_matches_central_differences(rec):
    rng = _seed(rec, 1)
    cuts = _specials(rec) + [e for e in (rec.domain.lo, rec.domain.hi) if math.isfinite(e)]
    checked = 0
    for u in sample(rec, -INF, INF, rng, n=40, huge=1e6):
        dist = min(abs(u - c) for c in cuts)
        if dist < 1e-6 * max(1.0, abs(u)) and rec.name != "power" or dist == 0:
            continue   # a kink or a domain end: only one-sided derivatives exist
        h = mpmath.mpf(1e-12) * min(max(1.0, abs(u)), dist)
        fd = (true(rec, mpmath.mpf(u) + h) - true(rec, mpmath.mpf(u) - h)) / (2 * h)
        if abs(fd) > 1e300:
            continue
        df = numpy_f(rec.df, u)
        assert abs(df - fd) <= 1e-7 * abs(fd) + 1e-13, f"{rec.formula}: f'({u!r}) = {df}, differences give {fd}"
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("rec", ROWS, ids=IDS)
def test_numpy_f_matches_mpmath_within_rtol(rec):
    """The error bound `image` relies on: |f - true| ≤ rtol·|true| (exact when rtol = 0), or ±1e-290 when tiny."""
    for u in sample(rec, -INF, INF, _seed(rec, 2), n=60):
        v, w = numpy_f(rec.f, u), true(rec, u)
        assert not math.isnan(v), f"{rec.formula} at {u!r} is nan"
        if abs(w) > MAX:
            assert v == math.copysign(INF, w), f"{rec.formula} at {u!r}: {v}, true {w}"
        elif rec.rtol == 0:
            assert v == w, f"{rec.formula} at {u!r}: {v} != {w}"
        elif abs(w) >= TINY_VALUE:
            assert abs(v - w) <= rec.rtol * abs(w), f"{rec.formula} at {u!r}: {v!r} vs {w} (rtol {rec.rtol})"
        else:
            assert abs(v - w) <= TINY_VALUE, f"{rec.formula} at {u!r}: {v!r} vs {w}"


@pytest.mark.parametrize("rec", ROWS, ids=IDS)
def test_numpy_f_at_infinity_is_the_limit(rec):
    for s in (1, -1):
        if not _inside(rec, s * 1e300):
            continue
        v, w = numpy_f(rec.f, s * INF), true(rec, s * 1e300)
        if math.isinf(v):   # an infinite limit: f still grows far out, with v's sign
            assert w * v > 0 and abs(w) >= abs(true(rec, s * 1e150)) + 100, f"{rec.formula} at {s * INF}: {v}"
        else:
            assert abs(v - w) <= 1e-6 * max(1, abs(w)), f"{rec.formula} at {s * INF}: {v}, near there {w}"


@pytest.mark.parametrize("rec", ROWS, ids=IDS)
def test_numpy_f_and_df_are_quiet_and_never_nan_in_the_domain(rec):
    pts = sample(rec, -INF, INF, _seed(rec, 3), n=60)
    ok = [u for u in pts if abs(true(rec, u)) < 1e300 and abs(numpy_f(rec.df, u)) < 1e300]
    u = np.array(ok)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="warn", under="ignore"):
            values, slopes = rec.f(u), rec.df(u)
            one = rec.f(np.float64(ok[len(ok) // 2]))
    assert not np.isnan(values).any() and not np.isnan(slopes).any() and not math.isnan(float(one))
    outside = np.array([rec.domain.lo - 1.0, rec.domain.hi + 1.0])
    if rec.domain != REALS:   # outside the domain: nan, without a warning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = rec.f(outside[np.isfinite(outside)])
        assert np.isnan(out).all()


# -- the interval facts ---------------------------------------------------------------------------------
def _pieces(rec: ScalarAtom, kind: str) -> list[tuple[str, Interval]]:
    return [(kind, iv) for iv in getattr(rec, kind)]


@pytest.mark.parametrize("rec", ROWS, ids=IDS)
def test_monotone_pieces_hold(rec):
    rng = _seed(rec, 4)
    for kind, iv in _pieces(rec, "increasing_on") + _pieces(rec, "decreasing_on"):
        sign = 1 if kind == "increasing_on" else -1
        pts = sample(rec, iv.lo, iv.hi, rng, n=40)
        values = [true(rec, u) for u in pts]
        for (u0, w0), (u1, w1) in zip(zip(pts, values), zip(pts[1:], values[1:])):
            assert sign * (w1 - w0) >= -_tol(w0, w1), f"{rec.formula} not {kind} {iv}: f({u0})={w0}, f({u1})={w1}"
        for u in pts:
            if iv.lo < u < iv.hi and _inside(rec, u):
                d = numpy_f(rec.df, u)
                assert sign * d >= -1e-14 or math.isnan(d), f"{rec.formula}: f'({u}) = {d} on {kind} {iv}"


def _pairs(rec: ScalarAtom, iv: Interval, rng) -> list[tuple[float, float]]:
    pts = sample(rec, iv.lo, iv.hi, rng, n=30)
    pairs = [tuple(rng.choice(pts, 2)) for _ in range(150)]
    for c in _specials(rec):   # pairs straddling kinks and turning points
        for d0 in (1e-9, 1e-3, 0.5, 3.0, 1e3):
            for d1 in (1e-9, 1e-2, 2.0):
                x, y = c - d0 * max(1, abs(c)), c + d1 * max(1, abs(c))
                if iv.lo <= x and y <= iv.hi and _inside(rec, x) and _inside(rec, y):
                    pairs.append((x, y))
    for u in pts:              # second differences
        for h in (1e-6, 1e-2, 1.0):
            x, y = u - h * max(1, abs(u)), u + h * max(1, abs(u))
            if iv.lo <= x and y <= iv.hi and _inside(rec, x) and _inside(rec, y):
                pairs.append((x, y))
    return pairs


@pytest.mark.parametrize("rec", ROWS, ids=IDS)
def test_curvature_pieces_satisfy_jensen(rec):
    rng = _seed(rec, 5)
    for kind, iv in _pieces(rec, "convex_on") + _pieces(rec, "concave_on"):
        sign = 1 if kind == "convex_on" else -1
        for x, y in _pairs(rec, iv, rng):
            fx, fy = true(rec, x), true(rec, y)
            fm = true(rec, (mpmath.mpf(x) + mpmath.mpf(y)) / 2)
            gap = (fx + fy) / 2 - fm
            assert sign * gap >= -_tol(fx, fy, fm), f"{rec.formula} not {kind} {iv}: x={x!r}, y={y!r}, gap {gap}"


# -- ranges ---------------------------------------------------------------------------------------------
def _boxes(rec: ScalarAtom, rng) -> list[Interval]:
    pts = sample(rec, -INF, INF, rng, n=12)
    d = rec.domain
    boxes = [REALS, NONNEG, NONPOS, d, point(0.0), point(1.0), point(-1.0), Interval(1e10, 1e300),
             Interval(-1e300, -1e10), Interval(-INF, -1e10), Interval(1e10, INF)]
    boxes += [point(u) for u in rng.choice(pts, 8)]
    for _ in range(25):
        x, y = sorted(rng.choice(pts, 2))
        boxes.append(Interval(x, y))
    for u in rng.choice(pts, 6):
        boxes += [Interval(u, INF), Interval(-INF, u)]
    for e in (d.lo, d.hi):     # boxes touching the domain's edges
        if math.isfinite(e):
            boxes += [Interval(e, e + 1), Interval(e, INF), Interval(e - 1, e), point(e)]
    for c in _specials(rec):   # boxes around kinks, turning points and inflections
        for w in (1e-9, 1e-3, 1.0, 100.0):
            boxes += [Interval(c - w, c + w), Interval(c, c + w), Interval(c - w, c)]
    return boxes


@pytest.mark.parametrize("rec", ROWS, ids=IDS)
def test_image_contains_f_of_every_point_of_the_box(rec):
    rng = _seed(rec, 6)
    for box in _boxes(rec, rng):
        img = rec.image(box)
        assert isinstance(img, Interval) and img.within(rec.bounds) or img == rec.bounds
        for u in sample(rec, box.lo, box.hi, rng, n=6):
            w = true(rec, u)
            assert img.lo <= w <= img.hi, f"{rec.formula}: f({u!r}) = {w} outside image {img} of {box}"
        if box.is_point and _inside(rec, box.lo) and abs(true(rec, box.lo)) < 1e307:   # a point's image is tight
            w = true(rec, box.lo)
            assert img.hi - img.lo <= 1e-11 * abs(w) + 3 * TINY_VALUE, f"{rec.formula}: {img} for {box}"


# rows as a user atom would come (no rtol): `image` evaluates the ends of pieces with mpmath
MP_ROWS = [dataclasses.replace(SCALAR_ATOMS[n], rtol=None) for n in ("gelu", "entr", "log", "sigmoid", "huber")]


@pytest.mark.parametrize("rec", MP_ROWS, ids=[r.name for r in MP_ROWS])
def test_image_through_mpmath_contains_f_of_every_point_of_the_box(rec):
    test_image_contains_f_of_every_point_of_the_box(rec)


def test_image_without_rtol_survives_cancellation_in_the_numpy_f():
    bump = ScalarAtom("bump", "exp(u) - 1 - u", "exp(u) - 1", convex_on=(REALS,), concave_on=(),
                      increasing_on=(NONNEG,), decreasing_on=(NONPOS,), f=lambda u: np.exp(u) - 1 - u,
                      df=lambda u: np.expm1(u), mp=lambda u: mpmath.exp(u) - 1 - u, bounds=NONNEG)
    for u in (1e-9, -1e-7, 1e-15, 1e-25, 3.0, -40.0, 0.0):
        with mpmath.workdps(90):
            w = true(bump, u)   # exp(u) - 1 - u ≈ u²/2 needs about 2·log10(1/u) more digits than it shows
        img = bump.image(point(u))
        assert img.lo <= w <= img.hi and img.hi - img.lo <= 1e-15 * abs(w) + 1e-29, (u, w, img)
    trusting = dataclasses.replace(bump, rtol=4e-15)   # the float 1.0000000010000000822 - 1 - 1e-9 is off
    img, w = trusting.image(point(1e-9)), true(bump, 1e-9)
    assert not img.lo <= w <= img.hi


@pytest.mark.parametrize("rec", ROWS, ids=IDS)
def test_bounds_hold_on_the_domain(rec):
    for u in sample(rec, -INF, INF, _seed(rec, 7), n=60):
        w = true(rec, u)
        assert rec.bounds.lo <= w <= rec.bounds.hi, f"{rec.formula}: f({u!r}) = {w} outside {rec.bounds}"


@pytest.mark.parametrize("rec", ROWS, ids=IDS)
def test_zeros_are_exact(rec):
    rng = _seed(rec, 8)
    for iv in rec.zeros:
        for u in sample(rec, iv.lo, iv.hi, rng, n=10):
            assert true(rec, u) == 0 and numpy_f(rec.f, u) == 0, f"{rec.formula} at {u!r}"
            assert rec.image(point(u)) == point(0.0)


def _real(rec: ScalarAtom, u: float) -> bool:
    """mpmath's verdict: f(u) is a finite real number."""
    try:
        w = rec.mp(mpmath.mpf(u))
    except (ValueError, ZeroDivisionError):
        return False
    return isinstance(w, mpmath.mpf) and mpmath.isfinite(w)


@pytest.mark.parametrize("rec", ROWS, ids=IDS)
def test_defined_on_follows_the_domain(rec):
    d = rec.domain
    for e, side in ((d.lo, 0), (d.hi, 1)):
        if not math.isfinite(e):
            continue
        step = 1.0 if side == 0 else -1.0      # the direction into the domain
        closed = not rec.open_at[side]
        assert _real(rec, e) == closed, f"{rec.formula} at its domain end {e}"
        assert rec.defined_on(point(e)) == closed
        inner = Interval(*sorted((e, e + step)))
        assert rec.defined_on(inner) == closed
        just_in = math.nextafter(e, e + step)
        assert rec.defined_on(Interval(*sorted((just_in, e + step))))
        outside = e - step * 1e-9
        assert not rec.defined_on(Interval(*sorted((outside, e + step))))
        if rec.name != "inv_pos" and not (rec.name == "power" and float(rec.params[0]).is_integer()):
            # 1/u and u^-2 are real at u < 0 too, but their domain is u > 0 by choice (as in CVXPY)
            assert not _real(rec, outside), f"{rec.formula} is real at {outside}, outside its domain {d}"
    for box in _boxes(rec, _seed(rec, 9)):
        if rec.defined_on(box):
            assert all(_real(rec, u) for u in sample(rec, box.lo, box.hi, _seed(rec, 10), n=4))


def test_images_on_the_common_boxes_are_exact_where_they_can_be():
    relu, sig, ab = SCALAR_ATOMS["relu"], SCALAR_ATOMS["sigmoid"], SCALAR_ATOMS["abs"]
    assert relu.image(NONNEG) == NONNEG and relu.image(NONPOS) == point(0.0) and relu.image(REALS) == NONNEG
    assert sig.image(REALS) == Interval(0.0, 1.0) and ab.image(REALS) == NONNEG
    assert SCALAR_ATOMS["exp"].image(NONPOS).lo == 0.0 and SCALAR_ATOMS["exp"].image(NONPOS).hi >= 1
    assert SCALAR_ATOMS["softplus"].image(REALS) == NONNEG and SCALAR_ATOMS["square"].image(NONPOS) == NONNEG
    assert SCALAR_ATOMS["gelu"].image(Interval(-INF, -1.0)).hi <= 0
    assert SCALAR_ATOMS["silu"].image(Interval(-INF, -2.0)).hi >= -1e-300   # silu(-50) ≈ -1e-20 is in it
    assert SCALAR_ATOMS["tanh"].image(Interval(-2.0, 3.0)).within(Interval(-0.97, 0.996))


# -- the SPEC's table (section 2, "Built-in functions"): the rows say at least this much --------------
POS = Interval(1e-300, INF)      # u > 0
CV, CC, AF, INC, DEC, CONST, RANGE = "convex", "concave", "affine", "inc", "dec", "const", "range"
SPEC_CLAIMS = {
    "relu": [(CV, REALS), (AF, NONNEG), (CONST, NONPOS), (INC, REALS), (RANGE, NONNEG)],
    "abs": [(CV, REALS), (AF, NONNEG), (AF, NONPOS), (INC, NONNEG), (DEC, NONPOS), (RANGE, NONNEG)],
    "square": [(CV, REALS), (INC, NONNEG), (DEC, NONPOS), (RANGE, NONNEG)],
    "sqrt": [(CC, NONNEG), (INC, NONNEG), (RANGE, NONNEG)],
    "exp": [(CV, REALS), (INC, REALS), (RANGE, NONNEG)],
    "log": [(CC, POS), (INC, POS)],
    "softplus": [(CV, REALS), (INC, REALS), (RANGE, NONNEG)],
    "sigmoid": [(CV, NONPOS), (CC, NONNEG), (INC, REALS), (RANGE, Interval(0.0, 1.0))],
    "tanh": [(CV, NONPOS), (CC, NONNEG), (INC, REALS), (RANGE, Interval(-1.0, 1.0))],
    "elu": [(CV, REALS), (INC, REALS), (RANGE, Interval(-1.0, INF))],
    "selu": [(INC, REALS)],
    "gelu": [],
    "silu": [],
    "inv_pos": [(CV, POS), (DEC, POS), (RANGE, NONNEG)],
    "entr": [(CC, NONNEG)],
    "huber": [(CV, REALS), (INC, NONNEG), (DEC, NONPOS), (RANGE, NONNEG)],
}
SPEC_NEITHER = {"selu": [CV, CC], "gelu": [CV, CC, INC, DEC], "silu": [CV, CC, INC, DEC], "entr": [INC, DEC]}


def _claim_holds(rec: ScalarAtom, claim: str, box: Interval) -> bool:
    mono = rec.monotonicity_on_box(box)
    return {CV: lambda: rec.convex_on_box(box), CC: lambda: rec.concave_on_box(box),
            AF: lambda: rec.convex_on_box(box) and rec.concave_on_box(box),
            INC: lambda: mono in (Monotonicity.INCREASING, Monotonicity.CONSTANT),
            DEC: lambda: mono in (Monotonicity.DECREASING, Monotonicity.CONSTANT),
            CONST: lambda: mono is Monotonicity.CONSTANT,
            RANGE: lambda: rec.image(REALS).within(box)}[claim]()


def _power_claims(p: float) -> list:
    claims = [(INC, NONNEG)] if p > 0 else [(DEC, POS)] if p < 0 else [(CONST, REALS)]
    if float(p).is_integer() and p > 0 and int(p) % 2 == 0:
        claims += [(CV, REALS), (RANGE, NONNEG)]
    if p >= 1:
        claims += [(CV, NONNEG)]
    if 0 < p < 1:
        claims += [(CC, NONNEG)]
    if p < 0:
        claims += [(CV, POS), (RANGE, NONNEG)]
    if p == 1:
        claims += [(AF, REALS), (INC, REALS)]
    if float(p).is_integer() and p > 0 and int(p) % 2 == 1:
        claims += [(INC, REALS)]
    return claims


def _leaky_claims(a: float) -> list:
    claims = [(AF, NONPOS), (AF, NONNEG)]
    claims += [(CV, REALS)] if a <= 1 else []
    claims += [(CC, REALS)] if a >= 1 else []
    claims += [(INC, REALS)] if a >= 0 else [(DEC, NONPOS)]
    return claims


@pytest.mark.parametrize("name, rec", RECORDS, ids=IDS)
def test_rows_are_as_strong_as_the_spec(name, rec):
    if rec.name == "power":
        claims = _power_claims(rec.params[0])
    elif rec.name == "leaky_relu":
        claims = _leaky_claims(rec.params[0])
    else:
        claims = SPEC_CLAIMS[name]
    for claim, box in claims:
        assert _claim_holds(rec, claim, box), f"{name}: the SPEC says {claim} on {box}"
    for claim in SPEC_NEITHER.get(name, []):
        assert not _claim_holds(rec, claim, REALS), f"{name}: the SPEC says not {claim} on the reals"


def test_every_builtin_of_the_spec_has_a_row():
    spec_names = set(SPEC_CLAIMS) | {"leaky_relu", "maximum", "minimum"} | set(SPEC_REDUCTIONS)
    assert spec_names <= set(BUILTIN_NAMES)
    assert set(SCALAR_ATOMS) == set(SPEC_CLAIMS)


# -- reductions ------------------------------------------------------------------------------------------
# name → (convex, concave, monotone, monotone in v) as the SPEC states them
SPEC_REDUCTIONS = {
    "sum": (True, True, "increasing", ""), "mean": (True, True, "increasing", ""),
    "max": (True, False, "increasing", ""), "min": (False, True, "increasing", ""),
    "log_sum_exp": (True, False, "increasing", ""),
    "norm1": (True, False, "by_sign", ""), "norm2": (True, False, "by_sign", ""),
    "norm_inf": (True, False, "by_sign", ""), "sum_squares": (True, False, "by_sign", ""),
    "quad_over_lin": (True, False, "by_sign", "decreasing"),
    "maximum": (True, False, "increasing", ""), "minimum": (False, True, "increasing", ""),
}


def exact_value(name: str, args: list[list[float]]):
    """The reduction at one point, exactly (Fraction) or at 40 digits (mpmath)."""
    v = [Fraction(x) for x in args[0]]
    mp = [_mpf(x) for x in v]
    if name == "sum":
        return sum(v)
    if name == "mean":
        return sum(v) / len(v)
    if name in ("max", "min"):
        return (max if name == "max" else min)(v)
    if name == "log_sum_exp":
        top = max(mp)   # lse = max + log Σ exp(x - max): exact for one entry, no cancellation for tiny ones
        return top + mpmath.log(mpmath.fsum(mpmath.exp(x - top) for x in mp))
    if name == "norm1":
        return sum(abs(x) for x in v)
    if name == "norm2":
        return mpmath.sqrt(_mpf(sum(x * x for x in v)))
    if name == "norm_inf":
        return max(abs(x) for x in v)
    if name == "sum_squares":
        return sum(x * x for x in v)
    if name == "quad_over_lin":
        return sum(x * x for x in v) / Fraction(args[1][0])
    pick = max if name == "maximum" else min
    return pick(Fraction(a[0]) for a in args)


def _mpf(x) -> mpmath.mpf:
    x = Fraction(x)
    return mpmath.mpf(x.numerator) / x.denominator


def _within(value, r: Interval) -> bool:
    if isinstance(value, Fraction):
        return r.lo <= value <= r.hi
    slack = mpmath.mpf(10) ** (3 - DPS) * abs(value)   # mpmath values are good to ~40 digits
    return r.lo <= value + slack and value - slack <= r.hi


def _random_range(rng) -> Interval:
    kind = rng.integers(6)
    scale = 10.0 ** rng.choice([-300, -5, 0, 2, 100, 300])
    a, b = sorted(rng.uniform(-1, 1, 2) * scale)
    lo = -INF if kind == 1 else 0.0 if kind == 4 else a
    hi = INF if kind == 2 else 0.0 if kind == 5 else b
    if kind == 3:
        lo, hi = -INF, INF
    return Interval(min(lo, hi), max(lo, hi))


def _draw(r: Interval, rng, n: int) -> list[float]:
    lo, hi = max(r.lo, -1e300), min(r.hi, 1e300)
    out = [lo, hi] + list(np.clip(rng.uniform(lo, hi, n), lo, hi))
    return [float(x) for x in rng.choice(out, n)]


def _ranges_and_point(name: str, rng):
    n = int(rng.integers(1, 6))
    if name in ("maximum", "minimum"):
        k = int(rng.integers(2, 5))
        ranges = [_random_range(rng) for _ in range(k)]
        return ranges, [1] * k, [_draw(r, rng, 1) for r in ranges]
    if name == "quad_over_lin":
        rv = _random_range(rng)
        if rv.hi <= 0:
            rv = Interval(rv.lo, 1.0)
        ru = _random_range(rng)
        v = [x for x in _draw(Interval(max(rv.lo, 0.0), rv.hi), rng, 4) if x > 0] or [rv.hi]
        return [ru, rv], [n, 1], [_draw(ru, rng, n), v[:1]]
    r = _random_range(rng)
    return [r], [n], [_draw(r, rng, n)]


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_image_contains_the_value(name):
    rec = REDUCTIONS[name]
    rng = np.random.default_rng(len(name) * 7919)
    for _ in range(300):
        ranges, sizes, args = _ranges_and_point(name, rng)
        img = rec.image(ranges, sizes)
        assert isinstance(img, Interval)
        value = exact_value(name, args)
        assert _within(value, img), f"{name}{args} = {value} outside {img} from {ranges}, {sizes}"


def _numpy_value(rec, args: list[list[float]]) -> float:
    if rec.arity == "many":
        return float(rec.f(*[np.array(a) for a in args]).item())
    if rec.arity == "quad_over_lin":
        return float(rec.f(np.array([args[0]]), np.array(args[1]))[0])
    return float(rec.f(np.array([args[0]]))[0])


def _moderate_point(rec, rng, n: int) -> list[list[float]]:
    if rec.arity == "many":
        return [[float(rng.normal() * 3)] for _ in range(n)]
    u = list(rng.normal(size=n) * 3)
    return [u, [float(rng.uniform(0.1, 4))]] if rec.arity == "quad_over_lin" else [u]


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_numpy_f_matches_the_exact_value(name):
    rec = REDUCTIONS[name]
    rng = np.random.default_rng(11)
    for _ in range(100):
        args = _moderate_point(rec, rng, int(rng.integers(2, 6)))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = _numpy_value(rec, args)
        want = float(exact_value(name, args))
        assert abs(got - want) <= 1e-12 * max(1, abs(want))
    if name in ("norm2", "log_sum_exp", "norm_inf", "max"):   # no overflow of intermediate values
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert math.isfinite(_numpy_value(rec, [[1e200, -3e200]]))


def _mid(a, b):
    return [[(Fraction(x) + Fraction(y)) / 2 for x, y in zip(p, q)] for p, q in zip(a, b)]


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_curvature_flags_satisfy_jensen(name):
    rec = REDUCTIONS[name]
    rng = np.random.default_rng(13)
    for _ in range(200):
        n = int(rng.integers(1, 6))
        a, b = _moderate_point(rec, rng, n), _moderate_point(rec, rng, n)
        fa, fb, fm = (_val(name, p) for p in (a, b, _mid(a, b)))
        gap = (fa + fb) / 2 - fm
        tol = _tol(fa, fb, fm)
        if rec.convex:
            assert gap >= -tol, f"{name} not convex: {a}, {b}"
        if rec.concave:
            assert gap <= tol, f"{name} not concave: {a}, {b}"


def _val(name, args) -> mpmath.mpf:
    v = exact_value(name, args)
    return v if isinstance(v, mpmath.mpf) else _mpf(v)


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_monotone_flags_hold_under_perturbation(name):
    rec = REDUCTIONS[name]
    rng = np.random.default_rng(17)
    for _ in range(200):
        args = _moderate_point(rec, rng, int(rng.integers(1, 6)))
        base = _val(name, args)
        which = int(rng.integers(len(args))) if rec.arity == "many" else 0
        i = int(rng.integers(len(args[which])))
        step = float(rng.uniform(1e-6, 2))
        moved = [list(a) for a in args]
        x = moved[which][i]
        if rec.monotone == "increasing":
            moved[which][i] = x + step            # ↑: a larger entry never lowers the value
        else:
            moved[which][i] = x + step if x >= 0 else x - step   # by sign: away from 0 never lowers it
        value = _val(name, moved)
        assert value >= base - _tol(value, base), f"{name}: {args} → {moved} lowered the value"
        if rec.monotone_v:
            moved = [list(args[0]), [args[1][0] + step]]
            assert _val(name, moved) <= base + _tol(base), f"{name}: larger v raised it"


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_flags_are_as_strong_as_the_spec(name):
    rec = REDUCTIONS[name]
    assert (rec.convex, rec.concave, rec.monotone, rec.monotone_v) == SPEC_REDUCTIONS[name]


# -- one row, every reader (issue 13: the table is the single source of each atom's meaning) --------------
# The readers: the row's NumPy f and mpmath forms, its sympy form (lambdified to mpmath), the float evaluator
# (`evaluate`), the 50-digit evaluator (`precise`), and an atom body calling the row (`body`: NumPy, mpmath and
# intervals). Each must agree with the row's mpmath value, including near overflow.
NEAR_OVERFLOW = [0.0, 5e-324, 1e-300, 0.5, 1.0, 3.0, 30.0, 709.7, 745.2, 1e154, 1e300, 1.7e308]


def _mp_value(rec: ScalarAtom, u: float):
    try:
        v = rec.mp(mpmath.mpf(u))
    except (ValueError, ZeroDivisionError):
        return None
    return v if isinstance(v, mpmath.mpf) and mpmath.isfinite(v) else None


def _close(got: float, want, rtol: float) -> bool:
    if abs(want) > MAX:   # the true value is past the largest double: the float readers may say inf
        return math.isinf(got) and (got > 0) == (want > 0)
    if abs(want) < TINY_VALUE:
        return abs(got - want) <= TINY_VALUE
    return abs(mpmath.mpf(got) - want) <= rtol * abs(want) + mpmath.mpf(10) ** -300


def _row_call(rec: ScalarAtom, arg: str) -> str:
    if rec.name == "power":
        return f"{arg}^{rec.params[0]!r}"
    if rec.name == "leaky_relu":
        return f"leaky_relu({arg}, {rec.params[0]!r})"
    return f"{rec.name}({arg})"


def _row_net_text(rec: ScalarAtom) -> str:
    return f"input x\natom g(t) = {_row_call(rec, 't')}\ny = {_row_call(rec, 'x')}\nz = g(x)\n"


@pytest.mark.parametrize("rec", ROWS, ids=IDS)
def test_every_reader_of_a_row_agrees_with_it(rec):
    import sympy as sp

    from dcpnet.body import Body, Undefined
    from dcpnet.evaluate import compile_network
    from dcpnet.graph import load_text
    from dcpnet.precise import OutsideDomain, evaluate_precise

    net = load_text(_row_net_text(rec))
    body = Body.of(net.atom_defs, "g")
    plan = compile_network(net, ["y"])
    u_sym = sp.Symbol("u", real=True)
    sym = sp.lambdify(u_sym, rec.sympy(sp, u_sym), modules="mpmath")
    rtol = max(rec.rtol or 0.0, 1e-13)
    points = sorted({s * u for u in NEAR_OVERFLOW for s in (1, -1)} | set(_specials(rec)))
    for u in points:
        want = _mp_value(rec, u)
        if want is None or not _inside(rec, u):
            with pytest.raises((OutsideDomain, Undefined)):
                body.mp(mpmath.mpf(u)) if _inside(rec, u) else evaluate_precise(net, ["y"], {"x": u})
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            numpy_values = {"f": float(rec.f(np.array([u]))[0]), "evaluate": float(plan.forward({"x": np.array([u])})["y"][0]),
                            "body": float(body.numpy(np.array([u]))[0][0])}
        for reader, got in numpy_values.items():
            assert _close(got, want, rtol), f"{reader}: {rec.name}({u}) = {got}, mpmath {want}"
        exact = {"precise": evaluate_precise(net, ["y", "z"], {"x": u}, dps=DPS), "body mp": body.mp(mpmath.mpf(u))}
        for got in (exact["precise"]["y"], exact["precise"]["z"], exact["body mp"]):
            assert abs(got - want) <= mpmath.mpf(10) ** -(DPS - 8) * (1 + abs(want))
        try:
            s_val = sym(mpmath.mpf(u))
        except (ValueError, ZeroDivisionError, OverflowError):
            s_val = None
        if isinstance(s_val, mpmath.mpf) and mpmath.isfinite(s_val) and abs(want) < 1e300:
            assert abs(s_val - want) <= mpmath.mpf(10) ** -25 * (1 + abs(want)), f"sympy form of {rec.name} at {u}"
        enclosure = body.interval(Interval(u, u))
        assert enclosure.lo <= want <= enclosure.hi, f"interval reader of {rec.name} at {u}: {enclosure}"


REDUCTION_POINTS = [[0.5, -2.0, 3.0], [1e200, -3e200, 2e199], [1e-200, 3e-200, -1e-300], [700.0, 710.0, -1e3],
                    [-1e300, -1.5e300, -1e300], [0.0, 0.0, 0.0]]


@pytest.mark.parametrize("name", sorted(n for n, r in REDUCTIONS.items() if r.arity == "one"))
def test_every_reader_of_a_reduction_agrees_with_it(name):
    """The row's NumPy f, the float evaluator and the 50-digit evaluator against the row's mpmath form;
    norm2 and log_sum_exp of 1e200-sized entries must not overflow where the true value does not."""
    from dcpnet.evaluate import compile_network
    from dcpnet.graph import load_text
    from dcpnet.precise import evaluate_precise

    rec = REDUCTIONS[name]
    net = load_text(f"input x[3]\ny = {name}(x)\n")
    plan = compile_network(net, ["y"])
    for xs in REDUCTION_POINTS:
        want = rec.mp([mpmath.mpf(x) for x in xs])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = {"f": float(rec.f(np.array([xs]))[0]), "evaluate": float(plan.forward({"x": np.array([xs])})["y"][0])}
        for reader, value in got.items():
            assert _close(value, want, 1e-13), f"{reader}: {name}{xs} = {value}, mpmath {want}"
        precise = evaluate_precise(net, ["y"], {"x": xs}, dps=DPS)["y"]
        assert abs(precise - want) <= mpmath.mpf(10) ** -(DPS - 8) * (1 + abs(want))
