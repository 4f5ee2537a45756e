"""dcpnet against an outside oracle (CVXPY's DCP analysis) and against numbers (issue 8).

Random expressions over the atoms both systems share are built in both (tests/oracle_gen.py). Required:
- DCP is a floor: whatever CVXPY proves convex (concave, affine), dcpnet proves too;
- every dcpnet proof survives random Jensen tests in an independent NumPy evaluation (breaks re-checked in
  mpmath before they count);
- every witness re-checks in the generator's own mpmath evaluation, and a claim CVXPY proves is refuted only
  by a witness outside CVXPY's domain: the one named exception, CVXPY's power(u, p) for p > 1 not a power of
  two, which CVXPY silently restricts to u >= 0 (so it calls x^3 convex on all of R).
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

cp = pytest.importorskip("cvxpy")

import oracle_gen as og

from dcpnet.evaluate import compile_network
from dcpnet.graph import load_text
from dcpnet.lattice import Verdict
from dcpnet.verify import Verifier

FLOOR_SEEDS = range(300)        # rules only (no witness search): the floor and the Jensen tests of proofs
REFUTE_SEEDS = range(1000, 1100)   # with a small witness budget: every witness re-checked
BLOCK = 50


def _judge_all(seeds, **kw) -> tuple[list[str], Counter]:
    """Every forbidden disagreement over the seeds, and how many verdicts of each kind were checked."""
    problems, verdicts = [], Counter()
    for seed in seeds:
        case = og.make_case(seed)
        rec = og.judge(case, **kw)
        verdicts.update(rec["dcpnet"].values())
        verdicts.update("cvxpy " + p for p in og.PROPS if rec["cvxpy"][p])
        for what in rec["floor"] + rec["unsound"]:
            problems.append(f"seed {seed}: {what}\n{case.text}")
    return problems, verdicts


@pytest.mark.parametrize("start", range(FLOOR_SEEDS.start, FLOOR_SEEDS.stop, BLOCK))
def test_dcp_is_a_floor_and_proofs_survive_jensen(start):
    problems, seen = _judge_all(range(start, start + BLOCK), refute=False, jensen_pairs=150)
    assert not problems, "\n".join(problems)
    assert seen["proved"] >= 20 and seen["cvxpy convex"] >= 5       # the block really tested something


@pytest.mark.parametrize("start", range(REFUTE_SEEDS.start, REFUTE_SEEDS.stop, BLOCK))
def test_witnesses_recheck_and_never_contradict_cvxpy(start):
    problems, seen = _judge_all(range(start, start + BLOCK), budget=0.2, jensen_pairs=0)
    assert not problems, "\n".join(problems)
    assert seen["refuted"] >= 20


def test_the_sample_exercises_every_cvxpy_verdict():
    """The random expressions are not all trivial: CVXPY sees each class, and the power exception occurs."""
    seen = {og.cvxpy_class(og.cvxpy_verdicts(og.make_case(s))) for s in range(60)}
    assert seen == {"affine", "convex", "concave", "non-DCP"}
    assert any(og.cvxpy_verdicts(og.make_case(s))["exception"] for s in range(100))


def test_named_exception_cvxpy_power_domain_x_cubed():
    """CVXPY calls x^3 convex (it gives power(x, 3) the domain x >= 0); on all of R it is not, and dcpnet
    must refute `check not convex(y) in x` with a witness that leaves CVXPY's domain (like -2 and 0)."""
    x = cp.Variable()
    assert cp.power(x, 3).is_convex()                      # the exception itself, so a change in CVXPY shows
    net = load_text("input x\ny = x^3\ncheck not convex(y) in x\n")
    (check,) = net.checks
    res = Verifier(net, seed=0, budget=3.0).verify("y", ["x"], "not convex", check.pos.line, want=("convex",))
    assert res.holds and res.convex.verdict is Verdict.REFUTED
    case = og.Case(0, og.Expr("power", (og.Expr("var", attr="x"),), (), 3), inputs={"x": ((), "")})
    w = res.convex.witness
    assert og.witness_problem(case, "convex", w) is None                      # a true break on R
    assert og.witness_problem(case, "convex", w, domain="cvxpy") is not None  # outside CVXPY's x >= 0
    fa, fb, fm = og.exact_values(case, {"x": -2.0}, {"x": 0.0}, {})
    assert fm > (fa + fb) / 2                                                 # -1 > -4: the classic pair


def test_named_exception_cvxpy_power_domain_not_convex():
    """The same exception, second facet: CVXPY calls power(u, 1.5) increasing on its domain u >= 0, so it proves
    max(x)^1.5 convex; but {max(x) >= 0} is not convex (the midpoint of (1, -3) and (-3, 1) leaves it), so
    the function is not convex as an extended-value function, and dcpnet must not prove it."""
    x = cp.Variable(2)
    assert cp.power(cp.max(x), 1.5).is_convex()
    net = load_text("input x[2]\ny = max(x)^1.5\n")
    assert Verifier(net, refute=False).verify("y", ["x"]).convex.verdict is not Verdict.PROVED
    case = og.Case(0, og.Expr("power", (og.Expr("reduce", (og.Expr("var", (), (2,), "x"),), (), "max"),), (), 1.5),
                   inputs={"x": ((2,), "")})
    hole = og._confirm(case, "convex", {"a": {"x": [1.0, -3.0]}, "b": {"x": [-3.0, 1.0]}, "fixed": {}})
    assert hole is not None and "midpoint leaves the domain" in hole


def test_the_checkers_can_fail():
    """The Jensen search and the witness check reject what they must (so the tests above can fail)."""
    cube = og.Case(0, og.Expr("power", (og.Expr("var", attr="x"),), (), 3), inputs={"x": ((), "")})
    assert og.jensen_violation(cube, "convex", np.random.default_rng(0), 200) is not None
    assert og.jensen_violation(cube, "concave", np.random.default_rng(0), 200) is not None
    square = og.Case(0, og.Expr("atom", (og.Expr("var", attr="x"),), (), "square"), inputs={"x": ((), "nonneg")})
    assert og.jensen_violation(square, "convex", np.random.default_rng(0), 200) is None
    fake = {"a": {"x": 1.0}, "b": {"x": 3.0}, "fixed": {}, "index": []}
    assert og.witness_problem(square, "concave", fake) is None                 # x^2 is not concave: real
    assert og.witness_problem(square, "convex", fake) is not None              # but it is convex: no gap
    assert og.witness_problem(square, "concave", {**fake, "a": {"x": -1.0}}) is not None   # x >= 0 broken
    hole = og.Case(0, og.Expr("atom", (og.Expr("atom", (og.Expr("var", attr="x"),), (), "abs"),), (), "log"),
                   inputs={"x": ((), "")})            # log|x|: domain R \ {0}, the midpoint of -1 and 1 is out
    assert "midpoint leaves the domain" in og._confirm(hole, "concave", {"a": {"x": -1.0}, "b": {"x": 1.0},
                                                                        "fixed": {}})


@pytest.mark.parametrize("seed", range(0, 400, 7))
def test_generator_agrees_with_dcpnet_evaluator(seed):
    """The .net text means what the tree means: dcpnet's compiled evaluator matches the independent one,
    NaN exactly where the independent one is outside an atom's domain."""
    case = og.make_case(seed)
    net = load_text(case.text)
    env = case.sample(np.random.default_rng(seed), 64, 1.0)
    mine = np.asarray(case.evaluate(env), dtype=float)
    with np.errstate(all="ignore"):
        theirs = compile_network(net, ["y"]).forward(env, batched=set(env))["y"]
    theirs = np.broadcast_to(np.asarray(theirs, dtype=float), mine.shape)
    np.testing.assert_array_equal(np.isnan(theirs), np.isnan(mine))
    ok = np.isfinite(mine)
    np.testing.assert_allclose(theirs[ok], mine[ok], rtol=1e-9, atol=1e-12)


# -- bugs the oracle found (fixed; kept as regression tests) ---------------------------------------
def test_refuter_budget_reaches_the_second_property():
    net = load_text("input x\ny = (x^3)^2\n")
    res = Verifier(net, seed=0, budget=1.0).verify("y", ["x"])
    assert res.concave.verdict is Verdict.REFUTED          # a = -1, b = 1: f(mid) = 0 < 1


def test_vacuous_proof_on_an_empty_domain():
    x = cp.Variable(nonpos=True)
    assert cp.power(x - 1, 2.5).is_convex()
    net = load_text("input x <= 0\ny = (x - 1)^2.5\n")
    assert Verifier(net, refute=False).verify("y", ["x"]).convex.verdict is Verdict.PROVED


def test_failure_text_does_not_call_square_constant():
    net = load_text("input x\ny = (x^3 - x)^2\n")   # not convex, so no method beyond the rules proves it
    reason = Verifier(net, refute=False).verify("y", ["x"]).convex.reason
    assert "constant only on" not in reason
