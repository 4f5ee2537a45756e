"""The optimizers against torch.optim's update rules written out, on params of every shape and size
(scalars, several blocks), and numba's fused Adam kernel against NumPy's."""
from __future__ import annotations

import numpy as np
import pytest

from dcpnet.train import optim

SHAPES = {"s": (), "v": (7,), "W": (300, 500), "big": (2 * optim.BLOCK + 5,)}


def _problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()}
    grads = [{k: (rng.normal(size=s) * 10.0 ** rng.integers(-6, 3)).astype(dtype) for k, s in SHAPES.items()}
             for _ in range(6)]
    return params, grads


def _torch_adam(params, grads, lr, b1, b2, eps):
    """torch.optim.Adam's documented update, in float64."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    for t, g in enumerate(grads, start=1):
        for k, pk in p.items():
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k].astype(np.float64) ** 2
            p[k] = pk - lr * (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + eps)
    return p


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_adam_is_torchs_rule(monkeypatch, dtype, kernel):
    if kernel == "numba":
        pytest.importorskip("numba")
    monkeypatch.setattr(optim, "_numba", [None] if kernel == "numpy" else [])
    monkeypatch.setattr(optim, "NUMBA_MIN", 0)
    params, grads = _problem(dtype)
    want = _torch_adam(params, grads, 0.01, 0.8, 0.99, 1e-6)
    opt = optim.Adam(params, lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    assert optim.kernel_name(opt.size) == kernel
    for g in grads:
        opt.step(params, g)
    for k, p in params.items():
        assert p.dtype == dtype and p.shape == SHAPES[k]
        np.testing.assert_allclose(p, want[k], rtol=1e-12 if dtype == np.float64 else 3e-5, atol=1e-7, err_msg=k)


def test_adam_updates_the_callers_arrays_in_place():
    params, grads = _problem(np.float64)
    ids = {k: id(v) for k, v in params.items()}
    before = {k: v.copy() for k, v in params.items()}
    optim.Adam(params).step(params, grads[0])
    assert {k: id(v) for k, v in params.items()} == ids
    assert all(not np.array_equal(params[k], before[k]) for k in params)


def test_adam_takes_gradients_of_any_layout():
    params, grads = _problem(np.float64, seed=1)
    twin = {k: v.copy() for k, v in params.items()}
    a, b = optim.Adam(params), optim.Adam(twin)
    a.step(params, grads[0])
    # a Fortran-ordered gradient gives the same update as a C-ordered one
    b.step(twin, {k: (np.asfortranarray(g) if g.ndim == 2 else g) for k, g in grads[0].items()})
    for k in params:
        np.testing.assert_array_equal(params[k], twin[k])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sgd(dtype):
    params, grads = _problem(dtype, seed=2)
    want = {k: v - dtype(0.1) * grads[0][k] for k, v in params.items()}
    optim.SGD(params, lr=0.1).step(params, grads[0])
    for k in params:
        np.testing.assert_allclose(params[k], want[k], rtol=1e-6 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_bounds_in_the_same_pass(monkeypatch, dtype, kernel):
    """The update of an unconstrained param is unchanged by bounds elsewhere; constrained params end exactly on
    their bounds (in float32 too: the bounds are the float32 numbers inside the interval)."""
    if kernel == "numba":
        pytest.importorskip("numba")
    monkeypatch.setattr(optim, "_numba", [None] if kernel == "numpy" else [])
    monkeypatch.setattr(optim, "NUMBA_MIN", 0)
    params, grads = _problem(dtype, seed=3)
    twin = {k: v.copy() for k, v in params.items()}
    bounds = {"W": (dtype(0.0), dtype(np.inf)), "big": (np.nextafter(dtype(-0.7), dtype(0)), dtype(0.3))}
    a = optim.Adam(params, lr=0.5, bounds=bounds)
    b = optim.Adam(twin, lr=0.5)
    for g in grads[:3]:
        a.step(params, g)
        b.step(twin, g)
    for k in ("s", "v"):
        np.testing.assert_array_equal(params[k], twin[k])
    assert params["W"].min() == 0.0 and np.count_nonzero(params["W"] == 0) > 0
    lo, hi = bounds["big"]
    assert params["big"].min() == lo and params["big"].max() == hi
    assert float(lo) >= -0.7


def test_sgd_bounds():
    p = {"w": np.array([1.0, 2.0, 3.0])}
    optim.SGD(p, lr=0.5, bounds={"w": (0.0, 2.5)}).step(p, {"w": np.array([4.0, 1.0, -2.0])})
    assert p["w"].tolist() == [0.0, 1.5, 2.5]


def test_small_problems_do_not_load_numba():
    opt = optim.Adam({"w": np.zeros(10)})
    assert optim.kernel_name(opt.size) == "numpy"


def test_params_that_cannot_be_updated_in_place_are_refused():
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    for bad in (np.float64(1.0), frozen, np.zeros((3, 2)).T):
        with pytest.raises(TypeError, match="in place"):
            optim.Adam({"w": bad}).step({"w": bad}, {"w": np.ones(np.shape(bad))})
