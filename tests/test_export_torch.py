"""`to_torch` against the evaluator, the projection in float32, and certified training (Adam, DDP)."""
from __future__ import annotations

import contextlib
import glob
import io
import json
import math
import os
import socket

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from netgen import networks, sample

torch = pytest.importorskip("torch")

import dcpnet
from dcpnet.evaluate import compile_network
from dcpnet.graph import load, load_text
from dcpnet.interop.to_torch import module_class, save_params, to_torch, torch_source
from dcpnet.train.params import init_params

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = sorted(glob.glob(os.path.join(HERE, "..", "examples", "*.net")))

ICNN = """\
input x[3]
input y
param W0[8, 3], b0[8]
param Z1[8, 8] >= 0, U1[8, 3], b1[8]
param a[8] >= 0, c[3], c0
z1 = softplus(W0 @ x + b0)
z2 = relu(Z1 @ z1 + U1 @ x + b1)
f = a @ z2 + c @ x + c0
loss = (f - y)^2
output f, loss
check convex(f) in x
"""


def inputs_for(net, n: int, rng) -> dict[str, np.ndarray]:
    """A batch inside every declared input domain."""
    out = {}
    for name in net.inputs:
        var = net.variables[name]
        lo, hi = var.bounds.lo, var.bounds.hi
        shape = (n, *var.shape)
        if math.isfinite(lo) and math.isfinite(hi):
            out[name] = rng.uniform(lo, hi, shape)
        elif math.isfinite(lo):
            out[name] = lo + rng.exponential(1.0, shape)
        elif math.isfinite(hi):
            out[name] = hi - rng.exponential(1.0, shape)
        else:
            out[name] = rng.normal(size=shape)
    return out


def torch_run(module, net, data, dtype=torch.float64, grad=False):
    tensors = [torch.tensor(data[k], dtype=dtype, requires_grad=grad) for k in net.inputs]
    out = module(*tensors)
    return (out if isinstance(out, tuple) else (out,)), tensors


def assert_close(ours, theirs, rtol=1e-9):
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape
    finite = np.isfinite(theirs)
    assert np.array_equal(finite, np.isfinite(ours))
    scale = np.maximum(np.abs(theirs[finite]), 1e-300)
    err = np.abs(ours[finite] - theirs[finite]) / np.maximum(scale, 1.0)
    assert err.size == 0 or err.max() <= rtol, err.max()


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_forward_and_gradients_equal_the_evaluator(path):
    net = load(path)
    rng = np.random.default_rng(1)
    params = {k: np.array(v) for k, v in init_params(net, rng).items()}
    data = inputs_for(net, 7, rng)
    module = to_torch(net, params)
    assert set(dict(module.named_parameters())) == set(net.params)
    plan = compile_network(net)
    expected = plan.forward({**params, **data})
    outs, tensors = torch_run(module, net, data)
    for name, out in zip(net.outputs, outs):
        assert_close(out.detach().numpy(), expected[name])
    for name in net.outputs:
        if net.node(name).shape:
            continue
        _, grads = plan.backward({**params, **data}, loss=name)
        module.zero_grad()
        outs, tensors = torch_run(module, net, data, grad=True)
        outs[net.outputs.index(name)].mean().backward()
        for p, value in module.named_parameters():
            got = np.zeros(value.shape) if value.grad is None else value.grad.numpy()
            assert_close(got, grads[p])
        for k, t in zip(net.inputs, tensors):
            assert_close(np.zeros(t.shape) if t.grad is None else t.grad.numpy(), grads[k])


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(networks(max_layers=5))
def test_random_networks_agree_with_the_evaluator(case):
    """Every output of a random network, params and inputs inside their constraints (NaN where the evaluator
    gives NaN: outside an atom's domain), and the gradients of a scalar output where all is finite."""
    text, _ = case
    net = load_text(text)
    rng = np.random.default_rng(0)
    params = {k: v[0] for k, v in sample(net, net.params, rng, 1, 1.0).items()}
    data = sample(net, net.inputs, rng, 4, 1.0)
    expected = compile_network(net).forward({**params, **data})
    outs, _ = torch_run(to_torch(net, params), net, data)
    for name, out in zip(net.outputs, outs):
        ours = out.detach().numpy()
        theirs = expected[name]
        # an output of the params alone: the evaluator's batch is 1, the module repeats it over the batch
        theirs = np.broadcast_to(theirs, (len(data[net.inputs[0]]) if net.inputs else 1, *theirs.shape[1:]))
        assert ours.shape == theirs.shape
        finite = np.isfinite(theirs) & np.isfinite(ours)
        assert np.allclose(ours[finite], theirs[finite], rtol=1e-9, atol=1e-12)
        assert np.array_equal(np.isnan(theirs), np.isnan(ours)) or not np.isfinite(theirs).all()
    scalar = [n for n in net.outputs if not net.node(n).shape]
    if not scalar or not all(np.isfinite(expected[n]).all() for n in net.outputs):
        return
    _, grads = compile_network(net).backward({**params, **data}, loss=scalar[0])
    module = to_torch(net, params)
    outs, tensors = torch_run(module, net, data, grad=True)
    outs[net.outputs.index(scalar[0])].mean().backward()
    for name, p in module.named_parameters():
        got = np.zeros(p.shape) if p.grad is None else p.grad.numpy()
        assert np.allclose(got, grads[name], rtol=1e-8, atol=1e-10, equal_nan=True), name
    for name, t in zip(net.inputs, tensors):
        got = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        assert np.allclose(got, grads[name], rtol=1e-8, atol=1e-10, equal_nan=True), name


def test_shapes_and_operators_of_every_kind():
    """Batched and shared operands of @, broadcast scalars, reductions of matrices, a user atom."""
    text = """\
input x[3], X[3, 2], s in [0.5, 2]
param W[4, 3], v[3], V[2, 3], w in [0.1, 1]
atom sq(t) = t^2 + 0.5 * softplus(t)
a = W @ x + s
b = v @ X
c = x @ X + V @ v
d = X @ V + s * w
e = maximum(a, s, 0.3) - sum(minimum(b, w))
f = sum(sq(e)) + norm2(d) + norm_inf(X) + log_sum_exp(a) + quad_over_lin(c, s) + x[1] / s + mean(d)
g = x @ x + w * w + x @ X @ b + norm1(x) - max(c) + min(c) + sum_squares(V @ x) + huber(a[0]) + leaky_relu(s - 1, -0.3)
output a, b, c, d, e, f, g
"""
    net = load_text(text)
    rng = np.random.default_rng(3)
    params = {k: np.array(v) for k, v in init_params(net, rng).items()}
    params["v"] = rng.normal(size=3)
    data = inputs_for(net, 5, rng)
    expected = compile_network(net).forward({**params, **data})
    outs, _ = torch_run(to_torch(net, params), net, data)
    for name, out in zip(net.outputs, outs):
        assert_close(out.detach().numpy(), expected[name])


def test_consts_are_buffers_and_slices_concat_agree(tmp_path):
    net = load_text("input x[4], t\nconst K[3, 2]\nparam W[2, 2] >= 0, b[3]\nh = relu(K @ x[0:2] + b)\n"
                    "g = concat(h, t, x[2:4], b[1])\nf = sum(softplus(g)) + norm2(concat(x[1], W @ x[2:4]))\n"
                    "output g, f\n")
    rng = np.random.default_rng(4)
    values = {"K": rng.normal(size=(3, 2)), "W": np.ones((2, 2)), "b": rng.normal(size=3)}
    data = inputs_for(net, 5, rng)
    module = to_torch(net, values)
    assert sorted(dict(module.named_parameters())) == ["W", "b"] and list(dict(module.named_buffers())) == ["K"]
    expected = compile_network(net).forward({**values, **data})
    outs, _ = torch_run(module, net, data)
    for name, out in zip(net.outputs, outs):
        assert_close(out.detach().numpy(), expected[name])
    save_params(module, tmp_path / "p.npz")
    again = to_torch(net, dcpnet.load_params(net, tmp_path / "p.npz"))
    assert torch.equal(again(*[torch.tensor(data[k]) for k in net.inputs])[1], outs[1])


def test_names_that_clash_with_module_attributes():
    net = load_text("input self[2]\nparam eval[2], train >= 0, forward\nf = eval @ self + train + forward\n")
    module = to_torch(net)
    assert sorted(dict(module.named_parameters())) == ["eval", "forward", "train"]
    assert module(torch.ones(3, 2)).shape == (3,)


@pytest.mark.parametrize("lo, hi", [(0.7, math.inf), (-math.inf, 0.1), (0.1, 0.7), (1e-3, 1.0 / 3)])
def test_projection_is_exact_in_float32(lo, hi):
    """After project_, every float32 entry lies in [lo, hi] read exactly in float64, and as close as can be."""
    lo_txt = f"{lo!r}" if math.isfinite(lo) else "-1e300"
    hi_txt = f"{hi!r}" if math.isfinite(hi) else "1e300"
    net = load_text(f"input x[3]\nparam W[50, 3] in [{lo_txt}, {hi_txt}]\nf = sum(W @ x)\n")
    module = to_torch(net, dtype=torch.float32)
    with torch.no_grad():
        module.W.copy_(torch.linspace(-2.0, 2.0, 150).reshape(50, 3))
    storage = module.W.data_ptr()
    module.project_()
    assert module.W.data_ptr() == storage                 # in place: the same tensor
    w = module.W.detach().double().numpy()
    lo_d, hi_d = float(net.variables["W"].bounds.lo), float(net.variables["W"].bounds.hi)
    assert w.min() >= lo_d and w.max() <= hi_d
    f32 = np.float32
    if math.isfinite(lo):                                  # the smallest float32 inside, not one step above
        assert float(np.nextafter(f32(w.min()), f32(-np.inf))) < lo_d
    if math.isfinite(hi):
        assert float(np.nextafter(f32(w.max()), f32(np.inf))) > hi_d


def test_bad_params_are_bad_input():
    from dcpnet.errors import DcpnetError

    net = load_text("input x[2]\nparam W[3, 2] >= 0\nf = sum(W @ x)\n")
    with pytest.raises(DcpnetError, match="violates its constraint"):
        to_torch(net, {"W": -np.ones((3, 2))})
    with pytest.raises(DcpnetError, match="has shape"):
        to_torch(net, {"W": np.ones((2, 3))})
    with pytest.raises(DcpnetError, match="missing"):
        to_torch(net, {})


def test_generated_file_is_self_contained(tmp_path):
    """The source `export` writes runs with torch alone and gives the same values as to_torch."""
    import subprocess
    import sys

    net = load_text(ICNN)
    module = to_torch(net)
    path = tmp_path / "model.py"
    path.write_text(torch_source(net))
    save_params(module, tmp_path / "p.npz")
    script = (f"import sys, numpy as np, torch; sys.path.insert(0, {str(tmp_path)!r}); sys.modules['dcpnet'] = None\n"
              "import model\n"
              f"m = model.Net(np.load({str(tmp_path / 'p.npz')!r}))\n"
              "x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3); y = torch.zeros(4, dtype=torch.float64)\n"
              "print(repr(m(x, y)[0].sum().item()))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ,
                          "PYTHONPATH": ""}, check=False)
    assert done.returncode == 0, done.stderr
    x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
    assert float(done.stdout) == module(x, torch.zeros(4, dtype=torch.float64))[0].sum().item()
    cls = module_class(net)
    assert cls(None)(x, torch.zeros(4, dtype=torch.float64))[0].shape == (4,)


def _adam_training(net, module, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=(256, 3)), dtype=torch.float32)
    y = (x ** 2).sum(1)
    opt = torch.optim.Adam(module.parameters(), lr=0.05)
    opt.register_step_post_hook(module.project_)
    for _ in range(steps):
        opt.zero_grad()
        _, loss = module(x, y)
        loss.mean().backward()
        opt.step()


def _certified(net, path, tmp_path) -> tuple[bool, list[str]]:
    """`dcpnet check --params` on the file's claim (convex in x), and the constraints read back exactly."""
    from dcpnet.cli import main
    from dcpnet.train.data import load_params
    from dcpnet.train.params import violations

    net_file = tmp_path / "icnn.net"
    net_file.write_text(ICNN)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["check", str(net_file), "--params", str(path), "--json"])
    report = json.loads(out.getvalue())
    proved = code == 0 and all(r["convex"]["verdict"] == "proved" for r in report["results"] if r["claim"] == "convex")
    return proved, violations(net, load_params(net, path, check_bounds=False))


def test_adam_with_the_projection_hook_stays_certified(tmp_path):
    net = load_text(ICNN)
    module = to_torch(net, dtype=torch.float32)
    _adam_training(net, module, 100)
    clamped = [getattr(module, name).detach() for name in ("Z1", "a")]
    assert all(p.dtype == torch.float32 and bool((p >= 0).all()) for p in clamped)
    assert any(bool((p == 0).any()) for p in clamped)      # the projection did act
    save_params(module, tmp_path / "p.npz")
    proved, bad = _certified(net, tmp_path / "p.npz", tmp_path)
    assert proved and bad == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        net = load_text(ICNN)
        module = to_torch(net, dtype=torch.float32)
        ddp = torch.nn.parallel.DistributedDataParallel(module)
        opt = torch.optim.Adam(ddp.parameters(), lr=0.05)
        opt.register_step_post_hook(module.project_)
        rng = np.random.default_rng(rank)                    # each replica sees its own shard of data
        for _ in range(30):
            x = torch.tensor(rng.normal(size=(64, 3)), dtype=torch.float32)
            opt.zero_grad()
            _, loss = ddp(x, (x ** 2).sum(1))
            loss.mean().backward()
            opt.step()
        save_params(module, os.path.join(out, f"rank{rank}.npz"))
    finally:
        dist.destroy_process_group()


def test_distributed_data_parallel_replicas_stay_identical_and_certified(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (np.load(tmp_path / f"rank{r}.npz") for r in (0, 1))
    net = load_text(ICNN)
    for name in net.params:
        assert a[name].dtype == np.float32 and a[name].tobytes() == b[name].tobytes(), name
    proved, bad = _certified(net, tmp_path / "rank0.npz", tmp_path)
    assert proved and bad == []


def test_cli_export_torch(tmp_path, capsys):
    import runpy

    from dcpnet.cli import main

    net_file = tmp_path / "icnn.net"
    net_file.write_text(ICNN)
    out = tmp_path / "model.py"
    assert main(["export", str(net_file), "--to", "torch", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    net = load_text(ICNN)
    params = {k: np.array(v) for k, v in init_params(net, np.random.default_rng(0)).items()}
    model = runpy.run_path(str(out))["Net"](params)
    x, y = torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    assert torch.equal(model(x, y)[1], to_torch(net, params)(x, y)[1])
    assert main(["export", str(net_file), "--to", "torch", "-o", str(out)]) == 2      # exists: --force
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(net_file), "--to", "torch", "--force", "-o", str(out)]) == 0
    assert main(["export", str(net_file), "--to", "torch", "--output", "nope", "--force", "-o", str(out)]) == 2
    assert "unknown name `nope`" in capsys.readouterr().err
    assert main(["export", str(net_file), "--to", "torch", "-o", str(tmp_path)]) == 2   # a directory
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(net_file), "-o", str(out)])                                  # no --to
    assert exit_info.value.code == 2
