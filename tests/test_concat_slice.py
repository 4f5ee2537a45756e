"""`concat(u, v, ...)` and slices `v[i:j]` in the language (issue 15: cat and slicing along the feature axis).

The evaluator is checked against the 50-digit evaluator and its gradients against finite differences; the
rules against Jensen's inequality at random points, the numbers written for this test in NumPy.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcpnet.errors import DcpnetError
from dcpnet.evaluate import compile_network
from dcpnet.graph import load_text
from dcpnet.precise import evaluate_precise
from dcpnet.verify import verify

NET = """\
input x[3]
param W[2, 5], c
y = concat(relu(x), c, x[1])
h = W @ y
f = sum(softplus(h)) + log_sum_exp(concat(x[1:3], x[0]))
"""


def numpy_f(x, W, c):
    y = np.concatenate([np.maximum(x, 0), [c], [x[1]]])
    return np.sum(np.logaddexp(0, W @ y)) + np.logaddexp.reduce(np.concatenate([x[1:3], [x[0]]]))


def test_shapes_and_text():
    net = load_text(NET)
    assert net.node("y").shape == (5,) and net.node("f").text.endswith("concat(x[1:3], x[0]))")
    whole = load_text("input x[3]\ny = x[0:3]\n")
    assert whole.node("y") is whole.node("x")                     # the whole vector is the vector itself


@pytest.mark.parametrize("text, words", [
    ("input x[3]\ny = x[2:2]\n", "out of range"),
    ("input x[3]\ny = x[1:4]\n", "out of range"),
    ("input x\ny = x[0:1]\n", "slicing needs a vector"),
    ("input W[2, 2]\ny = concat(W)\n", "is a matrix"),
    ("input x[2]\natom g(u) = u[0:1]\ny = g(x)\n", "indexing in atom"),
    ("atom concat(u) = u\n", "built-in"),
])
def test_bad_slices_and_concats_are_bad_input(text, words):
    with pytest.raises(DcpnetError, match=words):
        load_text(text)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_the_evaluator_agrees_with_numpy_and_50_digits(seed):
    rng = np.random.default_rng(seed)
    net = load_text(NET)
    X, W, c = rng.normal(size=(4, 3)), rng.normal(size=(2, 5)), float(rng.normal())
    out = compile_network(net, ["f"]).forward({"x": X, "W": W, "c": np.array(c)}, {"x"})["f"]
    np.testing.assert_allclose(out, [numpy_f(x, W, c) for x in X], rtol=1e-12)
    precise = evaluate_precise(net, ["f"], {"x": X[0], "W": W, "c": c})["f"]
    assert abs(float(precise) - out[0]) <= 1e-12 * (1 + abs(out[0]))


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    net = load_text(NET)
    plan = compile_network(net, ["f"])
    env = {"x": rng.normal(size=(6, 3)), "W": rng.normal(size=(2, 5)), "c": np.array(0.3)}
    _, grads = plan.backward(env, {"x"}, loss="f")
    for name in ("W", "c"):
        base = np.asarray(env[name], dtype=float)
        numeric = np.zeros(base.shape)
        for idx in np.ndindex(base.shape):
            up, down = base.copy(), base.copy()
            up[idx] += 1e-6
            down[idx] -= 1e-6
            fu = plan.forward({**env, name: up}, {"x"})["f"].mean()
            fd = plan.forward({**env, name: down}, {"x"})["f"].mean()
            numeric[idx] = (fu - fd) / 2e-6
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8)


def test_concat_is_convex_when_every_piece_is():
    net = load_text("input x[3]\nparam W[2, 5] >= 0, c\ny = concat(relu(x), c, x[1])\nf = sum(softplus(W @ y))\n"
                    "g = concat(relu(x), -relu(x))\n")
    assert verify(net, "f", ["x"], budget=0.2).convex.verdict.value == "proved"
    res = verify(net, "g", ["x"], budget=2.0)
    assert res.convex.verdict.value == "refuted" and res.concave.verdict.value == "refuted"
    w = res.convex.witness
    a, b = np.asarray(w["a"]["x"]), np.asarray(w["b"]["x"])
    g = lambda x: np.concatenate([np.maximum(x, 0), -np.maximum(x, 0)])
    k = int(w["index"][0])
    assert g((a + b) / 2)[k] - (g(a)[k] + g(b)[k]) / 2 > 0


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_proved_slices_and_concats_hold_at_random_points(seed):
    """Where the rules prove convexity, Jensen's inequality holds at random pairs (NumPy, not dcpnet)."""
    rng = np.random.default_rng(seed)
    net = load_text("input x[4]\nparam W[3, 6] >= 0\nz = concat(softplus(x[0:2]), x[2:4], relu(x[1]), 1)\n"
                    "f = max(W @ z)\n")
    assert verify(net, "f", ["x"], budget=0).convex.verdict.value == "proved"
    W = np.abs(rng.normal(size=(3, 6)))

    def f(x):
        z = np.concatenate([np.logaddexp(0, x[0:2]), x[2:4], [max(x[1], 0)], [1.0]])
        return np.max(W @ z)

    for _ in range(20):
        a, b = rng.normal(size=4) * 3, rng.normal(size=4) * 3
        assert f((a + b) / 2) <= (f(a) + f(b)) / 2 + 1e-12
