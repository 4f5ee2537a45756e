"""Time to the first verified witness, for the refuted conformance claims and harder generated networks.

Run: python benchmarks/refute.py [--budget SECONDS]
Goal: every claim refuted in under 2 s.
"""
import argparse
import pathlib
import time

from dcpnet.graph import load, load_text
from dcpnet.verify import Verifier

CONFORMANCE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "conformance"


def deep_relu(depth: int, width: int = 16) -> str:
    """A relu network with unconstrained weights: not convex in x (Wz of either sign)."""
    lines = ["input x[4]", f"param W0[{width}, 4]", "z0 = relu(W0 @ x)"]
    for k in range(1, depth):
        lines += [f"param W{k}[{width}, {width}], b{k}[{width}]", f"z{k} = relu(W{k} @ z{k - 1} + b{k})"]
    lines += [f"param w[{width}]", f"f = w @ z{depth - 1}"]
    return "\n".join(lines) + "\n"


def bilinear_blocks(width: int = 32) -> str:
    return (f"input x[{width}] >= 0\nparam A[{width}, {width}] >= 0\nparam B[{width}, {width}] >= 0\n"
            f"f = sum(B @ relu(A @ x))\n")


def claims():
    for path in sorted(CONFORMANCE.glob("*.net")):
        if path.name.startswith("bad_"):
            continue
        net = load(str(path))
        for c in net.checks:
            if c.negated:
                yield f"{path.stem}:{c.pos.line} not {c.prop}({c.target})", net, c.target, [n for n, _ in c.wrt], c.prop
    for depth in (3, 10, 30, 100):
        net = load_text(deep_relu(depth))
        yield f"deep relu, depth {depth}, in x", net, "f", ["x"], "convex"
        yield f"deep relu, depth {depth}, in params", net, "f", ["params"], "convex"
    net = load_text(bilinear_blocks())
    yield "bilinear blocks 32x32, in A, B", net, "f", ["A", "B"], "convex"
    yield "bilinear blocks 32x32, in A, B (concave)", net, "f", ["A", "B"], "concave"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=10.0)
    budget = ap.parse_args().budget
    worst, failures = 0.0, 0
    print(f"{'claim':<58} {'seconds':>8}  verdict")
    for label, net, target, wrt, prop in claims():
        verifier = Verifier(net, seed=0, budget=budget)
        t0 = time.perf_counter()
        r = verifier.verify(target, wrt, want=(prop,))
        dt = time.perf_counter() - t0
        verdict = r[prop].verdict.value
        worst = max(worst, dt)
        failures += verdict != "refuted"
        print(f"{label:<58} {dt:8.3f}  {verdict}")
    print(f"slowest: {worst:.3f} s; not refuted: {failures}")


if __name__ == "__main__":
    main()
