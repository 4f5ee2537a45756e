"""One training step (forward + backward + Adam update + projection) of input-convex networks.

    python benchmarks/train_step.py [--act softplus|relu|both] [--dtype float64|float32|both] [--seconds 1.0]
                                    [--rounds 3] [--single-core]

For each size it prints the examples per second of dcpnet's compiled evaluator and of the same model in
PyTorch on the CPU (when torch is installed), their ratio, the GEMM FLOPs of one step, the rate of the same
GEMMs done by bare `np.matmul`, how close the step comes to that GEMM-bound rate, how the step split its
batch, and the rate of the same GEMMs in torch (MKL), the library's share of any gap.

The ICNN (Amos et al. 2017): z_0 = act(Wx_0 x + b_0), z_k = act(Wz_k z_{k-1} + Wx_k x + b_k) with Wz_k >= 0,
f = a @ z_last + c @ x + c0 with a >= 0, loss = (f - y)^2, trained on its batch mean.

Torch runs in a child process per measurement (its OpenMP threads spin with OMP_WAIT_POLICY=ACTIVE and would
starve NumPy's BLAS threads in a shared process); rounds alternate and the best of each is kept. With
`--single-core` everything runs on one thread and is timed in CPU time, which other jobs on the machine
barely disturb.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

_WORKER = sys.argv[sys.argv.index("--torch-worker") + 1] if "--torch-worker" in sys.argv[:-1] else ""
SINGLE_CORE = "--single-core" in sys.argv or _WORKER.endswith(",1")
if SINGLE_CORE:   # one thread everywhere, timed in process CPU time: robust when other jobs share the machine
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "DCPNET_THREADS"):
        os.environ[var] = "1"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
else:
    os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")   # torch's OpenMP pool otherwise stalls on 2 cores
CLOCK = time.process_time if SINGLE_CORE else time.perf_counter

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dcpnet.evaluate import compile_network
from dcpnet.graph import load_text
from dcpnet.train import optim
from dcpnet.train.loop import tune_malloc
from dcpnet.train.params import init_params, param_bounds

SIZES = [(32, 256, 4, 256), (784, 512, 3, 128), (8, 64, 8, 1024)]   # (d, width, depth, batch)
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8


def icnn_text(d: int, w: int, depth: int, act: str) -> str:
    lines = [f"input x[{d}]", "input y", f"param Wx0[{w}, {d}], b0[{w}]", f"z0 = {act}(Wx0 @ x + b0)"]
    for k in range(1, depth):
        lines += [f"param Wz{k}[{w}, {w}] >= 0, Wx{k}[{w}, {d}], b{k}[{w}]",
                  f"z{k} = {act}(Wz{k} @ z{k - 1} + Wx{k} @ x + b{k})"]
    lines += [f"param a[{w}] >= 0, c[{d}], c0", f"f = a @ z{depth - 1} + c @ x + c0", "loss = (f - y)^2",
              "output loss"]
    return "\n".join(lines) + "\n"


def gemm_shapes(d: int, w: int, depth: int, batch: int) -> list[tuple[int, int, int]]:
    """(rows, inner, cols) of every GEMM in one step: forward, weight gradients, gradients to the z's."""
    shapes = [(batch, d, w)] + [(batch, w, w), (batch, d, w)] * (depth - 1)     # forward X @ W.T
    shapes += [(w, batch, d)] + [(w, batch, w), (w, batch, d)] * (depth - 1)     # g.T @ X
    shapes += [(batch, w, w)] * (depth - 1)                                      # g @ Wz
    shapes += [(batch, w, 1), (batch, d, 1), (1, batch, w), (1, batch, d), (batch, 1, w)]   # output layer
    return shapes


def flops(shapes) -> int:
    return sum(2 * m * k * n for m, k, n in shapes)


def time_steps(step, seconds: float) -> float:
    """Seconds per step: the best of five runs of enough steps to fill `seconds`."""
    step()
    step()
    t0 = CLOCK()
    n = 0
    while CLOCK() - t0 < seconds / 5 or n < 3:
        step()
        n += 1
    best = (CLOCK() - t0) / n
    for _ in range(4):
        t0 = CLOCK()
        for _ in range(n):
            step()
        best = min(best, (CLOCK() - t0) / n)
    return best


def gemm_rate(shapes, dtype, seconds: float) -> float:
    """FLOP/s of bare `np.matmul` on C-contiguous operands of the step's GEMM shapes, run back to back."""
    rng = np.random.default_rng(0)
    pairs = [(rng.normal(size=(m, k)).astype(dtype), rng.normal(size=(k, n)).astype(dtype)) for m, k, n in shapes]

    def run():
        for a, b in pairs:
            np.matmul(a, b)
    return flops(shapes) / time_steps(run, seconds)


def dcpnet_step(net, params, x, y, dtype):
    """A step as `dcpnet train` takes it: `Plan.backward` on the batch, then Adam and the projection."""
    tune_malloc()
    plan = compile_network(net, ["loss"], dtype)
    wrt = set(net.params)
    # the projection onto Wz >= 0, a >= 0 is done by the optimizer, in the pass of its update
    adam = optim.Adam(params, lr=LR, betas=(BETA1, BETA2), eps=EPS, bounds=param_bounds(net, params))
    env = dict(params, x=x, y=y)

    def step():
        _, grads = plan.backward(env, loss="loss", wrt=wrt)
        adam.step(params, grads)
    return step




def torch_step(params, x, y, depth, act, dtype):
    import torch

    torch.set_num_threads(1 if SINGLE_CORE else 2)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    p = {k: torch.tensor(v, dtype=tdt, requires_grad=True) for k, v in params.items()}
    tx, ty = torch.tensor(x, dtype=tdt), torch.tensor(y, dtype=tdt)
    f_act = torch.nn.functional.softplus if act == "softplus" else torch.relu
    opt = torch.optim.Adam(list(p.values()), lr=LR, betas=(BETA1, BETA2), eps=EPS)
    nonneg = [p[f"Wz{k}"] for k in range(1, depth)] + [p["a"]]
    lin = torch.nn.functional.linear

    def step():
        z = f_act(lin(tx, p["Wx0"], p["b0"]))
        for k in range(1, depth):
            z = f_act(lin(z, p[f"Wz{k}"]) + lin(tx, p[f"Wx{k}"], p[f"b{k}"]))
        f = z @ p["a"] + tx @ p["c"] + p["c0"]
        loss = ((f - ty) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for w in nonneg:
                w.clamp_(min=0)
    return step


def problem(d: int, w: int, depth: int, batch: int, act: str, dtype):
    net = load_text(icnn_text(d, w, depth, act))
    rng = np.random.default_rng(0)
    params = init_params(net, rng, dtype)
    x = rng.normal(size=(batch, d)).astype(dtype)
    y = rng.normal(size=batch).astype(dtype)
    return net, params, x, y


def torch_seconds(d, w, depth, batch, act, dtype, seconds) -> tuple[float, float] | None:
    """(seconds per torch step, torch's GEMM rate on the step's shapes), measured in a child process: torch's
    spinning OpenMP threads (OMP_WAIT_POLICY=ACTIVE) would otherwise steal both cores from NumPy's BLAS here."""
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker",
           ",".join(map(str, (d, w, depth, batch, act, np.dtype(dtype).name, seconds, int(SINGLE_CORE))))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    step, rate = done.stdout.split()[-2:]
    return float(step), float(rate)


def torch_worker(spec: str) -> None:
    d, w, depth, batch, act, dtype, seconds, _ = spec.split(",")
    d, w, depth, batch, dtype = int(d), int(w), int(depth), int(batch), np.dtype(dtype).type
    _, params, x, y = problem(d, w, depth, batch, act, dtype)
    print(time_steps(torch_step(params, x, y, depth, act, dtype), float(seconds)),
          torch_gemm_rate(gemm_shapes(d, w, depth, batch), dtype, float(seconds) / 2))


def torch_gemm_rate(shapes, dtype, seconds: float) -> float:
    """FLOP/s of bare `torch.matmul` (MKL) on the step's GEMM shapes: the library's share of the gap."""
    import torch

    tdt = torch.float32 if dtype == np.float32 else torch.float64
    pairs = [(torch.randn(m, k, dtype=tdt), torch.randn(k, n, dtype=tdt)) for m, k, n in shapes]

    def run():
        for a, b in pairs:
            torch.matmul(a, b)
    return flops(shapes) / time_steps(run, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--act", choices=["softplus", "relu", "both"], default="both")
    ap.add_argument("--dtype", choices=["float64", "float32", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved measurements of each, best kept")
    ap.add_argument("--single-core", action="store_true", help="one thread for NumPy, BLAS and torch, timed in "
                    "CPU time: a per-core comparison that stays meaningful on a loaded machine")
    ap.add_argument("--torch-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(args.torch_worker)
    import importlib.util

    have_torch = importlib.util.find_spec("torch") is not None
    if not have_torch:
        print("torch is not installed: dcpnet figures only (pip install torch==2.13.0)")
    acts = ["softplus", "relu"] if args.act == "both" else [args.act]
    dtypes = [np.float64, np.float32] if args.dtype == "both" else [np.dtype(args.dtype).type]
    print(f"dcpnet's Adam kernel: {optim.kernel_name()}; the batch runs whole, OpenBLAS's threads sharing each GEMM")
    print(f"{'act':8} {'dtype':7} {'d':>4} {'width':>5} {'depth':>5} {'batch':>5} | {'dcpnet ex/s':>11} "
          f"{'torch ex/s':>10} {'ratio':>5} | {'MFLOP/step':>10} {'GEMM GF/s':>9} {'GEMM-bound ex/s':>15} "
          f"{'% of it':>7} | {'torch GEMM GF/s':>15}")
    for act in acts:
        for dtype in dtypes:
            for d, w, depth, batch in SIZES:
                # interleaved rounds, best of each: the machine's load drifts between measurements
                t_torch = t_ours = math.inf
                torch_rate = 0.0
                shapes, rate = gemm_shapes(d, w, depth, batch), 0.0
                for _ in range(args.rounds):
                    measured = torch_seconds(d, w, depth, batch, act, dtype, args.seconds) if have_torch else None
                    if measured:
                        t_torch, torch_rate = min(t_torch, measured[0]), max(torch_rate, measured[1])
                    net, params, x, y = problem(d, w, depth, batch, act, dtype)
                    t_ours = min(t_ours, time_steps(dcpnet_step(net, params, x, y, dtype), args.seconds))
                    rate = max(rate, gemm_rate(shapes, dtype, args.seconds / 2))   # the bound: its best round too
                t_torch = None if t_torch == math.inf else t_torch
                bound = batch / (flops(shapes) / rate)
                ours = batch / t_ours
                theirs = f"{batch / t_torch:10.0f}" if t_torch else f"{'-':>10}"
                ratio = f"{t_torch / t_ours:5.2f}" if t_torch else f"{'-':>5}"
                torch_gemm = f"{torch_rate / 1e9:15.1f}" if torch_rate else f"{'-':>15}"
                print(f"{act:8} {np.dtype(dtype).name:7} {d:4} {w:5} {depth:5} {batch:5} | {ours:11.0f} {theirs} "
                      f"{ratio} | {flops(shapes) / 1e6:10.1f} {rate / 1e9:9.1f} {bound:15.0f} "
                      f"{100 * ours / bound:6.0f}% | {torch_gemm}", flush=True)


if __name__ == "__main__":
    main()
