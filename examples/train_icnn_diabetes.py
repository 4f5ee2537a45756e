"""An input-convex network (ICNN) trained on scikit-learn's bundled diabetes data (no download).

What dcpnet proves (examples/icnn_diabetes.net): the prediction f is convex in the 10 inputs x for every value of
the weights inside their declared constraints (Wz >= 0, w >= 0); training projects those weights back onto the
constraints after every step, so the proof covers the trained network. dcpnet refutes that the squared error is
convex in x, and that f is convex in all the params jointly. The script re-checks both after training: the check
lines (with the trained params pinned) and, numerically, Jensen's inequality at pairs of test examples.

    python examples/train_icnn_diabetes.py [--small] [--seed N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from _common import jensen_gaps, load_example, report_certificate

from dcpnet.evaluate import compile_network
from dcpnet.train import mean_loss, train


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick run (tests)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from sklearn.datasets import load_diabetes  # scikit-learn only for the bundled data

    x, y = load_diabetes(return_X_y=True)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(y))
    test, fit = order[:88], order[88:]
    mu, sd, ymu, ysd = x[fit].mean(0), x[fit].std(0), y[fit].mean(), y[fit].std()
    xs, ys = (x - mu) / sd, (y - ymu) / ysd                     # standardized with the training statistics

    net = load_example("icnn_diabetes.net")
    epochs = 15 if args.small else 300
    t0 = time.perf_counter()
    res = train(net, {"x": xs[fit], "y": ys[fit]}, "loss", epochs=epochs, batch=32, lr=3e-3, seed=args.seed,
                val=0.15, patience=None if args.small else 40)
    seconds = time.perf_counter() - t0
    test_data = {"x": xs[test], "y": ys[test]}
    mse = mean_loss(net, res.params, test_data, "loss")
    coef, *_ = np.linalg.lstsq(np.c_[xs[fit], np.ones(len(fit))], ys[fit], rcond=None)
    lin_mse = float(np.mean((np.c_[xs[test], np.ones(len(test))] @ coef - ys[test]) ** 2))
    print(f"diabetes: {len(fit)} training examples (15% of them for validation), {len(test)} test examples")
    print(f"ICNN: {res.reason} in {seconds:.1f} s; test MSE {mse:.4f} (R^2 {1 - mse / np.var(ys[test]):.3f}); "
          f"linear least squares: test MSE {lin_mse:.4f} (R^2 {1 - lin_mse / np.var(ys[test]):.3f})")

    checks = report_certificate(net, res.params, args.seed)
    plan = compile_network(net, ["f"])
    pairs = rng.integers(0, len(test), size=(2, 2000))
    pairs = pairs[:, pairs[0] != pairs[1]]
    a, b = xs[test][pairs[0]], xs[test][pairs[1]]
    f = lambda z: plan.forward(dict(res.params, x=z), {"x"})["f"]
    gaps = jensen_gaps(f, a, b)
    print(f"Jensen's inequality for f in x at {pairs.shape[1]} pairs of test inputs: largest f(mid) - chord = "
          f"{gaps.max():.3g} (<= 0: convex along every segment tried)")
    return {"result": res, "net": net, "test_mse": mse, "linear_mse": lin_mse, "checks": checks,
            "max_gap": float(gaps.max()), "scale": float(np.abs(f(a)).max())}


if __name__ == "__main__":
    main()
