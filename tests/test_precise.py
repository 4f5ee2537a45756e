"""The high-precision path: digits, exact inputs, domains, and agreement with the float path."""
from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from dcpnet.atoms import REDUCTIONS, SCALAR_ATOMS
from dcpnet.evaluate import compile_network
from dcpnet.graph import load_text
from dcpnet.precise import OutsideDomain, evaluate_precise, to_mp

POSITIVE = {"sqrt", "log", "inv_pos", "entr"}


def test_many_digits():
    net = load_text("input x[2]\ny = log_sum_exp(x)\nz = softplus(x[0]) + exp(x[1])\n")
    out = evaluate_precise(net, ["y", "z"], {"x": [0.0, 1.0]}, dps=60)
    with mpmath.workdps(60):
        assert abs(out["y"] - mpmath.log(1 + mpmath.e)) < mpmath.mpf(10) ** -55
        assert abs(out["z"] - (mpmath.log(2) + mpmath.e)) < mpmath.mpf(10) ** -55


def test_float_inputs_are_exact_and_literals_are_decimal():
    with mpmath.workdps(50):
        v = to_mp(0.1)
        assert v == mpmath.mpf(Fraction(0.1).numerator) / mpmath.mpf(Fraction(0.1).denominator)
        net = load_text("input t\ny = t * 0.1\n")
        y = evaluate_precise(net, ["y"], {"t": 1.0}, dps=50)["y"]
        assert abs(y - mpmath.mpf("0.1")) < mpmath.mpf(10) ** -48      # one tenth, not the float 0.1
        assert abs(y - mpmath.mpf(0.1)) > mpmath.mpf(10) ** -20


def test_shapes_and_types():
    net = load_text("input x[2]\nparam W[3, 2], M[2, 2]\nv = W @ x\nm = W @ M\ns = x @ x\n")
    env = {"x": [1.0, 2.0], "W": np.arange(6.0).reshape(3, 2), "M": np.eye(2)}
    out = evaluate_precise(net, ["v", "m", "s", "x"], env)
    assert out["v"].shape == (3,) and out["m"].shape == (3, 2)
    assert isinstance(out["s"], mpmath.mpf) and out["s"] == 5
    assert [float(t) for t in out["v"]] == [2.0, 8.0, 14.0]
    assert all(isinstance(t, mpmath.mpf) for t in out["m"].flat)


@pytest.mark.parametrize(("text", "env"), [
    ("input t\ny = log(t)\n", {"t": -1.0}),
    ("input t\ny = log(t)\n", {"t": 0.0}),
    ("input t\ny = sqrt(t)\n", {"t": -1e-300}),
    ("input t\ny = inv_pos(t)\n", {"t": 0.0}),
    ("input t\ny = 1 / t\n", {"t": 0.0}),
    ("input t\ny = t^0.5\n", {"t": -2.0}),
    ("input t\ny = t^-1\n", {"t": 0.0}),
    ("input t\ny = entr(t)\n", {"t": -0.5}),
    ("input x[2]\ninput w\ny = quad_over_lin(x, w)\n", {"x": [1.0, 2.0], "w": 0.0}),
])
def test_outside_the_domain(text, env):
    with pytest.raises(OutsideDomain):
        evaluate_precise(load_text(text), ["y"], env)


def _atom_exprs():
    exprs = {name: f"{name}(x)" for name in SCALAR_ATOMS}
    exprs.update({f"power{p:g}": f"x^{p:g}" for p in (2, 3, 0.5, -1, 1.5)})
    exprs.update({f"leaky{a:g}": f"leaky_relu(x, {a:g})" for a in (0.1, -0.5)})
    return exprs


@pytest.mark.parametrize("label", sorted(_atom_exprs()))
def test_every_atom_agrees_with_the_float_path(label):
    expr = _atom_exprs()[label]
    net = load_text(f"input x[6]\ny = {expr}\n")
    positive = label in POSITIVE or label in ("power0.5", "power-1", "power1.5")
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 3, 6) if positive else rng.normal(0, 2, 6)
    floats = compile_network(net, ["y"]).forward({"x": x}, set())["y"][0]
    exact = np.array([float(v) for v in evaluate_precise(net, ["y"], {"x": x})["y"]])
    np.testing.assert_allclose(floats, exact, rtol=1e-13, atol=1e-15, err_msg=label)


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_every_reduction_agrees_with_the_float_path(name):
    if name == "quad_over_lin":
        text, env = "input x[2, 3]\ninput w\ny = quad_over_lin(x, w)\n", {"w": 0.7}
    elif name in ("maximum", "minimum"):
        text, env = f"input x[2, 3]\ninput w\ny = {name}(x, w, -x)\n", {"w": 0.3}
    else:
        text, env = f"input x[2, 3]\ny = {name}(x)\n", {}
    env["x"] = np.random.default_rng(1).normal(size=(2, 3))
    net = load_text(text)
    floats = compile_network(net, ["y"]).forward(env, set())["y"][0]
    exact = evaluate_precise(net, ["y"], env)["y"]
    exact = np.array([float(v) for v in exact.flat]).reshape(np.shape(exact)) if isinstance(exact, np.ndarray) \
        else float(exact)
    np.testing.assert_allclose(floats, exact, rtol=1e-13, atol=1e-15)


def test_mpf_inputs_pass_through():
    net = load_text("input t\ny = t * 3\n")
    with mpmath.workdps(40):
        third = mpmath.mpf(1) / 3
        y = evaluate_precise(net, ["y"], {"t": third}, dps=40)["y"]
        assert abs(y - 1) < mpmath.mpf(10) ** -38
    assert math.isclose(float(y), 1.0)
