"""The everyday path of issue 18: whole-process times of `dcpnet check` and the default table, against the goals.

Each figure is the best of `--repeat` runs (5 by default, after one warm-up run) of `python -m dcpnet check ...`
in a fresh process, so imports, parsing, the analysis, the certificate and the printing all count. Bytecode is
written as an installed package has it (`--no-bytecode` keeps PYTHONDONTWRITEBYTECODE and compiles each time). A run over 10 s is not
repeated (one such run says enough). The default table runs on a generated 10-layer width-64 ICNN with 32
params and no check lines; its `--json` is measured too (the goal: under 1 MB).

    python benchmarks/everyday.py [--repeat 5] [--only NAME,...]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPILE_EACH_RUN = False   # --no-bytecode: compile dcpnet's sources in every process (PYTHONDONTWRITEBYTECODE)
D_IN = 8


def icnn_layers(depth: int, width: int) -> list[str]:
    """The layers of an input-convex chain: z_k = relu(Wz_k z_{k-1} + Wx_k x + b_k) with Wz_k >= 0."""
    lines = [f"input x[{D_IN}]", f"param W0[{width}, {D_IN}], b0[{width}]", "z0 = relu(W0 @ x + b0)"]
    for k in range(1, depth):
        lines.append(f"param Wz{k}[{width}, {width}] >= 0, Wx{k}[{width}, {D_IN}], b{k}[{width}]")
        lines.append(f"z{k} = relu(Wz{k} @ z{k - 1} + Wx{k} @ x + b{k})")
    return lines


def icnn_chain(depth: int, width: int) -> str:
    """The chain of benchmarks/check_scaling.py at any width: one convex claim in x, proved."""
    readout = [f"param w[{width}] >= 0", f"f = w @ z{depth - 1}", "check convex(f) in x"]
    return "\n".join(icnn_layers(depth, width) + readout) + "\n"


def icnn_table(depth: int = 10, width: int = 64) -> str:
    """An ICNN with 3 params a layer and a passthrough readout (w, wx, c): 32 params at depth 10, no check
    lines and no `--wrt`, so `dcpnet check` prints the default table."""
    readout = [f"param w[{width}] >= 0, wx[{D_IN}], c", f"f = w @ z{depth - 1} + wx @ x + c", "output f"]
    return "\n".join(icnn_layers(depth, width) + readout) + "\n"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(args: list[str], root: Path = ROOT) -> tuple[float, float, bytes]:
    """Wall and CPU seconds (user + system) of one `dcpnet check` process, and what it printed."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    if not COMPILE_EACH_RUN:   # as installed: pip writes the bytecode of every module once
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    t0, c0 = time.perf_counter(), _cpu()
    done = subprocess.run([sys.executable, "-m", "dcpnet", "check", *args], check=False, capture_output=True,
                          env=env, cwd=root)
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    if done.returncode not in (0, 1):
        sys.exit(f"dcpnet check {' '.join(args)} failed ({done.returncode}):\n{done.stderr.decode()}")
    return elapsed, cpu, done.stdout


def best_of(args: list[str], repeat: int, root: Path = ROOT) -> tuple[float, float, bytes]:
    """The best wall time and the best CPU time (on a shared machine the CPU time is the steadier one)."""
    best, best_cpu, out = float("inf"), float("inf"), b""
    for _ in range(repeat):
        elapsed, cpu, out = run_once(args, root)
        best, best_cpu = min(best, elapsed), min(best_cpu, cpu)
        if elapsed > 10:
            break
    return best, best_cpu, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", help="comma-separated names of the cases to run (default: all)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the source tree whose dcpnet is timed (default: this "
                    "one); e.g. an unpacked `git archive` of an older commit, to compare under the same load")
    ap.add_argument("--no-bytecode", action="store_true", help="keep PYTHONDONTWRITEBYTECODE, so each process "
                    "compiles dcpnet's sources again (by default the first run writes __pycache__, as pip would)")
    opts = ap.parse_args()
    global COMPILE_EACH_RUN
    COMPILE_EACH_RUN = opts.no_bytecode
    with tempfile.TemporaryDirectory() as tmp:
        def written(name: str, text: str) -> str:
            path = Path(tmp) / name
            path.write_text(text)
            return str(path)

        table = written("icnn10_table.net", icnn_table())
        cases = [  # name, arguments, goal in seconds (or bytes for the JSON size)
            ("icnn.net", [str(ROOT / "examples/icnn.net")], 0.18),
            ("seed_square.net", [str(ROOT / "examples/seed_square.net")], 0.45),
            ("chain d1000 w64", [written("chain1000.net", icnn_chain(1000, 64))], 0.3),
            ("chain d10000 w2", [written("chain10000.net", icnn_chain(10_000, 2))], 1.5),
            ("table d10 w64 32 params", [table, "--width", "100"], 3.0),
            ("table --json", [table, "--json"], 3.0),
        ]
        only = set(opts.only.split(",")) if opts.only else None
        print(f"{'case':<26} {'wall s':>8} {'cpu s':>8} {'goal':>6} {'ratio':>6}   (best of {opts.repeat}, whole "
              f"process; ratio = wall / goal)")
        for name, args, goal in cases:
            if only and name not in only:
                continue
            run_once(args, opts.root)    # warm: bytecode written, files in the page cache
            best, cpu, out = best_of(args, opts.repeat, opts.root)
            print(f"{name:<26} {best:8.3f} {cpu:8.3f} {goal:6.2f} {best / goal:6.2f}", flush=True)
            if name == "table --json":
                size = len(out)
                print(f"{'table --json size':<26} {size / 1e6:7.3f}M {'':>8} {1.0:5.1f}M {size / 1e6:6.2f}")


if __name__ == "__main__":
    main()
