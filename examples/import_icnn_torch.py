"""Check the model you already have: an input-convex network trained in PyTorch, imported and certified.

The ICNN below is written the way the optimal-transport papers write theirs (Makkuva et al.'s OT-ICNN,
W2GN): raw `nn.Linear` weights on the hidden path, clamped to >= 0 after each optimizer step to keep the
network convex in x, and a direct path from x into every layer. The script trains it twice on a convex
target, once as intended and once with the clamp forgotten on one layer, then for each:

    torch.export.save(torch.export.export(model, (x,)), "icnn.pt2")
    dcpnet import icnn.pt2 -o icnn.net                  # icnn.net: one line per layer; icnn.npz: the weights
    echo "check convex(out) in x" >> icnn.net           # the claim the model's authors make
    dcpnet check icnn.net --params icnn.npz             # the verdict for these trained weights

The clamped model is proved convex in x for its trained weights (nothing in its code says so: the raw weights
could be anything; `--params` reads their signs from the values). The buggy one is refuted: a witness, checked
in 50-digit arithmetic with exactly the trained weights, and the layer whose weights have the wrong sign named.
The script confirms that witness with the PyTorch model itself, in float64.

    python examples/import_icnn_torch.py [--small] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))          # run from a checkout: `python examples/import_icnn_torch.py`

import torch
from torch import nn
from torch.nn import functional as F

from dcpnet import cli


class ICNN(nn.Module):
    """z1 = celu(A0 x + b0); z_{k+1} = celu(Wk z_k + Ak x + bk); f = w z_K + a x: convex in x when W, w >= 0."""

    def __init__(self, d: int = 2, hidden: int = 16, layers: int = 3):
        super().__init__()
        self.first = nn.Linear(d, hidden)
        self.hidden = nn.ModuleList([nn.Linear(hidden, hidden, bias=False) for _ in range(layers - 1)])
        self.skip = nn.ModuleList([nn.Linear(d, hidden) for _ in range(layers - 1)])
        self.last = nn.Linear(hidden, 1, bias=False)
        self.last_skip = nn.Linear(d, 1)

    def forward(self, x):
        z = F.celu(self.first(x))
        for wz, wx in zip(self.hidden, self.skip):
            z = F.celu(wz(z) + wx(x))
        return self.last(z) + self.last_skip(x)

    def clamp_(self, forget: str | None = None) -> None:
        """The projection after each step: hidden-path weights back to >= 0 (except the layer `forget`)."""
        with torch.no_grad():
            for name, layer in [(f"hidden.{i}", m) for i, m in enumerate(self.hidden)] + [("last", self.last)]:
                if name != forget:
                    layer.weight.clamp_(min=0)


def target(x: torch.Tensor) -> torch.Tensor:
    """A convex function to fit: a log-sum-exp of affine pieces plus a quadratic."""
    pieces = torch.stack([x[:, 0] + x[:, 1], 2 * x[:, 0] - x[:, 1], -x[:, 0]], dim=1)
    return (torch.logsumexp(pieces, dim=1) + 0.25 * (x ** 2).sum(dim=1)).unsqueeze(1)


def fit(steps: int, forget: str | None, seed: int = 0) -> ICNN:
    torch.manual_seed(seed)
    model = ICNN()
    model.clamp_(forget)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x = 2 * torch.randn(256, 2)
        loss = F.mse_loss(model(x), target(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clamp_(forget)
    print(f"  trained {steps} steps, final mse {loss.item():.4f}")
    return model.eval()


def import_and_check(model: ICNN, folder: str, name: str) -> dict:
    pt2, net = os.path.join(folder, f"{name}.pt2"), os.path.join(folder, f"{name}.net")
    torch.export.save(torch.export.export(model, (torch.randn(8, 2),)), pt2)
    cli.main(["import", pt2, "-o", net])
    with open(net, "a") as fh:          # the claim the authors make for their model
        fh.write("check convex(out) in x\n")
    params = os.path.join(folder, f"{name}.npz")
    report_path = os.path.join(folder, f"{name}.json")
    with open(report_path, "w") as fh:   # the JSON report, for the numbers below
        old, sys.stdout = sys.stdout, fh
        try:
            code = cli.main(["check", net, "--params", params, "--json", "--budget", "5"])
        finally:
            sys.stdout = old
    cli.main(["check", net, "--params", params, "--budget", "5"])   # the same, for people
    with open(report_path) as fh:
        report = json.load(fh)
    return {"code": code, "result": report["results"][0], "sha256": report["params"]["sha256"]}


def confirm(model: ICNN, witness: dict) -> float:
    """The Jensen gap of the witness, recomputed with the PyTorch model in float64."""
    m = model.double()
    a, b = (torch.tensor([witness[k]["x"]], dtype=torch.float64) for k in ("a", "b"))
    with torch.no_grad():
        fa, fb, fm = (m(p).item() for p in (a, b, (a + b) / 2))
    return fm - (fa + fb) / 2


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="a few training steps (for the tests)")
    ap.add_argument("--keep", help="write the .pt2, .net, .npz files here instead of a temporary folder")
    args = ap.parse_args(argv)
    steps = 60 if args.small else 600
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or tmp
        os.makedirs(folder, exist_ok=True)
        print("1. clamped after every step, as intended")
        good = fit(steps, forget=None)
        out["good"] = import_and_check(good, folder, "icnn")
        print("2. the clamp forgotten on hidden.1")
        bad = fit(steps, forget="hidden.1")
        out["bad"] = import_and_check(bad, folder, "icnn_bug")
    convex = out["bad"]["result"]["convex"]
    if convex["verdict"] == "refuted":
        out["torch_gap"] = confirm(bad, convex["witness"])
        print(f"the PyTorch model itself, in float64, at the witness: f(mid) - chord = {out['torch_gap']:.3g} > 0")
    return out


if __name__ == "__main__":
    main()
