"""dcpnet's training against the same model in PyTorch: same initial params, data, minibatch order and Adam.

    python benchmarks/train_vs_torch.py [--epochs N] [--dtype float64|float32]

Two models: the input-convex network of examples/icnn_diabetes.net on scikit-learn's bundled diabetes data
(synthetic data of the same shape without scikit-learn), and the L2-regularized softmax regression of
examples/softmax_digits.net on the bundled digits (synthetic without scikit-learn). dcpnet trains with
`dcpnet.train.train`; PyTorch replays the run from dcpnet's initial params and `dcpnet.train.shuffles` (the
minibatch order of the seed) with torch.optim.Adam and a clamp onto W >= 0 after each step. For each it prints
the final mean training loss of both (evaluated by the same code), their ratio, and the seconds of training.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")   # torch's OpenMP pool otherwise stalls on 2 cores

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from dcpnet.graph import load
from dcpnet.train import ADAM_BETAS, ADAM_EPS, mean_loss, seed_streams, shuffles, train
from dcpnet.train.params import init_params

SEED, BATCH = 0, 32


def diabetes() -> dict:
    try:
        from sklearn.datasets import load_diabetes
        x, y = load_diabetes(return_X_y=True)
    except ImportError:
        rng = np.random.default_rng(1)
        x = rng.normal(size=(442, 10))
        y = np.sum(x[:, :3] ** 2, axis=1) + x @ rng.normal(size=10)
    return {"x": (x - x.mean(0)) / x.std(0), "y": (y - y.mean()) / y.std()}


def digits() -> dict:
    try:
        from sklearn.datasets import load_digits
        x, label = load_digits(return_X_y=True)
    except ImportError:
        rng = np.random.default_rng(1)
        label = rng.integers(0, 10, 1797)
        x = rng.normal(size=(10, 64))[label] + rng.normal(size=(1797, 64))
    sd = x.std(0)
    sd[sd == 0] = 1
    return {"x": (x - x.mean(0)) / sd, "t": np.eye(10)[label], "lam": np.full(len(label), 1 / (2 * len(label)))}


def torch_icnn(p, d, torch):
    sp = torch.nn.functional.softplus
    z1 = sp(d["x"] @ p["W0"].T + p["b0"])
    z2 = sp(z1 @ p["Wz"].T + d["x"] @ p["Wx"].T + p["b1"])
    f = z2 @ p["w"] + d["x"] @ p["v"] + p["c"]
    return ((f - d["y"]) ** 2).mean()


def torch_softmax(p, d, torch):
    z = d["x"] @ p["W"].T + p["b"]
    ce = torch.logsumexp(z, dim=1) - (d["t"] * z).sum(dim=1)
    return (ce + d["lam"] * (p["W"] ** 2).sum()).mean()


MODELS = [("ICNN, diabetes", "icnn_diabetes.net", diabetes, torch_icnn, 1e-3),
          ("softmax regression, digits", "softmax_digits.net", digits, torch_softmax, 1e-2)]


def run_torch(net, init, data, model, epochs, lr, dtype) -> tuple[dict, float]:
    import torch

    torch.set_num_threads(2)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    p = {k: torch.tensor(np.array(v), dtype=tdt, requires_grad=True) for k, v in init.items()}
    d = {k: torch.tensor(v, dtype=tdt) for k, v in data.items()}
    opt = torch.optim.Adam(list(p.values()), lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)
    nonneg = [p[k] for k in net.params if net.variables[k].bounds.lo == 0]
    n = len(next(iter(data.values())))
    orders = shuffles(SEED, n)
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.from_numpy(next(orders))
        for start in range(0, n, BATCH):
            idx = order[start:start + BATCH]
            loss = model(p, {k: v[idx] for k, v in d.items()}, torch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for w in nonneg:
                    w.clamp_(min=0)
    seconds = time.perf_counter() - t0
    return {k: v.detach().numpy().astype(dtype) for k, v in p.items()}, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    args = ap.parse_args()
    dtype = np.dtype(args.dtype).type
    import importlib.util

    have_torch = importlib.util.find_spec("torch") is not None
    if not have_torch:
        print("torch is not installed: dcpnet figures only (pip install torch==2.13.0)")
    print(f"{args.epochs} epochs, batch {BATCH}, Adam, {args.dtype}, seed {SEED}")
    print(f"{'model':28} {'examples':>8} | {'dcpnet loss':>12} {'torch loss':>12} {'ratio':>8} | "
          f"{'rel. diff':>9} | {'dcpnet s':>8} {'torch s':>8}")
    for title, file, make, model, lr in MODELS:
        net = load(os.path.join(ROOT, "examples", file))
        data = {k: v.astype(dtype) for k, v in make().items()}
        n = len(next(iter(data.values())))
        init = init_params(net, seed_streams(SEED)[0], dtype)        # what `train` starts from for this seed
        t0 = time.perf_counter()
        res = train(net, data, "loss", epochs=args.epochs, batch=BATCH, lr=lr, seed=SEED, dtype=dtype)
        ours_s = time.perf_counter() - t0
        ours = mean_loss(net, res.params, data, "loss", dtype)
        theirs = torch_s = None
        if have_torch:
            params, torch_s = run_torch(net, init, data, model, args.epochs, lr, dtype)
            theirs = mean_loss(net, params, data, "loss", dtype)
        cells = (f"{theirs:12.6g} {ours / theirs:8.5f} | {abs(ours - theirs) / theirs:9.1e}" if theirs
                 else f"{'-':>12} {'-':>8} | {'-':>9}")
        t_cell = f"{torch_s:8.2f}" if torch_s else f"{'-':>8}"
        print(f"{title:28} {n:8} | {ours:12.6g} {cells} | {ours_s:8.2f} {t_cell}", flush=True)


if __name__ == "__main__":
    main()
