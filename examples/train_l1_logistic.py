"""L1-regularised logistic regression (Yuan, Chang, Hsieh and Lin 2010) on scikit-learn's bundled breast cancer
data, next to scikit-learn's LogisticRegression(penalty="l1") on the same split.

What dcpnet proves (examples/l1_logistic.net): the loss softplus(z) - t * z + lam * norm1(w) is convex in the
params w, b, so training solves a convex problem and both fits aim at the same minimum. With lam = 1 / (C n) the
mean loss over the n training examples is scikit-learn's objective ||w||_1 + C * sum_i log(1 + exp(-s_i z_i))
divided by C n (the intercept is not penalised, as with the saga solver). It proves the loss convex in the
inputs x too, and refutes it convex in x and w jointly, and the probability sigmoid(z) convex in the params.
The script prints both fits' objective (measured by dcpnet's evaluator), their ratio, test accuracy and the
number of weights the L1 penalty keeps, and re-checks the file's check lines for the trained params.

    python examples/train_l1_logistic.py [--small] [--seed N] [--C X]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from _common import load_example, report_certificate

from dcpnet.evaluate import compile_network
from dcpnet.train import mean_loss, train

ZERO = 1e-3     # a weight below this in magnitude counts as dropped (Adam's iterates hover near 0, never at it)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick run (tests)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--C", type=float, default=0.1, help="scikit-learn's inverse L1 strength (default 0.1)")
    args = ap.parse_args(argv)
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, t = load_breast_cancer(return_X_y=True)
    x_fit, x_test, t_fit, t_test = train_test_split(x, t.astype(float), test_size=0.2, random_state=args.seed,
                                                    stratify=t)
    mu, sd = x_fit.mean(0), x_fit.std(0)
    x_fit, x_test = (x_fit - mu) / sd, (x_test - mu) / sd
    n = len(t_fit)
    lam = 1 / (args.C * n)

    def data(xs, ts):
        return {"x": xs, "t": ts, "lam": np.full(len(ts), lam)}

    net = load_example("l1_logistic.net")
    epochs = 80 if args.small else 600
    t0 = time.perf_counter()
    first = train(net, data(x_fit, t_fit), "loss", epochs=epochs, batch=32, lr=0.01, seed=args.seed)
    res = train(net, data(x_fit, t_fit), "loss", epochs=epochs // 2, batch=32, lr=0.001, seed=args.seed + 1,
                init=first.params)                      # a tenth of the rate from there: closer to the minimum
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sk = l1_logistic_regression(args.C).fit(x_fit, t_fit)
    sk_s = time.perf_counter() - t0
    sk_params = {"w": sk.coef_[0], "b": np.float64(sk.intercept_[0])}

    plan = compile_network(net, ["z"])
    rows = []
    for who, params in (("dcpnet", res.params), ("scikit-learn", sk_params)):
        z_test = plan.forward(dict(params, **data(x_test, t_test)), {"x", "t", "lam"})["z"]
        w = params["w"]
        rows.append({"who": who, "objective": mean_loss(net, params, data(x_fit, t_fit), "loss"),
                     "sk_objective": float(np.abs(w).sum() + args.C * n * _mean_logloss(x_fit @ w + params["b"],
                                                                                        t_fit)),
                     "accuracy": float(np.mean((z_test > 0) == (t_test > 0.5))),
                     "kept": int(np.sum(np.abs(w) > ZERO))})
    ratio = rows[0]["objective"] / rows[1]["objective"]
    print(f"breast cancer: {n} training and {len(t_test)} test examples, 30 standardized features; C = {args.C:g}, "
          f"lam = 1 / (C n) = {lam:.6g}")
    print(f"dcpnet: {res.reason} (second pass) in {ours_s:.1f} s (Adam); scikit-learn LogisticRegression(penalty='l1', "
          f"solver='saga'): {sk_s:.1f} s")
    print(f"{'':14}{'mean loss':>12}{'sk objective':>14}{'test accuracy':>15}{'weights kept':>14}")
    for r in rows:
        print(f"{r['who']:14}{r['objective']:12.6f}{r['sk_objective']:14.5f}{r['accuracy']:15.4f}{r['kept']:14d}")
    print(f"objective ratio dcpnet / scikit-learn: {ratio:.5f} (the mean loss is the scikit-learn objective / (C n))")
    checks = report_certificate(net, res.params, args.seed)
    return {"result": res, "net": net, "dcpnet": rows[0], "sklearn": rows[1], "ratio": ratio, "checks": checks,
            "n": n, "C": args.C}


def l1_logistic_regression(C: float):
    """scikit-learn's LogisticRegression(penalty="l1", C, solver="saga"); from scikit-learn 1.8 on, `penalty` is
    deprecated and the same model is asked for as l1_ratio=1."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    how = {"l1_ratio": 1.0} if (major, minor) >= (1, 8) else {"penalty": "l1"}
    return LogisticRegression(C=C, solver="saga", tol=1e-10, max_iter=100000, **how)


def _mean_logloss(z: np.ndarray, t: np.ndarray) -> float:
    """mean of log(1 + exp(-s z)) with s = 2t - 1, computed apart from dcpnet (the test compares the two)."""
    return float(np.mean(np.logaddexp(0, -(2 * t - 1) * z)))


if __name__ == "__main__":
    main()
