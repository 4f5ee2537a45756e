"""User atoms derived with sympy: every reported fact checked against numbers, and the table checked against sympy.

Soundness: each interval a record lists must really have its property (second differences, Jensen's
inequality on random pairs, the derivative's sign, monotone values on a grid); `bounds` must hold the sampled
values. Completeness is spot-checked where the answer is known. The self-check derives every built-in scalar
atom from its formula and fails when the hand-written table claims something the derivation contradicts.
"""
from __future__ import annotations

import ast
import functools
import itertools
import pathlib
import random
import threading
import time

import mpmath
import numpy as np
import pytest
import sympy as sp

from dcpnet import symbolic
from dcpnet.atoms import PARAMETRIC_ATOMS, SCALAR_ATOMS, ScalarAtom, power
from dcpnet.graph import load, load_text
from dcpnet.lattice import INF, NONNEG, NONPOS, REALS, Interval
from dcpnet.symbolic import (
    BUILTIN_FORMULAS,
    analyse,
    analysis,
    convert,
    derive,
    explain_convex,
    explain_monotone,
    limits,
    user_atom,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
from conftest import CASES as CONFORMANCE

# Atom bodies in the .net language (argument u); each is derived through the language front end.
CATALOGUE = [
    "u^3", "u * log(u)", "exp(-u^2)", "log(1 + exp(u))", "1 / (1 + u^2)", "u / (1 + abs(u))",
    "sqrt(1 + u^2)", "u^4 - u^2", "u / (1 + exp(-u))", "relu(u)^2", "leaky_relu(u, 0.1)", "leaky_relu(u, 2)",
    "leaky_relu(u, -0.5)", "maximum(u, 1 - u)", "minimum(u, u^2)", "abs(u^2 - 1)", "relu(u^2 - 1)",
    "relu(1 - abs(u))", "relu(u) - relu(u - 1)", "huber(u) - u", "sqrt(u)", "u^0.5", "u^-1", "1 / u",
    "u^1.5", "exp(u) - u", "log(u) + u^2", "sigmoid(2 * u - 1)", "tanh(u)^2", "softplus(u) - u / 2",
    "entr(u)", "2 * elu(u)", "selu(u)", "inv_pos(u) + u", "u * exp(u)", "exp(-abs(u))",
    "maximum(abs(u), 1)", "log(1 + u^2)", "u^5 - 5 * u", "sqrt(abs(u))", "u^2 * log(u)", "gelu(u)",
    "softplus(relu(u) - 1)", "minimum(exp(u), 2 - u)", "minimum(exp(u), 1)", "3", "2 * u + 1",
]

# Formulas outside the language (cosh is not a built-in): straight through `derive`.
U = sp.Symbol("u", real=True)
SYMPY_CATALOGUE = {
    "log(cosh(u))": sp.log(sp.cosh(U)),
    "u*atan(u)": U * sp.atan(U),
    "exp(u)*sin-free cubic": sp.exp(U) * (U**2 - 3),
    "Piecewise kink": sp.Piecewise((U**2, U < 1), (2 * U - 1, True)),
    "Piecewise jump": sp.Piecewise((U, U < 1), (U + 5, True)),
}

# Known answers: (formula, property, interval that must be covered by one reported interval).
KNOWN = [
    ("u^3", "convex_on", NONNEG), ("u^3", "concave_on", NONPOS), ("u^3", "increasing_on", REALS),
    ("u * log(u)", "convex_on", NONNEG), ("sqrt(u)", "concave_on", NONNEG), ("u^0.5", "increasing_on", NONNEG),
    ("log(1 + exp(u))", "convex_on", REALS), ("exp(-u^2)", "decreasing_on", NONNEG),
    ("leaky_relu(u, 0.1)", "convex_on", REALS), ("leaky_relu(u, 2)", "concave_on", REALS),
    ("relu(u^2 - 1)", "convex_on", REALS), ("relu(1 - abs(u))", "concave_on", Interval(-1.0, 1.0)),
    ("sqrt(1 + u^2)", "convex_on", REALS), ("u^4 - u^2", "decreasing_on", Interval(0.0, 0.7071067811865475)),
    ("maximum(abs(u), 1)", "convex_on", REALS), ("huber(u) - u", "convex_on", REALS),
    ("u / (1 + abs(u))", "concave_on", NONNEG), ("u / (1 + abs(u))", "increasing_on", REALS),
    ("entr(u)", "concave_on", NONNEG), ("2 * elu(u)", "convex_on", REALS), ("1 / u", "convex_on", Interval(1e-300, INF)),
    ("minimum(exp(u), 1)", "concave_on", NONNEG), ("u^-1", "decreasing_on", NONNEG),
    ("2 * u + 1", "convex_on", REALS), ("2 * u + 1", "concave_on", REALS), ("3", "decreasing_on", REALS),
]

# Known non-facts: the record must not claim these (the derivation may not be loose in the wrong direction).
NOT = [
    ("leaky_relu(u, 2)", "convex_on", Interval(-1.0, 1.0)), ("leaky_relu(u, 0.1)", "concave_on", Interval(-1.0, 1.0)),
    ("exp(-u^2)", "convex_on", Interval(-1.0, 1.0)), ("u^4 - u^2", "convex_on", Interval(-0.5, 0.5)),
    ("sqrt(abs(u))", "concave_on", Interval(-1.0, 1.0)), ("1 / u", "decreasing_on", Interval(-1.0, 1.0)),
    ("1 / u", "convex_on", Interval(-1.0, 1.0)),
]


def _atom(body: str) -> ScalarAtom:
    return user_atom(load_text(f"input x\natom f(u) = {body}\ny = f(x)\n"), "f")


def _sympy_atom(key: str) -> ScalarAtom:
    return derive(SYMPY_CATALOGUE[key], U, "f", key)


ALL = [(b, lambda b=b: _atom(b)) for b in CATALOGUE] + [(k, lambda k=k: _sympy_atom(k)) for k in SYMPY_CATALOGUE]


# -- numeric checks of one interval fact -----------------------------------------------------------------
def _inside(atom: ScalarAtom, iv: Interval, n: int = 61) -> list:
    """Sample points of iv within the domain (open ends avoided), exact as mpf; infinite ends cut at ±40."""
    lo, hi = max(iv.lo, atom.domain.lo, -40.0), min(iv.hi, atom.domain.hi, 40.0)
    if lo > hi:
        return []
    if lo == hi:
        return [mpmath.mpf(lo)]
    pad = (hi - lo) * 1e-6
    lo += pad if (atom.open_at[0] and lo <= atom.domain.lo) else 0
    hi -= pad if (atom.open_at[1] and hi >= atom.domain.hi) else 0
    xs = [mpmath.mpf(lo) + (mpmath.mpf(hi) - lo) * k / (n - 1) for k in range(n)]
    # add points near the ends, where kinks and inflections sit
    return sorted(set(xs + [mpmath.mpf(lo) + (hi - lo) * 1e-7, mpmath.mpf(hi) - (hi - lo) * 1e-7]))


def _f(atom, x):
    try:
        v = atom.mp(x)
    except (ZeroDivisionError, ValueError):  # a hole of the domain (the hull of 1/u holds 0)
        return None
    return v if isinstance(v, mpmath.mpf) else None


@pytest.fixture(autouse=True)
def _forty_digits():
    """Numeric checks at 40 digits, so a failure is the formula's and not the rounding's."""
    with mpmath.workdps(40):
        yield


def _tol(*vals) -> mpmath.mpf:
    return mpmath.mpf(10) ** -25 * (1 + max(abs(v) for v in vals))


def _check_monotone(atom, iv, sign):
    xs = [x for x in _inside(atom, iv) if _f(atom, x) is not None]
    ys = [_f(atom, x) for x in xs]
    for y0, y1 in itertools.pairwise(ys):
        assert sign * (y1 - y0) >= -_tol(y0, y1), f"{atom.formula} not monotone ({sign}) on {iv}"
    with np.errstate(all="ignore"):
        d = np.asarray(atom.df(np.array([float(x) for x in xs[1:-1]])), dtype=float)  # ends: one-sided
    fin = d[np.isfinite(d)]
    assert np.all(sign * fin >= -1e-9 * (1 + np.abs(fin))), f"{atom.formula}: df has the wrong sign on {iv}"


def _check_curvature(atom, iv, sign):
    xs = [x for x in _inside(atom, iv) if _f(atom, x) is not None]
    ys = [_f(atom, x) for x in xs]
    pts = list(zip(xs, ys))
    for (x0, a), (x1, b), (x2, c) in zip(pts, pts[1:], pts[2:]):  # slopes of the grid rise (second differences)
        gap = sign * ((c - b) * (x1 - x0) - (b - a) * (x2 - x1))
        assert gap >= -_tol(a, b, c) * (x2 - x0), f"{atom.formula} not {sign}-curved on {iv}"
    rng = random.Random(0)
    for _ in range(60):  # Jensen on far-apart pairs: catches a bad kink between grid points
        x, y = rng.choice(xs), rng.choice(xs)
        m = _f(atom, (x + y) / 2)
        fx, fy = _f(atom, x), _f(atom, y)
        assert sign * ((fx + fy) / 2 - m) >= -_tol(fx, fy, m), f"{atom.formula}: Jensen fails on {iv}"


CHECKS = {"increasing_on": lambda a, iv: _check_monotone(a, iv, 1),
          "decreasing_on": lambda a, iv: _check_monotone(a, iv, -1),
          "convex_on": lambda a, iv: _check_curvature(a, iv, 1),
          "concave_on": lambda a, iv: _check_curvature(a, iv, -1)}


# -- the catalogue -------------------------------------------------------------------------------------------
def test_catalogue_is_large_enough():
    assert len(ALL) >= 30


@pytest.mark.parametrize("name,make", ALL, ids=[n for n, _ in ALL])
def test_every_reported_interval_has_its_property(name, make):
    atom = make()
    for prop, check in CHECKS.items():
        for iv in getattr(atom, prop):
            assert iv.lo <= iv.hi
            assert atom.domain.lo <= iv.lo and iv.hi <= atom.domain.hi, f"{prop} {iv} leaves the domain"
            check(atom, iv)


@pytest.mark.parametrize("name,make", ALL, ids=[n for n, _ in ALL])
def test_bounds_hold_the_sampled_values_and_image_is_sound(name, make):
    atom = make()
    xs = [float(x) for x in _inside(atom, atom.domain, 201)]
    with np.errstate(all="ignore"):
        ys = np.asarray(atom.f(np.array(xs)), dtype=float)
    for x, y in zip(xs, ys):
        if np.isfinite(y):
            assert atom.bounds.lo - 1e-12 * abs(y) <= y <= atom.bounds.hi + 1e-12 * abs(y), (x, y, atom.bounds)
    rng = random.Random(1)
    for _ in range(10):
        a, b = sorted(rng.choice(xs) for _ in range(2))
        box = Interval(a, b)
        img = atom.image(box)
        for x in np.linspace(a, b, 50):
            y = _f(atom, mpmath.mpf(x))
            if y is not None and mpmath.isfinite(y):
                y = float(y)
                assert img.lo <= y * (1 + 1e-12) + 1e-300 or img.lo <= y, (box, x, y, img)
                assert y <= img.hi or y * (1 - 1e-12) <= img.hi, (box, x, y, img)


@pytest.mark.parametrize("body,prop,iv", KNOWN, ids=[f"{b}-{p}" for b, p, _ in KNOWN])
def test_known_facts_are_found(body, prop, iv):
    assert any(iv.within(p) for p in getattr(_atom(body), prop)), getattr(_atom(body), prop)


@pytest.mark.parametrize("body,prop,iv", NOT, ids=[f"{b}-{p}" for b, p, _ in NOT])
def test_false_facts_are_not_claimed(body, prop, iv):
    assert not any(iv.within(p) for p in getattr(_atom(body), prop))


def test_jump_breaks_monotone_merge_and_kink_slopes_decide_curvature():
    jump = _sympy_atom("Piecewise jump")   # u, then u + 5 past 1: increasing on each side, not across
    assert not any(Interval(0.0, 2.0).within(p) for p in jump.increasing_on)
    kink = _sympy_atom("Piecewise kink")   # u^2 then its tangent 2u - 1: C^1, convex everywhere
    assert kink.convex_on == (REALS,)


def test_domains_and_open_ends():
    assert _atom("u * log(u)").domain == NONNEG and _atom("u * log(u)").open_at == (True, False)
    assert _atom("sqrt(u)").open_at == (False, False)
    assert _atom("u^-1").domain == NONNEG and _atom("u^-1").open_at[0]      # as atoms.power: u > 0
    assert _atom("1 / u").domain == REALS                                     # the hull of u != 0
    assert _atom("entr(u)").domain == NONNEG and float(_atom("entr(u)").f(0.0)) == 0.0


# -- evaluation ------------------------------------------------------------------------------------------------
def test_numpy_and_mpmath_functions_work_elementwise():
    a = _atom("relu(u) + huber(u) + entr(abs(u) + 1) + leaky_relu(u, 0.1) + maximum(u, 1)")
    xs = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    ys = a.f(xs)
    assert ys.shape == xs.shape
    for x, y in zip(xs, ys):
        with mpmath.workdps(30):
            assert abs(float(a.mp(mpmath.mpf(x))) - y) < 1e-12 * (1 + abs(y))
    h = 1e-6
    for x in (-2.0, -0.5, 0.5, 3.0):   # away from the kinks the derivative is the finite difference
        fd = (float(a.f(x + h)) - float(a.f(x - h))) / (2 * h)
        assert abs(float(a.df(np.float64(x))) - fd) < 1e-5 * (1 + abs(fd))
    assert a.df(xs).shape == xs.shape
    assert float(_atom("3").f(np.zeros(4)).sum()) == 12.0


def test_mp_gives_thirty_digits():
    a = _atom("log(1 + exp(u))")
    with mpmath.workdps(40):
        assert abs(a.mp(mpmath.mpf(1)) - mpmath.log(1 + mpmath.e)) < mpmath.mpf(10) ** -35


# -- the self-check: the hand-written table against the derivation --------------------------------------------
def _contradictions(table: ScalarAtom, an) -> list[str]:
    """Table intervals the derivation contradicts (a decided region the derived facts do not cover)."""
    out = []
    derived = {p: [analysis._inner(*run) for run in an.facts[p]] for p in symbolic.PROPS}
    for prop in symbolic.PROPS:
        for iv in getattr(table, f"{prop}_on"):
            if any(iv.meet(u) is not None for u in an.unknown[prop]):
                continue  # undecided there: nothing to compare
            if not any(d is not None and iv.within(d) for d in derived[prop]):
                out.append(f"{table.name}: table says {prop} on {iv}, derived {an.facts[prop]}")
    return out


@functools.cache
def _builtin(name: str):
    """The derivation from the row's own sympy form and domain."""
    conv = convert._Converter({})
    formula = conv.row(SCALAR_ATOMS[name], U)
    return analyse(formula, U, tuple(conv.conditions))


@pytest.mark.parametrize("name", sorted(SCALAR_ATOMS))
def test_table_row_agrees_with_its_derivation(name):
    assert name in BUILTIN_FORMULAS
    assert _contradictions(SCALAR_ATOMS[name], _builtin(name)) == []


@pytest.mark.parametrize("slope", [-0.5, 0.0, 0.1, 1.0, 2.0])
def test_leaky_relu_factory_agrees_with_its_derivation(slope):
    an = analyse(symbolic.leaky_relu_formula(U, convert._dec(slope)), U)
    assert _contradictions(PARAMETRIC_ATOMS["leaky_relu"](slope), an) == []


@pytest.mark.parametrize("p", [-2.0, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
def test_power_factory_agrees_with_its_derivation(p):
    conv = convert._Converter({})
    an = analyse(conv.power(U, p), U, tuple(conv.conditions))
    assert _contradictions(power(p), an) == []


def test_decided_builtins_are_complete():
    """Where the derivation decides everything, it is at least as strong as the table (say so if sympy can't)."""
    undecided = sorted(n for n in SCALAR_ATOMS if any(_builtin(n).unknown[p] for p in symbolic.PROPS))
    assert undecided == ["gelu", "silu"]   # f' = 0 is transcendental: sympy returns a ConditionSet


def test_the_self_check_catches_a_wrong_row():
    wrong = SCALAR_ATOMS["sigmoid"]
    bad = ScalarAtom(**{**wrong.__dict__, "convex_on": (REALS,)})
    assert _contradictions(bad, _builtin("sigmoid"))
    bad = ScalarAtom(**{**SCALAR_ATOMS["selu"].__dict__, "convex_on": (REALS,)})   # slope drops at 0
    assert _contradictions(bad, _builtin("selu"))


# -- through the language ----------------------------------------------------------------------------------
def test_conformance_user_atoms():
    net = load(str(CONFORMANCE / "user_atoms.net"))
    sp_, bump, xlx, cube = (net.scalar_atom(("user", n)) for n in ("sp", "bump", "xlx", "cube"))
    assert sp_.convex_on == (REALS,) and sp_.increasing_on == (REALS,) and sp_.bounds.lo >= 0
    assert not bump.convex_on_box(Interval(-1.0, 1.0)) and not bump.concave_on_box(Interval(-1.0, 1.0))
    assert bump.concave_on_box(Interval(-0.7, 0.7)) and bump.bounds == Interval(0.0, 1.0)
    assert xlx.convex_on_box(Interval(0.1, INF)) and xlx.domain == NONNEG and xlx.open_at == (True, False)
    assert cube.convex_on_box(Interval(0.1, INF)) and not cube.convex_on_box(REALS)
    assert cube.increasing_on == (REALS,)


def test_seed_square_sq():
    net = load(str(CONFORMANCE / "seed_square.net"))
    sq = net.scalar_atom(("user", "sq"))
    assert sq.increasing_on == (NONNEG,) and sq.decreasing_on == (NONPOS,)
    assert sq.convex_on == (REALS,) and sq.concave_on == () and sq.bounds == NONNEG
    assert sq.derivative == "2*t" and sq.formula == "t^2"
    assert explain_monotone(sq, Interval(-1.0, INF)) == \
        "sq'(t) = 2*t < 0 for t in [-1, 0), inside the range [-1, inf)"
    assert explain_monotone(sq, NONNEG) is None


def test_each_atom_is_analysed_once():
    net = load_text("input x\natom g(u) = exp(-u^2)\natom h(u) = g(u) + u\ny = h(x)\n")
    first = net.scalar_atom(("user", "h"))
    assert net.scalar_atom(("user", "h")) is first
    other = load_text("input z\natom h(v) = exp(-v^2) + v\ny = h(z)\n")   # the same formula after inlining
    assert _formula_equal(user_atom(other, "h"), first)


def _formula_equal(a, b):
    return a.convex_on == b.convex_on and a.increasing_on == b.increasing_on


def test_earlier_atoms_are_inlined():
    net = load_text("input x\natom sq(t) = t^2\natom q(u) = sq(u - 1) + sq(relu(u))\ny = q(x)\n")
    q = net.scalar_atom(("user", "q"))
    assert q.convex_on == (REALS,) and float(q.f(2.0)) == 5.0


# -- words ----------------------------------------------------------------------------------------------------
def test_explanations():
    leaky = _atom("leaky_relu(u, 2)")
    assert "kink at u = 0" in explain_convex(leaky, Interval(-1.0, 1.0))
    assert explain_convex(leaky, Interval(0.0, 1.0)) is None
    bump = _atom("exp(-u^2)")
    text = explain_convex(bump, Interval(0.0, 2.0))
    assert text.startswith("f''(u) = ") and "< 0 for u in [0, 0.707107" in text
    assert explain_monotone(bump, Interval(-1.0, 1.0)).startswith("f'(u) = -2*u*exp(-u**2) < 0 for u in (0, 1]")
    assert explain_monotone(_atom("u / (1 + exp(-u))"), REALS).endswith("(sympy could not decide its sign there)")


# -- time limits ----------------------------------------------------------------------------------------------
def test_a_slow_question_is_unknown(monkeypatch):
    monkeypatch.setattr(limits, "QUESTION_SECONDS", 0.05)
    start = time.monotonic()
    with pytest.raises(symbolic.Unknown):
        symbolic.Asker()(time.sleep, 2)
    assert time.monotonic() - start < 1


def test_a_slow_question_off_the_main_thread_is_unknown(monkeypatch):
    monkeypatch.setattr(limits, "QUESTION_SECONDS", 0.05)
    seen = []
    worker = threading.Thread(target=lambda: seen.append(_raises(lambda: symbolic.Asker()(time.sleep, 1))))
    worker.start()
    worker.join(2)
    assert seen == [True]


def _raises(fn) -> bool:
    try:
        fn()
    except symbolic.Unknown:
        return True
    return False


def test_out_of_time_means_no_facts(monkeypatch):
    monkeypatch.setattr(limits, "QUESTION_SECONDS", 1e-9)
    a = derive(sp.exp(-U**2) + U / 7, U, "slow", "exp(-u^2) + u/7")
    assert a.convex_on == a.concave_on == a.increasing_on == a.decreasing_on == ()
    assert a.bounds == REALS


# -- imports --------------------------------------------------------------------------------------------------
def test_only_symbolic_imports_sympy():
    for path in (ROOT / "dcpnet").rglob("*.py"):
        if "symbolic" in path.relative_to(ROOT / "dcpnet").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "sympy" for n in names), path.name
