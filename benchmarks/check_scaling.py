"""Time to parse and analyse input-convex networks of width 64 and growing depth, against CVXPY.

For each depth: dcpnet's parse + DAG build, its curvature analysis in x, the whole `dcpnet check` process,
and (when cvxpy is installed) the same network built with CVXPY and checked with `is_dcp`, in the same run.
`ratio` compares CVXPY's build + is_dcp with dcpnet's parse + build + analysis; `ratio (analysis only)` with
the analysis alone (both sides then start from an expression already in memory, give or take CVXPY's build).
Run: python benchmarks/check_scaling.py [--depths 10,100,1000,10000]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

WIDTH, D_IN = 64, 8

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from everyday import icnn_chain


def icnn_text(depth: int) -> str:
    return icnn_chain(depth, WIDTH)


def time_dcpnet(text: str) -> tuple[float, float, str]:
    from dcpnet.graph import load_text
    from dcpnet.prove import Analyzer

    t0 = time.perf_counter()
    net = load_text(text)
    t1 = time.perf_counter()
    curv = Analyzer(net).curvature("f", ["x"])
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, curv.value


def time_cvxpy(depth: int) -> float | None:
    try:
        import cvxpy as cp
    except ImportError:
        return None
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 50 * depth + 1000))
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    x = cp.Variable(D_IN)
    z = cp.pos(rng.standard_normal((WIDTH, D_IN)) @ x + rng.standard_normal(WIDTH))
    for _ in range(1, depth):
        z = cp.pos(np.abs(rng.standard_normal((WIDTH, WIDTH))) @ z + rng.standard_normal((WIDTH, D_IN)) @ x
                   + rng.standard_normal(WIDTH))
    f = np.abs(rng.standard_normal(WIDTH)) @ z
    ok = f.is_dcp() and f.is_convex()
    assert ok
    return time.perf_counter() - t0


def time_process(text: str) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".net", delete=False) as fh:
        fh.write(text)
    try:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dcpnet", "check", fh.name], check=True, capture_output=True)
        return time.perf_counter() - t0
    finally:
        os.unlink(fh.name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depths", default="10,100,1000,10000")
    depths = [int(d) for d in ap.parse_args().depths.split(",")]
    floor = time_process("input x\n")
    print(f"process floor (dcpnet check on a one-line file): {floor * 1000:.0f} ms")
    print(f"{'depth':>6} {'nodes':>7} {'parse ms':>9} {'analyse ms':>11} {'total ms':>9} {'per layer us':>13} "
          f"{'process ms':>11} {'cvxpy ms':>9} {'ratio':>6} {'ratio (analysis only)':>22}")
    for depth in depths:
        text = icnn_text(depth)
        parse, analyse, curv = time_dcpnet(text)
        assert curv == "convex", curv
        total = parse + analyse
        proc = time_process(text)
        cv = time_cvxpy(depth) if depth <= 1000 else None
        ratio = f"{cv / total:6.1f}" if cv else "   n/a"
        ratio_analysis = f"{cv / analyse:22.1f}" if cv else f"{'n/a':>22}"
        cvs = f"{cv * 1000:9.0f}" if cv else "      n/a"
        print(f"{depth:>6} {4 * depth + 3:>7} {parse * 1000:9.1f} {analyse * 1000:11.1f} {total * 1000:9.1f} "
              f"{total / depth * 1e6:13.0f} {proc * 1000:11.0f} {cvs} {ratio} {ratio_analysis}")


if __name__ == "__main__":
    main()
