"""Softmax regression trained on scikit-learn's bundled 8x8 digits, next to scikit-learn's LogisticRegression.

What dcpnet proves (examples/softmax_digits.net): the L2-regularized cross-entropy is convex in the params W, b
jointly, so training solves a convex problem and both fits should reach the same objective; with `lam` =
1 / (2 C n) the mean loss is LogisticRegression's objective divided by C n. It proves the cross-entropy convex in
the inputs x too, and refutes it convex in x and W jointly. The script prints both models' objective, test loss
and test accuracy on the same split, and re-checks the file's check lines for the trained params.

    python examples/train_softmax_digits.py [--small] [--seed N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from _common import load_example, report_certificate

from dcpnet.evaluate import compile_network
from dcpnet.train import train

C = 1.0                                   # LogisticRegression's default inverse regularization strength


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick run (tests)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, label = load_digits(return_X_y=True)
    if args.small:
        x, label = x[:600], label[:600]
    x_fit, x_test, l_fit, l_test = train_test_split(x, label, test_size=0.25, random_state=args.seed,
                                                    stratify=label)
    mu, sd = x_fit.mean(0), x_fit.std(0)
    sd[sd == 0] = 1                                           # pixels constant in the training set
    x_fit, x_test = (x_fit - mu) / sd, (x_test - mu) / sd
    n = len(l_fit)
    lam = 1 / (2 * C * n)
    onehot = np.eye(10)

    def data(xs, ls):
        return {"x": xs, "t": onehot[ls], "lam": np.full(len(ls), lam)}

    net = load_example("softmax_digits.net")
    t0 = time.perf_counter()
    res = train(net, data(x_fit, l_fit), "loss", epochs=20 if args.small else 200, batch=64, lr=0.01,
                seed=args.seed)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sk = LogisticRegression(C=C, max_iter=5000, tol=1e-10).fit(x_fit, l_fit)
    sk_s = time.perf_counter() - t0
    sk_params = {"W": sk.coef_, "b": sk.intercept_}

    plan = compile_network(net, ["z", "ce", "loss"])
    rows = []
    for who, params in (("dcpnet", res.params), ("scikit-learn", sk_params)):
        fit = plan.forward(dict(params, **data(x_fit, l_fit)), {"x", "t", "lam"})
        test = plan.forward(dict(params, **data(x_test, l_test)), {"x", "t", "lam"})
        rows.append({"who": who, "objective": float(fit["loss"].mean()), "test_loss": float(test["ce"].mean()),
                     "accuracy": float(np.mean(test["z"].argmax(1) == l_test))})
    print(f"digits: {n} training and {len(l_test)} test examples, 64 pixels, 10 classes; C = {C:g}")
    print(f"dcpnet: {res.reason} in {ours_s:.1f} s (Adam); scikit-learn LogisticRegression (lbfgs): {sk_s:.1f} s")
    print(f"{'':14}{'objective':>12}{'test loss':>12}{'test accuracy':>15}")
    for r in rows:
        print(f"{r['who']:14}{r['objective']:12.5f}{r['test_loss']:12.5f}{r['accuracy']:15.4f}")
    ratio = rows[0]["objective"] / rows[1]["objective"]
    print(f"objective ratio dcpnet / scikit-learn: {ratio:.4f} (a convex problem: both aim at the same minimum)")
    checks = report_certificate(net, res.params, args.seed)
    return {"result": res, "net": net, "dcpnet": rows[0], "sklearn": rows[1], "ratio": ratio, "checks": checks}


if __name__ == "__main__":
    main()
