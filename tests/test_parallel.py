"""The two-thread machinery: `pair`, `split_rows`, OpenBLAS's thread setting, and the data-parallel backward
(each half of the batch on its own thread), which must give the gradients of the one-thread backward."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_evaluate import _env, _networks

from dcpnet import evaluate, parallel
from dcpnet.evaluate import compile_network, init_params
from dcpnet.graph import load_text

ICNN = """input x[6]
input y
param W0[16, 6], b0[16]
z0 = softplus(W0 @ x + b0)
param Wz[16, 16] >= 0, W1[16, 6]
z1 = relu(Wz @ z0 + W1 @ x)
param a[16] >= 0, c0
loss = (a @ z1 + c0 - y)^2
"""

needs_pair = pytest.mark.skipif(not parallel.can_pair(), reason="one core, or no OpenBLAS to hold at one thread")


def test_pair_runs_both_jobs_on_two_threads():
    if parallel.THREADS < 2:
        pytest.skip("one thread")
    seen = parallel.pair(lambda: threading.get_ident(), lambda: threading.get_ident())
    assert seen[0] == threading.get_ident() and seen[1] != seen[0]


def test_pair_raises_the_error_of_either_job_and_stays_usable():
    if parallel.THREADS < 2:
        pytest.skip("one thread")

    def boom():
        raise ZeroDivisionError("second")
    with pytest.raises(ZeroDivisionError, match="second"):
        parallel.pair(lambda: 1, boom)
    with pytest.raises(KeyError):
        parallel.pair(lambda: {}["first"], lambda: 2)
    assert parallel.pair(lambda: 3, lambda: 4) == (3, 4)
    assert not parallel._in_pair


def test_split_rows_runs_inline_inside_a_pair():
    if parallel.THREADS < 2:
        pytest.skip("one thread")
    out = np.zeros(1 << 18)

    def fill():
        parallel.split_rows(lambda lo, hi: out[lo:hi].fill(threading.get_ident()), out.size, out.size, least=1)
        return threading.get_ident()
    me, _ = parallel.pair(fill, lambda: None)
    assert np.all(out == me)                   # one thread did all of it: the helper was busy


@needs_pair
def test_one_blas_thread_gives_the_setting_back():
    blas = parallel._openblas()
    before = blas.get()
    with parallel.one_blas_thread():
        assert blas.get() == 1
    assert blas.get() == before
    with pytest.raises(RuntimeError), parallel.one_blas_thread():
        raise RuntimeError
    assert blas.get() == before


def _both_ways(plan, env, monkeypatch, **kw):
    """(backward in halves, backward in one piece) of the same call."""
    monkeypatch.setattr(evaluate, "HALVING_MIN", 0)
    halves = plan.backward(env, **kw)
    monkeypatch.setattr(evaluate, "HALVING_MIN", math.inf)
    whole = plan.backward(env, **kw)
    return halves, whole


def _assert_same(halves, whole, rtol):
    assert math.isclose(halves[0], whole[0], rel_tol=rtol, abs_tol=1e-12)
    assert halves[1].keys() == whole[1].keys()
    for k, g in whole[1].items():
        assert halves[1][k].shape == g.shape, k
        np.testing.assert_allclose(halves[1][k], g, rtol=rtol, atol=1e-12, err_msg=k)


@needs_pair
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [32, 33, 257])
def test_halves_give_the_gradient_of_the_whole_batch(monkeypatch, dtype, batch):
    net = load_text(ICNN)
    rng = np.random.default_rng(batch)
    env = dict(init_params(net, rng, dtype), x=rng.normal(size=(batch, 6)), y=rng.normal(size=batch))
    plan = compile_network(net, ["loss"], dtype)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    # params only (training), and everything (the inputs' gradients are per example: concatenated)
    _assert_same(*_both_ways(plan, env, monkeypatch, loss="loss", wrt=set(net.params)), rtol)
    _assert_same(*_both_ways(plan, env, monkeypatch, loss="loss"), rtol)


@needs_pair
def test_halving_is_used_only_where_it_applies(monkeypatch):
    net = load_text(ICNN)
    rng = np.random.default_rng(0)
    plan = compile_network(net, ["loss"])
    calls = []
    real = evaluate.pair
    monkeypatch.setattr(evaluate, "pair", lambda a, b: calls.append(1) or real(a, b))
    monkeypatch.setattr(evaluate, "HALVING_MIN", 0)
    env = dict(init_params(net, rng), x=rng.normal(size=(64, 6)), y=rng.normal(size=64))
    plan.backward(env, loss="loss")
    assert len(calls) == 1
    plan.backward(env, loss="loss", per_example=True)      # per-example seeds: not halved
    small = dict(env, x=env["x"][:8], y=env["y"][:8])        # too few examples to be worth it
    plan.backward(small, loss="loss")
    assert len(calls) == 1


@needs_pair
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_networks(kinked=True), seed=st.integers(0, 2**16), batch=st.integers(32, 80))
def test_halves_agree_on_random_networks(text, seed, batch):
    net = load_text(text)
    env = _env(net, seed, batch=batch)
    plan = compile_network(net, ["y"])
    with pytest.MonkeyPatch.context() as mp:
        _assert_same(*_both_ways(plan, env, mp, loss="y"), 1e-9)


@needs_pair
def test_an_error_in_a_half_is_the_error_of_the_call(monkeypatch):
    net = load_text(ICNN)
    rng = np.random.default_rng(1)
    plan = compile_network(net, ["loss"])
    monkeypatch.setattr(evaluate, "HALVING_MIN", 0)
    env = dict(init_params(net, rng), x=rng.normal(size=(64, 6)), y=rng.normal(size=63))
    with pytest.raises(ValueError, match="examples"):
        plan.backward(env, loss="loss")
    assert not parallel._in_pair


@needs_pair
def test_gemm_bound_steps_are_left_whole():
    """Halves pay where elementwise work and per-call overhead matter; a step whose batched values are few
    next to its GEMM FLOPs runs whole, OpenBLAS's threads sharing each GEMM."""
    light = load_text("input x[8]\nparam W[64, 8]\ny = sum(softplus(W @ x))\n")            # 16 FLOPs an entry
    heavy = load_text("input x[784]\nparam W[64, 784]\ny = sum(softplus(W @ x))\n")        # about 1,500
    assert compile_network(light, ["y"]).halves(4096, "y")
    assert not compile_network(heavy, ["y"]).halves(4096, "y")
    assert not compile_network(light, ["y"]).halves(16, "y")                               # too few examples


def test_one_thread_setting_turns_both_off(monkeypatch):
    from dcpnet.worker import HalfBatchWorker
    monkeypatch.setattr(parallel, "THREADS", 1)
    monkeypatch.setattr(evaluate, "HALVING_MIN", 0)
    assert not parallel.can_pair()
    net = load_text(ICNN)
    params = dict(init_params(net, np.random.default_rng(0)))
    plan = compile_network(net, ["loss"])
    assert not plan.halves(4096, "loss")
    assert HalfBatchWorker.start(plan, params, ["x", "y"], "loss", set(net.params), 4096) is None
