"""The worker process that computes the second half of each batch: the same loss and gradients as
`Plan.backward`, params shared both ways, errors and a dead worker reported, nothing left behind."""
from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest
from test_parallel import ICNN

from dcpnet import evaluate
from dcpnet.evaluate import compile_network, init_params
from dcpnet.graph import load_text
from dcpnet.train import train
from dcpnet.worker import HalfBatchWorker

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the worker is forked on Linux only")



@pytest.fixture
def setup(monkeypatch):
    monkeypatch.setattr(evaluate, "HALVING_MIN", 0)     # a small network, so that a worker starts
    net = load_text(ICNN)
    rng = np.random.default_rng(0)
    params = {k: np.asarray(v) for k, v in init_params(net, rng).items()}
    x, y = rng.normal(size=(200, 6)), rng.normal(size=200)
    plan = compile_network(net, ["loss"])
    worker = HalfBatchWorker.start(plan, params, ["x", "y"], "loss", set(net.params), 200)
    if worker is None:
        pytest.skip("one core")
    yield net, plan, params, x, y, worker
    worker.close()


def _reference(plan, net, params, x, y):
    return plan.backward(dict({k: np.array(v) for k, v in params.items()}, x=x, y=y), loss="loss",
                         wrt=set(net.params))


def _assert_same(got, want):
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    assert got[1].keys() == want[1].keys()
    for k, g in want[1].items():
        np.testing.assert_allclose(got[1][k], g, rtol=1e-10, atol=1e-14, err_msg=k)


def test_same_loss_and_gradient_as_plan_backward(setup):
    net, plan, params, x, y, worker = setup
    for n in (200, 101, 2):                              # full, odd, smallest batches
        _assert_same(worker.backward(dict(params, x=x[:n], y=y[:n])), _reference(plan, net, params, x[:n], y[:n]))


def test_params_are_shared_both_ways(setup):
    net, plan, params, x, y, worker = setup
    assert all(params[k] is worker.shared[f"p:{k}"] for k in params)   # moved into the shared mapping
    params["W0"] *= 0.5                                  # an update in place reaches the worker
    _assert_same(worker.backward(dict(params, x=x, y=y)), _reference(plan, net, params, x, y))
    params["W1"] = params["W1"] + 1.0                    # a new array in its place is copied in
    _assert_same(worker.backward(dict(params, x=x, y=y)), _reference(plan, net, params, x, y))


def test_gradient_in_parts_sums_to_the_gradient(setup):
    net, plan, params, x, y, worker = setup
    value, parts = worker.backward(dict(params, x=x, y=y), parts=True)
    assert all(isinstance(p, tuple) and len(p) == 2 for p in parts.values())
    _assert_same((value, {k: a + b for k, (a, b) in parts.items()}), _reference(plan, net, params, x, y))


def test_batches_it_cannot_take_fall_back(setup):
    net, plan, params, x, y, worker = setup
    big_x, big_y = np.concatenate([x, x]), np.concatenate([y, y])       # over max_batch
    _assert_same(worker.backward(dict(params, x=big_x, y=big_y)), _reference(plan, net, params, big_x, big_y))
    with pytest.raises(ValueError, match="examples"):                    # shapes checked before the worker runs
        worker.backward(dict(params, x=x, y=y[:-1]))
    _assert_same(worker.backward(dict(params, x=x, y=y)), _reference(plan, net, params, x, y))   # still in step


def test_an_error_in_the_worker_is_raised_here(monkeypatch):
    monkeypatch.setattr(evaluate, "HALVING_MIN", 0)
    net = load_text(ICNN)
    rng = np.random.default_rng(1)
    params = {k: np.asarray(v) for k, v in init_params(net, rng).items()}
    plan = compile_network(net, ["loss"])
    parent, real = os.getpid(), plan.backward_sum

    def fails_in_the_child(*args, **kw):
        if os.getpid() != parent:
            raise ArithmeticError("boom in the worker")
        return real(*args, **kw)
    plan.backward_sum = fails_in_the_child
    worker = HalfBatchWorker.start(plan, params, ["x", "y"], "loss", set(net.params), 100)
    if worker is None:
        pytest.skip("one core")
    with worker:
        env = dict(params, x=rng.normal(size=(100, 6)), y=rng.normal(size=100))
        with pytest.raises(ValueError, match="boom in the worker"):
            worker.backward(env)
        with pytest.raises(ValueError, match="boom in the worker"):      # the protocol stayed in step
            worker.backward(env)


def test_a_dead_worker_is_reported_then_left_aside(setup):
    net, plan, params, x, y, worker = setup
    os.kill(worker.pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="ended unexpectedly"):
        worker.backward(dict(params, x=x, y=y))
    _assert_same(worker.backward(dict(params, x=x, y=y)), _reference(plan, net, params, x, y))


def test_close_reaps_the_worker(setup):
    *_, worker = setup
    pid = worker.pid
    worker.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    worker.close()                                       # twice is fine


def test_not_started_where_it_does_not_pay():
    net = load_text(ICNN)
    params = {k: np.asarray(v) for k, v in init_params(net, np.random.default_rng(2)).items()}
    plan = compile_network(net, ["loss"])
    assert HalfBatchWorker.start(plan, params, ["x", "y"], "loss", set(net.params), 16) is None   # small batch


def test_training_with_a_worker_matches_training_without(monkeypatch):
    monkeypatch.setattr(evaluate, "HALVING_MIN", 0)
    net = load_text(ICNN)
    rng = np.random.default_rng(3)
    data = {"x": rng.normal(size=(300, 6)), "y": rng.normal(size=300)}
    started = []
    real_start = HalfBatchWorker.start.__func__

    def spy(cls, *args):
        w = real_start(cls, *args)
        started.append(w)
        return w
    monkeypatch.setattr(HalfBatchWorker, "start", classmethod(spy))
    with_worker = train(net, data, "loss", epochs=5, batch=100, lr=0.01, seed=4)
    if started[-1] is None:
        pytest.skip("one core")
    monkeypatch.setattr(HalfBatchWorker, "start", classmethod(lambda cls, *a: None))
    without = train(net, data, "loss", epochs=5, batch=100, lr=0.01, seed=4)
    np.testing.assert_allclose(with_worker.history["train"], without.history["train"], rtol=1e-9)
    for k, v in without.params.items():
        np.testing.assert_allclose(with_worker.params[k], v, rtol=1e-8, atol=1e-12)
        assert type(with_worker.params[k]) is np.ndarray and with_worker.params[k].base is None   # detached
    assert with_worker.params["Wz"].min() >= 0 and with_worker.params["a"].min() >= 0


def test_float32(monkeypatch):
    monkeypatch.setattr(evaluate, "HALVING_MIN", 0)
    net = load_text(ICNN)
    rng = np.random.default_rng(5)
    params = {k: np.asarray(v) for k, v in init_params(net, rng, np.float32).items()}
    x, y = rng.normal(size=(128, 6)).astype(np.float32), rng.normal(size=128).astype(np.float32)
    plan = compile_network(net, ["loss"], np.float32)
    want = plan.backward(dict({k: v.copy() for k, v in params.items()}, x=x, y=y), loss="loss", wrt=set(net.params))
    worker = HalfBatchWorker.start(plan, params, ["x", "y"], "loss", set(net.params), 128)
    if worker is None:
        pytest.skip("one core")
    with worker:
        got = worker.backward(dict(params, x=x, y=y))
    assert all(params[k].dtype == np.float32 for k in params)
    assert got[0] == pytest.approx(want[0], rel=1e-5)
    for k, g in want[1].items():
        assert got[1][k].dtype == np.float32
        np.testing.assert_allclose(got[1][k], g, rtol=2e-4, atol=1e-6, err_msg=k)
