"""The compiled evaluator: gradients against finite differences, batching, float32, init, and `dcpnet eval`."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dcpnet.atoms import SCALAR_ATOMS
from dcpnet.cli import main
from dcpnet.evaluate import compile_network
from dcpnet.graph import load_text
from dcpnet.precise import OutsideDomain, evaluate_precise
from dcpnet.train.params import init_params, project_params

ICNN = """\
input  x[4]
input  y in [0, 1]
param  W0[8, 4], b0[8]
param  Wz[8, 8] >= 0
param  Wx[8, 4], b1[8]
param  w[8] >= 0
z1 = relu(W0 @ x + b0)
z2 = softplus(Wz @ z1 + Wx @ x + b1)
f  = w @ z2
loss = (f - y)^2
output f, loss
"""


# -- helpers -------------------------------------------------------------------------------------------
def numeric_grad(plan, env, batched, loss, name, h=1e-6):
    """Central differences of the batch mean of `loss` in every entry of variable `name`."""
    base = {k: np.array(v, dtype=np.float64) for k, v in env.items()}
    out = np.zeros_like(base[name])
    for i in np.ndindex(out.shape):
        step = h * max(1.0, abs(base[name][i]))
        vals = []
        for sign in (1, -1):
            e = {k: v.copy() for k, v in base.items()}
            e[name][i] += sign * step
            vals.append(plan.forward(e, batched)[loss].mean())
        out[i] = (vals[0] - vals[1]) / (2 * step)
    return out


def assert_grads_match(net, env, batched, loss="y", rtol=1e-5, atol=1e-6):
    plan = compile_network(net, [loss])
    value, grads = plan.backward(env, batched, loss)
    assert math.isfinite(value)
    assert set(grads) == set(net.variables)
    for name in net.variables:
        expected = numeric_grad(plan, env, batched, loss, name)
        assert grads[name].shape == expected.shape, name
        np.testing.assert_allclose(grads[name], expected, rtol=rtol, atol=atol, err_msg=name)


def away_from(values: np.ndarray, kinks, margin=0.05) -> np.ndarray:
    """Push sample points at least `margin` away from each kink."""
    for k in kinks:
        close = np.abs(values - k) < margin
        values = np.where(close, k + np.where(values >= k, margin, -margin) * 2, values)
    return values


KINKS = {"relu": [0], "abs": [0], "huber": [-1, 1], "elu": [0], "selu": [0]}
POSITIVE = {"sqrt", "log", "inv_pos", "entr"}


# -- every built-in scalar atom ----------------------------------------------------------------------
def _atom_cases():
    cases = [(name, f"{name}(x)") for name in SCALAR_ATOMS]
    cases += [(f"power{p:g}", f"x^{p:g}") for p in (2, 3, 4, 0.5, 1.5, -1, -2.5)]
    cases += [(f"leaky{a:g}", f"leaky_relu(x, {a:g})") for a in (0.1, -0.5, 2)]
    return cases


@pytest.mark.parametrize(("label", "expr"), _atom_cases(), ids=[c[0] for c in _atom_cases()])
def test_scalar_atom_gradient(label, expr):
    net = load_text(f"input x[5]\nparam c[5]\ny = sum(c * {expr})\n")
    rng = np.random.default_rng(1)
    p = float(label[5:]) if label.startswith("power") else 1.0
    positive = label in POSITIVE or not p.is_integer() or p < 0        # u^p for p < 0 is defined on u > 0
    x = rng.uniform(0.2, 2.0, (3, 5)) if positive else rng.normal(0, 1.5, (3, 5))
    x = away_from(x, KINKS.get(label, [0] if label.startswith("leaky") else []))
    env = {"x": x, "c": rng.normal(size=5)}
    assert_grads_match(net, env, {"x"})


def test_kink_convention():
    """Subgradients at kinks: relu'(0) = abs'(0) = 0; max sends everything to the first maximal entry."""
    net = load_text("input x[3]\na = sum(relu(x))\nb = sum(abs(x))\nc = max(x)\nd = sum(maximum(x, 0))\n"
                    "e = norm_inf(x)\n")
    env = {"x": np.array([0.0, 2.0, 2.0])}
    plan = compile_network(net, ["a", "b", "c", "d", "e"])
    grads = {k: plan.backward(env, set(), k)[1]["x"] for k in "abcde"}
    assert grads["a"].tolist() == [0.0, 1.0, 1.0]
    assert grads["b"].tolist() == [0.0, 1.0, 1.0]
    assert grads["c"].tolist() == [0.0, 1.0, 0.0]
    assert grads["d"].tolist() == [1.0, 1.0, 1.0]    # x == 0 ties with the constant: x is first
    assert grads["e"].tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("top", [5.0, 85.0, 750.0])
def test_softplus_paths_exact(dtype, top):
    """softplus takes log1p(exp(u)) when the batch's max lets exp stay finite, else max(u, 0) + log1p(exp(-|u|)):
    either way within 2 ulps of the mpmath value, and its gradient the sigmoid."""
    import mpmath

    u = np.concatenate([np.linspace(-120, top, 301), -np.logspace(-30, 2, 50), np.logspace(-30, 0.6, 50)])
    u = u.astype(dtype)
    u = u[np.isfinite(u)]
    plan = compile_network(load_text("input u\nf = softplus(u)\n"), dtype=dtype)
    got = plan.forward({"u": u})["f"]
    assert got.dtype == dtype
    with mpmath.workdps(40):
        want = np.array([float(mpmath.log1p(mpmath.exp(mpmath.mpf(float(v))))) for v in u])
        sig = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(float(v))))) for v in u])
    normal = want.astype(dtype) > np.finfo(dtype).tiny
    ulps = np.abs(got[normal] - want[normal]) / np.spacing(want[normal].astype(dtype))
    assert ulps.max() <= 2
    _, grads = plan.backward({"u": u}, loss="f", per_example=True)
    np.testing.assert_allclose(grads["u"], sig, rtol=200 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)


# -- reductions and binary operations -------------------------------------------------------------------
REDUCTION_NETS = {
    "sum": "input x[2, 3]\ny = sum(x)\n",
    "mean": "input x[2, 3]\ny = mean(x)\n",
    "max": "input x[2, 3]\ny = max(x)\n",
    "min": "input x[2, 3]\ny = min(x)\n",
    "log_sum_exp": "input x[2, 3]\ny = log_sum_exp(x)\n",
    "norm1": "input x[2, 3]\ny = norm1(x)\n",
    "norm2": "input x[2, 3]\ny = norm2(x)\n",
    "norm_inf": "input x[2, 3]\ny = norm_inf(x)\n",
    "sum_squares": "input x[2, 3]\ny = sum_squares(x)\n",
    "quad_over_lin": "input x[3]\nparam w >= 0.1\ny = quad_over_lin(x, w)\n",
    "quad_over_lin_batched_w": "param x[3]\ninput w >= 0.1\ny = quad_over_lin(x, w)\n",
    "maximum": "input a[3]\nparam b[3]\ninput c\ny = sum(maximum(a, b, c))\n",
    "minimum": "input a[3]\nparam b[3]\ninput c\ny = sum(minimum(a, c, b))\n",
}


@pytest.mark.parametrize("name", sorted(REDUCTION_NETS))
def test_reduction_gradient(name):
    net = load_text(REDUCTION_NETS[name])
    rng = np.random.default_rng(2)
    env = {}
    for v in net.variables.values():
        shape = ((4,) if v.kind == "input" else ()) + v.shape
        env[v.name] = rng.uniform(0.5, 2.0, shape) if v.bounds.lo > 0 else rng.normal(size=shape)
    assert_grads_match(net, env, set(net.inputs))


def test_reductions_agree_with_the_atom_table():
    from dcpnet.atoms import REDUCTIONS

    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 2, 3))
    for name, red in REDUCTIONS.items():
        if red.arity != "one":
            continue
        net = load_text(f"input x[2, 3]\ny = {name}(x)\n")
        np.testing.assert_allclose(compile_network(net).forward({"x": x})["y"], red.f(x), rtol=1e-12)


BINARY_NETS = [
    "input a[3]\ninput b[3]\ny = sum(a * b - a / (b * b + 1) + b)\n",
    "input a[3]\nparam s\ny = sum(s * a + a / (s * s + 1) - s)\n",
    "param a[3]\ninput s\ny = sum(a * s - s / (a * a + 2) + s)\n",
    "input a[2, 2]\nparam s\ny = sum(-(a - s) * (s + a))\n",
    "input t\nparam u\ny = t * u - u / (t * t + 1) + t[0] * 0 + 1\n".replace(" + t[0] * 0", ""),
    "input v[3]\ny = v[0] * v[2] - v[1]\n",
    "input v[3]\nparam p[3]\ny = v[0] * p[2] - p[1] * v[1] + 2 * v[2]\n",
]


@pytest.mark.parametrize("text", BINARY_NETS)
def test_binary_gradient(text):
    net = load_text(text)
    rng = np.random.default_rng(4)
    env = {v.name: rng.normal(size=((3,) if v.kind == "input" else ()) + v.shape) for v in net.variables.values()}
    assert_grads_match(net, env, set(net.inputs))


MATMUL_SHAPES = {"mat_vec": ("[3, 2]", "[2]"), "mat_mat": ("[3, 2]", "[2, 4]"),
                 "vec_mat": ("[2]", "[2, 4]"), "vec_vec": ("[2]", "[2]")}


@pytest.mark.parametrize("shapes", sorted(MATMUL_SHAPES))
@pytest.mark.parametrize("kinds", [("param", "param"), ("param", "input"), ("input", "param"), ("input", "input")])
def test_matmul_every_case(shapes, kinds):
    sa, sb = MATMUL_SHAPES[shapes]
    net = load_text(f"{kinds[0]} A{sa}\n{kinds[1]} X{sb}\nparam c\nP = A @ X\ny = sum(tanh(P + c))\n")
    rng = np.random.default_rng(5)
    env = {v.name: rng.normal(size=((3,) if v.kind == "input" else ()) + v.shape) for v in net.variables.values()}
    batched = set(net.inputs)
    assert_grads_match(net, env, batched)
    # the batched product is the product of each example
    out = compile_network(net, ["P"]).forward(env, batched)["P"]
    nb = 3 if batched else 1
    for i in range(nb):
        a = env["A"][i] if "A" in batched else env["A"]
        x = env["X"][i] if "X" in batched else env["X"]
        np.testing.assert_allclose(out[i], a @ x, rtol=1e-12)


# -- composed random networks (hypothesis) ---------------------------------------------------------------
SMOOTH = ["softplus", "tanh", "sigmoid", "square", "silu", "gelu"]
HEADER = "input x[3]\ninput t\nparam W[3, 3], c[3], s\n"


def _vector_exprs():
    leaves = st.sampled_from(["x", "c", "(W @ x)", "(t * c)", "(x - s)"])
    return st.recursive(leaves, lambda kids: st.one_of(
        st.tuples(st.sampled_from(SMOOTH), kids).map(lambda p: f"{p[0]}({p[1]})"),
        st.tuples(kids, st.sampled_from(["+", "-", "*"]), kids).map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
        kids.map(lambda e: f"(W @ ({e}))"),
        kids.map(lambda e: f"({e}) / (1 + s * s)"),
        kids.map(lambda e: f"({e})^2"),
    ), max_leaves=5)


def _networks(kinked: bool = False):
    heads = ["sum", "mean", "log_sum_exp", "sum_squares"] + (["max", "norm1", "norm_inf"] if kinked else [])
    return st.tuples(_vector_exprs(), _vector_exprs(), st.sampled_from(heads)).map(
        lambda p: HEADER + f"z = {p[0]}\ny = {p[2]}(z) + c @ ({p[1]}) + t * s\n")


def _env(net, seed: int, batch: int | None):
    rng = np.random.default_rng(seed)
    env = {}
    for v in net.variables.values():
        lead = (batch,) if (batch and v.kind == "input") else ()
        env[v.name] = rng.normal(0, 0.8, lead + v.shape)
    return env


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_networks(), seed=st.integers(0, 2**16))
def test_random_network_gradient(text, seed):
    net = load_text(text)
    env = _env(net, seed, batch=2)
    plan = compile_network(net, ["y"])
    value, grads = plan.backward(env, None, "y")
    assume(math.isfinite(value) and abs(value) < 1e4)
    for name in net.variables:
        expected = numeric_grad(plan, env, None, "y", name)
        scale = 1 + np.abs(expected).max()
        np.testing.assert_allclose(grads[name], expected, rtol=1e-4, atol=1e-5 * scale, err_msg=f"{name}\n{text}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_networks(kinked=True), seed=st.integers(0, 2**16))
def test_random_network_float_agrees_with_precise(text, seed):
    net = load_text(text)
    env = _env(net, seed, batch=None)
    floats = compile_network(net, ["z", "y"]).forward(env, set())
    try:
        exact = evaluate_precise(net, ["z", "y"], env, dps=40)
    except OutsideDomain:
        return
    y_exact = float(exact["y"])
    assert floats["y"].shape == (1,)
    assert math.isclose(floats["y"][0], y_exact, rel_tol=1e-10, abs_tol=1e-12 * (1 + abs(y_exact)))
    z = np.array([float(v) for v in exact["z"]])
    np.testing.assert_allclose(floats["z"][0], z, rtol=1e-10, atol=1e-12 * (1 + np.abs(z).max()))


@settings(max_examples=20, deadline=None)
@given(text=_networks(kinked=True), seed=st.integers(0, 2**16))
def test_batched_agrees_with_one_example_at_a_time(text, seed):
    net = load_text(text)
    env = _env(net, seed, batch=3)
    plan = compile_network(net, ["y"])
    value, grads = plan.backward(env, None, "y")
    ys = plan.forward(env)["y"]
    per, total = [], {k: 0.0 for k in net.params}
    for i in range(3):
        one = {k: (v[i] if k in net.inputs else v) for k, v in env.items()}
        y_i, g_i = plan.backward(one, set(), "y")
        per.append(y_i)
        np.testing.assert_allclose(ys[i], y_i, rtol=1e-13, atol=1e-13)
        for k in net.inputs:
            np.testing.assert_allclose(grads[k][i], g_i[k] / 3, rtol=1e-10, atol=1e-13)
        for k in net.params:
            total[k] = total[k] + g_i[k] / 3
    assert math.isclose(value, float(np.mean(per)), rel_tol=1e-12, abs_tol=1e-13)
    for k in net.params:
        np.testing.assert_allclose(grads[k], total[k], rtol=1e-10, atol=1e-12)


# -- options, dtype, batching semantics -------------------------------------------------------------------
def test_per_example_and_wrt():
    net = load_text(ICNN)
    rng = np.random.default_rng(6)
    env = dict(init_params(net, rng), x=rng.normal(size=(5, 4)), y=rng.uniform(size=5))
    plan = compile_network(net, ["loss"])
    _, mean_grads = plan.backward(env, loss="loss")
    _, per_grads = plan.backward(env, loss="loss", per_example=True)
    np.testing.assert_allclose(per_grads["x"], 5 * mean_grads["x"], rtol=1e-12)
    np.testing.assert_allclose(per_grads["Wz"], 5 * mean_grads["Wz"], rtol=1e-12)
    _, some = plan.backward(env, loss="loss", wrt={"Wz", "b1"})
    assert set(some) == {"Wz", "b1"}
    np.testing.assert_allclose(some["Wz"], mean_grads["Wz"], rtol=1e-12)


def test_unbatched_outputs_are_broadcast():
    net = load_text("input x[2]\nparam p[2]\na = sum(p * p)\nb = sum(x) + a\n")
    out = compile_network(net, ["a", "b"]).forward({"x": np.ones((4, 2)), "p": np.array([1.0, 2.0])})
    assert out["a"].shape == (4,) and out["a"].tolist() == [5.0] * 4
    assert out["b"].tolist() == [7.0] * 4


def test_float32_plan_stays_float32():
    net = load_text(ICNN)
    rng = np.random.default_rng(7)
    p64 = init_params(net, rng)
    env64 = dict(p64, x=rng.normal(size=(6, 4)), y=rng.uniform(size=6))
    env32 = {k: v.astype(np.float32) for k, v in env64.items()}
    plan32 = compile_network(net, ["f", "loss"], dtype=np.float32)
    out32 = plan32.forward(env32)
    out64 = compile_network(net, ["f", "loss"]).forward(env64)
    for k in ("f", "loss"):
        assert out32[k].dtype == np.float32
        np.testing.assert_allclose(out32[k], out64[k], rtol=1e-4, atol=1e-5)
    loss32, g32 = plan32.backward(env32, loss="loss")
    loss64, g64 = compile_network(net, ["loss"]).backward(env64, loss="loss")
    assert math.isclose(loss32, loss64, rel_tol=1e-4)
    for k in g64:
        assert g32[k].dtype == np.float32, k
        np.testing.assert_allclose(g32[k], g64[k], rtol=2e-3, atol=1e-4, err_msg=k)


def test_float32_every_atom_stays_float32():
    names = [n for n in SCALAR_ATOMS if n not in POSITIVE]
    body = " + ".join(f"sum({n}(x))" for n in names) + " + sum(leaky_relu(x, 0.1)) + sum(x^3)"
    net = load_text(f"input x[4]\ny = {body}\n")
    plan = compile_network(net, ["y"], dtype=np.float32)
    x = np.linspace(-1.5, 1.5, 8, dtype=np.float32).reshape(2, 4)
    assert plan.forward({"x": x})["y"].dtype == np.float32
    assert plan.backward({"x": x}, loss="y")[1]["x"].dtype == np.float32


def test_bad_values_are_rejected():
    net = load_text("input x[2]\nparam W[3, 2]\ny = sum(W @ x)\n")
    plan = compile_network(net)
    with pytest.raises(ValueError, match="no value for `W`"):
        plan.forward({"x": np.ones((2, 2))})
    with pytest.raises(ValueError, match="`W` has shape"):
        plan.forward({"x": np.ones((2, 2)), "W": np.ones((2, 3))})
    with pytest.raises(ValueError, match="examples"):
        compile_network(load_text("input a\ninput b\ny = a + b\n")).forward({"a": np.ones(2), "b": np.ones(3)})


def test_returned_gradients_do_not_share_memory():
    net = load_text("param a[3]\nparam b[3]\ninput x[3]\ny = sum(a + b + x)\n")
    _, g = compile_network(net).backward({"a": np.ones(3), "b": np.ones(3), "x": np.ones((2, 3))})
    g["a"] += 1
    assert g["b"].tolist() == [1.0, 1.0, 1.0]


def test_in_place_buffers_keep_values_intact():
    """An output read twice, a value viewed by indexing, and repeated calls all see the right numbers."""
    net = load_text("input x[3]\nparam W[3, 3]\nu = W @ x + x\nv = relu(u)\nw = softplus(u + 1)\n"
                    "y = sum(v) + u[0] + sum(w)\noutput u, y\n")
    rng = np.random.default_rng(8)
    env = {"x": rng.normal(size=(4, 3)), "W": rng.normal(size=(3, 3))}
    plan = compile_network(net, ["u", "y"])
    first = plan.forward(env)
    u = env["x"] @ env["W"].T + env["x"]
    y = np.maximum(u, 0).sum(1) + u[:, 0] + np.logaddexp(0, u + 1).sum(1)
    np.testing.assert_allclose(first["u"], u, rtol=1e-13)
    np.testing.assert_allclose(first["y"], y, rtol=1e-13)
    np.testing.assert_allclose(plan.forward(env)["y"], y, rtol=1e-13)
    assert_grads_match(net, env, {"x"})


def test_user_atom_gradient():
    pytest.importorskip("dcpnet.symbolic")
    net = load_text("atom sp(u) = log(1 + exp(u))\natom cube(u) = u^3 - u\ninput x[3]\ny = sum(sp(cube(x)))\n")
    x = np.random.default_rng(9).normal(size=(2, 3))
    assert_grads_match(net, {"x": x}, {"x"})


# -- initialisation and projection ---------------------------------------------------------------------------
CONSTRAINED = """\
input x[4]
param W[5, 4] >= 0, V[5, 4] <= 0, U[5, 4] in [0.5, 2], S[5, 4] >= 1, T[5, 4] in [-0.01, 0.01]
param b[5], c[5] >= 1, k in [-3, -2], w[5] >= 0
z = softplus(W @ x + b) + V @ x + U @ x + S @ x + T @ x + c
y = w @ z + k
"""


def test_init_respects_every_constraint():
    net = load_text(CONSTRAINED)
    for dtype in (np.float64, np.float32):
        params = init_params(net, np.random.default_rng(10), dtype)
        assert set(params) == set(net.params)
        for name, value in params.items():
            var = net.variables[name]
            assert value.shape == var.shape and value.dtype == dtype, name
            assert np.all(value >= var.bounds.lo) and np.all(value <= var.bounds.hi), name
            assert np.all(np.isfinite(value)), name
    params = init_params(net, np.random.default_rng(10))
    assert params["W"].min() >= 0 and params["W"].std() > 0      # ICNN weights: positive, not degenerate
    assert params["V"].max() <= 0 and params["V"].std() > 0
    assert np.all(params["b"] < 0)                               # the shift next to W >= 0
    assert np.all(params["c"] == 1) and np.all(params["k"] == -2)


@pytest.mark.parametrize("act", ["relu", "softplus"])
def test_icnn_init_keeps_the_signal_alive(act):
    """Through 8 layers of nonnegative weights (with the x-skips of Amos et al.) activations stay alive."""
    lines = ["input x[64]", "param A[64, 64], a[64]", f"z0 = {act}(A @ x + a)"]
    for k in range(1, 9):
        lines += [f"param W{k}[64, 64] >= 0, V{k}[64, 64], b{k}[64]",
                  f"z{k} = {act}(W{k} @ z{k - 1} + V{k} @ x + b{k})"]
    net = load_text("\n".join(lines) + "\ny = mean(z8)\n")
    rng = np.random.default_rng(11)
    params = init_params(net, rng)
    z = compile_network(net, ["z8"]).forward(dict(params, x=rng.normal(size=(256, 64))))["z8"]
    assert 1e-1 < z.std() < 1e2
    assert np.mean(z > 1e-3) > 0.2                                # most units are not dead


def test_project_params_clips_in_place():
    net = load_text(CONSTRAINED)
    params = {k: v + 10 * np.random.default_rng(12).normal(size=np.shape(v))
              for k, v in init_params(net, np.random.default_rng(12)).items()}
    free_before = params["b"].copy()
    project_params(net, params)
    for name, value in params.items():
        var = net.variables[name]
        assert np.all(value >= var.bounds.lo) and np.all(value <= var.bounds.hi), name
    assert np.array_equal(params["b"], free_before)


# -- `dcpnet eval` ---------------------------------------------------------------------------------------------
@pytest.fixture
def icnn_files(tmp_path):
    net_path = tmp_path / "icnn.net"
    net_path.write_text(ICNN)
    net = load_text(ICNN)
    rng = np.random.default_rng(13)
    params = init_params(net, rng)
    np.savez(tmp_path / "params.npz", **params)
    data = {"x": rng.normal(size=(7, 4)), "y": rng.uniform(size=7)}
    np.savez(tmp_path / "data.npz", **data)
    return tmp_path, net, params, data


def test_eval_writes_every_output(icnn_files, capsys):
    tmp, net, params, data = icnn_files
    out = tmp / "out.npz"
    code = main(["eval", str(tmp / "icnn.net"), "--params", str(tmp / "params.npz"),
                 "--data", str(tmp / "data.npz"), "--out", str(out)])
    assert code == 0
    with np.load(out) as got:
        assert sorted(got.files) == ["f", "loss"]
        expected = compile_network(net, ["f", "loss"]).forward(dict(params, **data))
        for k in ("f", "loss"):
            assert got[k].shape == (7,)
            np.testing.assert_allclose(got[k], expected[k], rtol=1e-14)
    assert [p.name for p in tmp.iterdir() if p.name.startswith(".dcpnet")] == []


def test_eval_summary_and_float32(icnn_files, capsys):
    tmp, *_ = icnn_files
    code = main(["eval", str(tmp / "icnn.net"), "--params", str(tmp / "params.npz"),
                 "--data", str(tmp / "data.npz"), "--dtype", "float32"])
    assert code == 0
    out = capsys.readouterr().out
    assert "f: shape (7,)" in out and "loss: shape (7,)" in out


def _bad_data(tmp, kind):
    rng = np.random.default_rng(14)
    x, y = rng.normal(size=(7, 4)), rng.uniform(size=7)
    path = tmp / "bad.npz"
    if kind == "missing":
        np.savez(path, x=x)
    elif kind == "shape":
        np.savez(path, x=rng.normal(size=(7, 3)), y=y)
    elif kind == "nan":
        x[2, 1] = np.nan
        np.savez(path, x=x, y=y)
    elif kind == "dtype":
        np.savez(path, x=x, y=np.array(["a"] * 7))
    elif kind == "count":
        np.savez(path, x=x, y=y[:5])
    elif kind == "corrupt":
        np.savez(path, x=x, y=y)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "garbage":
        path.write_bytes(b"this is not a zip file at all")
    elif kind == "constraint":
        np.savez(path, x=x, y=y + 3)
    return path


@pytest.mark.parametrize(("kind", "names"), [
    ("missing", ["`y`", "missing"]), ("shape", ["`x`", "(7, 3)", "(n, 4)"]), ("nan", ["`x`", "non-finite"]),
    ("dtype", ["`y`", "dtype"]), ("count", ["`y`", "examples"]), ("corrupt", ["bad.npz"]),
    ("garbage", ["bad.npz", "not a valid .npz"]), ("constraint", ["`y`", "constraint"]),
])
def test_eval_bad_data_exits_2_and_writes_nothing(icnn_files, capsys, kind, names):
    tmp, *_ = icnn_files
    bad = _bad_data(tmp, kind)
    out = tmp / "out.npz"
    code = main(["eval", str(tmp / "icnn.net"), "--params", str(tmp / "params.npz"), "--data", str(bad),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"{bad}:1:1: error: ")
    for n in names:
        assert n in err, (n, err)
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["missing", "shape", "negative"])
def test_eval_bad_params_exits_2(icnn_files, capsys, kind):
    tmp, _, params, _ = icnn_files
    params = dict(params)
    if kind == "missing":
        del params["Wz"]
    elif kind == "shape":
        params["Wz"] = np.ones((8, 7))
    else:
        params["Wz"] = -np.ones((8, 8))
    np.savez(tmp / "p.npz", **params)
    code = main(["eval", str(tmp / "icnn.net"), "--params", str(tmp / "p.npz"), "--data", str(tmp / "data.npz"),
                 "--out", str(tmp / "out.npz")])
    err = capsys.readouterr().err
    assert code == 2 and "`Wz`" in err and "Traceback" not in err
    assert not (tmp / "out.npz").exists()
