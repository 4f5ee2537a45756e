"""`to_cvxpy`: DCP exactly where dcpnet proves convexity, the same values, and a trained ICNN minimised."""
from __future__ import annotations

import math
import re
import runpy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from netgen import networks, sample

cp = pytest.importorskip("cvxpy")

from dcpnet.errors import DcpnetError
from dcpnet.evaluate import compile_network
from dcpnet.graph import load_text
from dcpnet.interop.to_cvxpy import CVXPY_ATOMS, CvxpyRefused, cvxpy_source, to_cvxpy
from dcpnet.lattice import Curvature
from dcpnet.prove import Analyzer
from dcpnet.train.params import init_params

NO_FORM = sorted(k for k, v in CVXPY_ATOMS.items() if v is None)


def value_at(expr, variables, constraints, point: dict) -> float:
    """The expression at the point; with auxiliary variables (an epigraph form), their minimum, by a solve."""
    if {v.id for v in expr.variables()} <= {v.id for v in variables.values()}:
        for name, var in variables.items():
            var.value = point[name]
        return float(expr.value)
    pinned = [var == point[name] for name, var in variables.items()]
    return float(cp.Problem(cp.Minimize(expr), constraints + pinned).solve(solver="CLARABEL"))


def assert_same_values(net, output, params, expr, variables, constraints, rng, n=5):
    plan = compile_network(net, [output])
    points = sample(net, list(variables), rng, n, 1.0)
    for k in range(n):
        point = {name: points[name][k] for name in variables}
        expected = float(plan.forward({**params, **point}, batched=set())[output][0])
        if not math.isfinite(expected):
            continue                                   # outside an atom's domain: nothing to compare
        got = value_at(expr, variables, constraints, point)
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-7)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(networks(max_layers=4))
def test_dcp_whenever_dcpnet_proves_convexity(case):
    """For random networks: proved convex in the inputs ⇒ a DCP problem with the evaluator's values, unless an
    atom with no CVXPY form is reached (then the refusal names it)."""
    text, _ = case
    net = load_text(text)
    output = net.outputs[0]
    if net.node(output).shape or not net.inputs:
        return
    if not Analyzer(net, beyond=()).curvature(output, net.inputs).is_convex:   # the composition rules (DCP)
        return
    rng = np.random.default_rng(0)
    params = {k: v[0] for k, v in sample(net, net.params, rng, 1, 1.0).items()}
    try:
        expr, variables, constraints = to_cvxpy(net, output, params)
    except CvxpyRefused as err:
        named = re.search(r"`(\w+)` has no CVXPY form", str(err))
        assert named and named.group(1) in NO_FORM, str(err)
        return
    assert cp.Problem(cp.Minimize(expr), constraints).is_dcp()
    assert set(variables) == set(net.inputs)
    assert_same_values(net, output, params, expr, variables, constraints, rng)


@pytest.mark.parametrize("text, output", [
    ("input x[3] in [0, 1]\nf = sum_squares(x) - sum(relu(x))\n", "f"),          # relu is x on its range
    ("input x[2] <= 0\nf = -sum(x^3)\n", "f"),                                    # x^3 concave for x <= 0
    ("input x[2] >= 0\nf = sum_squares(exp(x) - 0.5)\n", "f"),                    # exp(x) - 0.5 > 0, unseen by CVXPY
    ("input t in [2, 3]\nf = -abs(-t) + huber(t - 2) - leaky_relu(t, -0.5)\n", "f"),   # one piece each
    ("input x[2] in [-4, -3]\nf = relu(x[0]) + sum(x)\n", "f"),                   # relu constant (0) there
    ("input x[2]\nparam b in [2, 3]\nf = (b - 1) * log_sum_exp(x) + sigmoid(b) * norm2(x)\n", "f"),
    ("input x[2]\natom sq(t) = t^2 + 2 * t\nf = sum(sq(x))\n", "f"),
    ("input s\nf = leaky_relu(s, -0.5)^2\n", "f"),                               # >= 0 though not monotone
    ("input x[2]\nparam W[3, 2], w[3] >= 0\nf = w @ elu(W @ x) + log_sum_exp(elu(x))\n", "f"),   # an epigraph
    ("input s <= 0\ne = s^1.5\nf = e^3\n", "f"),                                # e is 0: s^3 as written
])
def test_range_based_rules_carry_over(text, output):
    net = load_text(text)
    params = {k: np.array(v) for k, v in init_params(net, np.random.default_rng(0)).items()}
    expr, variables, constraints = to_cvxpy(net, output, params)
    assert cp.Problem(cp.Minimize(expr), constraints).is_dcp()
    assert_same_values(net, output, params, expr, variables, constraints, np.random.default_rng(1))


def test_refusals_say_why():
    net = load_text("input x[2]\nparam w[2]\nf = sum(relu(w * x))\ng = x @ x * x[0]\nh = sum(sigmoid(x)) + "
                    "sum_squares(x) * 10\n")
    params = {"w": np.ones(2)}
    with pytest.raises(CvxpyRefused, match=r"`g` is not proved convex in x \((refuted|unknown)\)"):
        to_cvxpy(net, "g", params)
    with pytest.raises(CvxpyRefused, match="not proved convex"):
        to_cvxpy(net, "h", params)                  # sigmoid + 10 x² is convex, but no rule proves it
    net = load_text("input u[2], s\nparam W[2, 2] >= 0\nf = sum(relu(W @ u)) * exp(s) + s * s\n")
    with pytest.raises(CvxpyRefused, match="not proved convex in `s` alone: hold it fixed"):
        to_cvxpy(net, "f", {"W": np.eye(2)})
    assert cp.Problem(cp.Minimize(to_cvxpy(net, "f", {"W": np.eye(2)}, {"s": 0.3})[0])).is_dcp()
    net = load_text("input x[2] <= 0\nf = sum(sigmoid(x))\n")
    with pytest.raises(CvxpyRefused, match="`sigmoid` has no CVXPY form"):
        to_cvxpy(net, "f", {})
    net = load_text("input x[2]\nparam W[2, 2] >= 0\nf = sum(relu(W @ x))\n")
    with pytest.raises(DcpnetError, match="violates its constraint"):
        to_cvxpy(net, "f", {"W": -np.ones((2, 2))})
    with pytest.raises(DcpnetError, match="nonneg=True"):
        to_cvxpy(net, "f", {"W": cp.Parameter((2, 2))})


ICNN = """\
input x[3] in [-1, 1]
param W0[16, 3], b0[16]
param Z1[16, 16] >= 0, U1[16, 3], b1[16]
param a[16] >= 0, c[3], c0
z1 = softplus(W0 @ x + b0)
z2 = relu(Z1 @ z1 + U1 @ x + b1)
f = a @ z2 + c @ x + c0
"""


def test_dpp_with_biases_and_input_weights_as_parameters():
    net = load_text(ICNN)
    params = {k: np.array(v) for k, v in init_params(net, np.random.default_rng(0)).items()}
    as_parameters = dict(params)
    for name in ("b0", "b1", "W0", "U1", "c", "c0"):
        as_parameters[name] = cp.Parameter(params[name].shape, value=params[name], name=name)
    expr, _, constraints = to_cvxpy(net, "f", as_parameters)
    problem = cp.Problem(cp.Minimize(expr), constraints)
    assert problem.is_dcp() and problem.is_dpp()
    plain, _, plain_constraints = to_cvxpy(net, "f", params)
    reference = cp.Problem(cp.Minimize(plain), plain_constraints)
    assert problem.solve(solver="CLARABEL") == pytest.approx(reference.solve(solver="CLARABEL"), rel=1e-6)
    as_parameters["Z1"] = cp.Parameter((16, 16), nonneg=True, value=params["Z1"])
    expr, _, constraints = to_cvxpy(net, "f", as_parameters)
    problem = cp.Problem(cp.Minimize(expr), constraints)
    assert problem.is_dcp() and not problem.is_dpp()      # Z1 @ z1: a parameter times a parametrised expression


def test_fixed_inputs_are_constants(tmp_path):
    net = load_text("input u[2] in [-1, 1], s[2]\nparam W[2, 2] >= 0\nf = sum(relu(W @ u + s)) + sum_squares(u)\n")
    params = {"W": np.eye(2)}
    expr, variables, constraints = to_cvxpy(net, "f", params, fixed={"s": np.array([0.5, -2.0])})
    assert list(variables) == ["u"]
    value = cp.Problem(cp.Minimize(expr), constraints).solve(solver="CLARABEL")
    assert value == pytest.approx(0.25, abs=1e-6)                    # at u = (-0.5, 0): relu(0) + 0.25
    path = tmp_path / "problem.py"
    path.write_text(cvxpy_source(net, "f", fixed=["s"]))            # the file `export --to cvxpy` writes
    namespace = runpy.run_path(str(path))
    problem, _ = namespace["problem"](params, {"s": np.array([0.5, -2.0])})
    assert problem.solve(solver="CLARABEL") == pytest.approx(value, rel=1e-6)


def _trained_icnn():
    torch = pytest.importorskip("torch")
    from dcpnet.interop.to_torch import to_torch

    net = load_text(ICNN)
    module = to_torch(net)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(-1, 1, size=(512, 3)))
    y = ((x - torch.tensor([0.3, -0.5, 0.1])) ** 2).sum(1) + 0.3 * x.abs().sum(1)
    opt = torch.optim.Adam(module.parameters(), lr=0.02)
    opt.register_step_post_hook(module.project_)
    for _ in range(100):
        opt.zero_grad()
        ((module(x) - y) ** 2).mean().backward()
        opt.step()
    return net, module


def _gradient_descent_best(module, starts: int, steps: int = 150) -> float:
    import torch

    x = torch.tensor(np.random.default_rng(7).uniform(-1, 1, size=(starts, 3)), requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.03)
    for _ in range(steps):
        opt.zero_grad()
        module(x).sum().backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(-1, 1)                           # projected onto the box
    with torch.no_grad():
        return float(module(x).min())


def test_minimising_a_trained_icnn_over_a_box():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                          # two cores, shared: torch's spinning pool only slows it
    try:
        _minimise_trained_icnn(torch)
    finally:
        torch.set_num_threads(threads)


def _minimise_trained_icnn(torch):
    net, module = _trained_icnn()
    params = {k: v.detach().numpy() for k, v in module.named_parameters()}
    expr, variables, constraints = to_cvxpy(net, "f", params)
    problem = cp.Problem(cp.Minimize(expr), constraints)
    optimum = problem.solve(solver="CLARABEL")
    best_local = _gradient_descent_best(module, starts=64)
    assert optimum <= best_local + 1e-6 * max(1.0, abs(best_local))
    argmin = torch.tensor(variables["x"].value).reshape(1, 3)
    assert float(module(argmin)[0].detach()) == pytest.approx(optimum, rel=1e-6)
    assert Analyzer(net).curvature("f", ["x"]) is Curvature.CONVEX


def test_cli_export_cvxpy(tmp_path, capsys):
    from dcpnet.cli import main

    net_file = tmp_path / "icnn.net"
    net_file.write_text(ICNN)
    out = tmp_path / "problem.py"
    assert main(["export", str(net_file), "--to", "cvxpy", "-o", str(out)]) == 0
    net = load_text(ICNN)
    params = {k: np.array(v) for k, v in init_params(net, np.random.default_rng(0)).items()}
    problem, variables = runpy.run_path(str(out))["problem"](params)
    expr, _, constraints = to_cvxpy(net, "f", params)
    assert problem.solve(solver="CLARABEL") == pytest.approx(
        cp.Problem(cp.Minimize(expr), constraints).solve(solver="CLARABEL"), rel=1e-7)
    assert list(variables) == ["x"]
    bad = tmp_path / "bad.net"
    bad.write_text("input x[2]\nf = sum(x) * x[0]\n")
    assert main(["export", str(bad), "--to", "cvxpy", "-o", str(tmp_path / "no.py")]) == 2
    assert "not proved convex in x" in capsys.readouterr().err
    assert not (tmp_path / "no.py").exists()
    assert main(["export", str(net_file), "--to", "cvxpy", "--fixed", "y", "-o", str(tmp_path / "no.py")]) == 2
    assert "is not an input" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(net_file), "--to", "onnx", "-o", str(tmp_path / "no.py")])
    assert exit_info.value.code == 2 and not (tmp_path / "no.py").exists()


def test_consts_slices_and_concat():
    net = load_text("input x[4] in [-1, 1], t\nconst K[3, 2]\nparam W[2, 2] >= 0, b[3]\n"
                    "h = relu(K @ x[0:2] + b)\nf = sum(softplus(concat(h, t, x[2:4]))) + norm2(concat(x[1], W @ x[2:4]))\n")
    values = {"K": np.arange(6.0).reshape(3, 2) - 2, "W": np.ones((2, 2)), "b": np.array([0.1, -0.2, 0.3])}
    expr, variables, constraints = to_cvxpy(net, "f", values)
    assert cp.Problem(cp.Minimize(expr), constraints).is_dcp()
    assert_same_values(net, "f", values, expr, variables, constraints, np.random.default_rng(2))
    expr, _, constraints = to_cvxpy(net, "f", {**values, "K": cp.Parameter((3, 2), value=values["K"])}, {"t": 0.5})
    assert cp.Problem(cp.Minimize(expr), constraints).is_dpp()             # K @ x: a parameter times a variable
    with pytest.raises(DcpnetError, match="const `K` needs a value"):
        to_cvxpy(net, "f", {"W": values["W"], "b": values["b"]})
