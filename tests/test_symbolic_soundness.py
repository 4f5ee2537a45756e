"""Soundness at the symbolic edge, against a reference written for this test.

The reference is an mpmath evaluator of the language's scalar functions, reading an atom body exactly as
written (each literal the decimal written, every built-in's domain, no simplification). It shares no code
with dcpnet: bodies are generated here as trees and rendered to text, so the reference never parses.

Random user atoms mix kinks (relu, abs, maximum, minimum), piecewise built-ins (huber, elu, selu,
leaky_relu), derivatives sympy cannot solve (exp(t^2) against a polynomial) and domain tricks
(sqrt(t)^k, log(t^2), 0 * log(t), inv_pos(t - exp(-t))). Each proof must pass a sampled Jensen check
and each witness must be a valid point of the function as written, inside the declared bounds.

`benchmarks/soundness.py` runs `audit` on thousands of claims.
"""
from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass, field
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from dcpnet.errors import DcpnetError
from dcpnet.graph import load_text
from dcpnet.lattice import Interval, Verdict

DPS = 40


# -- the reference ------------------------------------------------------------------------------------------
class Undef(Exception):
    """The body as written is not a finite real at this point."""


_SELU_L, _SELU_A = 1.0507009873554805, 1.6732632423543772   # the standard constants, as doubles


def _ref_builtin(name: str, u):
    m = mpmath
    if name == "relu":
        return u if u > 0 else m.mpf(0)
    if name == "abs":
        return abs(u)
    if name == "square":
        return u * u
    if name == "sqrt":
        if u < 0:
            raise Undef
        return m.sqrt(u)
    if name == "exp":
        return m.exp(u)
    if name == "log":
        if u <= 0:
            raise Undef
        return m.log(u)
    if name == "softplus":
        return m.log1p(m.exp(u))
    if name == "sigmoid":
        return 1 / (1 + m.exp(-u))
    if name == "tanh":
        return m.tanh(u)
    if name == "elu":
        return u if u > 0 else m.expm1(u)
    if name == "selu":
        return m.mpf(_SELU_L) * (u if u > 0 else m.mpf(_SELU_A) * m.expm1(u))
    if name == "gelu":
        return u * m.ncdf(u)
    if name == "silu":
        return u / (1 + m.exp(-u))
    if name == "inv_pos":
        if u <= 0:
            raise Undef
        return 1 / u
    if name == "entr":
        if u < 0:
            raise Undef
        return -u * m.log(u) if u > 0 else m.mpf(0)
    if name == "huber":
        return u * u if abs(u) <= 1 else 2 * abs(u) - 1
    raise AssertionError(name)


def _ref_power(u, p_text: str):
    p = float(p_text)            # exponents are atom parameters: the nearest double
    if p.is_integer() and p >= 0:
        return u ** int(p)
    if u < 0 or (p < 0 and u == 0):   # p < 0 needs u > 0 (as in CVXPY); fractional p needs u >= 0
        raise Undef
    return u ** int(p) if p.is_integer() else u ** mpmath.mpf(p)


def ref_eval(tree, t):
    """The body `tree` at the mpf t, at the working precision; Undef where it is not a finite real."""
    kind = tree[0]
    if kind == "t":
        v = t
    elif kind == "num":
        v = mpmath.mpf(tree[1])  # the decimal, correctly rounded at the working precision
    elif kind == "neg":
        v = -ref_eval(tree[1], t)
    elif kind in "+-*/":
        a, b = ref_eval(tree[1], t), ref_eval(tree[2], t)
        if kind == "/" and b == 0:
            raise Undef
        v = {"+": a + b, "-": a - b, "*": a * b}[kind] if kind != "/" else a / b
    elif kind == "pow":
        v = _ref_power(ref_eval(tree[1], t), tree[2])
    elif kind == "call":
        v = _ref_builtin(tree[1], ref_eval(tree[2], t))
    elif kind == "leaky":
        u = ref_eval(tree[1], t)
        v = u if u > 0 else mpmath.mpf(float(tree[2])) * u
    elif kind in ("max", "min"):
        a, b = ref_eval(tree[1], t), ref_eval(tree[2], t)
        v = max(a, b) if kind == "max" else min(a, b)
    else:
        raise AssertionError(kind)
    if not isinstance(v, mpmath.mpf) or not mpmath.isfinite(v):
        raise Undef
    return v


def render(tree) -> str:
    kind = tree[0]
    if kind == "t":
        return "t"
    if kind == "num":
        return tree[1] if not tree[1].startswith("-") else f"({tree[1]})"
    if kind == "neg":
        return f"(-{render(tree[1])})"
    if kind in "+-*/":
        return f"({render(tree[1])} {kind} {render(tree[2])})"
    if kind == "pow":
        return f"({render(tree[1])})^{tree[2]}"   # the base in parentheses: `^` is right-associative
    if kind == "call":
        return f"{tree[1]}({render(tree[2])})"
    if kind == "leaky":
        return f"leaky_relu({render(tree[1])}, {tree[2]})"
    return f"{'maximum' if kind == 'max' else 'minimum'}({render(tree[1])}, {render(tree[2])})"


# -- random bodies --------------------------------------------------------------------------------------------
UNARY = ["relu", "abs", "square", "sqrt", "exp", "log", "softplus", "sigmoid", "tanh", "elu", "selu", "gelu",
         "silu", "inv_pos", "entr", "huber"]
NUMBERS = ["0.5", "2", "1.25", "0.1", "3", "-1", "0.7", "1", "-0.3", "0.99999999999999999999", "1e-20"]
EXPONENTS = ["2", "3", "0.5", "1.5", "-1", "4", "-0.5", "6"]
T = ("t",)


def _num(rng) -> tuple:
    return ("num", rng.choice(NUMBERS))


def _trick(rng) -> tuple:
    """A shape that has caught provers: kinks, undecidable derivatives, domains sympy loses."""
    c = _num(rng)
    return rng.choice([
        ("pow", ("call", "sqrt", T), rng.choice(["2", "4", "6"])),                       # sqrt(t)^k
        ("+", T, ("*", ("num", "0"), ("call", "log", T))),                               # 0 * log(t)
        ("call", "log", ("call", "square", T)),                                          # a hole at 0
        ("call", "inv_pos", ("-", T, ("call", "exp", ("neg", T)))),                      # domain unsolvable
        ("-", T, ("*", ("num", "8"), ("*", ("max", ("num", "0"), ("min", T, ("-", ("num", "1"), T))),
                                          ("call", "exp", ("pow", T, "2"))))),          # a dip f' = 0 hides
        ("+", ("call", "exp", ("pow", T, "2")), ("*", c, ("pow", T, "3"))),              # undecidable f'
        ("max", ("*", c, T), ("call", "huber", T)),                                      # kink
        ("leaky", ("-", T, c), rng.choice(["0.1", "2", "-0.5", "1"])),                   # piecewise linear
        ("min", ("call", "silu", ("call", "selu", T)), ("num", "4")),
        ("call", "abs", ("-", ("pow", T, "2"), ("num", "1"))),
    ])


def gen_body(rng: random.Random, depth: int = 3) -> tuple:
    r = rng.random()
    if depth <= 0 or r < 0.15:
        return T if rng.random() < 0.7 else _num(rng)
    if r < 0.3:
        return _trick(rng)
    if r < 0.55:
        return ("call", rng.choice(UNARY), gen_body(rng, depth - 1))
    if r < 0.65:
        return ("pow", gen_body(rng, depth - 1), rng.choice(EXPONENTS))
    if r < 0.72:
        return (rng.choice(["max", "min"]), gen_body(rng, depth - 1), gen_body(rng, depth - 1))
    if r < 0.76:
        return ("neg", gen_body(rng, depth - 1))
    if r < 0.8:
        return ("leaky", gen_body(rng, depth - 1), rng.choice(["0.1", "2", "-0.5"]))
    op = rng.choice(["+", "-", "*", "*", "/"])
    left = gen_body(rng, depth - 1)
    right = _num(rng) if op in "*/" and rng.random() < 0.6 else gen_body(rng, depth - 1)
    return (op, left, right)


BOXES = [("-1", "2"), ("0.1", "3"), ("-3", "-0.2"), ("-0.7", "0.7"), ("0", "1"), ("-10", "10"), ("0.5", "0.50001")]


@dataclass
class Case:
    """One random network: an atom, an input box, targets built on it, and the reference for each target."""

    body: tuple
    box: tuple[str, str]
    shift: str

    def text(self) -> str:
        lo, hi = self.box
        return (f"input x in [{lo}, {hi}]\natom f(t) = {render(self.body)}\n"
                f"y1 = f(x)\ny2 = relu(f(x) - {self.shift})\ny3 = -(f(x))\n")

    def value(self, target: str, x):
        v = ref_eval(self.body, x)
        if target == "y2":
            w = v - mpmath.mpf(self.shift)
            return w if w > 0 else mpmath.mpf(0)
        return -v if target == "y3" else v


TARGETS = ("y1", "y2", "y3")


def gen_case(rng: random.Random) -> Case:
    return Case(gen_body(rng), rng.choice(BOXES), rng.choice(["0", "0.5", "-2.5", "1"]))


# -- the audit -------------------------------------------------------------------------------------------------
@dataclass
class Counts:
    claims: int = 0
    proved: int = 0
    refuted: int = 0
    unknown: int = 0
    false_proofs: int = 0
    invalid_witnesses: int = 0
    crashes: int = 0
    hangs: int = 0
    bad_input: int = 0
    problems: list = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for k in ("claims", "proved", "refuted", "unknown", "false_proofs", "invalid_witnesses", "crashes",
                  "hangs", "bad_input"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.problems += other.problems


HANG_SECONDS = 30.0   # one network (an atom's derivation under its 10 s limit, and the verdicts)


def audit(case: Case, rng: random.Random, budget: float = 0.1, pairs: int = 12) -> Counts:
    """Verify every target of the case and judge each verdict with the reference."""
    from dcpnet.verify import Verifier

    counts = Counts()
    start = time.monotonic()
    try:
        net = load_text(case.text())
    except DcpnetError:
        counts.bad_input += 1
        return counts
    try:
        verifier = Verifier(net, seed=rng.randrange(1000), budget=budget)
        results = [verifier.verify(t, ["x"], want=("convex", "concave")) for t in TARGETS]
    except Exception as err:  # noqa: BLE001 - a crash is what the audit counts
        counts.crashes += 1
        counts.problems.append(("crash", case.text(), repr(err)))
        return counts
    if time.monotonic() - start > HANG_SECONDS:
        counts.hangs += 1
        counts.problems.append(("hang", case.text(), time.monotonic() - start))
    with mpmath.workdps(DPS):
        for target, res in zip(TARGETS, results):
            for prop in ("convex", "concave"):
                counts.claims += 1
                verdict = res[prop]
                sign = 1 if prop == "convex" else -1
                if verdict.verdict is Verdict.PROVED:
                    counts.proved += 1
                    bad = _jensen_violation(case, target, sign, rng, pairs)
                    if bad is not None:
                        counts.false_proofs += 1
                        counts.problems.append(("false proof", case.text(), target, prop, bad))
                elif verdict.verdict is Verdict.REFUTED:
                    counts.refuted += 1
                    why = _witness_problem(case, target, sign, verdict.witness)
                    if why is not None:
                        counts.invalid_witnesses += 1
                        counts.problems.append(("invalid witness", case.text(), target, prop, why))
                else:
                    counts.unknown += 1
    return counts


def _box(case: Case) -> tuple[Fraction, Fraction]:
    return Fraction(case.box[0]), Fraction(case.box[1])


def _defined_along(case: Case, target: str, a, b, k: int = 9):
    """The values at a, b, their midpoint, and k points between (None when any is undefined)."""
    try:
        fa, fb, fm = (case.value(target, x) for x in (a, b, (a + b) / 2))
        for i in range(1, k + 1):
            case.value(target, a + (b - a) * i / (k + 1))
    except (Undef, ZeroDivisionError, ValueError):
        return None
    return fa, fb, fm


def _point_in(lo: Fraction, hi: Fraction, rng: random.Random):
    """A double inside [lo, hi] read exactly, as an mpf."""
    x = float(lo + (hi - lo) * Fraction(rng.random()))
    if Fraction(x) < lo:
        x = math.nextafter(x, math.inf)
    if Fraction(x) > hi:
        x = math.nextafter(x, -math.inf)
    return mpmath.mpf(x)


def _jensen_violation(case: Case, target: str, sign: int, rng: random.Random, pairs: int):
    lo, hi = _box(case)
    for _ in range(pairs):
        a, b = _point_in(lo, hi, rng), _point_in(lo, hi, rng)
        values = _defined_along(case, target, a, b)
        if values is None:
            continue
        fa, fb, fm = values
        gap = sign * (fm - (fa + fb) / 2)
        if gap > 0 and _certain_gap(case, target, sign, a, b):
            return (float(a), float(b), float(gap))
    return None


def _certain_gap(case: Case, target: str, sign: int, a, b) -> bool:
    """The Jensen gap at (a, b) is positive beyond the reference's own rounding: at 40 and at 80 digits it
    is positive and the two agree to half its size (a relative test: a gap of 1e-32 between values of 1e-32
    counts, the noise of an affine function does not)."""
    gaps = []
    for dps in (DPS, 2 * DPS):
        with mpmath.workdps(dps):
            try:
                fa, fb, fm = (case.value(target, x) for x in (mpmath.mpf(a), mpmath.mpf(b), (mpmath.mpf(a) + b) / 2))
            except Undef:
                return False
            gaps.append(sign * (fm - (fa + fb) / 2))
    with mpmath.workdps(2 * DPS):
        return gaps[1] > 0 and abs(gaps[1] - gaps[0]) < gaps[1] / 2


def _witness_problem(case: Case, target: str, sign: int, w: dict):
    a, b = w["a"]["x"], w["b"]["x"]
    lo, hi = _box(case)
    mid = (Fraction(a) + Fraction(b)) / 2
    if not all(lo <= Fraction(x) <= hi for x in (a, b)) or not lo <= mid <= hi:
        return f"outside the declared box: a = {a!r}, b = {b!r}"
    try:
        fa, fb, fm = (case.value(target, x) for x in (mpmath.mpf(a), mpmath.mpf(b), (mpmath.mpf(a) + b) / 2))
    except Undef:
        return f"undefined at a, b or the midpoint: a = {a!r}, b = {b!r}"
    gap = sign * (fm - (fa + fb) / 2)
    if not _certain_gap(case, target, sign, a, b):
        return f"no gap by the reference: {mpmath.nstr(gap, 10)} at a = {a!r}, b = {b!r}"
    return None


# -- the property test -----------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(hs.integers(0, 2**32 - 1))
def test_random_atoms_never_give_a_false_proof_or_an_invalid_witness(seed):
    rng = random.Random(seed)
    counts = audit(gen_case(rng), rng)
    assert counts.false_proofs == counts.invalid_witnesses == counts.crashes == counts.hangs == 0, counts.problems


def test_the_audit_can_fail():
    """The audit's checks bite: a wrong verdict of each kind is caught."""
    case = Case(("pow", T, "2"), ("-1", "2"), "0")
    rng = random.Random(1)
    with mpmath.workdps(DPS):
        assert _jensen_violation(case, "y3", 1, rng, 12) is not None      # -(t^2) is not convex
        assert _jensen_violation(case, "y1", 1, rng, 12) is None
        sqrt6 = Case(("pow", ("call", "sqrt", T), "6"), ("-1", "2"), "0")
        # t^3 is not convex at t < 0, but sqrt(t)^6 is undefined there: that witness is invalid
        assert "undefined" in _witness_problem(sqrt6, "y1", 1, {"a": {"x": -1.0}, "b": {"x": 0.0}})
        assert "outside" in _witness_problem(case, "y1", 1, {"a": {"x": -1.5}, "b": {"x": 0.0}})
        assert "no gap" in _witness_problem(case, "y1", 1, {"a": {"x": -1.0}, "b": {"x": 1.0}})   # t^2 is convex
        # a tiny gap between tiny values is a gap: (-t)^6 at ±1e-5 (values 1e-30, the midpoint 0)
        tiny = Case(("pow", ("neg", T), "6"), ("-1", "1"), "0")
        assert _witness_problem(tiny, "y1", -1, {"a": {"x": -1e-5}, "b": {"x": 1e-5}}) is None
        affine = Case(("+", ("*", ("num", "0.1"), T), ("num", "0.3")), ("-1", "1"), "0")
        assert "no gap" in _witness_problem(affine, "y1", 1, {"a": {"x": -0.3}, "b": {"x": 0.7}})


# -- fuzzed bodies: no traceback, no run past the limits ----------------------------------------------------------
@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(hs.integers(0, 2**32 - 1))
def test_fuzzed_bodies_read_soundly_without_a_traceback(seed):
    """Thousands of bodies through the front end and the body readers (no sympy): the interval enclosure
    holds the reference value wherever the body is defined, and the mpmath reader agrees with the reference."""
    from dcpnet.body import Body, Undefined

    rng = random.Random(seed)
    case = gen_case(rng)
    try:
        net = load_text(case.text())
    except DcpnetError:
        return
    body = Body.of(net.atom_defs, "f")
    nowhere = body.defined_nowhere()
    for _ in range(4):
        x = rng.uniform(-4, 4)
        with mpmath.workdps(DPS):
            try:
                want = ref_eval(case.body, mpmath.mpf(x))
            except Undef:
                want = None
            try:
                got = body.mp(mpmath.mpf(x))
            except Undefined:
                got = None
        assert (want is None) == (got is None), (case.text(), x, want, got)
        assert not (nowhere and want is not None), (case.text(), x)   # "defined nowhere" must be true
        if want is not None:
            assert abs(got - want) <= mpmath.mpf(10) ** -30 * (1 + abs(want)), (case.text(), x)
            enclosure = body.interval(Interval(x, x))
            assert enclosure.lo <= want <= enclosure.hi, (case.text(), x, enclosure, want)
        with np.errstate(all="ignore"):
            value, slope = body.numpy(np.array([x]))   # never raises; nan where undefined
        assert value.shape == slope.shape == (1,)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(hs.integers(0, 2**32 - 1))
def test_fuzzed_atoms_are_derived_within_the_limits(seed):
    """The whole derivation (sympy in its child) on fuzzed bodies: within the wall clock, and each fact
    a record lists holds at sampled points by the reference."""
    from dcpnet.symbolic import WALL_SECONDS, user_atom

    rng = random.Random(seed)
    case = gen_case(rng)
    try:
        net = load_text(case.text())
    except DcpnetError:
        return
    start = time.monotonic()
    atom = user_atom(net, "f")
    assert time.monotonic() - start < WALL_SECONDS + 5
    with mpmath.workdps(DPS):
        for iv in atom.increasing_on + atom.decreasing_on:
            sign = 1 if iv in atom.increasing_on else -1
            lo, hi = max(iv.lo, -20.0), min(iv.hi, 20.0)
            if lo >= hi:
                continue
            xs = sorted(rng.uniform(lo, hi) for _ in range(8))
            ys = []
            for x in xs:
                try:
                    ys.append(ref_eval(case.body, mpmath.mpf(x)))
                except Undef:
                    ys.append(None)
            for y0, y1 in itertools.pairwise(ys):
                if y0 is not None and y1 is not None:
                    assert sign * (y1 - y0) >= -mpmath.mpf(10) ** -25 * (1 + abs(y0)), (case.text(), iv)
        box = Interval(-1.0, 2.0)
        image = atom.image(box)
        for x in np.linspace(-1, 2, 31):
            try:
                y = ref_eval(case.body, mpmath.mpf(float(x)))
            except Undef:
                continue
            assert image.lo <= y <= image.hi, (case.text(), x, image, y)


# -- one case of our own for each mechanism ----------------------------------------------------------------------
def _verdicts(text: str, target: str = "y", budget: float = 0.5):
    from dcpnet.verify import Verifier

    net = load_text(text)
    return Verifier(net, budget=budget).verify(target, ["x"], want=("convex", "concave")), net


def test_an_undecided_region_contributes_only_a_proved_bound():
    """Mechanism 1: f rises to 0, dips by a hidden bump, and falls (sympy cannot solve f' = 0 in (0, 2));
    the dip reaches about -5 near t = 1, so f ≥ f(0), f(2) would be false."""
    body = "-(t^2) - 4*maximum(0, minimum(t, 2 - t))*exp(t^2/4)/(1 + t^2/8) + 2*t"
    res, net = _verdicts(f"input x in [-1, 3]\natom f(t) = {body}\ny = relu(-f(x) - 1)\n")
    atom = net.scalar_atom(("user", "f"))
    with mpmath.workdps(30):
        dip = min(atom.mp(mpmath.mpf(k) / 50) for k in range(101))
    image = atom.image(Interval(-1.0, 3.0))
    assert image.lo <= dip < -3
    assert res.convex.verdict is not Verdict.PROVED or res.concave.verdict is not Verdict.PROVED  # not constant
    assert res.concave.verdict is not Verdict.PROVED


def test_simplification_does_not_move_the_domain():
    """Mechanism 2: sympy turns -(sqrt(t)^4) into -t^2 (concave everywhere) and 0*log(t) into 0; the
    function as written is defined only for t >= 0 and t > 0."""
    res, _ = _verdicts("input x in [-2, 2]\natom g(t) = t^3 - 0*log(t) + sqrt(t)^4\ny = g(x)\n")
    assert res.convex.verdict is not Verdict.REFUTED   # convex where defined (t > 0)
    if res.concave.verdict is Verdict.REFUTED:
        assert all(v > 0 for v in (res.concave.witness["a"]["x"], res.concave.witness["b"]["x"]))


def test_a_witness_must_satisfy_the_declared_bound_as_written():
    """Mechanism 2: `x >= 0.7` admits no double below seven tenths, and float(0.7) is below it."""
    from dcpnet.precise import OutsideDomain, evaluate_precise

    net = load_text("input x >= 0.7\ny = x^2\n")
    assert 0.7 < Fraction(7, 10)
    with pytest.raises(OutsideDomain):
        evaluate_precise(net, ["y"], {"x": 0.7})
    assert evaluate_precise(net, ["y"], {"x": math.nextafter(0.7, 1)})["y"] > 0.49
    assert net.variables["x"].bounds.lo <= 0.7 - 1e-17   # the prover's range holds seven tenths
    half = load_text("input x[2] in [0.5, 2]\ny = sum(x)\n")   # bounds a double holds: the fast comparison
    assert evaluate_precise(half, ["y"], {"x": [0.5, 2.0]})["y"] == 2.5
    with pytest.raises(OutsideDomain):
        evaluate_precise(half, ["y"], {"x": [0.5, math.nextafter(2.0, 3)]})


def test_an_atom_defined_nowhere_is_never_refuted():
    """Every claim on an atom defined at no real point holds vacuously (interval evaluation proves it)."""
    res, _ = _verdicts("input x in [-1, 1]\natom k(t) = log(-(t^2) - 0.5) * t^3 - t^4\ny = k(x)\n")
    assert res.convex.verdict is Verdict.PROVED and res.concave.verdict is Verdict.PROVED
    res, _ = _verdicts("input x in [-1, 1]\natom k(t) = log(t^2 - 2*t + 1.5) * t^3 - t^4\ny = k(x)\n")
    assert res.concave.verdict is not Verdict.PROVED   # defined everywhere: not vacuous


def test_a_literal_means_the_decimal_written():
    """Mechanism 3: 0.30000000000000000001 - 0.3 is 1e-20 > 0, not the 0 of doubles."""
    from dcpnet.precise import evaluate_precise

    text = "input x\nc = 0.30000000000000000001 - 0.3\ny = c * abs(x)\n"
    res, net = _verdicts(text)
    assert res.concave.verdict is not Verdict.PROVED   # c > 0: convex, not concave
    with mpmath.workdps(50):
        c = evaluate_precise(net, ["c"], {"x": 0.0}, dps=50)["c"]
        assert abs(c - mpmath.mpf("1e-20")) < mpmath.mpf("1e-45")


def test_a_parameter_that_rounds_onto_a_class_boundary_is_bad_input():
    for text in ("input x\ny = x^3.00000000000000000001\n", "input x\ny = leaky_relu(x, 1.00000000000000000001)\n",
                 "input x\natom f(t) = t^2.0000000000000000001\ny = f(x)\n"):
        with pytest.raises(DcpnetError, match="rounds to"):
            load_text(text)


def test_bad_constants_in_atom_bodies_are_reported_at_the_constant(tmp_path):
    """Mechanism 4: a complex or undefined constant is bad input (exit 2 at its position), not a traceback."""
    import subprocess
    import sys

    path = tmp_path / "bad.net"
    path.write_text("input x\natom f(t) = minimum(t, sqrt(-0.25) + 1)\ny = f(x)\ncheck convex(y) in x\n")
    out = subprocess.run([sys.executable, "-m", "dcpnet", "check", str(path)], capture_output=True, text=True, check=False,
                         timeout=60)
    assert out.returncode == 2, out.stderr
    assert f"{path}:2:24: error:" in out.stderr and "Traceback" not in out.stderr


def test_a_hang_falls_back_to_sound_facts_and_says_so(monkeypatch, tmp_path):
    """Mechanism 5: past the wall clock the child is killed; facts unknown, the range from intervals."""
    from dcpnet.symbolic import explain_convex, limits, user_atom

    monkeypatch.setenv("DCPNET_CACHE_DIR", str(tmp_path))    # no facts kept from an earlier test
    monkeypatch.setattr(limits, "WALL_SECONDS", 0.001)
    net = load_text("input x\natom f(t) = t^2 + relu(t)\ny = f(x)\n")
    start = time.monotonic()
    atom = user_atom(net, "f")
    assert time.monotonic() - start < 2
    assert atom.convex_on == atom.increasing_on == () and "wall-clock" in atom.notes[0]
    assert atom.image(Interval(1.0, 2.0)).lo <= 2 and atom.image(Interval(1.0, 2.0)).hi >= 6
    assert "wall-clock" in explain_convex(atom, Interval(0.0, 1.0))
    res, _ = _verdicts("input x in [-1, 1]\natom f(t) = t^2 + relu(t)\ny = f(x)\n", budget=0.1)
    assert res.convex.verdict is not Verdict.PROVED and "wall-clock limit" in res.convex.reason   # the report says so


def test_the_child_limits_time_and_memory():
    from dcpnet.symbolic import Limit, run_limited

    start = time.monotonic()
    with pytest.raises(Limit, match="wall-clock"):
        run_limited(time.sleep, (30,), seconds=0.3)
    assert time.monotonic() - start < 3
    with pytest.raises(Limit, match="memory"):
        run_limited(bytearray, (8 << 30,), seconds=20, memory=256 << 20)
    assert run_limited(pow, (2, 10)) == 1024


def test_one_late_atom_does_not_cost_the_others_their_facts():
    """Atoms of a network share one child; the late one is cut off and a fresh child takes the rest."""
    from dcpnet.symbolic import Limit, run_each_limited

    def work(x):
        if x == "slow":
            time.sleep(30)
        return x * 2

    start = time.monotonic()
    out = run_each_limited(work, ["a", "slow", "b"], seconds=0.5)
    assert out[0] == "aa" and isinstance(out[1], Limit) and out[2] == "bb"
    assert time.monotonic() - start < 5
