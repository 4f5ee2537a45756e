"""Convex neural networks (Bengio et al. 2005; Bach 2014): the output layer over a fixed hidden layer, trained on
scikit-learn's bundled data and compared with scikit-learn on the same hidden features.

What dcpnet proves (examples/convex_nn_bengio.net, examples/convex_nn_bach.net): with the hidden layer fixed
(its weights V, c are inputs of the file: given, not trained), the training loss is convex in the output weights
w, b -- logistic loss with a ridge penalty for Bengio et al., squared loss with Bach's L1 penalty norm1(w) for
Bach. dcpnet refutes that it is convex in the hidden weights V, and in w and V jointly (witnesses checked with 50
digits). So training the output layer is a convex problem: dcpnet's Adam and scikit-learn's solver
(LogisticRegression with an L2 penalty for Bengio, Lasso for Bach, on the hidden features h) aim at the same
minimum, and the script prints the ratio of the two objectives, both measured by dcpnet's evaluator.

    Bengio et al.: breast cancer (30 features, 2 classes), 32 random tanh units, lam = 1 / (2 C n):
                   mean loss = LogisticRegression(C) objective / (C n).
    Bach:          diabetes (10 features, regression), 64 relu units with (v, c) on the unit sphere,
                   mean loss = 2 * Lasso(alpha = lam / 2) objective.

Numerically, at the trained weights, the mean training loss along random segments in (w, b) never rises above
the chord, while the prediction f along segments in the hidden weights V (w fixed) does.

    python examples/train_convex_nn.py [--small] [--seed N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from _common import load_example, report_certificate

from dcpnet.evaluate import compile_network
from dcpnet.train import mean_loss, train

C = 1.0                 # LogisticRegression's default inverse regularization strength (Bengio et al.)
LAM_L1 = 0.01           # Bach's L1 weight on the output weights


def standardize(fit: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = fit.mean(0), fit.std(0)
    sd[sd == 0] = 1
    return [(a - mu) / sd for a in (fit, *others)]


def with_hidden(x: np.ndarray, V: np.ndarray, c: np.ndarray, **more: np.ndarray) -> dict:
    """The data of a file whose fixed hidden layer V, c is an input: the same V, c for every example."""
    n = len(x)
    return {"x": x, "V": np.broadcast_to(V, (n, *V.shape)), "c": np.broadcast_to(c, (n, *c.shape)), **more}


def fit_twice(net, data: dict, epochs: int, lr: float, seed: int):
    """Adam, then a second pass at a tenth of the rate from where the first stopped (closer to the minimum)."""
    first = train(net, data, "loss", epochs=epochs, batch=32, lr=lr, seed=seed)
    return train(net, data, "loss", epochs=max(epochs // 2, 1), batch=32, lr=lr / 10, seed=seed + 1,
                 init=first.params)


def segment_gaps(net, params: dict, data: dict, output: str, names: list[str], rng, trials: int,
                 spread: float = 1.0) -> np.ndarray:
    """Jensen gaps f(mid) - chord of `output` at every example, along random segments in `names` (the others,
    and the fixed hidden layer when not named, at their values): an array (trials, examples)."""
    plan = compile_network(net, [output])
    n = len(data["x"])

    def at(point: dict) -> np.ndarray:
        values = dict(params, **data)
        for k, v in point.items():   # the hidden layer moves as one matrix, shared by every example
            values[k] = np.broadcast_to(v, (n, *v.shape)) if k in ("V", "c") else v
        return plan.forward(values, set(data))[output]

    base = {k: (data[k][0] if k in ("V", "c") else params[k]) for k in names}
    gaps = []
    for _ in range(trials):
        a = {k: v + spread * rng.normal(size=np.shape(v)) for k, v in base.items()}
        b = {k: v + spread * rng.normal(size=np.shape(v)) for k, v in base.items()}
        gaps.append(at({k: (a[k] + b[k]) / 2 for k in names}) - (at(a) + at(b)) / 2)
    return np.array(gaps)


def numerically(net, params: dict, fit: dict, rng, small: bool) -> dict:
    """At the trained weights: the mean loss along segments in (w, b) (convex: no midpoint above the chord), and
    the prediction f at single examples along segments in V with w fixed (a midpoint above the chord)."""
    some = {k: v[:100] for k, v in fit.items()}
    trials = 30 if small else 100
    in_w = segment_gaps(net, params, some, "loss", ["w", "b"], rng, trials).mean(axis=1)
    in_v = segment_gaps(net, params, some, "f", ["V"], rng, trials)
    print(f"  numerically: mean loss along {trials} random segments in (w, b): largest f(mid) - chord "
          f"{in_w.max():.3g}; f at 100 examples along {trials} segments in V (w fixed): largest {in_v.max():.3g} "
          f"({np.count_nonzero(in_v > 1e-9)} of {in_v.size} midpoints above the chord)")
    return {"gap_w": float(in_w.max()), "gap_v": float(in_v.max()), "above_v": int(np.count_nonzero(in_v > 1e-9))}


def bengio(args, rng) -> dict:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, t = load_breast_cancer(return_X_y=True)
    x_fit, x_test, t_fit, t_test = train_test_split(x, t.astype(float), test_size=0.2, random_state=args.seed,
                                                    stratify=t)
    x_fit, x_test = standardize(x_fit, x_test)
    hidden = 32
    V, c = rng.normal(size=(hidden, x.shape[1])) / np.sqrt(x.shape[1]), rng.normal(size=hidden)
    n = len(t_fit)
    lam = 1 / (2 * C * n)
    fit = with_hidden(x_fit, V, c, t=t_fit, lam=np.full(n, lam))
    test = with_hidden(x_test, V, c, t=t_test, lam=np.full(len(t_test), lam))

    net = load_example("convex_nn_bengio.net")
    t0 = time.perf_counter()
    res = fit_twice(net, fit, 60 if args.small else 600, 0.01, args.seed)
    ours_s = time.perf_counter() - t0
    h_fit = np.tanh(x_fit @ V.T + c)
    sk = LogisticRegression(C=C, max_iter=10000, tol=1e-10).fit(h_fit, t_fit)
    sk_params = {"w": sk.coef_[0], "b": np.float64(sk.intercept_[0])}
    plan = compile_network(net, ["f"])
    rows = []
    for who, params in (("dcpnet", res.params), ("scikit-learn", sk_params)):
        f_test = plan.forward(dict(params, **test), set(test))["f"]
        rows.append({"who": who, "objective": mean_loss(net, params, fit, "loss"),
                     "accuracy": float(np.mean((f_test > 0) == (t_test > 0.5)))})
    ratio = rows[0]["objective"] / rows[1]["objective"]
    print(f"Bengio et al. (2005): breast cancer, {n} training and {len(t_test)} test examples, {hidden} fixed tanh "
          f"units; logistic loss + ridge, C = {C:g}")
    print(f"  dcpnet: {res.reason} (second pass) in {ours_s:.1f} s; scikit-learn LogisticRegression (lbfgs) on h")
    _table(rows, "test accuracy")
    print(f"  objective ratio dcpnet / scikit-learn: {ratio:.5f}")
    checks = report_certificate(net, res.params, args.seed)
    return {"result": res, "net": net, "dcpnet": rows[0], "sklearn": rows[1], "ratio": ratio, "checks": checks,
            **numerically(net, res.params, fit, rng, args.small)}


def bach(args, rng) -> dict:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Lasso
    from sklearn.model_selection import train_test_split

    x, y = load_diabetes(return_X_y=True)
    x_fit, x_test, y_fit, y_test = train_test_split(x, y, test_size=0.2, random_state=args.seed)
    x_fit, x_test = standardize(x_fit, x_test)
    y_mu, y_sd = y_fit.mean(), y_fit.std()
    y_fit, y_test = (y_fit - y_mu) / y_sd, (y_test - y_mu) / y_sd
    hidden = 64
    vc = rng.normal(size=(hidden, x.shape[1] + 1))
    vc /= np.linalg.norm(vc, axis=1, keepdims=True)          # Bach's hidden units: (v, c) on the unit sphere
    V, c = vc[:, :-1], vc[:, -1]
    n = len(y_fit)
    fit = with_hidden(x_fit, V, c, y=y_fit, lam=np.full(n, LAM_L1))
    test = with_hidden(x_test, V, c, y=y_test, lam=np.full(len(y_test), LAM_L1))

    net = load_example("convex_nn_bach.net")
    t0 = time.perf_counter()
    res = fit_twice(net, fit, 100 if args.small else 1000, 3e-3, args.seed)
    ours_s = time.perf_counter() - t0
    h_fit = np.maximum(x_fit @ V.T + c, 0)
    sk = Lasso(alpha=LAM_L1 / 2, tol=1e-12, max_iter=200000).fit(h_fit, y_fit)
    sk_params = {"w": sk.coef_, "b": np.float64(sk.intercept_)}
    plan = compile_network(net, ["f"])
    rows = []
    for who, params in (("dcpnet", res.params), ("scikit-learn", sk_params)):
        f_test = plan.forward(dict(params, **test), set(test))["f"]
        mse = float(np.mean((f_test - y_test) ** 2))
        rows.append({"who": who, "objective": mean_loss(net, params, fit, "loss"), "test_mse": mse,
                     "r2": 1 - mse / float(np.var(y_test)), "nonzero": int(np.sum(np.abs(params["w"]) > 1e-3))})
    ratio = rows[0]["objective"] / rows[1]["objective"]
    print(f"\nBach (2014): diabetes, {n} training and {len(y_test)} test examples, {hidden} fixed relu units on the "
          f"unit sphere; squared loss + {LAM_L1:g} * norm1(w)")
    print(f"  dcpnet: {res.reason} (second pass) in {ours_s:.1f} s; scikit-learn Lasso (alpha = lam / 2) on h")
    _table(rows, "test R^2", key="r2")
    print(f"  output weights with |w| > 1e-3: dcpnet {rows[0]['nonzero']}, scikit-learn {rows[1]['nonzero']} "
          f"of {hidden} (the L1 penalty selects hidden units)")
    print(f"  objective ratio dcpnet / scikit-learn: {ratio:.5f}")
    checks = report_certificate(net, res.params, args.seed)
    return {"result": res, "net": net, "dcpnet": rows[0], "sklearn": rows[1], "ratio": ratio, "checks": checks,
            **numerically(net, res.params, fit, rng, args.small)}


def _table(rows: list[dict], label: str, key: str = "accuracy") -> None:
    print(f"  {'':14}{'objective':>12}{label:>15}")
    for r in rows:
        print(f"  {r['who']:14}{r['objective']:12.6f}{r[key]:15.4f}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick run (tests)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    return {"bengio": bengio(args, rng), "bach": bach(args, rng)}


if __name__ == "__main__":
    main()
