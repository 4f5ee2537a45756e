"""The refuter: witnesses re-checked independently, never against a proof, deterministic, within budget."""
import itertools
import time

import mpmath
import numpy as np
import pytest
from conftest import CASES as CONFORMANCE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netgen import evaluate, networks

from dcpnet.graph import load, load_text
from dcpnet.lattice import Verdict
from dcpnet.prove import holds
from dcpnet.verify import Verifier


def recheck(net, target: str, prop: str, w: dict) -> float:
    """The Jensen gap of a witness by this test's own evaluation: float, then 40 digits on the scalars."""
    node = net.names[target]
    def full(k, v):  # a single number fills a fixed array (the compact form of a witness)
        return np.broadcast_to(np.asarray(v, dtype=float), net.variables[k].shape)[None]

    env = {k: full(k, v) for k, v in w["fixed"].items()}
    points = []
    for which in ("a", "b"):
        points.append({**env, **{k: full(k, v) for k, v in w[which].items()}})
    mid = {**env, **{k: (np.asarray(w["a"][k]) + np.asarray(w["b"][k]))[None] / 2 for k in w["a"]}}
    for k in w["a"]:  # the midpoint must be exact in floats, or the witness is not what it claims
        a, b = np.asarray(w["a"][k], dtype=float), np.asarray(w["b"][k], dtype=float)
        assert np.all(a + b == 2 * ((a + b) / 2))
    flat = int(np.ravel_multi_index(w["index"], net.nodes[node].shape)) if w["index"] else 0
    with np.errstate(all="ignore"):
        fa, fb, fm = (float(np.ravel(evaluate(net, node, p))[flat]) for p in (*points, mid))
    gap = fm - (fa + fb) / 2
    return gap if prop == "convex" else -gap


def test_the_seed_counterexample_is_refuted_with_a_checkable_witness():
    net = load(str(CONFORMANCE / "seed_square.net"))
    r = Verifier(net, seed=0, budget=3).verify("h", ["x"])
    assert r.convex.verdict is Verdict.REFUTED and r.concave.verdict is Verdict.REFUTED
    assert r.affine.verdict is Verdict.REFUTED
    w = r.convex.witness
    assert w["digits"] >= 30 and w["gap"] > 0
    with mpmath.workdps(40):
        a, b = mpmath.mpf(w["a"]["x"]), mpmath.mpf(w["b"]["x"])
        f = lambda t: (t * t - 1) ** 2
        assert f((a + b) / 2) - (f(a) + f(b)) / 2 > 0
    assert "sq" in r.convex.reason and "[0, inf" in r.convex.reason


def test_witnesses_are_deterministic_for_a_seed():
    net = load(str(CONFORMANCE / "icnn.net"))
    one = Verifier(net, seed=7, budget=3).verify("loss", ["x"]).convex.witness
    two = Verifier(net, seed=7, budget=3).verify("loss", ["x"]).convex.witness
    assert one is not None and one == two


def test_the_budget_bounds_the_search():
    # x*y in x, y is bilinear (never convex), but a zero budget gives the refuter no time
    net = load_text("input x\ninput y\nq = x * y\n")
    t0 = time.perf_counter()
    r = Verifier(net, seed=0, budget=0.0).verify("q", ["x", "y"])
    assert time.perf_counter() - t0 < 1.0
    assert r.convex.verdict is Verdict.UNKNOWN


def test_bilinear_weight_blocks_are_refuted_jointly():
    net = load(str(CONFORMANCE / "seed_weights.net"))
    r = Verifier(net, seed=1, budget=3).verify("y", ["W1", "W2"])
    assert r.convex.verdict is Verdict.REFUTED
    assert recheck(net, "y", "convex", r.convex.witness) > 0
    for name in ("W1", "W2", "x"):  # every value stays within its declared constraint (>= 0)
        for group in ("a", "b", "fixed"):
            if name in r.convex.witness[group]:
                assert np.min(r.convex.witness[group][name]) >= 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks(max_layers=4), st.integers(0, 1000))
def test_witnesses_recheck_and_never_contradict_a_proof(case, seed):
    text, names = case
    net = load_text(text)
    verifier = Verifier(net, seed=seed, budget=0.3)
    targets = [n for n in net.names if n.startswith("e")][-2:]
    for target, k in itertools.product(targets, (1, 2)):
        wrt = names[:k]
        r = verifier.verify(target, wrt)
        for prop in ("convex", "concave"):
            res = r[prop]
            if res.verdict is Verdict.REFUTED:
                assert not holds(r.curvature, prop), f"{prop}({target}) proved and refuted\n{text}"
                w = res.witness
                assert w["gap"] > 0 and w["digits"] >= 30
                gap = recheck(net, target, prop, w)
                scale = abs(w["f_a"]) + abs(w["f_b"]) + abs(w["f_mid"]) + 1
                assert gap > -1e-9 * scale, f"witness does not re-check: {gap}\n{text}\n{w}"


@pytest.mark.parametrize("path", sorted(p for p in CONFORMANCE.glob("*.net") if not p.name.startswith("bad_")),
                         ids=lambda p: p.stem)
def test_the_refuter_never_refutes_a_proved_claim(path):
    net = load(str(path))
    verifier = Verifier(net, seed=0, budget=0.2)
    refuter = verifier.refuter()
    for name in net.names:
        if net.nodes[net.names[name]].op == "var":
            continue
        for wrt in (net.inputs, net.params):
            if not wrt:
                continue
            curv = verifier.analyzer.curvature(name, wrt)
            for prop in ("convex", "concave"):
                if holds(curv, prop):
                    deadline = time.perf_counter() + 0.1
                    assert refuter.search(name, wrt, prop, None, deadline) is None


def test_bilinear_guidance_moves_the_factors_in_opposite_directions():
    net = load_text("input u\ninput v\nq = u * v\n")
    verifier = Verifier(net, budget=0.0)
    failure = verifier.verify("q", ["u", "v"]).convex.failure
    refuter = verifier.refuter()
    groups = refuter._factor_groups(failure, ["u", "v"])
    assert groups == (["u"], ["v"])
    cand = refuter._opposed(groups, ["u", "v"], [], np.random.default_rng(0), 1.0)
    gaps, _ = refuter._gaps(net.names["q"], cand, ["u", "v"], [], 1.0)
    assert np.mean(gaps > 0) > 0.99   # along (1, -1) the product is concave: every such pair breaks convexity


def test_guidance_centres_segments_where_the_outer_derivative_has_the_wrong_sign():
    net = load_text("input x\ny = (x^2 - 1)^2\n")
    verifier = Verifier(net, budget=0.0)
    failure = verifier.verify("y", ["x"]).convex.failure
    assert failure.need == "nondecreasing"
    refuter = verifier.refuter()
    wrong_way = refuter._wrong_way(failure)
    cand = refuter._where_wrong_way(wrong_way, ["x"], [], np.random.default_rng(0), 1.0)
    mid = (cand["a"]["x"] + cand["b"]["x"]) / 2
    assert np.mean(np.abs(mid) < 1.5) > 0.9        # x^2 - 1 < 0 only for |x| < 1: segments centred there
    gaps, _ = refuter._gaps(net.names["y"], cand, ["x"], [], 1.0)
    assert np.mean(gaps > 0) > 0.5
