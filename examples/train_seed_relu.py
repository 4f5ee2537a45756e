"""The blog post's networks (the seed), trained on synthetic data: relu layers, nonnegative weights, logistic loss.

What dcpnet proves and refutes (examples/seed_relu.net, inputs x >= 0): the output y is affine in W1 and affine in
W2, and the logistic loss softplus(l * (y[0] - y[1])) is convex in W1 and convex in W2, block by block; jointly in
(W1, W2) neither y nor the loss is convex (W2 @ relu(W1 @ x) is bilinear), refuted with witnesses checked in
50-digit arithmetic. With inputs of either sign (examples/seed_relu_signed.net) relu clips: y stays convex in each
block, but the loss is no longer convex in W1 (refuted) -- where the post's "trail of convexity" ends.
Training keeps W1, W2 >= 0 exactly, so these verdicts hold for the trained networks. The script re-checks them
and tests numerically, at the trained weights: the training loss along random segments in W1 (W2 fixed: convex)
and in (W1, W2) jointly (a midpoint above the chord shows it is not convex).

    python examples/train_seed_relu.py [--small] [--seed N]
"""
from __future__ import annotations

import argparse

import numpy as np
from _common import load_example, report_certificate

from dcpnet.evaluate import compile_network
from dcpnet.train import train


def synthetic(rng, n: int, signed: bool) -> dict:
    """Labels l = +1 when y[1] should win: x0 > x1 (x >= 0), or |x0| > |x1| (x of either sign)."""
    if signed:
        x = rng.normal(size=(n, 3))
        l = np.where(np.abs(x[:, 0]) > np.abs(x[:, 1]), 1.0, -1.0)
    else:
        x = rng.uniform(0, 1, size=(n, 3))
        l = np.where(x[:, 0] > x[:, 1], 1.0, -1.0)
    return {"x": x, "l": l}


def segment_gaps(plan, params, data, names, rng, trials=200, spread=0.5) -> np.ndarray:
    """Jensen gaps of the mean loss along random segments in the params `names`, the others at trained values."""
    def mean_loss(points):
        return np.array([plan.forward(dict(params, **p, **data))["loss"].mean() for p in points])

    ends = []
    for _ in range(2):
        ends.append([{k: np.maximum(params[k] + spread * rng.normal(size=params[k].shape), 0) for k in names}
                     for _ in range(trials)])
    mids = [{k: (a[k] + b[k]) / 2 for k in names} for a, b in zip(*ends)]
    return mean_loss(mids) - (mean_loss(ends[0]) + mean_loss(ends[1])) / 2


def run(file: str, signed: bool, args, rng) -> dict:
    net = load_example(file)
    fit, test = synthetic(rng, 2000 if not args.small else 400, signed), synthetic(rng, 1000, signed)
    res = train(net, fit, "loss", epochs=5 if args.small else 40, batch=32, lr=0.01, seed=args.seed)
    plan = compile_network(net, ["y", "loss"])
    y = plan.forward(dict(res.params, **test))["y"]
    accuracy = float(np.mean(np.where(y[:, 1] > y[:, 0], 1.0, -1.0) == test["l"]))
    print(f"\n{file}: {res.reason}; train loss {res.history['train'][0]:.4f} -> {res.history['train'][-1]:.4f}; "
          f"test accuracy {accuracy:.3f}")
    checks = report_certificate(net, res.params, args.seed)
    small = {k: v[:200] for k, v in fit.items()}
    in_w1 = segment_gaps(plan, res.params, small, ["W1"], rng)
    joint = segment_gaps(plan, res.params, small, ["W1", "W2"], rng, spread=1.0)
    print(f"  numerically, mean loss along 200 random segments: in W1 (W2 fixed) largest f(mid) - chord "
          f"{in_w1.max():.3g}; in (W1, W2) jointly {joint.max():.3g} ({np.count_nonzero(joint > 1e-12)} segments "
          f"with the midpoint above the chord)")
    return {"result": res, "net": net, "accuracy": accuracy, "checks": checks, "gap_w1": float(in_w1.max()),
            "gap_joint": float(joint.max())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick run (tests)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    return {"nonneg": run("seed_relu.net", False, args, rng), "signed": run("seed_relu_signed.net", True, args, rng)}


if __name__ == "__main__":
    main()
