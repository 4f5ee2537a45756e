"""The composition rules: conformance claims proved, range-aware rules, failure reports, and soundness."""
import itertools
import subprocess
import sys

import numpy as np
import pytest
from conftest import CASES as CONFORMANCE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netgen import evaluate, networks, sample

from dcpnet.graph import load, load_text
from dcpnet.lattice import Curvature
from dcpnet.prove import Analyzer, holds

C = Curvature


def curvature(text: str, target: str, wrt: list[str]) -> Curvature:
    net = load_text(text)
    return Analyzer(net).curvature(target, wrt)


# -- every positive conformance claim is proved by the rules (no file is special-cased) ------------------
def _positive_claims():
    for path in sorted(CONFORMANCE.glob("*.net")):
        if path.name.startswith("bad_"):
            continue
        text = path.read_text()
        for c in load_text(text, str(path)).checks if "atom " not in text else []:
            if not c.negated:
                yield pytest.param(path, c.pos.line, id=f"{path.stem}:{c.pos.line}")


@pytest.mark.parametrize("path,line", list(_positive_claims()))
def test_conformance_positive_claims_are_proved(path, line):
    net = load(str(path))
    check = next(c for c in net.checks if c.pos.line == line)
    curv = Analyzer(net).curvature(check.target, [n for n, _ in check.wrt])
    assert holds(curv, check.prop), f"{check.prop}({check.target}) gave {curv}"


# -- range-aware rules ------------------------------------------------------------------------------------
def test_relu_of_a_nonnegative_argument_is_affine():
    text = "input x[3] >= 0\nparam W[2, 3] >= 0\ny = relu(W @ x)\nz = relu(W @ x - 1)\n"
    assert curvature(text, "y", ["W"]) is C.AFFINE
    assert curvature(text, "z", ["W"]) is C.CONVEX


def test_a_constant_factor_with_known_sign_keeps_curvature():
    # the example: sigmoid(t) is a constant in (0, 1) when the variable is y
    text = "input t\ninput y\nf = sigmoid(t) * y^2\ng = tanh(t) * y^2\n"
    assert curvature(text, "f", ["y"]) is C.CONVEX
    assert curvature(text, "g", ["y"]) is C.UNKNOWN


def test_products_of_two_variable_factors_are_not_covered():
    text = "input u\ninput v\nq = u * v\nr = u / v\n"
    assert curvature(text, "q", ["u", "v"]) is C.UNKNOWN
    assert curvature(text, "q", ["u"]) is C.AFFINE
    assert curvature(text, "r", ["u", "v"]) is C.UNKNOWN
    assert curvature(text, "r", ["u"]) is C.AFFINE


def test_sigmoid_curvature_depends_on_the_argument_range():
    text = "input s in [-5, 0]\ninput r >= 0\na = sigmoid(s)\nb = sigmoid(r)\nc = sigmoid(s + r)\n"
    assert curvature(text, "a", ["s"]) is C.CONVEX
    assert curvature(text, "b", ["r"]) is C.CONCAVE
    assert curvature(text, "c", ["s", "r"]) is C.UNKNOWN


def test_tied_weights_are_one_variable():
    text = "input x[2]\nparam W[2, 2] >= 0\nz = relu(W @ relu(W @ x))\n"
    net = load_text(text)
    assert sum(1 for n in net.nodes if n.op == "var" and n.attrs == ("W",)) == 1
    assert Analyzer(net).curvature("z", ["W"]) is C.UNKNOWN   # W times a function of W


def test_leaving_the_domain_needs_a_convex_defined_set():
    # (x^2 - 1)^1.5 is defined only for |x| >= 1, not a convex set: the rules must not prove it
    assert curvature("input x\ny = (x^2 - 1)^1.5\n", "y", ["x"]) is C.UNKNOWN
    # log of a concave argument: {g > 0} is convex, so concavity holds where defined
    assert curvature("input x\ny = log(1 - x^2)\n", "y", ["x"]) is C.CONCAVE
    assert curvature("input x >= 2\ny = (x^2 - 1)^1.5\n", "y", ["x"]) is C.CONVEX


def test_nonpositive_scaling_flips_and_division_by_a_constant_scales():
    text = "input x\nparam c <= 0\nparam d >= 1\nf = c * exp(x)\ng = exp(x) / d\nh = exp(x) / c\n"
    assert curvature(text, "f", ["x"]) is C.CONCAVE
    assert curvature(text, "g", ["x"]) is C.CONVEX
    assert curvature(text, "h", ["x"]) is C.CONCAVE


def test_reductions_follow_the_signs_of_their_arguments():
    text = "input x[3]\ny = norm2(relu(x))\nz = sum_squares(-relu(x))\nw = norm1(exp(x) - 1)\n"
    assert curvature(text, "y", ["x"]) is C.CONVEX       # ↑ in nonnegative entries, which are convex
    assert curvature(text, "z", ["x"]) is C.CONVEX       # ↓ in nonpositive entries, which are concave
    assert curvature(text, "w", ["x"]) is C.UNKNOWN      # entries of either sign must be affine


# -- failures name the lowest node and the rule ----------------------------------------------------------
def test_missing_sign_constraint_is_blamed_with_a_hint():
    net = load(str(CONFORMANCE / "icnn_unconstrained.net"))
    failure = Analyzer(net).why_not("f", "convex", ["x"])
    assert failure.rule == "sign rule"
    assert "Wz" in failure.reason and "declare `Wz >= 0`" in failure.hint


def test_wrong_monotonicity_on_the_inner_range_is_blamed():
    net = load_text("input x\ny = (x^2 - 1)^2\n")
    failure = Analyzer(net).why_not("y", "convex", ["x"])
    assert failure.rule == "monotonicity of the outer function"
    assert "[-1, inf" in failure.reason and "[0, inf" in failure.reason


def test_no_sympy_for_files_without_atoms(tmp_path):
    code = ("import sys; from dcpnet.cli import main; "
            f"main(['check', '--json', {str(CONFORMANCE / 'reductions.net')!r}]); "
            "sys.stderr.write('SYMPY' if 'sympy' in sys.modules else 'CLEAN')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.stderr.strip().endswith("CLEAN"), proc.stderr[-500:]


# -- soundness: every proved claim survives random Jensen tests -----------------------------------------
def _jensen_violations(net, node, wrt, prop, rng) -> list:
    leaves = [net.nodes[i].attrs[0] for i in net.ancestors(node) if net.nodes[i].op == "var"]
    fixed = [v for v in leaves if v not in wrt]
    bad = []
    for scale in (0.1, 1.0, 5.0):
        n = 300
        env_fixed = sample(net, fixed, rng, n, scale)
        a = sample(net, wrt, rng, n, scale)
        b = sample(net, wrt, rng, n, scale)
        mid = {v: (a[v] + b[v]) / 2 for v in wrt}
        with np.errstate(all="ignore"):
            fa, fb, fm = (evaluate(net, node, {**env_fixed, **pt}).reshape(n, -1) for pt in (a, b, mid))
        ok = np.isfinite(fa) & np.isfinite(fb) & np.isfinite(fm) & (np.abs(fa) < 1e12) & (np.abs(fb) < 1e12)
        tol = 1e-7 * (np.abs(fa) + np.abs(fb) + np.abs(fm)) + 1e-9
        gap = fm - (fa + fb) / 2
        if prop in ("convex", "affine"):
            bad += list(gap[ok & (gap > tol)])
        if prop in ("concave", "affine"):
            bad += list(gap[ok & (-gap > tol)])
    return bad


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks(), st.integers(0, 2 ** 32 - 1))
def test_every_proof_survives_jensen_tests(case, seed):
    text, names = case
    net = load_text(text)
    analyzer = Analyzer(net)
    rng = np.random.default_rng(seed)
    subsets = [list(s) for k in (1, 2) for s in itertools.combinations(names, k)]
    for name in [n for n in net.names if n.startswith("e")]:
        for wrt in subsets[:4]:
            curv = analyzer.curvature(name, wrt)
            for prop in ("affine", "convex", "concave"):
                if holds(curv, prop):
                    bad = _jensen_violations(net, net.names[name], wrt, prop, rng)
                    assert not bad, f"{prop}({name}) in {wrt} proved but violated by {bad[:3]}\n{text}"
                    break


def test_implicit_domains_are_reported_where_ranges_do_not_settle_them():
    net = load_text("input x\ninput y >= 1\na = log(x)\nb = log(y)\nc = x / (y - 1)\nd = x / y\n")
    an = Analyzer(net)
    assert an.conditions("a") == ["log needs `x` in (0, inf)"]
    assert an.conditions("b") == []                       # y >= 1 keeps log defined
    assert an.conditions("c") == ["`y - 1` ≠ 0 (a divisor)"]
    assert an.conditions("d") == []


@pytest.mark.parametrize("exhaustive_up_to", [10, 0])
def test_multiconvex_groups(exhaustive_up_to):
    from dcpnet.verify import Verifier

    net = load_text("input x\nparam a, b, c, d >= 0\ny = a * b + c * x + exp(d) * relu(x)\n")
    groups = Verifier(net, refute=False).convex_groups("y", exhaustive_up_to=exhaustive_up_to)
    assert sorted(map(sorted, groups)) == [["a", "c", "d"], ["b", "c", "d"]]


# -- products of two varying factors (issue 17, Method 3) ------------------------------------------------
@pytest.mark.parametrize("text,target,want", [
    ("input t >= 0\nf = t^2 * exp(t)\n", "f", C.CONVEX),              # ≥ 0, convex, both ↑
    ("input t <= 0\nf = exp(-t) * t^2\n", "f", C.CONVEX),             # ≥ 0, convex, both ↓
    ("input t in [0, 1]\nf = sqrt(t) * (2 - t)\n", "f", C.CONCAVE),   # ≥ 0, concave, ↑ and ↓
    ("input t >= 0\nf = -exp(t) * t\n", "f", C.CONCAVE),              # a factor ≤ 0 flips the product
    ("input t >= 0\nf = t * exp(-t)\n", "f", C.UNKNOWN),              # convex factors ordered oppositely
    ("input t\nf = t * t\n", "f", C.UNKNOWN),                         # no known sign
    ("input u >= 0\ninput v >= 0\nf = u * v\n", "f", C.UNKNOWN),      # two variables: not similarly ordered
])
def test_product_rule(text, target, want):
    wrt = ["t"] if "input t" in text else ["u", "v"]
    assert Analyzer(load_text(text), beyond=("product",)).curvature(target, wrt) is want
    assert Analyzer(load_text(text), beyond=()).curvature(target, wrt) is C.UNKNOWN   # the composition rules alone


# -- monotonicity in the variables, as the pass computes it ------------------------------------------------
def test_monotonicity_of_an_icnn_in_its_input_and_weights():
    text = ("input x[3]\nparam W[4, 3] >= 0\nparam b[4]\nparam w[4] >= 0\nz = relu(W @ x + b)\nf = w @ z\n"
            "g = exp(-sum(x))\n")
    an = Analyzer(load_text(text))
    assert an.monotonicity("f", ["x"]).value == "nondecreasing"
    assert an.monotonicity("g", ["x"]).value == "nonincreasing"
    assert an.monotonicity("f", ["W"]).value == "not monotone"      # x may be negative
    assert an.monotonicity("f", ["b", "w"]).value == "nondecreasing"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks(), st.integers(0, 2 ** 32 - 1))
def test_every_monotonicity_survives_sampled_pairs(case, seed):
    text, names = case
    net = load_text(text)
    analyzer = Analyzer(net)
    rng = np.random.default_rng(seed)
    for name in [n for n in net.names if n.startswith("e")]:
        wrt = names[:1]
        mono = analyzer.monotonicity(name, wrt).value
        if mono not in ("nondecreasing", "nonincreasing"):
            continue
        node = net.names[name]
        fixed = [net.nodes[i].attrs[0] for i in net.ancestors(node) if net.nodes[i].op == "var"
                 and net.nodes[i].attrs[0] not in wrt]
        n = 300
        env = sample(net, fixed, rng, n, 1.0)
        a = sample(net, wrt, rng, n, 1.0)
        b = {v: a[v] + np.abs(rng.standard_normal(a[v].shape)) * (rng.random(a[v].shape) < 0.5) for v in wrt}
        b = {v: np.clip(b[v], net.variables[v].bounds.lo, net.variables[v].bounds.hi) for v in wrt}
        with np.errstate(all="ignore"):
            fa, fb = (evaluate(net, node, {**env, **pt}).reshape(n, -1) for pt in (a, b))
        ok = np.isfinite(fa) & np.isfinite(fb) & (np.abs(fa) < 1e12) & (np.abs(fb) < 1e12)
        tol = 1e-7 * (np.abs(fa) + np.abs(fb)) + 1e-9
        drop = (fa - fb) if mono == "nondecreasing" else (fb - fa)
        assert not np.any(ok & (drop > tol)), f"{name} {mono} in {wrt}\n{text}"


def test_monotonicity_claims_are_proved_or_refuted_with_a_checked_pair():
    from dcpnet.verify import Verifier, run_checks

    text = ("input x[2]\ninput t\nparam W[3, 2] >= 0\nparam b[3]\nz = relu(W @ x + b)\nf = sum(z) + sum(x)\n"
            "g = sum_squares(x)\nh = exp(-t)\ncheck increasing(f) in x\ncheck decreasing(f) in x\n"
            "check not increasing(g) in x\ncheck decreasing(h) in t\n")
    net = load_text(text)
    results = run_checks(Verifier(net, budget=2.0), None)
    verdicts = [(r.claim, r[r.claim.removeprefix("not ")].verdict.value, r.holds) for r in results]
    assert verdicts == [("increasing", "proved", True), ("decreasing", "refuted", False),
                        ("not increasing", "refuted", True), ("decreasing", "proved", True)]
    w = results[1]["decreasing"].witness
    moved = [k for k in range(2) if w["a"]["x"][k] != w["b"]["x"][k]]
    assert len(moved) == 1 and w["a"]["x"][moved[0]] < w["b"]["x"][moved[0]] and w["f_a"] < w["f_b"]
    assert results[0].as_json()["increasing"]["certificate"]["monotonicity"] == "nondecreasing"
